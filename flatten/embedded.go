package flatten

import (
	"errors"
	"fmt"
	"unsafe"
)

// ParseEmbedded parses the JSON object that starts at data[start] (a
// resource inside a larger document, such as a notification Bundle's entry)
// into r, reusing r's memory, and returns the offset just after the object.
// It lets a reader that walks the outer document hand each resource to this
// parser instead of scanning it first: the resource's bytes are tokenized
// once, and the tree serves both the reader (Root, Member, Text) and every
// view (Batch.Append).
//
// maxDepth bounds the nesting of the object, itself counting as one level.
// A missing or non-string resourceType is not an error here: ResourceType
// then returns "", and the caller judges. Like Parse, r keeps a reference
// to data, and strings it returns share memory with data or with r.
func (r *Resource) ParseEmbedded(data []byte, start, maxDepth int) (end int, err error) {
	if len(data) >= 1<<32-1 {
		return start, errors.New("document larger than 4 GiB")
	}
	if start >= len(data) || data[start] != '{' {
		return start, fmt.Errorf("offset %d: not a JSON object", start)
	}
	r.serial++
	r.src = data
	r.esc = r.esc[:0]
	r.nodes = r.nodes[:0]
	r.stack = r.stack[:0]
	r.typ = ""
	p := jsonParser{data: data, pos: start, r: r, maxDepth: maxDepth}
	v, err := p.object(1)
	if err != nil {
		return p.pos, err
	}
	r.nodes = append(r.nodes, v)
	r.root = int32(len(r.nodes) - 1)
	if rt, _, _ := r.field(r.root, "resourceType"); rt >= 0 && r.nodes[rt].kind == kindString {
		r.typ = r.str(rt) // not interned: a notification's status types would allocate
	}
	return p.pos, nil
}

// Node is one JSON value of a parsed Resource, for readers outside the
// package that need a few members (a decoder reading a resource's id and
// meta) without parsing the resource again.
type Node int32

// Root returns the resource's top-level object.
func (r *Resource) Root() Node { return Node(r.root) }

// IsObject, IsArray, IsString and IsNull report a node's JSON kind.
func (r *Resource) IsObject(n Node) bool { return r.nodes[n].kind == kindObject }
func (r *Resource) IsArray(n Node) bool  { return r.nodes[n].kind == kindArray }
func (r *Resource) IsString(n Node) bool { return r.nodes[n].kind == kindString }
func (r *Resource) IsNull(n Node) bool   { return r.nodes[n].kind == kindNull }

// Len returns the number of members of an object or elements of an array,
// 0 for any other node.
func (r *Resource) Len(n Node) int {
	if k := r.nodes[n].kind; k != kindObject && k != kindArray {
		return 0
	}
	return int(r.nodes[n].n)
}

// Member returns the i-th member of object n, in document order: its key
// (unescaped, valid while r is) and its value.
func (r *Resource) Member(n Node, i int) (key string, val Node) {
	k := int32(r.nodes[n].off) + 2*int32(i)
	return r.str(k), Node(k + 1)
}

// Element returns the i-th element of array n.
func (r *Resource) Element(n Node, i int) Node { return Node(int32(r.nodes[n].off) + int32(i)) }

// Text returns the unescaped text of a string node without copying it, and
// whether it holds escapes. Text without escapes is a slice of the parsed
// bytes; text with escapes lives in r and is overwritten by the next parse
// into r, so a caller that keeps it beyond that clones it.
func (r *Resource) Text(n Node) (s string, escaped bool) {
	nd := r.nodes[n]
	if nd.kind != kindString {
		return "", false
	}
	b := r.bytes(int32(n))
	if len(b) == 0 {
		return "", false
	}
	return unsafe.String(&b[0], len(b)), nd.flags&flagEsc != 0
}

// Retained returns the bytes of scratch memory r holds for reuse.
func (r *Resource) Retained() int {
	return (cap(r.nodes)+cap(r.stack))*int(unsafe.Sizeof(node{})) + cap(r.esc)
}
