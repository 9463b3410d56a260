package registrar_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/registrar"
	"fhirlake/sink"
)

// speedFile copies a small Parquet file of the raw dataset into a local store.
func speedFile(t *testing.T, root string) {
	t.Helper()
	key := lake.Key(lake.RawDataset, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "t", 0, 0, 0)
	p := filepath.Join(root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "resources.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPassIsolatesTenants: a tenant whose catalog cannot be opened is reported, and
// the other tenants are registered all the same.
func TestPassIsolatesTenants(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "catalog.db")
	var tenants []registrar.Tenant
	for _, name := range []string{"acme", "globex"} {
		root := t.TempDir()
		speedFile(t, root)
		st, err := sink.NewLocal(root)
		if err != nil {
			t.Fatal(err)
		}
		o := catalog.Options{Type: catalog.TypeSQL, URI: db, Warehouse: filepath.Join(root, "_iceberg")}
		if name == "acme" {
			o.Type = "bogus"
		}
		tenants = append(tenants, registrar.Tenant{Name: name, Store: st, Catalog: o})
	}
	r, err := registrar.New(registrar.Options{Tenants: tenants, Schemas: map[string]*arrow.Schema{lake.RawDataset: lake.RawSchema}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Pass(ctx)
	if err == nil || !strings.Contains(err.Error(), "tenant acme") || strings.Contains(err.Error(), "globex") {
		t.Fatalf("pass: %v, want acme's failure only", err)
	}
	if len(res) != 1 || res[0].Tenant != "globex" || res[0].Added != 1 {
		t.Fatalf("pass results %+v, want globex's file registered", res)
	}
}
