package query

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"fhirlake/query/querytest"
	"fhirlake/sink"
)

// countingStore counts the objects fetched from the store underneath.
type countingStore struct {
	sink.Store
	gets atomic.Int64 // the mirror downloads in parallel
}

func (c *countingStore) Get(ctx context.Context, key string, w io.Writer) error {
	c.gets.Add(1)
	return c.Store.Get(ctx, key, w)
}

func TestMirrorIncremental(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "bucket")
	querytest.WriteRaw(t, src, "acme", "t-0-0-1", []querytest.Row{{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0}, {Type: "Patient", ID: "p2", Version: "1", Op: "upsert", Offset: 1}})
	local, err := sink.NewLocal(src)
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: local}
	dir := filepath.Join(t.TempDir(), "mirror")
	st, err := SyncMirror(ctx, store, dir, MirrorOptions{})
	if err != nil || st.Downloaded != 1 || store.gets.Load() != 1 || st.Duration <= 0 {
		t.Fatalf("first sync: %+v, %d gets, %v", st, store.gets.Load(), err)
	}
	s, err := Open(ctx, "acme", dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := count(t, s, "SELECT count(*) FROM patient"); got != 2 {
		t.Fatalf("got %d patients, want 2", got)
	}
	// Nothing changed: a listing, no download.
	if st, err = SyncMirror(ctx, store, dir, MirrorOptions{}); err != nil || st.Downloaded != 0 || store.gets.Load() != 1 {
		t.Fatalf("second sync: %+v, %d gets, %v", st, store.gets.Load(), err)
	}
	// A new file, and the old one deleted upstream.
	querytest.WriteRaw(t, src, "acme", "t-0-2-2", []querytest.Row{{Type: "Patient", ID: "p2", Version: "2", Op: "delete", Offset: 2}})
	if err := local.Delete(ctx, "speed/resources/date=2026-01-01/t-0-0-1.parquet"); err != nil {
		t.Fatal(err)
	}
	querytest.WriteRaw(t, src, "acme", "t-0-0-1b", []querytest.Row{{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0}, {Type: "Patient", ID: "p2", Version: "1", Op: "upsert", Offset: 1}})
	st, err = SyncMirror(ctx, store, dir, MirrorOptions{})
	if err != nil || st.Downloaded != 2 || st.Deleted != 1 {
		t.Fatalf("third sync: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "speed/resources/date=2026-01-01/t-0-0-1.parquet")); !os.IsNotExist(err) {
		t.Fatalf("a file deleted upstream is still mirrored: %v", err)
	}
	// The mirror dates files as their objects are dated.
	objs, _ := local.List(ctx, "speed/")
	info, _ := os.Stat(filepath.Join(dir, filepath.FromSlash(objs[0].Key)))
	if !info.ModTime().Equal(objs[0].Modified) {
		t.Errorf("mirrored file dated %s, object %s", info.ModTime(), objs[0].Modified)
	}
	if _, err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(t, s, "SELECT count(*) FROM patient"); got != 1 {
		t.Fatalf("after the delete: got %d patients, want 1", got)
	}
}

// hostileStore lists keys that try to leave the mirror.
type hostileStore struct {
	sink.Store
	keys []string
}

func (h hostileStore) List(ctx context.Context, prefix string) ([]sink.Object, error) {
	var out []sink.Object
	for _, k := range h.keys {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out = append(out, sink.Object{Key: k, Size: 4, Modified: time.Now()})
		}
	}
	return out, nil
}

func (h hostileStore) Get(_ context.Context, key string, w io.Writer) error {
	_, err := io.Copy(w, bytes.NewReader([]byte("PAR1")))
	return err
}

func TestMirrorRefusesKeysOutsideTheLake(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "mirror", "acme")
	keys := []string{
		"speed/../../globex/speed/resources/date=2026-01-01/x.parquet",
		"speed/resources/date=2026-01-01/../../../../globex/x.parquet",
		"speed//resources/date=2026-01-01/x.parquet",
		"speed/resources/date=2026-01-01/./x.parquet",
		"speed/Resources Evil/date=2026-01-01/x.parquet",
		"speed/resources/x.parquet",
	}
	st, err := SyncMirror(context.Background(), hostileStore{keys: keys}, dir, MirrorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Downloaded != 0 {
		t.Fatalf("downloaded %d objects with hostile keys", st.Downloaded)
	}
	var found []string
	if err := filepath.Walk(base, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			found = append(found, p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Fatalf("files written: %v", found)
	}
	for _, k := range keys {
		if speedKey(k) {
			t.Errorf("speedKey(%q) = true", k)
		}
	}

}
