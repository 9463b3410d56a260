package flatten

import (
	"fmt"
	"strings"
)

// astKind is the kind of a FHIRPath syntax tree node.
type astKind uint8

const (
	aBool astKind = iota + 1
	aString
	aNumber
	aDate
	aTime
	aEmpty   // {}
	aIdent   // member access on the focus: name
	aSpecial // $this, $index, $total
	aConst   // %name
	aInvoke  // kids[0].name
	aCall    // [kids[0].]name(args…); kids[0] is nil for a call on the focus
	aIndex   // kids[0][kids[1]]
	aBinary  // kids[0] op kids[1]
	aUnary   // op kids[0]
	aTypeOp  // kids[0] is/as typeName
)

// ast is a node of a parsed FHIRPath expression.
type ast struct {
	kind astKind
	text string // identifier, literal text, operator, function or type name
	kids []*ast
	args []*ast
	pos  int
}

// maxExprDepth bounds the nesting of an expression.
const maxExprDepth = 200

type pathParser struct {
	toks  []token
	i     int
	depth int
}

// parseFHIRPath parses a FHIRPath expression into a syntax tree.
func parseFHIRPath(src string) (*ast, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &pathParser{toks: toks}
	if p.peek().kind == tokEOF {
		return nil, fmt.Errorf("empty expression")
	}
	e, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, fmt.Errorf("unexpected %q at %d", t.text, t.pos)
	}
	return e, nil
}

func (p *pathParser) peek() token { return p.toks[p.i] }

func (p *pathParser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *pathParser) isOp(text string) bool {
	t := p.peek()
	return t.kind == tokOp && t.text == text
}

func (p *pathParser) expect(text string) error {
	t := p.next()
	if t.kind != tokOp || t.text != text {
		if t.kind == tokEOF {
			return fmt.Errorf("expected %q at end of expression", text)
		}
		return fmt.Errorf("expected %q at %d, found %q", text, t.pos, t.text)
	}
	return nil
}

// binaryPrec returns the precedence of the binary operator at the current
// token, or 0 when there is none. Higher binds tighter.
func (p *pathParser) binaryPrec() (string, int) {
	t := p.peek()
	switch t.kind {
	case tokOp:
		switch t.text {
		case "*", "/":
			return t.text, 9
		case "+", "-", "&":
			return t.text, 8
		case "|":
			return t.text, 6
		case "<", ">", "<=", ">=":
			return t.text, 5
		case "=", "~", "!=", "!~":
			return t.text, 4
		}
	case tokIdent:
		switch t.text {
		case "div", "mod":
			return t.text, 9
		case "is", "as":
			return t.text, 7
		case "in", "contains":
			return t.text, 3
		case "and":
			return t.text, 2
		case "or", "xor":
			return t.text, 1
		case "implies":
			return t.text, 0
		}
	}
	return "", -1
}

func (p *pathParser) expr(minPrec int) (*ast, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		return nil, fmt.Errorf("expression nested deeper than %d", maxExprDepth)
	}
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		op, prec := p.binaryPrec()
		if prec < minPrec || op == "" {
			return left, nil
		}
		t := p.next()
		if op == "is" || op == "as" {
			name, err := p.typeName()
			if err != nil {
				return nil, err
			}
			left = &ast{kind: aTypeOp, text: op, kids: []*ast{left}, args: []*ast{{kind: aIdent, text: name, pos: t.pos}}, pos: t.pos}
			continue
		}
		right, err := p.expr(prec + 1)
		if err != nil {
			return nil, err
		}
		left = &ast{kind: aBinary, text: op, kids: []*ast{left, right}, pos: t.pos}
	}
}

// typeName reads a possibly qualified type name (FHIR.Coding, System.String).
func (p *pathParser) typeName() (string, error) {
	t := p.next()
	if t.kind != tokIdent && t.kind != tokDelimIdent {
		return "", fmt.Errorf("expected a type name at %d", t.pos)
	}
	name := t.text
	if p.isOp(".") && p.toks[p.i+1].kind == tokIdent {
		p.next()
		name += "." + p.next().text
	}
	return name, nil
}

func (p *pathParser) unary() (*ast, error) {
	if p.isOp("+") || p.isOp("-") {
		t := p.next()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxExprDepth {
			return nil, fmt.Errorf("expression nested deeper than %d", maxExprDepth)
		}
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return e, nil
		}
		return &ast{kind: aUnary, text: "-", kids: []*ast{e}, pos: t.pos}, nil
	}
	return p.postfix()
}

func (p *pathParser) postfix() (*ast, error) {
	e, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("."):
			p.next()
			t := p.next()
			if t.kind != tokIdent && t.kind != tokDelimIdent {
				return nil, fmt.Errorf("expected a name after '.' at %d", t.pos)
			}
			if t.kind == tokIdent && p.isOp("(") {
				args, err := p.args()
				if err != nil {
					return nil, err
				}
				e = &ast{kind: aCall, text: t.text, kids: []*ast{e}, args: args, pos: t.pos}
				continue
			}
			e = &ast{kind: aInvoke, text: t.text, kids: []*ast{e}, pos: t.pos}
		case p.isOp("["):
			t := p.next()
			idx, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			e = &ast{kind: aIndex, kids: []*ast{e, idx}, pos: t.pos}
		default:
			return e, nil
		}
	}
}

func (p *pathParser) args() ([]*ast, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	var args []*ast
	if p.isOp(")") {
		p.next()
		return args, nil
	}
	for {
		a, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if p.isOp(",") {
			p.next()
			continue
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return args, nil
	}
}

func (p *pathParser) term() (*ast, error) {
	t := p.next()
	switch t.kind {
	case tokString:
		return &ast{kind: aString, text: t.text, pos: t.pos}, nil
	case tokNumber:
		return &ast{kind: aNumber, text: t.text, pos: t.pos}, nil
	case tokDate:
		return &ast{kind: aDate, text: t.text, pos: t.pos}, nil
	case tokTime:
		return &ast{kind: aTime, text: t.text, pos: t.pos}, nil
	case tokConstant:
		return &ast{kind: aConst, text: t.text, pos: t.pos}, nil
	case tokSpecial:
		return &ast{kind: aSpecial, text: t.text, pos: t.pos}, nil
	case tokDelimIdent:
		return &ast{kind: aIdent, text: t.text, pos: t.pos}, nil
	case tokIdent:
		if p.isOp("(") {
			args, err := p.args()
			if err != nil {
				return nil, err
			}
			return &ast{kind: aCall, text: t.text, kids: []*ast{nil}, args: args, pos: t.pos}, nil
		}
		if t.text == "true" || t.text == "false" {
			return &ast{kind: aBool, text: t.text, pos: t.pos}, nil
		}
		return &ast{kind: aIdent, text: t.text, pos: t.pos}, nil
	case tokOp:
		switch t.text {
		case "(":
			e, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			return e, p.expect(")")
		case "{":
			return &ast{kind: aEmpty, pos: t.pos}, p.expect("}")
		}
	case tokEOF:
		return nil, fmt.Errorf("unexpected end of expression")
	}
	return nil, fmt.Errorf("unexpected %q at %d", t.text, t.pos)
}

// String renders the tree back as FHIRPath, for error messages and tests.
func (a *ast) String() string {
	var b strings.Builder
	a.write(&b)
	return b.String()
}

func (a *ast) write(b *strings.Builder) {
	if a == nil {
		return
	}
	switch a.kind {
	case aString:
		fmt.Fprintf(b, "'%s'", strings.ReplaceAll(a.text, "'", `\'`))
	case aDate, aTime:
		b.WriteString("@")
		if a.kind == aTime {
			b.WriteString("T")
		}
		b.WriteString(a.text)
	case aConst:
		b.WriteString("%" + a.text)
	case aEmpty:
		b.WriteString("{}")
	case aInvoke:
		a.kids[0].write(b)
		b.WriteString("." + a.text)
	case aCall:
		if a.kids[0] != nil {
			a.kids[0].write(b)
			b.WriteString(".")
		}
		b.WriteString(a.text + "(")
		for i, arg := range a.args {
			if i > 0 {
				b.WriteString(", ")
			}
			arg.write(b)
		}
		b.WriteString(")")
	case aIndex:
		a.kids[0].write(b)
		b.WriteString("[")
		a.kids[1].write(b)
		b.WriteString("]")
	case aBinary:
		b.WriteString("(")
		a.kids[0].write(b)
		b.WriteString(" " + a.text + " ")
		a.kids[1].write(b)
		b.WriteString(")")
	case aUnary:
		b.WriteString("-")
		a.kids[0].write(b)
	case aTypeOp:
		b.WriteString("(")
		a.kids[0].write(b)
		b.WriteString(" " + a.text + " " + a.args[0].text + ")")
	default:
		b.WriteString(a.text)
	}
}
