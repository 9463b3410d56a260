package sink

import (
	"bytes"
	"context"
	"fmt"

	"fhirlake/lake"
)

// ReadManifest returns the tenant's current manifest (lake.ManifestKey), or nil when
// no snapshot has been published yet.
func ReadManifest(ctx context.Context, store Store) (*lake.Manifest, error) {
	return ReadManifestAt(ctx, store, lake.ManifestKey)
}

// ReadManifestAt reads the manifest at key (lake.ManifestKey, or the copy a snapshot
// keeps, lake.SnapshotManifestKey); nil when there is none.
func ReadManifestAt(ctx context.Context, store Store, key string) (*lake.Manifest, error) {
	objs, err := store.List(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	found := false
	for _, o := range objs {
		if o.Key == key {
			found = true
		}
	}
	if !found {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := store.Get(ctx, key, &buf); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	return lake.DecodeManifest(buf.Bytes())
}
