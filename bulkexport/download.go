package bulkexport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// download fetches file i into its local file. Bytes already in the
// partial file (from a broken connection, or an earlier run) are kept and
// the rest asked for with a Range request; a server that answers the whole
// file instead gets it written from the start. A broken transfer is resumed
// up to MaxRetries times.
func (e *exporter) download(ctx context.Context, i int) error {
	e.mu.Lock()
	f := e.st.Files[i]
	auth := e.st.Manifest.RequiresAccessToken
	e.mu.Unlock()
	final := filepath.Join(e.o.Dir, f.Name)
	part := final + ".part"
	for attempt := 0; ; attempt++ {
		err := e.fetch(ctx, i, f, part, auth)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se *StatusError
		if errors.As(err, &se) || !transient(err) || attempt >= e.o.MaxRetries {
			return fmt.Errorf("download %s: %w", f.URL, err)
		}
		if err := e.o.Sleep(ctx, e.c.backoff(attempt)); err != nil {
			return err
		}
		e.mu.Lock()
		f = e.st.Files[i]
		e.mu.Unlock()
	}
	if err := os.Rename(part, final); err != nil {
		return err
	}
	if err := e.update(func(st *state) { st.Files[i].Downloaded = true }); err != nil {
		return err
	}
	e.report(func(p *Progress) { p.Downloaded++ })
	return nil
}

// fetch makes one attempt at the rest of a file.
func (e *exporter) fetch(ctx context.Context, i int, f fileState, part string, auth bool) error {
	var have int64
	if fi, err := os.Stat(part); err == nil {
		have = fi.Size()
	}
	h := http.Header{"Accept": {"application/fhir+ndjson"}}
	if have > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", have))
		if f.Validator != "" {
			h.Set("If-Range", f.Validator)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := e.c.send(ctx, "download", f.URL, h, auth, retryRead)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	flags := os.O_WRONLY | os.O_CREATE
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0 && rangeStart(resp.Header.Get("Content-Range")) == have:
		flags |= os.O_APPEND
	case resp.StatusCode == http.StatusOK:
		flags |= os.O_TRUNC
		if v := validator(resp.Header); v != f.Validator {
			if err := e.update(func(st *state) { st.Files[i].Validator = v }); err != nil {
				return err
			}
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0 && rangeTotal(resp.Header.Get("Content-Range")) == have:
		return nil // every byte is already here
	case resp.StatusCode == http.StatusPartialContent || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// Not the range asked for: start the file again.
		resp.Body.Close()
		if err := os.Remove(part); err != nil {
			return err
		}
		return fmt.Errorf("%d for a range from %d: %w", resp.StatusCode, have, io.ErrUnexpectedEOF)
	default:
		return statusError("download", f.URL, resp)
	}
	out, err := os.OpenFile(part, flags, 0o600)
	if err != nil {
		return err
	}
	body := newIdleReader(resp.Body, e.o.IdleTimeout, cancel)
	defer body.stop()
	_, err = io.Copy(out, &countReader{r: body, e: e})
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// countReader reports the bytes read as progress.
type countReader struct {
	r io.Reader
	e *exporter
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.e.report(func(pr *Progress) { pr.Bytes += int64(n) })
	}
	return n, err
}

// validator is what If-Range can compare: a strong ETag, else Last-Modified.
func validator(h http.Header) string {
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return h.Get("Last-Modified")
}

// rangeStart reads the first byte of "bytes first-last/total"; -1 when
// unreadable.
func rangeStart(cr string) int64 {
	spec, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return -1
	}
	first, _, ok := strings.Cut(spec, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// rangeTotal reads the total of "bytes */total"; -1 when unreadable.
func rangeTotal(cr string) int64 {
	_, total, ok := strings.Cut(cr, "/")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(total, 10, 64)
	if err != nil {
		return -1
	}
	return n
}
