package consumer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// Progress, if set, is called with the number of bytes read so far.
	Progress func(n int64)
}

// BackfillResult counts what one file yielded.
type BackfillResult struct {
	File      string
	Resources int
	Deletes   int
	Files     int
	// Errors lists resources that could not be read (line or entry, reason);
	// they are skipped, everything else is stored.
	Errors []string
}

// BackfillTopic prefixes the lineage topic of backfilled rows: "backfill-"
// and the first 12 bytes of the file's SHA-256 in hex. The partition is 0
// and the offset is the line (or entry) number in the file.
const BackfillTopic = "backfill-"

// Backfill loads one bulk-export file — NDJSON of resources, or a Bundle
// (transaction, batch, collection, history…), plain or gzip — into the
// tenant's lake through the same buffers and writer as the consumer. Object
// names derive from the file's content hash and line numbers, so loading
// the same file again overwrites its own objects: it is idempotent per file.
func Backfill(ctx context.Context, w *sink.Writer, tenant, path string, o BackfillOptions) (BackfillResult, error) {
	res := BackfillResult{File: path}
	if o.ChunkRows <= 0 {
		o.ChunkRows = 100_000
	}
	sum, err := fileHash(path)
	if err != nil {
		return res, err
	}
	topic := BackfillTopic + sum[:24]
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("backfill %s: %w", path, err)
	}
	defer f.Close()
	counter := &countingReader{r: f, progress: o.Progress}
	var r io.Reader = bufio.NewReaderSize(counter, 1<<20)
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return res, fmt.Errorf("backfill %s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	br := bufio.NewReaderSize(r, 1<<20)
	if _, err := firstByte(br); err != nil {
		return res, fmt.Errorf("backfill %s: %w", path, err)
	}

	buf := rows.NewBuffer(memory.NewGoAllocator(), o.Views, func(_, view string, ev *notification.Event, at rows.Coordinates, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %s %s/%s: %v", path, view, ev.ResourceType, ev.ID, err))
	})
	defer buf.Release()
	ingest := time.Now()
	start, last := int64(-1), int64(-1)
	var newest time.Time
	flush := func() error {
		if buf.Rows() == 0 {
			return nil
		}
		date := newest
		if date.IsZero() {
			date = time.Unix(0, 0)
		}
		files, err := buf.Files(func(view string) string {
			return lake.Key(view, date, topic, 0, start, last)
		})
		if err != nil {
			return err
		}
		defer func() {
			for _, f := range files {
				f.Release()
			}
		}()
		if _, err := w.Write(ctx, files); err != nil {
			return err
		}
		res.Files += len(files)
		start, newest = -1, time.Time{}
		return nil
	}
	add := func(index int64, ev notification.Event) error {
		if start < 0 {
			start = index
		}
		last = index
		if ev.LastUpdated.After(newest) {
			newest = ev.LastUpdated
		}
		buf.Add(tenant, &ev, rows.Coordinates{Topic: topic, Offset: index}, ingest)
		if ev.Operation == notification.OpDelete {
			res.Deletes++
		} else {
			res.Resources++
		}
		if buf.Rows() >= o.ChunkRows {
			return flush()
		}
		return nil
	}
	bad := func(where string, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %s: %v", path, where, err))
	}
	if isNDJSON(path) {
		err = backfillNDJSON(br, add, bad)
	} else {
		err = backfillJSON(br, add, bad)
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, fmt.Errorf("backfill %s: %w", path, err)
	}
	return res, nil
}

// backfillNDJSON reads one resource per line.
func backfillNDJSON(r *bufio.Reader, add func(int64, notification.Event) error, bad func(string, error)) error {
	var line int64
	for {
		data, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(data)) > 0 {
			line++
			ev, perr := notification.ResourceEvent(bytes.TrimSpace(data))
			if perr != nil {
				bad(fmt.Sprintf("line %d", line), perr)
			} else if aerr := add(line, ev); aerr != nil {
				return aerr
			}
		} else if len(data) > 0 {
			line++
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// backfillJSON reads a Bundle (every entry's resource, and DELETE entries
// as deletes) or a single resource.
func backfillJSON(r *bufio.Reader, add func(int64, notification.Event) error, bad func(string, error)) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  *struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if head.ResourceType != "Bundle" {
		ev, err := notification.ResourceEvent(data)
		if err != nil {
			bad("resource", err)
			return nil
		}
		return add(1, ev)
	}
	for i, e := range head.Entry {
		where := fmt.Sprintf("entry %d", i)
		if e.Request != nil && strings.EqualFold(e.Request.Method, "DELETE") && len(e.Resource) == 0 {
			ev, ok := notification.DeleteEvent(e.Request.URL, e.FullURL)
			if !ok {
				bad(where, fmt.Errorf("delete names no Type/id"))
				continue
			}
			if err := add(int64(i)+1, ev); err != nil {
				return err
			}
			continue
		}
		if len(e.Resource) == 0 {
			bad(where, fmt.Errorf("entry has no resource"))
			continue
		}
		ev, err := notification.ResourceEvent(e.Resource)
		if err != nil {
			bad(where, err)
			continue
		}
		if err := add(int64(i)+1, ev); err != nil {
			return err
		}
	}
	return nil
}

// isNDJSON tells NDJSON from a JSON document by the file name, as bulk
// export names its files (Patient.ndjson, Patient.ndjson.gz, *.jsonl).
func isNDJSON(path string) bool {
	p := strings.TrimSuffix(strings.ToLower(path), ".gz")
	return strings.HasSuffix(p, ".ndjson") || strings.HasSuffix(p, ".jsonl")
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("backfill %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("backfill %s: %w", filepath.Base(path), err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func firstByte(r *bufio.Reader) (byte, error) {
	for {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("empty file")
			}
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case 0xEF: // UTF-8 byte order mark
			r.ReadByte()
			r.ReadByte()
			continue
		}
		return b, r.UnreadByte()
	}
}

type countingReader struct {
	r        io.Reader
	n        int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(c.n)
	}
	return n, err
}
