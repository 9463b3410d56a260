package notification

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// jsonScanner reads one JSON document in a single pass, validating its
// syntax as it goes. Callers walk the parts they interpret (a Bundle's
// entries, a resource's id and meta) and skip the rest, so a resource is
// read once and kept as a slice of the input instead of being unmarshalled
// and copied. It checks syntax only: UTF-8 validity is checked once for the
// whole record beforehand.
//
// Member and element callbacks must consume exactly one value and return
// only the scanner's own (syntax) errors; what a value means is recorded by
// the caller, so that a syntax error anywhere in the record always wins
// over a semantic one and classifies the record as malformed.
type jsonScanner struct {
	data  []byte
	pos   int
	depth int
	key   []byte // scratch for keys that contain escapes
	// dec, when set, parses each resource value the scanner meets instead
	// of skipping it (parsedResource).
	dec *Decoder
}

// syntaxError is a record that is not JSON.
type syntaxError struct {
	pos int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.pos, e.msg)
}

// SWAR constants: one in the lowest bit, or in the highest, of every byte.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

func newScanner(data []byte) *jsonScanner { return &jsonScanner{data: data} }

func (s *jsonScanner) fail(format string, args ...any) error {
	return &syntaxError{pos: s.pos, msg: fmt.Sprintf(format, args...)}
}

// ws skips whitespace.
func (s *jsonScanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next byte after whitespace, 0 at the end.
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

// document checks that nothing but whitespace follows the value just read.
func (s *jsonScanner) end() error {
	s.ws()
	if s.pos != len(s.data) {
		return s.fail("unexpected %q after the JSON value", s.data[s.pos])
	}
	return nil
}

// skip reads and validates one value of any kind.
func (s *jsonScanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		return s.skipString()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		_, err := s.number()
		return err
	case c == 0 && s.pos >= len(s.data):
		return s.fail("unexpected end of input")
	default:
		return s.fail("unexpected %q", c)
	}
}

// value skips one value and returns its bytes.
func (s *jsonScanner) value() ([]byte, error) {
	s.ws()
	start := s.pos
	if err := s.skip(); err != nil {
		return nil, err
	}
	return s.data[start:s.pos], nil
}

func (s *jsonScanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return s.fail("invalid literal, want %s", lit)
	}
	s.pos += len(lit)
	return nil
}

// number reads a number and returns its text.
func (s *jsonScanner) number() ([]byte, error) {
	d, start := s.data, s.pos
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, s.fail("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			s.pos = i
			return nil, s.fail("invalid number: no digit after the decimal point")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			s.pos = i
			return nil, s.fail("invalid number: no digit in the exponent")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	s.pos = i
	return d[start:i], nil
}

// stringEnd validates the string starting at s.pos (a '"') and returns the
// index of its closing quote and whether it contains escapes.
func (s *jsonScanner) stringEnd() (int, bool, error) {
	d := s.data
	escaped := false
	for i := s.pos + 1; i < len(d); {
		// Skip plain bytes eight at a time: a byte is special when it is
		// '"', '\\' or below 0x20. Each test below is exact for the lowest
		// flagged byte (borrows only flag higher ones), so the scan can jump
		// straight to it.
		for i+8 <= len(d) {
			x := binary.LittleEndian.Uint64(d[i:])
			q := x ^ (lsb * '"')
			b := x ^ (lsb * '\\')
			special := ((q - lsb) &^ q) | ((b - lsb) &^ b) | ((x - lsb*0x20) &^ x)
			if special &= msb; special != 0 {
				i += bits.TrailingZeros64(special) / 8
				break
			}
			i += 8
		}
		if i >= len(d) {
			break
		}
		c := d[i]
		switch {
		case c == '"':
			return i, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				s.pos = i
				return 0, false, s.fail("unterminated string")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex4(d[i+2:i+6]) {
					s.pos = i
					return 0, false, s.fail(`invalid \u escape`)
				}
				i += 6
			default:
				s.pos = i
				return 0, false, s.fail("invalid escape %q", d[i+1])
			}
		case c < 0x20:
			s.pos = i
			return 0, false, s.fail("control character %#02x in a string", c)
		default:
			i++
		}
	}
	s.pos = len(d)
	return 0, false, s.fail("unterminated string")
}

func (s *jsonScanner) skipString() error {
	end, _, err := s.stringEnd()
	if err != nil {
		return err
	}
	s.pos = end + 1
	return nil
}

// stringBytes reads a string value. Without escapes the result aliases the
// input; with escapes it is a new slice.
func (s *jsonScanner) stringBytes() ([]byte, error) {
	end, escaped, err := s.stringEnd()
	if err != nil {
		return nil, err
	}
	raw := s.data[s.pos+1 : end]
	s.pos = end + 1
	if !escaped {
		return raw, nil
	}
	return unescape(make([]byte, 0, len(raw)), raw), nil
}

// str reads a string value. The caller has checked that one follows.
// The string shares the scanned value's memory when it holds no escape
// (see DecodeRecord): a copy per string was half the decoder's
// allocations and 13% of its time (BenchmarkDecodeStream).
func (s *jsonScanner) str() (string, error) {
	b, err := s.stringBytes()
	if len(b) == 0 {
		return "", err
	}
	return unsafe.String(&b[0], len(b)), err
}

// optString reads a string if one follows; any other value is skipped and
// reported as ok=false. null counts as absent (ok=true, "").
func (s *jsonScanner) optString() (v string, ok bool, err error) {
	switch s.peek() {
	case '"':
		v, err = s.str()
		return v, true, err
	case 'n':
		return "", true, s.literal("null")
	}
	return "", false, s.skip()
}

// object reads an object, calling member with each key while the scanner
// stands before the member's value. The key is only valid during the call.
func (s *jsonScanner) object(member func(key []byte) error) error {
	if s.peek() != '{' {
		return s.fail("want an object")
	}
	if s.depth++; s.depth > MaxNesting {
		return s.fail("JSON nests deeper than %d levels", MaxNesting)
	}
	s.pos++
	if s.peek() == '}' {
		s.pos++
		s.depth--
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.fail("want a string key")
		}
		end, escaped, err := s.stringEnd()
		if err != nil {
			return err
		}
		key := s.data[s.pos+1 : end]
		if escaped {
			s.key = unescape(s.key[:0], key)
			key = s.key
		}
		s.pos = end + 1
		if s.peek() != ':' {
			return s.fail("want ':' after a key")
		}
		s.pos++
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.depth--
			return nil
		default:
			return s.fail("want ',' or '}' in an object")
		}
	}
}

// array reads an array, calling elem for each element.
func (s *jsonScanner) array(elem func() error) error {
	if s.peek() != '[' {
		return s.fail("want an array")
	}
	if s.depth++; s.depth > MaxNesting {
		return s.fail("JSON nests deeper than %d levels", MaxNesting)
	}
	s.pos++
	if s.peek() == ']' {
		s.pos++
		s.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return nil
		default:
			return s.fail("want ',' or ']' in an array")
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		default:
			r |= rune(c-'A') + 10
		}
	}
	return r
}

// unescape appends the decoded form of a validated JSON string body to dst.
// Lone surrogates become U+FFFD, as encoding/json does.
func unescape(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch src[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(src[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(src) && src[i] == '\\' && src[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(src[i+2:i+6])); d != utf8.RuneError {
						r2 = d
						i += 6
					}
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, src[i+1])
		}
		i += 2
	}
	return dst
}
