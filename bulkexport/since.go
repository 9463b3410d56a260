package bulkexport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"fhirlake/lake"
	"fhirlake/sink"
)

// Store is the part of a tenant's store (sink.Store) that records exports.
type Store interface {
	GetTagged(ctx context.Context, key string, w io.Writer) (tag string, err error)
	PutIfAbsent(ctx context.Context, key string, body []byte) (tag string, err error)
	PutIfMatch(ctx context.Context, key string, body []byte, tag string) (newTag string, err error)
}

// recordAttempts bounds the rereads when another writer changed the
// document between a read and a write.
const recordAttempts = 5

// LastExport returns the last export of source recorded in the tenant's
// lake (lake.ExportsKey); ok is false when none is.
func LastExport(ctx context.Context, s Store, source string) (last lake.ExportSource, ok bool, err error) {
	doc, _, err := readExports(ctx, s)
	if err != nil || doc == nil {
		return last, false, err
	}
	last, ok = doc.Last(source)
	return last, ok, nil
}

// RecordExport records src as its source's last export, conditionally on
// the document being unchanged since read, so that two backfills of one
// tenant (from different sources) lose neither's record.
func RecordExport(ctx context.Context, s Store, tenant string, src lake.ExportSource) error {
	for range recordAttempts {
		doc, tag, err := readExports(ctx, s)
		if err != nil {
			return err
		}
		if doc == nil {
			doc = &lake.Exports{Version: lake.ExportsVersion, Tenant: tenant}
		}
		doc.Record(src)
		b, err := doc.Encode()
		if err != nil {
			return err
		}
		if tag == "" {
			_, err = s.PutIfAbsent(ctx, lake.ExportsKey, b)
		} else {
			_, err = s.PutIfMatch(ctx, lake.ExportsKey, b, tag)
		}
		if !errors.Is(err, sink.ErrPreconditionFailed) {
			if err != nil {
				return fmt.Errorf("record the export in %s: %w", lake.ExportsKey, err)
			}
			return nil
		}
	}
	return fmt.Errorf("record the export in %s: changed by others %d times in a row", lake.ExportsKey, recordAttempts)
}

// readExports reads the document and its tag; nil and "" when absent.
func readExports(ctx context.Context, s Store) (*lake.Exports, string, error) {
	var buf bytes.Buffer
	tag, err := s.GetTagged(ctx, lake.ExportsKey, &buf)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", lake.ExportsKey, err)
	}
	doc, err := lake.DecodeExports(buf.Bytes())
	if err != nil {
		return nil, "", err
	}
	return doc, tag, nil
}
