package flatten

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// opcode is the operation of a compiled FHIRPath node.
type opcode uint8

const (
	opLiteral  opcode = iota + 1 // lit
	opThis                       // $this: the input collection
	opIndexVar                   // $index
	opRowIndex                   // %rowIndex
	opRoot                       // %resource, %rootResource, %context
	opField                      // a.name
	opTypeRoot                   // a leading resource type name, e.g. Patient.name
	opIndexer                    // a[b]
	opCall                       // [a.]fn(args…)
	opBinary                     // a op b
	opNegate                     // -a
	opIs                         // a is T
	opAs                         // a as T
	opShared                     // a, computed once per focus for several columns (see shareSpines)
)

// fnID names a supported function.
type fnID uint8

const (
	fnEmpty fnID = iota + 1
	fnExists
	fnNot
	fnFirst
	fnLast
	fnTail
	fnSkip
	fnTake
	fnCount
	fnSingle
	fnDistinct
	fnWhere
	fnSelect
	fnAll
	fnAllTrue
	fnAnyTrue
	fnAllFalse
	fnAnyFalse
	fnIif
	fnJoin
	fnOfType
	fnIs
	fnAs
	fnExtension
	fnHasValue
	fnGetResourceKey
	fnGetReferenceKey
	fnLowBoundary
	fnHighBoundary
	fnToString
	fnToInteger
	fnToDecimal
	fnStartsWith
	fnEndsWith
	fnContains
	fnSubstring
	fnLength
	fnUpper
	fnLower
	fnTrim
	fnReplace
	fnMatches
	fnIndexOf
	fnCodeSystemName
)

// fnSpec describes a function: its id, argument counts, and whether its
// first argument is evaluated per input item ($this bound to the item).
type fnSpec struct {
	id       fnID
	min, max int
	lambda   bool
	typeArg  bool // the argument is a type specifier
	result   resultKind
}

// lookupFunction returns the specification of a supported function.
func lookupFunction(name string) (fnSpec, bool) {
	switch name {
	case "empty":
		return fnSpec{id: fnEmpty, result: resBool}, true
	case "exists":
		return fnSpec{id: fnExists, max: 1, lambda: true, result: resBool}, true
	case "not":
		return fnSpec{id: fnNot, result: resBool}, true
	case "first":
		return fnSpec{id: fnFirst}, true
	case "last":
		return fnSpec{id: fnLast}, true
	case "tail":
		return fnSpec{id: fnTail}, true
	case "skip":
		return fnSpec{id: fnSkip, min: 1, max: 1}, true
	case "take":
		return fnSpec{id: fnTake, min: 1, max: 1}, true
	case "count":
		return fnSpec{id: fnCount, result: resInt}, true
	case "single":
		return fnSpec{id: fnSingle}, true
	case "distinct":
		return fnSpec{id: fnDistinct}, true
	case "where":
		return fnSpec{id: fnWhere, min: 1, max: 1, lambda: true}, true
	case "select":
		return fnSpec{id: fnSelect, min: 1, max: 1, lambda: true}, true
	case "all":
		return fnSpec{id: fnAll, min: 1, max: 1, lambda: true, result: resBool}, true
	case "allTrue":
		return fnSpec{id: fnAllTrue, result: resBool}, true
	case "anyTrue":
		return fnSpec{id: fnAnyTrue, result: resBool}, true
	case "allFalse":
		return fnSpec{id: fnAllFalse, result: resBool}, true
	case "anyFalse":
		return fnSpec{id: fnAnyFalse, result: resBool}, true
	case "iif":
		return fnSpec{id: fnIif, min: 2, max: 3}, true
	case "join":
		return fnSpec{id: fnJoin, max: 1, result: resString}, true
	case "ofType":
		return fnSpec{id: fnOfType, min: 1, max: 1, typeArg: true}, true
	case "is":
		return fnSpec{id: fnIs, min: 1, max: 1, typeArg: true, result: resBool}, true
	case "as":
		return fnSpec{id: fnAs, min: 1, max: 1, typeArg: true}, true
	case "extension":
		return fnSpec{id: fnExtension, min: 1, max: 1}, true
	case "hasValue":
		return fnSpec{id: fnHasValue, result: resBool}, true
	case "getResourceKey":
		return fnSpec{id: fnGetResourceKey, result: resString}, true
	case "getReferenceKey":
		return fnSpec{id: fnGetReferenceKey, max: 1, typeArg: true, result: resString}, true
	case "lowBoundary":
		return fnSpec{id: fnLowBoundary, max: 1}, true
	case "highBoundary":
		return fnSpec{id: fnHighBoundary, max: 1}, true
	case "toString":
		return fnSpec{id: fnToString, result: resString}, true
	case "toInteger":
		return fnSpec{id: fnToInteger, result: resInt}, true
	case "toDecimal":
		return fnSpec{id: fnToDecimal, result: resDecimal}, true
	case "startsWith":
		return fnSpec{id: fnStartsWith, min: 1, max: 1, result: resBool}, true
	case "endsWith":
		return fnSpec{id: fnEndsWith, min: 1, max: 1, result: resBool}, true
	case "contains":
		return fnSpec{id: fnContains, min: 1, max: 1, result: resBool}, true
	case "substring":
		return fnSpec{id: fnSubstring, min: 1, max: 2, result: resString}, true
	case "length":
		return fnSpec{id: fnLength, result: resInt}, true
	case "upper":
		return fnSpec{id: fnUpper, result: resString}, true
	case "lower":
		return fnSpec{id: fnLower, result: resString}, true
	case "trim":
		return fnSpec{id: fnTrim, result: resString}, true
	case "replace":
		return fnSpec{id: fnReplace, min: 2, max: 2, result: resString}, true
	case "matches":
		return fnSpec{id: fnMatches, min: 1, max: 1, result: resBool}, true
	case "indexOf":
		return fnSpec{id: fnIndexOf, min: 1, max: 1, result: resInt}, true
	case "codeSystemName":
		return fnSpec{id: fnCodeSystemName, result: resString}, true
	}
	return fnSpec{}, false
}

// resultKind is what an expression is statically known to return; it
// types columns declared without a type.
type resultKind uint8

const (
	resUnknown resultKind = iota
	resBool
	resInt
	resDecimal
	resString
)

// typeSpec is a resolved type specifier of ofType, is, as and getReferenceKey.
type typeSpec struct {
	name     string // as written, unqualified
	ft       ftype  // a FHIR data type, or tNone for a resource type
	resource bool
}

// op is a node of a compiled FHIRPath expression. Ops are immutable once
// compiled and shared by every evaluator of a view; each op that produces
// a new collection owns a scratch slot in the evaluator. An opShared op's
// slot indexes the evaluator's cache of shared results instead.
type op struct {
	code   opcode
	fn     fnSpec
	binop  string
	slot   int
	name   string
	typ    typeSpec
	lit    []item
	a, b   *op
	args   []*op
	re     *regexp.Regexp
	result resultKind
	src    string // the expression text, for error messages
	// perResource marks an opShared op whose focus is always the resource:
	// its result holds for every select and view of the resource.
	perResource bool
}

// exprCompiler turns syntax trees into ops.
type exprCompiler struct {
	consts map[string][]item
	slots  int
}

// compileExpr parses and compiles one FHIRPath expression.
func (c *exprCompiler) compileExpr(src string) (*op, error) {
	tree, err := parseFHIRPath(src)
	if err != nil {
		return nil, fmt.Errorf("syntax error: %w", err)
	}
	o, err := c.compile(tree)
	if err != nil {
		return nil, err
	}
	o.src = src
	return o, nil
}

func (c *exprCompiler) newOp(code opcode) *op {
	o := &op{code: code, slot: c.slots}
	c.slots++
	return o
}

func (c *exprCompiler) compile(a *ast) (*op, error) {
	switch a.kind {
	case aBool:
		o := c.newOp(opLiteral)
		o.lit, o.result = []item{{kind: vBool, typ: tBoolean, b: a.text == "true"}}, resBool
		return o, nil
	case aString:
		o := c.newOp(opLiteral)
		o.lit, o.result = []item{{kind: vStr, typ: tString, s: a.text}}, resString
		return o, nil
	case aNumber:
		o := c.newOp(opLiteral)
		if strings.IndexByte(a.text, '.') < 0 {
			if i, err := strconv.ParseInt(a.text, 10, 64); err == nil {
				o.lit, o.result = []item{{kind: vInt, typ: tInteger, i: i}}, resInt
				return o, nil
			}
		}
		o.lit, o.result = []item{{kind: vDec, typ: tDecimal, s: a.text}}, resDecimal
		return o, nil
	case aDate:
		o := c.newOp(opLiteral)
		t := tDate
		if strings.IndexByte(a.text, 'T') >= 0 {
			t = tDateTime
		}
		o.lit = []item{{kind: vStr, typ: t, s: strings.TrimSuffix(a.text, "T")}}
		return o, nil
	case aTime:
		o := c.newOp(opLiteral)
		o.lit = []item{{kind: vStr, typ: tTime, s: a.text}}
		return o, nil
	case aEmpty:
		return c.newOp(opLiteral), nil
	case aSpecial:
		switch a.text {
		case "$this":
			return c.newOp(opThis), nil
		case "$index":
			o := c.newOp(opIndexVar)
			o.result = resInt
			return o, nil
		}
		return nil, fmt.Errorf("%s is not supported", a.text)
	case aConst:
		switch a.text {
		case "rowIndex":
			o := c.newOp(opRowIndex)
			o.result = resInt
			return o, nil
		case "resource", "rootResource", "context":
			return c.newOp(opRoot), nil
		}
		v, ok := c.consts[a.text]
		if !ok {
			return nil, fmt.Errorf("unknown constant %%%s", a.text)
		}
		o := c.newOp(opLiteral)
		o.lit = v
		if len(v) == 1 {
			o.result = v[0].kind.result()
		}
		return o, nil
	case aIdent:
		this := c.newOp(opThis)
		code := opField
		if len(a.text) > 0 && a.text[0] >= 'A' && a.text[0] <= 'Z' && lookupType(a.text) == tNone {
			code = opTypeRoot
		}
		o := c.newOp(code)
		o.a, o.name = this, a.text
		return o, nil
	case aInvoke:
		target, err := c.compile(a.kids[0])
		if err != nil {
			return nil, err
		}
		o := c.newOp(opField)
		o.a, o.name = target, a.text
		return o, nil
	case aIndex:
		target, err := c.compile(a.kids[0])
		if err != nil {
			return nil, err
		}
		idx, err := c.compile(a.kids[1])
		if err != nil {
			return nil, err
		}
		o := c.newOp(opIndexer)
		o.a, o.b = target, idx
		return o, nil
	case aUnary:
		inner, err := c.compile(a.kids[0])
		if err != nil {
			return nil, err
		}
		o := c.newOp(opNegate)
		o.a, o.result = inner, inner.result
		return o, nil
	case aTypeOp:
		inner, err := c.compile(a.kids[0])
		if err != nil {
			return nil, err
		}
		ts, err := resolveType(a.args[0])
		if err != nil {
			return nil, err
		}
		o := c.newOp(opIs)
		if a.text == "as" {
			o.code = opAs
		} else {
			o.result = resBool
		}
		o.a, o.typ = inner, ts
		return o, nil
	case aBinary:
		return c.compileBinary(a)
	case aCall:
		return c.compileCall(a)
	}
	return nil, fmt.Errorf("unsupported expression at %d", a.pos)
}

func (k vkind) result() resultKind {
	switch k {
	case vBool:
		return resBool
	case vInt:
		return resInt
	case vDec:
		return resDecimal
	case vStr:
		return resString
	}
	return resUnknown
}

func (c *exprCompiler) compileBinary(a *ast) (*op, error) {
	l, err := c.compile(a.kids[0])
	if err != nil {
		return nil, err
	}
	r, err := c.compile(a.kids[1])
	if err != nil {
		return nil, err
	}
	o := c.newOp(opBinary)
	o.a, o.b, o.binop = l, r, a.text
	switch a.text {
	case "=", "!=", "~", "!~", "<", ">", "<=", ">=", "and", "or", "xor", "implies", "in", "contains":
		o.result = resBool
	case "&":
		o.result = resString
	case "+":
		if l.result == resString || r.result == resString {
			o.result = resString
		} else if l.result == resInt && r.result == resInt {
			o.result = resInt
		} else if l.result != resUnknown && r.result != resUnknown {
			o.result = resDecimal
		}
	case "-", "*":
		if l.result == resInt && r.result == resInt {
			o.result = resInt
		} else if l.result != resUnknown && r.result != resUnknown {
			o.result = resDecimal
		}
	case "/":
		o.result = resDecimal
	case "div", "mod":
		if l.result == resInt && r.result == resInt {
			o.result = resInt
		}
	case "|":
		if l.result == r.result {
			o.result = l.result
		}
	default:
		return nil, fmt.Errorf("unknown operator %q at %d", a.text, a.pos)
	}
	return o, nil
}

func (c *exprCompiler) compileCall(a *ast) (*op, error) {
	spec, ok := lookupFunction(a.text)
	if !ok {
		return nil, fmt.Errorf("unknown function %s() at %d", a.text, a.pos)
	}
	if len(a.args) < spec.min || len(a.args) > spec.max {
		if spec.min == spec.max {
			return nil, fmt.Errorf("%s() takes %d argument(s), got %d", a.text, spec.min, len(a.args))
		}
		return nil, fmt.Errorf("%s() takes %d to %d arguments, got %d", a.text, spec.min, spec.max, len(a.args))
	}
	var target *op
	if a.kids[0] != nil {
		var err error
		if target, err = c.compile(a.kids[0]); err != nil {
			return nil, err
		}
	} else {
		target = c.newOp(opThis)
	}
	o := c.newOp(opCall)
	o.a, o.fn, o.name, o.result = target, spec, a.text, spec.result
	if spec.typeArg {
		if len(a.args) == 1 {
			ts, err := resolveType(a.args[0])
			if err != nil {
				return nil, fmt.Errorf("%s(): %w", a.text, err)
			}
			o.typ = ts
			if spec.id == fnOfType || spec.id == fnAs {
				o.result = ts.ft.result()
			}
		}
		return o, nil
	}
	for _, arg := range a.args {
		ao, err := c.compile(arg)
		if err != nil {
			return nil, err
		}
		o.args = append(o.args, ao)
	}
	switch spec.id {
	case fnFirst, fnLast, fnSingle, fnTail, fnSkip, fnTake, fnDistinct, fnWhere:
		o.result = target.result
	case fnSelect:
		o.result = o.args[0].result
	case fnIif:
		if len(o.args) == 3 && o.args[1].result == o.args[2].result {
			o.result = o.args[1].result
		} else if len(o.args) == 2 {
			o.result = o.args[1].result
		}
	case fnLowBoundary, fnHighBoundary:
		if target.result == resDecimal || target.result == resInt {
			o.result = resDecimal
		}
	case fnMatches:
		if a.args[0].kind == aString {
			re, err := regexp.Compile(a.args[0].text)
			if err != nil {
				return nil, fmt.Errorf("matches(): %w", err)
			}
			o.re = re
		}
	}
	return o, nil
}

func (t ftype) result() resultKind {
	switch {
	case t == tBoolean:
		return resBool
	case t.is(tInteger) || t == tInteger64:
		return resInt
	case t == tDecimal:
		return resDecimal
	case t.is(tString) || t.is(tURI):
		return resString
	}
	return resUnknown
}

// resolveType reads a type specifier: a FHIR type (string, Coding), a
// resource type (Patient), or a qualified name (FHIR.Coding, System.String).
func resolveType(a *ast) (typeSpec, error) {
	var name string
	switch {
	case a.kind == aIdent:
		name = a.text
	case a.kind == aInvoke && a.kids[0].kind == aIdent:
		name = a.kids[0].text + "." + a.text
	case a.kind == aString:
		name = a.text
	default:
		return typeSpec{}, fmt.Errorf("expected a type name, got %s", a)
	}
	if ns, local, ok := strings.Cut(name, "."); ok {
		switch ns {
		case "System":
			t := map[string]ftype{
				"Boolean": tBoolean, "String": tString, "Integer": tInteger, "Decimal": tDecimal,
				"Date": tDate, "DateTime": tDateTime, "Time": tTime, "Quantity": tQuantity,
			}[local]
			if t == tNone {
				return typeSpec{}, fmt.Errorf("unknown type %s", name)
			}
			return typeSpec{name: local, ft: t}, nil
		case "FHIR":
			name = local
		default:
			return typeSpec{}, fmt.Errorf("unknown type %s", name)
		}
	}
	if t := lookupType(name); t != tNone {
		return typeSpec{name: name, ft: t}, nil
	}
	if name != "" && name[0] >= 'A' && name[0] <= 'Z' {
		for i := 0; i < len(name); i++ {
			if !isIdentPart(name[i]) {
				return typeSpec{}, fmt.Errorf("unknown type %s", name)
			}
		}
		return typeSpec{name: name, resource: true}, nil
	}
	return typeSpec{}, fmt.Errorf("unknown type %s", name)
}
