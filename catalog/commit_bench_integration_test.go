//go:build integration

package catalog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/sink"
)

// BenchmarkCatalogCommit: one commit registering files of acme's bucket on the local
// stack, for each catalog the stack serves, as the consumer would commit each flush
// (1 file) or the registrar a minute of 5 s flushes (12 files). Figures only:
//
//	eval "$(deploy/local/stack env)"
//	go test -tags duckdb_arrow,integration -run '^$' -bench CatalogCommit -benchtime 40x ./catalog/
func BenchmarkCatalogCommit(b *testing.B) {
	ctx := context.Background()
	endpoint := os.Getenv("FHIRLAKE_S3_ENDPOINT")
	if endpoint == "" {
		b.Fatal(`the local stack is not configured: eval "$(deploy/local/stack env)"`)
	}
	key, secret := os.Getenv("FHIRLAKE_TENANT_ACME_ACCESS_KEY"), os.Getenv("FHIRLAKE_TENANT_ACME_SECRET_KEY")
	run := fmt.Sprintf("bench%d", time.Now().UnixNano())
	store, err := sink.NewS3(ctx, sink.S3Options{Bucket: "fhirlake-acme", Prefix: "runs/" + run, Endpoint: endpoint,
		Region: "us-east-1", PathStyle: true, AccessKey: key, SecretKey: secret})
	if err != nil {
		b.Fatal(err)
	}
	l := &lakeDir{t: &testing.T{}, root: b.TempDir()}
	local := l.writeSpeed(0, 100).Location
	catalogs := []struct{ name, kind, uri string }{
		{"sqlite", catalog.TypeSQL, filepath.Join(b.TempDir(), "catalog.db")},
		{"postgres", catalog.TypeSQL, os.Getenv("FHIRLAKE_STACK_POSTGRES_URI")},
		{"rest", catalog.TypeREST, os.Getenv("FHIRLAKE_STACK_CATALOG_REST_URI")},
	}
	n := 0
	upload := func(count int) []catalog.File {
		files := make([]catalog.File, count)
		for i := range files {
			n++
			k := lake.Key(lake.RawDataset, time.Now(), "bench", 0, int64(n), int64(n))
			if err := store.Put(ctx, k, local); err != nil {
				b.Fatal(err)
			}
			st, _ := os.Stat(local)
			files[i] = catalog.File{Location: "s3://fhirlake-acme/runs/" + run + "/" + k, Size: st.Size(), Modified: time.Now()}
		}
		return files
	}
	for _, c := range catalogs {
		for _, per := range []int{1, 12} {
			b.Run(fmt.Sprintf("%s/files=%d", c.name, per), func(b *testing.B) {
				cat, err := catalog.Open(ctx, catalog.Options{Type: c.kind, URI: c.uri, Name: run, Tenant: "acme-bench",
					Warehouse: "s3://fhirlake-acme/runs/" + run + "/_iceberg_" + c.name,
					S3:        catalog.S3{Endpoint: endpoint, Region: "us-east-1", PathStyle: true, AccessKey: key, SecretKey: secret}})
				if err != nil {
					b.Fatal(err)
				}
				defer cat.Close()
				tbl, err := cat.Table(ctx, fmt.Sprintf("%s_%s_%d", run, c.name, per), lake.RawSchema)
				if err != nil {
					b.Fatal(err)
				}
				var listed []catalog.File
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					listed = append(listed, upload(per)...)
					b.StartTimer()
					if _, tbl, err = catalog.Sync(ctx, tbl, listed, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
