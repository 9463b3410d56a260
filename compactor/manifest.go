package compactor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"fhirlake/lake"
	"fhirlake/sink"
)

// ReadManifest returns the tenant's current manifest (lake.ManifestKey), or nil when
// no snapshot has been published yet.
func ReadManifest(ctx context.Context, store sink.Store) (*lake.Manifest, error) {
	objs, err := store.List(ctx, lake.ManifestKey)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	found := false
	for _, o := range objs {
		if o.Key == lake.ManifestKey {
			found = true
		}
	}
	if !found {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := store.Get(ctx, lake.ManifestKey, &buf); err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return lake.DecodeManifest(buf.Bytes())
}

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
