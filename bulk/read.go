package bulk

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"fhirlake/flatten"
)

// DefaultMaxBytes bounds a line of NDJSON and a JSON document when
// Reader.MaxBytes is 0: a whole Bundle may be one line.
const DefaultMaxBytes = 1 << 30

// Reader reads FHIR files. Its zero value is ready to use. A Reader belongs
// to one goroutine; reuse it for the next file, as its buffers stay warm.
type Reader struct {
	// MaxBytes bounds a line of NDJSON and a JSON document; a longer line
	// is reported and skipped, a larger document is reported. Default:
	// DefaultMaxBytes.
	MaxBytes int
	// Progress, if set, is called with the number of bytes read from the
	// file (before decompression) each time some are read.
	Progress func(n int)
	// Bad, if set, is called with every file, line or entry that cannot be
	// read, and why; reading goes on after it.
	Bad func(at Location, err error)
	// SkipDeletes leaves out the DELETE entries of Bundles, for readers of
	// resources only: a Bundle that holds some is then not parsed whole
	// for its requests, and a delete that names no resource (a
	// conditional one) is not reported. A notification's deletes are
	// events all the same.
	SkipDeletes bool

	res      flatten.Resource // reused: parsing allocates nothing once warm
	item     Item
	raw, unz *bufio.Reader
	gz       *gzip.Reader
	line     []byte // a line longer than the read buffer
	first    []byte // the first line, kept while the second decides the format
	docBuf   []byte // the last document, when small enough to keep
	requests *flatten.View
	seen     int // items yielded, to look at ctx now and then
}

// readBuffer is the size of the read buffers.
const readBuffer = 1 << 20

// Read reads the file at path, calling fn with each item in file order.
// Problems with the file's content, and a file that cannot be opened, go
// to Bad; Read returns only ctx's error or fn's, which stops it.
func (r *Reader) Read(ctx context.Context, path string, fn func(*Item) error) error {
	f, err := os.Open(path)
	if err != nil {
		r.bad(Location{File: path}, err)
		return nil
	}
	defer f.Close()
	return r.ReadStream(ctx, path, f, fn)
}

// ReadStream is Read for content that is not a file; name stands for the
// file in locations.
func (r *Reader) ReadStream(ctx context.Context, name string, in io.Reader, fn func(*Item) error) error {
	at := Location{File: name}
	if r.Progress != nil {
		in = &progressReader{r: in, progress: r.Progress}
	}
	br := reset(&r.raw, in)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		if err := r.gunzip(br); err != nil {
			r.bad(at, fmt.Errorf("gunzip: %w", err))
			return nil
		}
		defer r.gz.Close()
		br = reset(&r.unz, r.gz)
	}
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3) // the three bytes Peek has just buffered
	}
	return r.split(ctx, at, br, fn)
}

// gunzip points r.gz at in, reusing its window and tables.
func (r *Reader) gunzip(in io.Reader) error {
	if r.gz == nil {
		gz, err := gzip.NewReader(in)
		r.gz = gz
		return err
	}
	return r.gz.Reset(in)
}

func reset(b **bufio.Reader, in io.Reader) *bufio.Reader {
	if *b == nil {
		*b = bufio.NewReaderSize(in, readBuffer)
	} else {
		(*b).Reset(in)
	}
	return *b
}

// split tells NDJSON from a JSON document and reads it. The first line
// with content decides: a whole JSON object followed by another line with
// content is NDJSON; anything else starts a document. A file of one line
// is the same either way, and is read as a document, so that its Bundle
// entries keep offsets of their own.
func (r *Reader) split(ctx context.Context, at Location, in *bufio.Reader, fn func(*Item) error) error {
	lines := &lineReader{in: in, max: r.maxBytes(), buf: r.line}
	defer func() { r.line = lines.buf[:0] }()
	first, long, ok := r.nextLine(lines)
	for ; ok && long; first, long, ok = r.nextLine(lines) {
		r.tooLong(lines, at)
	}
	if !ok {
		return r.readErr(lines, at)
	}
	if !wholeObject(first) {
		return r.document(ctx, at, first, lines, fn)
	}
	r.first = append(r.first[:0], first...)
	firstLine := lines.n
	next, long, ok := r.nextLine(lines)
	if !ok && errors.Is(lines.err, io.EOF) {
		return r.doc(ctx, r.first, at, false, fn)
	}
	at.Line = firstLine
	if err := r.doc(ctx, r.first, at, false, fn); err != nil {
		return err
	}
	for ; ok; next, long, ok = r.nextLine(lines) {
		if lines.n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err() // also when no line yields anything
		}
		if long {
			r.tooLong(lines, at)
			continue
		}
		at.Line = lines.n
		if err := r.doc(ctx, next, at, false, fn); err != nil {
			return err
		}
	}
	return r.readErr(lines, at)
}

// nextLine returns the next line with content, trimmed, or one too long to
// read (long).
func (r *Reader) nextLine(lines *lineReader) (line []byte, long, ok bool) {
	for {
		line, long, ok = lines.next()
		if !ok || long {
			return nil, long, ok
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return line, false, true
		}
	}
}

func (r *Reader) tooLong(lines *lineReader, at Location) {
	at.Line = lines.n
	r.bad(at, fmt.Errorf("line longer than %d bytes", lines.max))
}

// readErr reports a read error that ended the lines early.
func (r *Reader) readErr(lines *lineReader, at Location) error {
	if lines.err == nil || errors.Is(lines.err, io.EOF) {
		return nil
	}
	at.Line = lines.n + 1
	r.bad(at, fmt.Errorf("read: %w", lines.err))
	return nil
}

// document reads the rest of a file that is one JSON document, first
// being its first line.
func (r *Reader) document(ctx context.Context, at Location, first []byte, lines *lineReader, fn func(*Item) error) error {
	buf := bytes.NewBuffer(append(append(r.docBuf[:0], first...), '\n'))
	_, err := buf.ReadFrom(io.LimitReader(lines.in, int64(lines.max-buf.Len()+1)))
	data := buf.Bytes()
	if cap(data) <= keepDocBuffer {
		r.docBuf = data[:0]
	}
	switch {
	case err != nil:
		r.bad(at, fmt.Errorf("read: %w", err))
		return nil
	case len(data) > lines.max:
		r.bad(at, fmt.Errorf("document larger than %d bytes", lines.max))
		return nil
	}
	return r.doc(ctx, data, at, false, fn)
}

// keepDocBuffer bounds the document buffer a Reader keeps for the next
// file.
const keepDocBuffer = 64 << 20

func (r *Reader) maxBytes() int {
	if r.MaxBytes > 0 {
		return r.MaxBytes
	}
	return DefaultMaxBytes
}

func (r *Reader) bad(at Location, err error) {
	if r.Bad != nil {
		r.Bad(at, err)
	}
}

// emit hands the item to fn, looking at ctx every 1024 items.
func (r *Reader) emit(ctx context.Context, fn func(*Item) error) error {
	if r.seen++; r.seen%1024 == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fn(&r.item)
}

// Size is the total size of the files at paths, for a progress bar. A
// directory is refused: it is not a FHIR file.
func Size(paths []string) (int64, error) {
	var total int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		if st.IsDir() {
			return 0, fmt.Errorf("%s is a directory, not a FHIR file", p)
		}
		total += st.Size()
	}
	return total, nil
}

// progressReader reports the bytes read from a file.
type progressReader struct {
	r        io.Reader
	progress func(int)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress(n)
	}
	return n, err
}
