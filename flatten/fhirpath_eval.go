package flatten

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// vkind is the kind of a value in a FHIRPath collection.
type vkind uint8

const (
	vNode vkind = iota // an element of the resource tree
	vBool
	vInt
	vDec // decimal text, as written or as computed
	vStr // strings and every string-like FHIR primitive, dates and times included
)

// item is one value of a FHIRPath collection. Elements of the resource are
// referenced by node index; computed values are held inline. A string may
// share memory with the resource and is valid only while it is.
type item struct {
	kind vkind
	typ  ftype
	node int32 // vNode: the value node, or -1 for a primitive that has only extensions
	ext  int32 // vNode: the primitive's "_name" companion object, or -1
	b    bool
	i    int64
	s    string
}

func nodeItem(n int32) item { return item{kind: vNode, node: n, ext: -1} }

// evaluator runs compiled expressions over one resource at a time. It owns
// the scratch collections of every op of a view, so it is not safe for
// concurrent use; each Batch has its own.
type evaluator struct {
	res      *Resource
	serial   uint64 // res's serial when reset
	bufs     [][]item
	rowIndex int64
	index    int64
	// gen numbers the current focus: a shared result computed under
	// another generation is stale. resGen is the generation of the
	// resource, for results shared by every select with the resource as
	// focus (see shareResource); it changes only with the resource.
	gen    uint64
	resGen uint64
	shared []sharedResult
}

// sharedResult is the cached value of an opShared op.
type sharedResult struct {
	gen uint64
	val []item
}

func newEvaluator(slots, shared int) *evaluator {
	return &evaluator{bufs: make([][]item, slots), shared: make([]sharedResult, shared)}
}

// reset starts the evaluation of r. The results shared across the
// selects with r as focus are kept when r is the resource of the last
// reset and has not been parsed again since: the batches of one Plan
// evaluate the same resource one after another.
func (e *evaluator) reset(r *Resource) {
	e.rowIndex = 0
	e.index = 0
	e.gen++
	if e.res == r && e.serial == r.serial {
		return
	}
	e.res, e.serial = r, r.serial
	e.resGen = e.gen
}

// newFocus invalidates the shared results: the columns about to be
// evaluated have another focus or row index.
func (e *evaluator) newFocus() { e.gen++ }

func (e *evaluator) root() item { return nodeItem(e.res.root) }

// errSingleton is returned when an operator needs a single value.
func errSingleton(what string, n int) error {
	return fmt.Errorf("%s expects a single value, got %d", what, n)
}

// eval evaluates o with this as the focus collection ($this).
func (e *evaluator) eval(o *op, this []item) ([]item, error) {
	switch o.code {
	case opLiteral:
		return o.lit, nil
	case opThis:
		return this, nil
	case opIndexVar:
		out := append(e.bufs[o.slot][:0], item{kind: vInt, typ: tInteger, i: e.index})
		e.bufs[o.slot] = out
		return out, nil
	case opRowIndex:
		out := append(e.bufs[o.slot][:0], item{kind: vInt, typ: tInteger, i: e.rowIndex})
		e.bufs[o.slot] = out
		return out, nil
	case opRoot:
		out := append(e.bufs[o.slot][:0], e.root())
		e.bufs[o.slot] = out
		return out, nil
	case opField, opTypeRoot:
		in, err := e.eval(o.a, this)
		if err != nil {
			return nil, err
		}
		out := e.bufs[o.slot][:0]
		for _, it := range in {
			if o.code == opTypeRoot && e.isResource(it, o.name) {
				out = append(out, it)
				continue
			}
			out = e.navigate(out, it, o.name)
		}
		e.bufs[o.slot] = out
		return out, nil
	case opIndexer:
		in, err := e.eval(o.a, this)
		if err != nil {
			return nil, err
		}
		idx, err := e.eval(o.b, this)
		if err != nil {
			return nil, err
		}
		if len(idx) == 0 {
			return nil, nil
		}
		n, ok := e.integer(idx)
		if !ok {
			return nil, errors.New("index must be a single integer")
		}
		if n < 0 || n >= int64(len(in)) {
			return nil, nil
		}
		return in[n : n+1], nil
	case opNegate:
		in, err := e.eval(o.a, this)
		if err != nil || len(in) == 0 {
			return nil, err
		}
		if len(in) > 1 {
			return nil, errSingleton("unary -", len(in))
		}
		v, ok := e.scalar(in[0])
		out := e.bufs[o.slot][:0]
		switch {
		case ok && v.kind == vInt:
			out = append(out, item{kind: vInt, typ: tInteger, i: -v.i})
		case ok && v.kind == vDec:
			s := strings.TrimPrefix(v.s, "-")
			if s == v.s {
				s = "-" + s
			}
			out = append(out, item{kind: vDec, typ: tDecimal, s: s})
		default:
			return nil, errors.New("unary - expects a number")
		}
		e.bufs[o.slot] = out
		return out, nil
	case opIs, opAs:
		in, err := e.eval(o.a, this)
		if err != nil || len(in) == 0 {
			return nil, err
		}
		if len(in) > 1 {
			name := "is"
			if o.code == opAs {
				name = "as"
			}
			return nil, errSingleton(name, len(in))
		}
		match := e.isType(in[0], o.typ)
		if o.code == opAs {
			if match {
				return in, nil
			}
			return nil, nil
		}
		out := append(e.bufs[o.slot][:0], item{kind: vBool, typ: tBoolean, b: match})
		e.bufs[o.slot] = out
		return out, nil
	case opBinary:
		return e.evalBinary(o, this)
	case opCall:
		return e.evalCall(o, this)
	case opShared:
		c := &e.shared[o.slot]
		gen := e.gen
		if o.perResource {
			gen = e.resGen
		}
		if c.gen == gen {
			return c.val, nil
		}
		v, err := e.eval(o.a, this)
		if err != nil {
			return nil, err
		}
		c.gen, c.val = gen, v
		return v, nil
	}
	return nil, fmt.Errorf("unknown operation %d", o.code)
}

// navigate appends the children called name of it to out. Arrays are
// flattened; primitives carry their "_name" extensions along.
func (e *evaluator) navigate(out []item, it item, name string) []item {
	if it.kind != vNode {
		return out
	}
	r := e.res
	obj := it.node
	if obj < 0 || r.nodes[obj].kind != kindObject {
		// A primitive: only its id and extensions, held in "_name", are reachable.
		if it.ext < 0 || (name != "extension" && name != "id") {
			return out
		}
		obj = it.ext
		if r.nodes[obj].kind != kindObject {
			return out
		}
	}
	val, ext, typ := r.field(obj, name)
	if val >= 0 && r.nodes[val].kind == kindArray {
		arr := r.nodes[val]
		var exts node
		if ext >= 0 && r.nodes[ext].kind == kindArray {
			exts = r.nodes[ext]
		}
		for k := uint32(0); k < arr.n; k++ {
			v, x := int32(arr.off+k), int32(-1)
			if k < exts.n {
				if xn := int32(exts.off + k); r.nodes[xn].kind == kindObject {
					x = xn
				}
			}
			if r.nodes[v].kind == kindNull {
				if x < 0 {
					continue
				}
				v = -1
			}
			out = append(out, item{kind: vNode, typ: typ, node: v, ext: x})
		}
		return out
	}
	if ext >= 0 && r.nodes[ext].kind != kindObject {
		if r.nodes[ext].kind == kindArray && (val < 0 || r.nodes[val].kind == kindNull) {
			// Extensions of array elements whose values are all absent.
			xs := r.nodes[ext]
			for k := uint32(0); k < xs.n; k++ {
				if xn := int32(xs.off + k); r.nodes[xn].kind == kindObject {
					out = append(out, item{kind: vNode, typ: typ, node: -1, ext: xn})
				}
			}
			return out
		}
		ext = -1
	}
	switch {
	case val >= 0 && r.nodes[val].kind != kindNull:
		if r.nodes[val].kind == kindObject {
			ext = -1
		}
		out = append(out, item{kind: vNode, typ: typ, node: val, ext: ext})
	case ext >= 0:
		out = append(out, item{kind: vNode, typ: typ, node: -1, ext: ext})
	}
	return out
}

// isResource reports whether it is a resource of the given type.
func (e *evaluator) isResource(it item, typ string) bool {
	if it.kind != vNode || it.node < 0 || e.res.nodes[it.node].kind != kindObject {
		return false
	}
	rt, _, _ := e.res.field(it.node, "resourceType")
	return rt >= 0 && e.res.nodes[rt].kind == kindString && e.res.str(rt) == typ
}

// scalar resolves an element of the tree to a primitive value. Objects
// stay nodes. ok is false for a primitive that has only extensions.
func (e *evaluator) scalar(it item) (item, bool) {
	if it.kind != vNode {
		return it, true
	}
	if it.node < 0 {
		return it, false
	}
	r := e.res
	switch n := r.nodes[it.node]; n.kind {
	case kindString:
		return item{kind: vStr, typ: it.typ, s: r.str(it.node)}, true
	case kindNumber:
		s := r.str(it.node)
		if n.flags&flagIntegral != 0 && it.typ != tDecimal {
			if v, err := strconv.ParseInt(s, 10, 64); err == nil {
				t := it.typ
				if t == tNone {
					t = tInteger
				}
				return item{kind: vInt, typ: t, i: v}, true
			}
		}
		return item{kind: vDec, typ: tDecimal, s: s}, true
	case kindTrue, kindFalse:
		return item{kind: vBool, typ: tBoolean, b: n.kind == kindTrue}, true
	case kindNull:
		return it, false
	}
	return it, true
}

// integer reads a single integer value.
func (e *evaluator) integer(c []item) (int64, bool) {
	if len(c) != 1 {
		return 0, false
	}
	v, ok := e.scalar(c[0])
	if !ok || v.kind != vInt {
		return 0, false
	}
	return v.i, true
}

// str reads a single string value.
func (e *evaluator) str(c []item) (string, bool) {
	if len(c) != 1 {
		return "", false
	}
	v, ok := e.scalar(c[0])
	if !ok || v.kind != vStr {
		return "", false
	}
	return v.s, true
}

// truth converts a collection to a three-valued boolean: 1 true, 0 false,
// -1 empty. A single value that is not a boolean counts as true.
func (e *evaluator) truth(c []item) (int8, error) {
	switch len(c) {
	case 0:
		return -1, nil
	case 1:
		v, ok := e.scalar(c[0])
		if !ok {
			return -1, nil
		}
		if v.kind == vBool {
			if v.b {
				return 1, nil
			}
			return 0, nil
		}
		return 1, nil
	}
	return 0, errSingleton("a boolean operand", len(c))
}

func (e *evaluator) boolOut(o *op, v int8) []item {
	out := e.bufs[o.slot][:0]
	if v >= 0 {
		out = append(out, item{kind: vBool, typ: tBoolean, b: v == 1})
	}
	e.bufs[o.slot] = out
	return out
}

func isTemporal(t ftype) bool {
	return t == tDate || t == tDateTime || t == tInstant || t == tTime
}

// temporal parses a string value as the temporal type t (or as whatever
// temporal form it has when t is not temporal).
func temporal(s string, t ftype) (dtm, bool) {
	switch t {
	case tTime:
		return parseTime(s)
	case tDate, tDateTime, tInstant:
		return parseDateTime(s)
	}
	if d, ok := parseDateTime(s); ok {
		return d, true
	}
	return parseTime(s)
}

// compare orders two single values. ok is false when they cannot be
// ordered (different kinds, or dates of different precision that agree).
func (e *evaluator) compare(a, b item) (int, bool) {
	a, oka := e.scalar(a)
	b, okb := e.scalar(b)
	if !oka || !okb {
		return 0, false
	}
	switch {
	case (a.kind == vInt || a.kind == vDec) && (b.kind == vInt || b.kind == vDec):
		if a.kind == vInt && b.kind == vInt {
			return cmpInt(a.i, b.i), true
		}
		return compareDec(decText(a), decText(b))
	case a.kind == vStr && b.kind == vStr:
		if isTemporal(a.typ) || isTemporal(b.typ) {
			t := a.typ
			if !isTemporal(t) {
				t = b.typ
			}
			x, ok1 := temporal(a.s, t)
			y, ok2 := temporal(b.s, t)
			if ok1 && ok2 {
				return compareDtm(x, y)
			}
			return 0, false
		}
		return strings.Compare(a.s, b.s), true
	case a.kind == vBool && b.kind == vBool:
		return cmpInt(boolInt(a.b), boolInt(b.b)), true
	}
	return 0, false
}

func decText(v item) string {
	if v.kind == vInt {
		return strconv.FormatInt(v.i, 10)
	}
	return v.s
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// equal compares two single values: 1 equal, 0 different, -1 unknown.
func (e *evaluator) equal(a, b item) int8 {
	sa, oka := e.scalar(a)
	sb, okb := e.scalar(b)
	if !oka || !okb {
		return -1
	}
	if sa.kind == vNode || sb.kind == vNode {
		if sa.kind != sb.kind || !e.res.nodeEqual(sa.node, sb.node) {
			return 0
		}
		return 1
	}
	numeric := func(k vkind) bool { return k == vInt || k == vDec }
	if sa.kind != sb.kind && (!numeric(sa.kind) || !numeric(sb.kind)) {
		return 0
	}
	c, ok := e.compare(sa, sb)
	if !ok {
		if sa.kind == vStr && (isTemporal(sa.typ) || isTemporal(sb.typ)) {
			if _, ok1 := temporal(sa.s, sa.typ); ok1 {
				if _, ok2 := temporal(sb.s, sb.typ); ok2 {
					return -1 // differing precision
				}
			}
			return 0
		}
		return 0
	}
	if c == 0 {
		return 1
	}
	return 0
}

// equivalent implements ~: case- and whitespace-insensitive strings, and
// false instead of unknown.
func (e *evaluator) equivalent(a, b item) bool {
	sa, oka := e.scalar(a)
	sb, okb := e.scalar(b)
	if !oka || !okb {
		return !oka && !okb
	}
	if sa.kind == vStr && sb.kind == vStr && !isTemporal(sa.typ) && !isTemporal(sb.typ) {
		return strings.EqualFold(strings.Join(strings.Fields(sa.s), " "), strings.Join(strings.Fields(sb.s), " "))
	}
	return e.equal(sa, sb) == 1
}

func (e *evaluator) evalBinary(o *op, this []item) ([]item, error) {
	l, err := e.eval(o.a, this)
	if err != nil {
		return nil, err
	}
	switch o.binop {
	case "and", "or", "implies":
		lt, err := e.truth(l)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.binop, err)
		}
		// Short-circuit where the left operand decides.
		switch {
		case o.binop == "and" && lt == 0:
			return e.boolOut(o, 0), nil
		case o.binop == "or" && lt == 1:
			return e.boolOut(o, 1), nil
		case o.binop == "implies" && lt == 0:
			return e.boolOut(o, 1), nil
		}
		r, err := e.eval(o.b, this)
		if err != nil {
			return nil, err
		}
		rt, err := e.truth(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.binop, err)
		}
		return e.boolOut(o, logic(o.binop, lt, rt)), nil
	}
	r, err := e.eval(o.b, this)
	if err != nil {
		return nil, err
	}
	switch o.binop {
	case "xor":
		lt, err1 := e.truth(l)
		rt, err2 := e.truth(r)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("xor: %w", err)
		}
		return e.boolOut(o, logic("xor", lt, rt)), nil
	case "=", "!=":
		if len(l) == 0 || len(r) == 0 {
			return e.boolOut(o, -1), nil
		}
		res := int8(1)
		if len(l) != len(r) {
			res = 0
		} else {
			for k := range l {
				switch e.equal(l[k], r[k]) {
				case 0:
					res = 0
				case -1:
					if res == 1 {
						res = -1
					}
				}
				if res == 0 {
					break
				}
			}
		}
		if o.binop == "!=" && res >= 0 {
			res = 1 - res
		}
		return e.boolOut(o, res), nil
	case "~", "!~":
		res := len(l) == len(r)
		for k := 0; res && k < len(l); k++ {
			res = e.equivalent(l[k], r[k])
		}
		if o.binop == "!~" {
			res = !res
		}
		return e.boolOut(o, int8(boolInt(res))), nil
	case "<", ">", "<=", ">=":
		if len(l) == 0 || len(r) == 0 {
			return e.boolOut(o, -1), nil
		}
		if len(l) > 1 || len(r) > 1 {
			return nil, errSingleton(o.binop, max(len(l), len(r)))
		}
		c, ok := e.compare(l[0], r[0])
		if !ok {
			return e.boolOut(o, -1), nil
		}
		var res bool
		switch o.binop {
		case "<":
			res = c < 0
		case ">":
			res = c > 0
		case "<=":
			res = c <= 0
		default:
			res = c >= 0
		}
		return e.boolOut(o, int8(boolInt(res))), nil
	case "|":
		out := e.bufs[o.slot][:0]
		for _, c := range [2][]item{l, r} {
			for _, it := range c {
				if !e.contains(out, it) {
					out = append(out, it)
				}
			}
		}
		e.bufs[o.slot] = out
		return out, nil
	case "in", "contains":
		elem, coll := l, r
		if o.binop == "contains" {
			elem, coll = r, l
		}
		if len(elem) == 0 {
			return e.boolOut(o, -1), nil
		}
		if len(elem) > 1 {
			return nil, errSingleton(o.binop, len(elem))
		}
		return e.boolOut(o, int8(boolInt(e.contains(coll, elem[0])))), nil
	case "&":
		a, _ := e.str(l)
		b, _ := e.str(r)
		if (len(l) > 0 && a == "" && !e.isEmptyString(l)) || (len(r) > 0 && b == "" && !e.isEmptyString(r)) {
			return nil, errors.New("& expects strings")
		}
		out := append(e.bufs[o.slot][:0], item{kind: vStr, typ: tString, s: a + b})
		e.bufs[o.slot] = out
		return out, nil
	}
	return e.arith(o, l, r)
}

func (e *evaluator) isEmptyString(c []item) bool {
	s, ok := e.str(c)
	return ok && s == ""
}

func (e *evaluator) contains(c []item, it item) bool {
	for _, x := range c {
		if e.equal(x, it) == 1 {
			return true
		}
	}
	return false
}

// logic applies a three-valued boolean operator (-1 is empty).
func logic(op string, a, b int8) int8 {
	switch op {
	case "and":
		switch {
		case a == 0 || b == 0:
			return 0
		case a == 1 && b == 1:
			return 1
		}
		return -1
	case "or":
		switch {
		case a == 1 || b == 1:
			return 1
		case a == 0 && b == 0:
			return 0
		}
		return -1
	case "xor":
		if a < 0 || b < 0 {
			return -1
		}
		if a != b {
			return 1
		}
		return 0
	case "implies":
		switch {
		case a == 0 || b == 1:
			return 1
		case a == 1 && b == 0:
			return 0
		}
		return -1
	}
	return -1
}

func (e *evaluator) arith(o *op, l, r []item) ([]item, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, errSingleton(o.binop, max(len(l), len(r)))
	}
	a, oka := e.scalar(l[0])
	b, okb := e.scalar(r[0])
	if !oka || !okb {
		return nil, nil
	}
	out := e.bufs[o.slot][:0]
	defer func() { e.bufs[o.slot] = out }()
	if o.binop == "+" && a.kind == vStr && b.kind == vStr {
		out = append(out, item{kind: vStr, typ: tString, s: a.s + b.s})
		return out, nil
	}
	num := func(k vkind) bool { return k == vInt || k == vDec }
	if !num(a.kind) || !num(b.kind) {
		return nil, fmt.Errorf("%s expects numbers", o.binop)
	}
	if a.kind == vInt && b.kind == vInt {
		x, y := a.i, b.i
		var v int64
		ok := true
		switch o.binop {
		case "+":
			v = x + y
			ok = (v > x) == (y > 0)
		case "-":
			v = x - y
			ok = (v < x) == (y > 0)
		case "*":
			if x != 0 && y != 0 {
				v = x * y
				ok = v/y == x && (x != -1 || y != math.MinInt64) && (y != -1 || x != math.MinInt64)
			}
		case "div", "mod":
			if y == 0 {
				return nil, nil
			}
			if x == math.MinInt64 && y == -1 {
				ok = false
				break
			}
			if o.binop == "div" {
				v = x / y
			} else {
				v = x % y
			}
		default:
			ok = false
		}
		if ok {
			out = append(out, item{kind: vInt, typ: tInteger, i: v})
			return out, nil
		}
	}
	switch o.binop {
	case "+", "-", "*", "/":
		s, ok := decArith(o.binop[0], decText(a), decText(b))
		if !ok {
			return nil, nil
		}
		out = append(out, item{kind: vDec, typ: tDecimal, s: s})
	case "div", "mod":
		q, ok := decArith('/', decText(a), decText(b))
		if !ok {
			return nil, nil
		}
		whole := q
		if i := strings.IndexByte(q, '.'); i >= 0 {
			whole = q[:i]
		}
		if whole == "-0" || whole == "" {
			whole = "0"
		}
		if o.binop == "div" {
			out = append(out, item{kind: vDec, typ: tDecimal, s: whole})
			break
		}
		prod, _ := decArith('*', whole, decText(b))
		rem, ok := decArith('-', decText(a), prod)
		if !ok {
			return nil, nil
		}
		out = append(out, item{kind: vDec, typ: tDecimal, s: rem})
	default:
		return nil, fmt.Errorf("unknown operator %s", o.binop)
	}
	return out, nil
}

// isType reports whether it is of type t or a type derived from it.
func (e *evaluator) isType(it item, t typeSpec) bool {
	if t.resource {
		return e.isResource(it, t.name)
	}
	if it.typ != tNone && (it.kind != vNode || it.node >= 0) {
		if it.kind == vNode && it.node >= 0 && e.res.nodes[it.node].kind == kindNumber && t.ft == tDecimal && it.typ.is(tInteger) {
			return false
		}
		return it.typ.is(t.ft)
	}
	if it.kind != vNode {
		switch it.kind {
		case vBool:
			return t.ft == tBoolean
		case vInt:
			return t.ft == tInteger
		case vDec:
			return t.ft == tDecimal
		default:
			return t.ft == tString
		}
	}
	if it.node < 0 {
		return false
	}
	r := e.res
	switch n := r.nodes[it.node]; n.kind {
	case kindObject:
		if rt, _, _ := r.field(it.node, "resourceType"); rt >= 0 {
			return false
		}
		// Without structure definitions the type of a complex element is
		// unknown; accept any complex type rather than drop data.
		return t.ft >= firstComplex
	case kindString:
		switch t.ft {
		case tDate:
			d, ok := parseDateTime(r.str(it.node))
			return ok && d.prec <= precDay
		case tDateTime, tInstant:
			_, ok := parseDateTime(r.str(it.node))
			return ok
		case tTime:
			_, ok := parseTime(r.str(it.node))
			return ok
		}
		return t.ft.is(tString) || t.ft.is(tURI) || t.ft == tBase64Binary || t.ft == tXhtml
	case kindNumber:
		if n.flags&flagIntegral != 0 && t.ft.is(tInteger) {
			return true
		}
		return t.ft == tDecimal || t.ft == tInteger64 && n.flags&flagIntegral != 0
	case kindTrue, kindFalse:
		return t.ft == tBoolean
	}
	return false
}
