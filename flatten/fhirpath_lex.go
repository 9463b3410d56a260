package flatten

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokKind is the kind of a FHIRPath token.
type tokKind uint8

const (
	tokEOF tokKind = iota
	tokIdent
	tokDelimIdent // `name`
	tokString
	tokNumber
	tokDate     // @2020-01-01, @2020-01-01T10:00
	tokTime     // @T10:00
	tokConstant // %name
	tokSpecial  // $this, $index, $total
	tokOp       // punctuation and symbolic operators
)

type token struct {
	kind tokKind
	text string // identifier, unquoted string, number text, date text, operator
	pos  int
}

// lex splits a FHIRPath expression into tokens.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at %d", i)
			}
			i += end + 4
		case isIdentStart(c):
			start := i
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{kind: tokIdent, text: src[start:i], pos: start})
		case c >= '0' && c <= '9':
			start := i
			for i < len(src) && src[i] >= '0' && src[i] <= '9' {
				i++
			}
			if i+1 < len(src) && src[i] == '.' && src[i+1] >= '0' && src[i+1] <= '9' {
				i++
				for i < len(src) && src[i] >= '0' && src[i] <= '9' {
					i++
				}
			}
			toks = append(toks, token{kind: tokNumber, text: src[start:i], pos: start})
		case c == '\'' || c == '`':
			s, n, err := unquote(src[i:], c)
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			k := tokString
			if c == '`' {
				k = tokDelimIdent
				if s == "" {
					return nil, fmt.Errorf("empty identifier at %d", i)
				}
			}
			toks = append(toks, token{kind: k, text: s, pos: i})
			i += n
		case c == '@':
			start := i
			i++
			for i < len(src) {
				c := src[i]
				if c == '.' && (i+1 >= len(src) || src[i+1] < '0' || src[i+1] > '9') {
					break // an invocation after the literal
				}
				if !isIdentPart(c) && strings.IndexByte("-:.+", c) < 0 {
					break
				}
				i++
			}
			text := src[start+1 : i]
			k := tokDate
			if strings.HasPrefix(text, "T") {
				k, text = tokTime, text[1:]
				if _, ok := parseTime(text); !ok {
					return nil, fmt.Errorf("invalid time literal %q at %d", src[start:i], start)
				}
			} else if _, ok := parseDateTime(text); !ok {
				return nil, fmt.Errorf("invalid date literal %q at %d", src[start:i], start)
			}
			toks = append(toks, token{kind: k, text: text, pos: start})
		case c == '%':
			start := i
			i++
			var name string
			switch {
			case i < len(src) && (src[i] == '`' || src[i] == '\''):
				s, n, err := unquote(src[i:], src[i])
				if err != nil {
					return nil, fmt.Errorf("at %d: %w", i, err)
				}
				name, i = s, i+n
			case i < len(src) && isIdentStart(src[i]):
				s := i
				for i < len(src) && isIdentPart(src[i]) {
					i++
				}
				name = src[s:i]
			default:
				return nil, fmt.Errorf("expected a constant name after %% at %d", start)
			}
			toks = append(toks, token{kind: tokConstant, text: name, pos: start})
		case c == '$':
			start := i
			i++
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			switch name := src[start:i]; name {
			case "$this", "$index", "$total":
				toks = append(toks, token{kind: tokSpecial, text: name, pos: start})
			default:
				return nil, fmt.Errorf("unknown variable %q at %d", name, start)
			}
		default:
			op := ""
			for _, cand := range []string{"!=", "!~", "<=", ">=", "=", "~", "<", ">", "+", "-", "*", "/", "|", "&", "(", ")", "[", "]", "{", "}", ".", ","} {
				if strings.HasPrefix(src[i:], cand) {
					op = cand
					break
				}
			}
			if op == "" {
				r, _ := utf8.DecodeRuneInString(src[i:])
				return nil, fmt.Errorf("unexpected character %q at %d", r, i)
			}
			toks = append(toks, token{kind: tokOp, text: op, pos: i})
			i += len(op)
		}
	}
	toks = append(toks, token{kind: tokEOF, pos: len(src)})
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// unquote reads a quoted string or delimited identifier starting at s[0]
// and returns its value and the bytes consumed.
func unquote(s string, q byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == q {
			return b.String(), i + 1, nil
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			break
		}
		switch e := s[i]; e {
		case '\'', '"', '`', '\\', '/':
			b.WriteByte(e)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+5 > len(s) {
				return "", 0, fmt.Errorf("invalid \\u escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
			if err != nil {
				return "", 0, fmt.Errorf("invalid \\u escape")
			}
			b.WriteRune(rune(v))
			i += 4
		default:
			return "", 0, fmt.Errorf("invalid escape \\%c", e)
		}
	}
	return "", 0, fmt.Errorf("unterminated %c-quoted text", q)
}
