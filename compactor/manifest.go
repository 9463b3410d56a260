package compactor

import (
	"context"
	"os"
	"path/filepath"

	"fhirlake/lake"
	"fhirlake/sink"
)

// putManifest stores m under key through a local file in dir.
func putManifest(ctx context.Context, store sink.Store, dir, key string, m *lake.Manifest) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	return putBytes(ctx, store, dir, key, b)
}

// putBytes stores b under key through a temporary local file in dir (a store puts
// files).
func putBytes(ctx context.Context, store sink.Store, dir, key string, b []byte) error {
	f, err := os.CreateTemp(dir, "put-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return store.Put(ctx, key, filepath.Clean(f.Name()))
}
