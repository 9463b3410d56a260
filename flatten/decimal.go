package flatten

import (
	"math/big"
	"math/bits"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// Decimals are carried as their written text through evaluation, so that
// the precision of the source (1.0 versus 1.00) survives: FHIRPath's
// boundary functions depend on it. Comparisons take a fast path over an
// int64 coefficient; arithmetic, rare in views, goes through math/big.

// decimalScale is the scale of Arrow decimal columns: 18 fractional digits,
// the precision FHIR asks implementations to keep, leaving 20 integer digits
// within decimal128's 38.
const decimalScale = 18

// maxExponent bounds the exponent of decimal text the evaluator computes
// with; beyond it a number is kept as text only.
const maxExponent = 10000

// dec is a decimal split into sign, coefficient and scale
// (value = ±coef × 10^-scale). wide is set when the coefficient does not fit
// in 64 bits; such values take the math/big path.
type dec struct {
	neg   bool
	coef  uint64
	scale int32
	wide  bool
}

// parseDec parses decimal text in JSON number syntax (an exponent is allowed).
func parseDec(s string) (dec, bool) {
	var d dec
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		d.neg = s[i] == '-'
		i++
	}
	digits, frac := 0, false
	for ; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if frac {
				return dec{}, false
			}
			frac = true
			continue
		}
		if c < '0' || c > '9' {
			break
		}
		digits++
		if frac {
			d.scale++
		}
		hi, lo := bits.Mul64(d.coef, 10)
		lo, carry := bits.Add64(lo, uint64(c-'0'), 0)
		if hi != 0 || carry != 0 {
			d.wide = true
		}
		d.coef = lo
	}
	if digits == 0 {
		return dec{}, false
	}
	if i < len(s) {
		if s[i] != 'e' && s[i] != 'E' {
			return dec{}, false
		}
		exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || exp > maxExponent || exp < -maxExponent {
			return dec{}, false
		}
		d.scale -= int32(exp)
		for d.scale < 0 && !d.wide {
			hi, lo := bits.Mul64(d.coef, 10)
			d.wide = hi != 0
			d.coef = lo
			d.scale++
		}
	}
	return d, true
}

// validDec reports whether s is decimal text.
func validDec(s string) bool {
	_, ok := parseDec(s)
	return ok
}

// ratOf converts decimal text to a rational. parseDec's bound on the
// exponent keeps hostile input like 1e999999999 from allocating without
// limit.
func ratOf(s string) (*big.Rat, bool) {
	if _, ok := parseDec(s); !ok {
		return nil, false
	}
	return new(big.Rat).SetString(s)
}

// compareDec compares two decimal texts by value.
func compareDec(a, b string) (int, bool) {
	x, ok1 := parseDec(a)
	y, ok2 := parseDec(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	if !x.wide && !y.wide && x.scale >= 0 && y.scale >= 0 {
		xc, yc := x.coef, y.coef
		ok := true
		for s := x.scale; s < y.scale && ok; s++ {
			hi, lo := bits.Mul64(xc, 10)
			xc, ok = lo, hi == 0
		}
		for s := y.scale; s < x.scale && ok; s++ {
			hi, lo := bits.Mul64(yc, 10)
			yc, ok = lo, hi == 0
		}
		if ok {
			if xc == 0 && yc == 0 {
				return 0, true
			}
			switch {
			case x.neg && !y.neg:
				return -1, true
			case !x.neg && y.neg:
				return 1, true
			}
			c := 0
			if xc < yc {
				c = -1
			} else if xc > yc {
				c = 1
			}
			if x.neg {
				c = -c
			}
			return c, true
		}
	}
	ra, ok1 := ratOf(a)
	rb, ok2 := ratOf(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return ra.Cmp(rb), true
}

// decScaleOf returns the number of fractional digits written in s.
func decScaleOf(s string) int {
	d, ok := parseDec(s)
	if !ok || d.scale < 0 {
		return 0
	}
	return int(d.scale)
}

// decArith applies + - * / to two decimal texts. Sums and products keep
// the exact result; a quotient keeps up to 8 fractional digits, trimmed.
func decArith(op byte, a, b string) (string, bool) {
	ra, ok1 := ratOf(a)
	rb, ok2 := ratOf(b)
	if !ok1 || !ok2 {
		return "", false
	}
	r := new(big.Rat)
	var scale int
	switch op {
	case '+':
		r.Add(ra, rb)
		scale = max(decScaleOf(a), decScaleOf(b))
	case '-':
		r.Sub(ra, rb)
		scale = max(decScaleOf(a), decScaleOf(b))
	case '*':
		r.Mul(ra, rb)
		scale = decScaleOf(a) + decScaleOf(b)
	case '/':
		if rb.Sign() == 0 {
			return "", false
		}
		r.Quo(ra, rb)
		return trimDec(r.FloatString(8)), true
	default:
		return "", false
	}
	return r.FloatString(scale), true
}

func trimDec(s string) string {
	if strings.IndexByte(s, '.') < 0 {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// decBoundary returns the low or high boundary of a decimal given the
// precision it was written with: 1.0 spans [0.95, 1.05).
func decBoundary(s string, high bool) (string, bool) {
	r, ok := ratOf(s)
	if !ok {
		return "", false
	}
	scale := decScaleOf(s)
	half := new(big.Rat).SetFrac(big.NewInt(5), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale+1)), nil))
	if high {
		r.Add(r, half)
	} else {
		r.Sub(r, half)
	}
	return r.FloatString(scale + 1), true
}

// decimal128Of converts decimal text to a decimal128 at decimalScale. Digits
// beyond the scale are rounded half away from zero.
func decimal128Of(s string) (decimal128.Num, bool) {
	d, ok := parseDec(s)
	if !ok {
		return decimal128.Num{}, false
	}
	if !d.wide && d.scale >= 0 && d.scale <= decimalScale {
		n := decimal128.FromU64(d.coef).Mul(decimal128.FromU64(pow10(decimalScale - d.scale)))
		if d.neg {
			n = n.Negate()
		}
		return n, true
	}
	r, ok := ratOf(s)
	if !ok {
		return decimal128.Num{}, false
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(decimalScale), nil)))
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() != 0 && new(big.Int).Mul(new(big.Int).Abs(m), big.NewInt(2)).Cmp(r.Denom()) >= 0 {
		if r.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	if q.BitLen() > 126 {
		return decimal128.Num{}, false
	}
	n := decimal128.FromBigInt(q)
	if !n.FitsInPrecision(38) {
		return decimal128.Num{}, false
	}
	return n, true
}

func pow10(n int32) uint64 {
	p := uint64(1)
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}
