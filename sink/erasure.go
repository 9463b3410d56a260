package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"fhirlake/lake"
)

// ReadErasures returns every erasure record of the tenant (lake.ErasurePrefix),
// sorted by key. A record that does not decode is an error: skipping it would let a
// replay bring back what it erased.
func ReadErasures(ctx context.Context, store Store) ([]*lake.Erasure, error) {
	objs, err := store.List(ctx, lake.ErasurePrefix)
	if err != nil {
		return nil, fmt.Errorf("list erasures: %w", err)
	}
	var out []*lake.Erasure
	for _, o := range objs {
		if !lake.ParseErasureKey(o.Key) {
			continue
		}
		e, err := ReadErasure(ctx, store, o.Key)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// ReadErasure reads one erasure record; nil without an error when there is none.
func ReadErasure(ctx context.Context, store Store, key string) (*lake.Erasure, error) {
	var buf bytes.Buffer
	if _, err := store.GetTagged(ctx, key, &buf); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	e, err := lake.DecodeErasure(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return e, nil
}
