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
	f, err := os.CreateTemp(dir, "manifest-*.json")
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
