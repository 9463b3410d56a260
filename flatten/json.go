package flatten

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// kind is the JSON kind of a node.
type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindObject
	kindArray
)

const (
	// flagEsc marks a string whose unescaped bytes live in Resource.esc
	// instead of the source document.
	flagEsc uint8 = 1 << iota
	// flagIntegral marks a number written without fraction or exponent.
	flagIntegral
)

// maxDepth bounds the nesting of a document. FHIR resources rarely go past
// 20 levels; the bound keeps hostile input from exhausting the stack.
const maxDepth = 512

// node is one JSON value of a parsed resource. Containers store their
// children contiguously in Resource.nodes: an array's elements, or an
// object's members as key, value, key, value.
type node struct {
	kind  kind
	flags uint8
	// off is a byte offset (strings, numbers) or the index of the first
	// child (objects, arrays).
	off uint32
	// n is a byte length (strings, numbers) or the number of elements
	// (arrays) or members (objects; the object has 2n children).
	n uint32
}

// Resource is one FHIR resource parsed into a compact tree, ready for any
// number of views. Parse it once and append it to every view of its type.
//
// A Resource refers to the bytes it was parsed from without copying them:
// the caller must not modify those bytes while the Resource is in use.
// A Resource is not safe for concurrent use by goroutines that parse into it;
// concurrent reads (Batch.Append from several goroutines) are safe.
type Resource struct {
	src   []byte
	esc   []byte
	nodes []node
	stack []node
	root  int32
	typ   string
	// serial changes with every parse, so that an evaluator holding
	// results of this Resource can tell new content from the same.
	serial uint64
}

// Parse parses one FHIR resource in JSON form. It keeps a reference to data.
func Parse(data []byte) (*Resource, error) {
	r := &Resource{}
	if err := r.Parse(data); err != nil {
		return nil, err
	}
	return r, nil
}

// Parse replaces the content of r with the resource in data, reusing r's
// memory. Values read from the previous content are invalid afterwards.
func (r *Resource) Parse(data []byte) error {
	if len(data) >= 1<<32-1 {
		return errors.New("parse resource: document larger than 4 GiB")
	}
	r.serial++
	r.src = data
	r.esc = r.esc[:0]
	r.nodes = r.nodes[:0]
	r.stack = r.stack[:0]
	r.typ = ""
	p := jsonParser{data: data, r: r, maxDepth: maxDepth}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return fmt.Errorf("parse resource: %w", err)
	}
	p.skipSpace()
	if p.pos != len(data) {
		return fmt.Errorf("parse resource: unexpected data after the document at offset %d", p.pos)
	}
	if v.kind != kindObject {
		return errors.New("parse resource: document is not a JSON object")
	}
	r.nodes = append(r.nodes, v)
	r.root = int32(len(r.nodes) - 1)
	rt, _, _ := r.field(r.root, "resourceType")
	if rt < 0 || r.nodes[rt].kind != kindString {
		return errors.New("parse resource: missing resourceType")
	}
	r.typ = internType(r.bytes(rt))
	return nil
}

// ResourceType returns the resourceType of the resource.
func (r *Resource) ResourceType() string { return r.typ }

// ID returns the logical id of the resource, or "" when it has none.
func (r *Resource) ID() string {
	id, _, _ := r.field(r.root, "id")
	if id < 0 || r.nodes[id].kind != kindString {
		return ""
	}
	return string(r.bytes(id))
}

// bytes returns the unescaped bytes of a string node or the text of a
// number node.
func (r *Resource) bytes(i int32) []byte {
	n := r.nodes[i]
	if n.flags&flagEsc != 0 {
		return r.esc[n.off : n.off+n.n]
	}
	return r.src[n.off : n.off+n.n]
}

// str returns the text of a string or number node without copying. The
// string shares memory with the resource and must not outlive it; callers
// that keep it clone it first.
func (r *Resource) str(i int32) string {
	b := r.bytes(i)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// field looks up member name of object node obj. It returns the value node
// (or -1), the node of the primitive extension "_name" (or -1), and the FHIR
// type named by the suffix when name is resolved as a choice element
// (name + TypeName, e.g. value → valueQuantity).
func (r *Resource) field(obj int32, name string) (val, ext int32, typ ftype) {
	val, ext = -1, -1
	if obj < 0 {
		return val, ext, 0
	}
	o := r.nodes[obj]
	if o.kind != kindObject || len(name) == 0 {
		return val, ext, 0
	}
	choice := int32(-1)
	var choiceType ftype
	end := o.off + 2*o.n
	for k := o.off; k < end; k += 2 {
		// Most keys differ from name in length or first byte: rule them
		// out from the node before slicing the key's bytes.
		kn := r.nodes[k]
		if kn.n == 0 || int(kn.n) < len(name) {
			continue
		}
		src := r.src
		if kn.flags&flagEsc != 0 {
			src = r.esc
		}
		if first := src[kn.off]; first != name[0] && first != '_' {
			continue
		}
		key := src[kn.off : kn.off+kn.n]
		// Compare first bytes before whole keys: most keys differ there.
		switch {
		case len(key) == len(name):
			if key[0] == name[0] && string(key) == name {
				val = int32(k + 1)
			}
		case len(key) == len(name)+1 && key[0] == '_':
			if key[1] == name[0] && string(key[1:]) == name {
				ext = int32(k + 1)
			}
		case len(key) > len(name) && key[0] == name[0] && key[len(name)] >= 'A' && key[len(name)] <= 'Z' && choice < 0:
			if string(key[:len(name)]) == name {
				if t := choiceSuffixType(key[len(name):]); t != 0 {
					choice, choiceType = int32(k+1), t
				}
			}
		}
	}
	if val >= 0 || ext >= 0 || choice < 0 {
		return val, ext, 0
	}
	// A choice element: its primitive extension is "_" + the full key.
	key := r.bytes(choice - 1)
	for k := o.off; k < end; k += 2 {
		kb := r.bytes(int32(k))
		if len(kb) == len(key)+1 && kb[0] == '_' && string(kb[1:]) == string(key) {
			ext = int32(k + 1)
			break
		}
	}
	return choice, ext, choiceType
}

// jsonParser is a single-pass JSON parser that writes into a Resource.
type jsonParser struct {
	data     []byte
	pos      int
	r        *Resource
	maxDepth int
}

func (p *jsonParser) skipSpace() {
	d := p.data
	i := p.pos
	for i < len(d) {
		// Pretty-printed documents indent with runs of spaces: skip them
		// eight at a time.
		if i+8 <= len(d) && binary.LittleEndian.Uint64(d[i:]) == 0x2020202020202020 {
			i += 8
			continue
		}
		if c := d[i]; c > ' ' || (c != ' ' && c != '\n' && c != '\t' && c != '\r') {
			break
		}
		i++
	}
	p.pos = i
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *jsonParser) value(depth int) (node, error) {
	if p.pos >= len(p.data) {
		return node{}, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		return p.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", kindTrue)
	case c == 'f':
		return p.literal("false", kindFalse)
	case c == 'n':
		return p.literal("null", kindNull)
	default:
		return node{}, p.errorf("unexpected character %q", c)
	}
}

func (p *jsonParser) literal(word string, k kind) (node, error) {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return node{}, p.errorf("invalid literal")
	}
	p.pos += len(word)
	return node{kind: k}, nil
}

func (p *jsonParser) object(depth int) (node, error) {
	if depth > p.maxDepth {
		return node{}, p.errorf("nesting deeper than %d", p.maxDepth)
	}
	p.pos++ // {
	mark := len(p.r.stack)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return node{kind: kindObject, off: uint32(len(p.r.nodes))}, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return node{}, p.errorf("expected object key")
		}
		key, err := p.string()
		if err != nil {
			return node{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return node{}, p.errorf("expected ':' after object key")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value(depth)
		if err != nil {
			return node{}, err
		}
		p.r.stack = append(p.r.stack, key, val)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return node{}, p.errorf("unterminated object")
		}
		if c := p.data[p.pos]; c == ',' {
			p.pos++
			continue
		} else if c == '}' {
			p.pos++
			break
		}
		return node{}, p.errorf("expected ',' or '}' in object")
	}
	return p.flush(kindObject, mark, 2), nil
}

func (p *jsonParser) array(depth int) (node, error) {
	if depth > p.maxDepth {
		return node{}, p.errorf("nesting deeper than %d", p.maxDepth)
	}
	p.pos++ // [
	mark := len(p.r.stack)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return node{kind: kindArray, off: uint32(len(p.r.nodes))}, nil
	}
	for {
		p.skipSpace()
		val, err := p.value(depth)
		if err != nil {
			return node{}, err
		}
		p.r.stack = append(p.r.stack, val)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return node{}, p.errorf("unterminated array")
		}
		if c := p.data[p.pos]; c == ',' {
			p.pos++
			continue
		} else if c == ']' {
			p.pos++
			break
		}
		return node{}, p.errorf("expected ',' or ']' in array")
	}
	return p.flush(kindArray, mark, 1), nil
}

// flush moves the children collected since mark from the scratch stack into
// the node arena, where they end up contiguous.
func (p *jsonParser) flush(k kind, mark, per int) node {
	r := p.r
	off := len(r.nodes)
	r.nodes = append(r.nodes, r.stack[mark:]...)
	n := (len(r.stack) - mark) / per
	r.stack = r.stack[:mark]
	return node{kind: k, off: uint32(off), n: uint32(n)}
}

func (p *jsonParser) string() (node, error) {
	start := p.pos + 1
	high := false
	d := p.data
	i := start
	for i < len(d) {
		// Scan eight bytes at a time while none of them is a quote, a
		// backslash, a control character or part of a multi-byte rune,
		// then go straight to the first one that is.
		if i+8 <= len(d) {
			m := swarSpecial(binary.LittleEndian.Uint64(d[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		c := d[i]
		switch {
		case c == '"':
			if high && !utf8.Valid(d[start:i]) {
				p.pos = start
				return node{}, p.errorf("invalid UTF-8 in string")
			}
			p.pos = i + 1
			return node{kind: kindString, off: uint32(start), n: uint32(i - start)}, nil
		case c == '\\':
			return p.escapedString(start, i)
		case c < 0x20:
			p.pos = i
			return node{}, p.errorf("control character in string")
		case c >= 0x80:
			high = true
		}
		i++
	}
	p.pos = len(d)
	return node{}, p.errorf("unterminated string")
}

// swarSpecial flags, by its high bit, the bytes of x that are '"', '\\',
// below 0x20 or at least 0x80. Subtracting 1 from a byte sets its high bit
// when it was zero or above 0x80, so after the XORs each term flags its
// character, and high bytes are flagged anyway. A borrow only starts at a
// flagged byte and only reaches the bytes after it, so the lowest flag is
// exact: it marks the first special byte.
func swarSpecial(x uint64) uint64 {
	const ones = 0x0101010101010101
	const highs = 0x8080808080808080
	quote := (x ^ (ones * '"')) - ones
	backslash := (x ^ (ones * '\\')) - ones
	control := x - ones*0x20
	return (quote | backslash | control | x) & highs
}

// escapedString decodes a string holding escapes into Resource.esc. i is
// the offset of the first backslash.
func (p *jsonParser) escapedString(start, i int) (node, error) {
	r := p.r
	off := len(r.esc)
	r.esc = append(r.esc, p.data[start:i]...)
	for i < len(p.data) {
		c := p.data[i]
		switch {
		case c == '"':
			if !utf8.Valid(r.esc[off:]) {
				p.pos = start
				return node{}, p.errorf("invalid UTF-8 in string")
			}
			p.pos = i + 1
			return node{kind: kindString, flags: flagEsc, off: uint32(off), n: uint32(len(r.esc) - off)}, nil
		case c < 0x20:
			p.pos = i
			return node{}, p.errorf("control character in string")
		case c != '\\':
			r.esc = append(r.esc, c)
			i++
			continue
		}
		if i+1 >= len(p.data) {
			break
		}
		switch e := p.data[i+1]; e {
		case '"', '\\', '/':
			r.esc = append(r.esc, e)
		case 'b':
			r.esc = append(r.esc, '\b')
		case 'f':
			r.esc = append(r.esc, '\f')
		case 'n':
			r.esc = append(r.esc, '\n')
		case 'r':
			r.esc = append(r.esc, '\r')
		case 't':
			r.esc = append(r.esc, '\t')
		case 'u':
			ch, ok := hex4(p.data, i+2)
			if !ok {
				p.pos = i
				return node{}, p.errorf("invalid \\u escape")
			}
			i += 6
			if utf16.IsSurrogate(ch) {
				lo, ok := rune(-1), false
				if i+1 < len(p.data) && p.data[i] == '\\' && p.data[i+1] == 'u' {
					lo, ok = hex4(p.data, i+2)
				}
				if dec := utf16.DecodeRune(ch, lo); ok && dec != utf8.RuneError {
					ch = dec
					i += 6
				} else {
					ch = utf8.RuneError
				}
			}
			r.esc = utf8.AppendRune(r.esc, ch)
			continue
		default:
			p.pos = i
			return node{}, p.errorf("invalid escape \\%c", e)
		}
		i += 2
	}
	p.pos = len(p.data)
	return node{}, p.errorf("unterminated string")
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}

func (p *jsonParser) number() (node, error) {
	d := p.data
	start := p.pos
	i := start
	if d[i] == '-' {
		i++
	}
	digits := func() int {
		s := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		return i - s
	}
	if i < len(d) && d[i] == '0' {
		i++
	} else if digits() == 0 {
		p.pos = i
		return node{}, p.errorf("invalid number")
	}
	flags := flagIntegral
	if i < len(d) && d[i] == '.' {
		i++
		flags = 0
		if digits() == 0 {
			p.pos = i
			return node{}, p.errorf("invalid number")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		flags = 0
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if digits() == 0 {
			p.pos = i
			return node{}, p.errorf("invalid number")
		}
	}
	p.pos = i
	return node{kind: kindNumber, flags: flags, off: uint32(start), n: uint32(i - start)}, nil
}

// appendJSON writes node i as compact JSON.
func (r *Resource) appendJSON(dst []byte, i int32) []byte {
	n := r.nodes[i]
	switch n.kind {
	case kindNull:
		return append(dst, "null"...)
	case kindTrue:
		return append(dst, "true"...)
	case kindFalse:
		return append(dst, "false"...)
	case kindNumber:
		return append(dst, r.bytes(i)...)
	case kindString:
		return appendJSONString(dst, r.bytes(i))
	case kindArray:
		dst = append(dst, '[')
		for k := uint32(0); k < n.n; k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = r.appendJSON(dst, int32(n.off+k))
		}
		return append(dst, ']')
	default:
		dst = append(dst, '{')
		for k := uint32(0); k < n.n; k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = r.appendJSON(dst, int32(n.off+2*k))
			dst = append(dst, ':')
			dst = r.appendJSON(dst, int32(n.off+2*k+1))
		}
		return append(dst, '}')
	}
}

// appendJSONString writes b as a JSON string literal.
func appendJSONString(dst, b []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// nodeEqual reports whether two nodes hold the same JSON value. Object
// members compare regardless of order.
func (r *Resource) nodeEqual(a, b int32) bool {
	if a == b {
		return true
	}
	na, nb := r.nodes[a], r.nodes[b]
	if na.kind != nb.kind || na.n != nb.n && na.kind >= kindNumber {
		return false
	}
	switch na.kind {
	case kindNumber, kindString:
		return string(r.bytes(a)) == string(r.bytes(b))
	case kindArray:
		for k := uint32(0); k < na.n; k++ {
			if !r.nodeEqual(int32(na.off+k), int32(nb.off+k)) {
				return false
			}
		}
	case kindObject:
		for k := uint32(0); k < na.n; k++ {
			v := r.member(b, r.str(int32(na.off+2*k)))
			if v < 0 || !r.nodeEqual(int32(na.off+2*k+1), v) {
				return false
			}
		}
	}
	return true
}

// member returns the value of the member of obj whose key is exactly key,
// or -1.
func (r *Resource) member(obj int32, key string) int32 {
	o := r.nodes[obj]
	for k := o.off; k < o.off+2*o.n; k += 2 {
		if r.str(int32(k)) == key {
			return int32(k + 1)
		}
	}
	return -1
}
