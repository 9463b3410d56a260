package bulk

import (
	"bufio"
	"errors"
	"io"
)

// lineReader splits a stream into lines of at most max bytes without
// holding a longer one: its bytes are skipped and the line is reported as
// too long.
type lineReader struct {
	in  *bufio.Reader
	max int
	buf []byte // a line longer than in's buffer
	n   int    // lines read
	err error  // why the lines ended: io.EOF at the end of the input
}

// next returns the next line without its newline, or ok false once the
// input ends (err says why). The line is valid until the next call. A line
// longer than max comes back empty with tooLong set.
func (l *lineReader) next() (line []byte, tooLong, ok bool) {
	if l.err != nil {
		return nil, false, false
	}
	l.buf = l.buf[:0]
	size := 0
	for {
		chunk, err := l.in.ReadSlice('\n')
		size += len(chunk)
		if errors.Is(err, bufio.ErrBufferFull) {
			if size <= l.max {
				l.buf = append(l.buf, chunk...)
			}
			continue
		}
		if err != nil {
			l.err = err
			if err != io.EOF || size == 0 {
				return nil, false, false // a line cut by a read error is not read
			}
		}
		l.n++
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			size--
		}
		switch {
		case size > l.max:
			return nil, true, true
		case len(l.buf) > 0:
			l.buf = append(l.buf, chunk...)
			return trimNewline(l.buf), false, true
		}
		return trimNewline(chunk), false, true
	}
}

func trimNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return b[:len(b)-1]
	}
	return b
}

// wholeObject reports whether line, trimmed, is a JSON object that ends
// where the line ends: the first line of NDJSON is, the first line of a
// pretty-printed document is not. Only brackets outside strings are
// counted; whether the object is valid JSON is for the parser to say.
func wholeObject(line []byte) bool {
	if len(line) < 2 || line[0] != '{' || line[len(line)-1] != '}' {
		return false
	}
	depth, inString, escaped := 0, false, false
	for i, c := range line {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth == 0 {
				return i == len(line)-1
			}
		}
	}
	return false
}
