package compactor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/query/querytest"
	"fhirlake/sink"
)

// downloadsStore is a tenant's store that records every object it downloads.
type downloadsStore struct {
	sink.Store
	mu   sync.Mutex
	gets []string
}

func (s *downloadsStore) Get(ctx context.Context, key string, w io.Writer) error {
	s.mu.Lock()
	s.gets = append(s.gets, key)
	s.mu.Unlock()
	return s.Store.Get(ctx, key, w)
}

func (s *downloadsStore) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.gets
	s.gets = nil
	return out
}

// TestIcebergPositionDeletesReadS3InPlace: in an S3 lake, an incremental run that
// publishes a merged state with position deletes reads the base files where they are
// (DuckDB's httpfs, the tenant's key): it downloads no Parquet file of the lake, and
// the table reads through iceberg-go as fhirlake reads the model.
func TestIcebergPositionDeletesReadS3InPlace(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	endpoint, extDir := os.Getenv("FHIRLAKE_S3_ENDPOINT"), os.Getenv("FHIRLAKE_DUCKDB_EXTENSION_DIR")
	key, secret, bucket := os.Getenv("FHIRLAKE_TENANT_ACME_ACCESS_KEY"), os.Getenv("FHIRLAKE_TENANT_ACME_SECRET_KEY"), os.Getenv("FHIRLAKE_TENANT_ACME_BUCKET")
	if endpoint == "" || extDir == "" || key == "" {
		t.Skip(`the local stack's S3 is not in the environment: eval "$(deploy/local/stack env)"`)
	}
	runner.ExtensionDir = extDir
	ctx := context.Background()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	prefix := "compactor-s3-" + hex.EncodeToString(rnd[:])
	s3, err := sink.NewS3(ctx, sink.S3Options{Bucket: bucket, Prefix: prefix, Endpoint: endpoint, Region: "us-east-1", PathStyle: true, AccessKey: key, SecretKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	store := &downloadsStore{Store: s3}
	t.Cleanup(func() {
		objs, _ := s3.List(context.Background(), "")
		for _, o := range objs {
			_ = s3.Delete(context.Background(), o.Key)
		}
	})
	root := "s3://" + bucket + "/" + prefix
	ten := Tenant{Name: "acme", Store: store, Lake: root,
		S3: &S3Access{Endpoint: endpoint, Region: "us-east-1", PathStyle: true, Credentials: s3.Credentials()}}
	opts := catalog.Options{Type: catalog.TypeSQL, URI: filepath.Join(t.TempDir(), "catalog.db"), Tenant: "acme", Warehouse: root + "/_iceberg",
		S3: catalog.S3{Endpoint: endpoint, Region: "us-east-1", PathStyle: true, AccessKey: key, SecretKey: secret}}
	ten.Iceberg = &opts
	c := newTestCompactor(t, runner, nil, func(o *Options) {
		o.Overlap = 0
		o.Timeout = 10 * time.Minute
		o.RebaseShare = 1e9 // never a rebuild: the second run merges on read
		o.DuckDBExtensionDir = extDir
	})
	// upload writes changes as the consumer would, into the bucket.
	upload := func(changes []querytest.Change) {
		t.Helper()
		dir := t.TempDir()
		querytest.WriteChanges(t, dir, "acme", changes)
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			return store.Put(ctx, filepath.ToSlash(rel), p)
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	upload(everyViewChanges(0, "-a"))
	if _, err := c.Compact(ctx, ten); err != nil {
		t.Fatal(err)
	}
	upload([]querytest.Change{
		{Type: "Patient", ID: "p1-a", Version: "3", Offset: 200, Fields: `"gender":"male","birthDate":"1980-01-04"`},
		{Type: "Patient", ID: "p2-a", Version: "2", Delete: true, Offset: 201},
	})
	store.take()
	res, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range store.take() {
		if strings.HasSuffix(k, ".parquet") {
			t.Errorf("the incremental run downloaded %s", k)
		}
	}
	m, err := sink.ReadManifest(ctx, store)
	if err != nil || m == nil || m.SnapshotID != res.SnapshotID {
		t.Fatalf("manifest %v, %v; want snapshot %s", m, err, res.SnapshotID)
	}
	state := lake.StateModel(lake.RawDataset)
	if !m.Models[state].Merged() {
		t.Fatalf("the state is not merged on read: %+v", m.Models[state])
	}
	if objs, err := store.List(ctx, lake.ModelKey(m.SnapshotID, state, DeletesFile)); err != nil || len(objs) != 1 {
		t.Fatalf("the merged state has no position delete file in the bucket (%v)", err)
	}

	cat, err := catalog.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	db, err := openLakeDuckDB(ctx, ten, extDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, model := range m.ModelNames() {
		if !m.Models[model].Merged() {
			continue
		}
		mod := m.Models[model]
		urls := func(keys []string) []string {
			var out []string
			for _, k := range keys {
				out = append(out, root+"/"+k)
			}
			return out
		}
		merged := lake.MergeSQL(mod.MergeKey(), urls(mod.Files), urls(mod.Changed.PartFiles()), urls(mod.Delta.PartFiles()))
		rows, diff := icebergDiffWith(t, db, cat, merged, model)
		if diff != 0 || rows == 0 {
			t.Errorf("table %s (%d rows) differs from model %s in %d rows", TableName(model), rows, model, diff)
		}
	}
}
