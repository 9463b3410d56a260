package flatten

import (
	"errors"
	"fmt"
)

// BundleEntries calls fn, in order, with the index and the raw JSON of the
// resource of each entry of the Bundle in data; entries without a resource
// (a delete, an id-only notification) are skipped. It reads the document
// in one pass without building a tree, checking its syntax on the way, so
// that a large Bundle costs little more than reading it. It does not look
// at resourceType: the caller knows data is a Bundle. It stops at the
// first syntax error, after the entries before it were passed to fn, or at
// the first error fn returns, which it returns unchanged.
func BundleEntries(data []byte, fn func(index int, resource []byte) error) error {
	if len(data) >= 1<<32-1 {
		return errors.New("bundle: document larger than 4 GiB")
	}
	s := bundleScanner{jsonParser: jsonParser{data: data, r: &Resource{}, maxDepth: maxDepth}}
	s.skipSpace()
	if s.pos >= len(data) || data[s.pos] != '{' {
		return errors.New("bundle: document is not a JSON object")
	}
	err := s.members(1, func(key []byte) (bool, error) {
		if string(key) != "entry" {
			return false, nil
		}
		if s.pos >= len(data) || data[s.pos] != '[' {
			return false, nil // not an array: skipped like any other member
		}
		return true, s.entries(fn)
	})
	if err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(data) {
		return fmt.Errorf("bundle: unexpected data after the document at offset %d", s.pos)
	}
	return nil
}

// bundleScanner walks a document without building nodes, reusing the
// parser's scanning of strings and numbers.
type bundleScanner struct {
	jsonParser
}

// syntaxError marks errors of the input, as opposed to those of the callback.
type syntaxError struct{ err error }

func (e syntaxError) Error() string { return "bundle: " + e.err.Error() }
func (e syntaxError) Unwrap() error { return e.err }

// entries reads the entry array, handing each entry's resource to fn.
func (s *bundleScanner) entries(fn func(int, []byte) error) error {
	i := -1
	return s.elements(2, func() (bool, error) {
		i++
		if s.data[s.pos] != '{' {
			return false, nil
		}
		return true, s.members(3, func(key []byte) (bool, error) {
			if string(key) != "resource" {
				return false, nil
			}
			start := s.pos
			if err := s.skip(3); err != nil {
				return true, err
			}
			if s.data[start] == 'n' { // "resource": null
				return true, nil
			}
			return true, fn(i, s.data[start:s.pos])
		})
	})
}

// members reads the object at s.pos. For each member it calls member with
// the key, s.pos at the value; member returns true when it consumed the
// value, else the value is skipped.
func (s *bundleScanner) members(depth int, member func(key []byte) (bool, error)) error {
	s.pos++ // {
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return syntaxError{s.errorf("expected object key")}
		}
		mark := len(s.r.esc)
		k, err := s.string()
		if err != nil {
			return syntaxError{err}
		}
		key := s.data[k.off : k.off+k.n]
		if k.flags&flagEsc != 0 {
			key = s.r.esc[k.off : k.off+k.n]
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return syntaxError{s.errorf("expected ':' after object key")}
		}
		s.pos++
		s.skipSpace()
		if s.pos >= len(s.data) {
			return syntaxError{s.errorf("unexpected end of input")}
		}
		done, err := member(key)
		s.r.esc = s.r.esc[:mark]
		if err != nil {
			return err
		}
		if more, err := s.next(done, depth, '}', "object"); err != nil || !more {
			return err
		}
	}
}

// elements reads the array at s.pos, calling element with s.pos at each
// element; element returns true when it consumed it, else it is skipped.
func (s *bundleScanner) elements(depth int, element func() (bool, error)) error {
	s.pos++ // [
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.data) {
			return syntaxError{s.errorf("unexpected end of input")}
		}
		done, err := element()
		if err != nil {
			return err
		}
		if more, err := s.next(done, depth, ']', "array"); err != nil || !more {
			return err
		}
	}
}

// next finishes a member or element: it skips the value unless the callback
// consumed it (done), then reads the separator. more is true after a ','
// and false after the closing byte.
func (s *bundleScanner) next(done bool, depth int, closing byte, what string) (more bool, err error) {
	if !done {
		if err := s.skip(depth); err != nil {
			return false, err
		}
	}
	s.skipSpace()
	if s.pos >= len(s.data) {
		return false, syntaxError{s.errorf("unterminated %s", what)}
	}
	switch s.data[s.pos] {
	case ',':
		s.pos++
		return true, nil
	case closing:
		s.pos++
		return false, nil
	}
	return false, syntaxError{s.errorf("expected ',' or '%c' in %s", closing, what)}
}

// skip moves past the value at s.pos.
func (s *bundleScanner) skip(depth int) error {
	if depth > maxDepth {
		return syntaxError{s.errorf("nesting deeper than %d", maxDepth)}
	}
	if s.pos >= len(s.data) {
		return syntaxError{s.errorf("unexpected end of input")}
	}
	var err error
	switch s.data[s.pos] {
	case '{':
		return s.members(depth+1, func([]byte) (bool, error) { return false, nil })
	case '[':
		return s.elements(depth+1, func() (bool, error) { return false, nil })
	case '"':
		mark := len(s.r.esc)
		_, err = s.string()
		s.r.esc = s.r.esc[:mark]
	default:
		_, err = s.value(depth)
	}
	if err != nil {
		return syntaxError{err}
	}
	return nil
}
