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
