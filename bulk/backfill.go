package bulk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/lake"
	"fhirlake/notification"
	"fhirlake/rows"
	"fhirlake/sink"
)

// BackfillOptions configure a backfill.
type BackfillOptions struct {
	// Views written next to the raw dataset.
	Views []*flatten.View
	// ChunkRows is the number of resources per set of files. Default: 100000.
	ChunkRows int
	// Progress, if set, is called with the number of bytes of the file read
	// each time some are read.
	Progress func(n int)
}

// BackfillResult counts what one file yielded.
type BackfillResult struct {
	File      string
	Resources int
	Deletes   int
	Files     int
	// Errors lists what could not be read or stored (line or entry,
	// reason); it is skipped, everything else is stored.
	Errors []string
}

// BackfillTopic prefixes the lineage topic of backfilled rows: "backfill-"
// and the first 12 bytes of the file's SHA-256 in hex. The partition is 0
// and the offset is Location.Offset: the line, else 1 + the entry index.
const BackfillTopic = "backfill-"

// Backfill loads one file — bulk-export NDJSON, a Bundle of any type, a
// subscription notification, plain or gzipped (see Reader) — into the
// tenant's lake through the same buffers and writer as the consumer: every
// change the file holds or describes, upserts and deletes. Resources a
// notification only carries beside its changes are not changes and are not
// stored, as the consumer does not store them. Object names derive from the
// file's content hash and offsets, so loading the same file again
// overwrites its own objects: it is idempotent per file.
func Backfill(ctx context.Context, w *sink.Writer, tenant, path string, o BackfillOptions) (BackfillResult, error) {
	res := BackfillResult{File: path}
	if o.ChunkRows <= 0 {
		o.ChunkRows = 100_000
	}
	sum, err := fileHash(path)
	if err != nil {
		return res, fmt.Errorf("backfill %s: %w", path, err)
	}
	l := &loader{w: w, tenant: tenant, topic: BackfillTopic + sum[:24], chunkRows: o.ChunkRows, res: &res, ingest: time.Now()}
	l.buf = rows.NewBuffer(memory.NewGoAllocator(), o.Views, func(_, view string, ev *notification.Event, _ rows.Coordinates, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %s %s/%s: %v", path, view, ev.ResourceType, ev.ID, err))
	})
	defer l.buf.Release()
	rd := Reader{Progress: o.Progress, Bad: l.bad}
	err = rd.Read(ctx, path, func(it *Item) error { return l.item(ctx, it) })
	if err == nil {
		err = l.flush(ctx)
	}
	if err != nil {
		return res, fmt.Errorf("backfill %s: %w", path, err)
	}
	return res, nil
}

// loader buffers the changes of one file and writes them in chunks.
type loader struct {
	w         *sink.Writer
	tenant    string
	topic     string
	chunkRows int
	res       *BackfillResult
	buf       *rows.Buffer
	ingest    time.Time

	start, last int64     // the offsets buffered; start < 0 when none is
	newest      time.Time // the newest lastUpdated buffered
}

// item buffers the change an item is, if it is one.
func (l *loader) item(ctx context.Context, it *Item) error {
	var ev notification.Event
	switch it.Kind {
	case KindCarried:
		return nil
	case KindResource:
		e, err := notification.ResourceEvent(it.Raw)
		if err != nil {
			l.bad(it.At, err)
			return nil
		}
		ev = e
	case KindEvent:
		if f := it.Event.Fetch; f != nil {
			l.bad(it.At, fmt.Errorf("%s/%s: the notification names the resource without carrying it (id-only), and backfill reads no FHIR server", f.ResourceType, f.ID))
			return nil
		}
		ev = *it.Event
	}
	return l.add(ctx, it.At.Offset(), &ev)
}

func (l *loader) add(ctx context.Context, offset int64, ev *notification.Event) error {
	if l.buf.Rows() == 0 {
		l.start, l.newest = offset, time.Time{}
	}
	l.last = offset
	if ev.LastUpdated.After(l.newest) {
		l.newest = ev.LastUpdated
	}
	l.buf.Add(l.tenant, ev, rows.Coordinates{Topic: l.topic, Offset: offset}, l.ingest)
	if ev.Operation == notification.OpDelete {
		l.res.Deletes++
	} else {
		l.res.Resources++
	}
	if l.buf.Rows() >= l.chunkRows {
		return l.flush(ctx)
	}
	return nil
}

// flush writes the buffered rows as one set of files, named by the topic
// and the range of offsets they cover, under the date of the newest
// lastUpdated (the epoch when none is known).
func (l *loader) flush(ctx context.Context) error {
	if l.buf.Rows() == 0 {
		return nil
	}
	date := l.newest
	if date.IsZero() {
		date = time.Unix(0, 0)
	}
	files, err := l.buf.Files(func(view string) string {
		return lake.Key(view, date, l.topic, 0, l.start, l.last)
	})
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Release()
		}
	}()
	if _, err := l.w.Write(ctx, files); err != nil {
		return err
	}
	l.res.Files += len(files)
	return nil
}

// bad records what could not be read as "file: line 2 entry 3: reason".
func (l *loader) bad(at Location, err error) {
	var b strings.Builder
	b.WriteString(at.File)
	sep := ": "
	if at.Line > 0 {
		fmt.Fprintf(&b, "%sline %d", sep, at.Line)
		sep = " "
	}
	for _, e := range at.Entries {
		fmt.Fprintf(&b, "%sentry %d", sep, e)
		sep = " "
	}
	l.res.Errors = append(l.res.Errors, fmt.Sprintf("%s: %v", b.String(), err))
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
