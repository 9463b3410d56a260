package flatten

import (
	"math/bits"
	"strings"
	"testing"
)

func TestParseJSON(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"ok", `{"resourceType":"Patient","a":[1,-2.5e3,true,false,null,"x\n\u00e9"]}`, ""},
		{"not an object", `[1]`, "not a JSON object"},
		{"no resourceType", `{"id":"x"}`, "missing resourceType"},
		{"trailing", `{"resourceType":"P"} x`, "after the document"},
		{"bad number", `{"resourceType":"P","n":01}`, "expected ','"},
		{"bad escape", `{"resourceType":"P","s":"\q"}`, "invalid escape"},
		{"control char", "{\"resourceType\":\"P\",\"s\":\"a\x01\"}", "control character"},
		{"bad utf8", "{\"resourceType\":\"P\",\"s\":\"\xff\"}", "invalid UTF-8"},
		{"unterminated", `{"resourceType":"P","s":"abc`, "unterminated string"},
		{"deep", `{"resourceType":"P","a":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, "nesting deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseJSONStrings(t *testing.T) {
	r, err := Parse([]byte(`{"resourceType":"Patient","id":"a\"b\\c\/d\u00e9\ud83d\ude00 plain text long enough for eight"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.ID(), "a\"b\\c/dé😀 plain text long enough for eight"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := r.ResourceType(); got != "Patient" {
		t.Errorf("got type %q, want Patient", got)
	}
}

func TestDecimal(t *testing.T) {
	cmp := []struct {
		a, b string
		want int
	}{
		{"1.0", "1", 0},
		{"1.10", "1.1", 0},
		{"-2", "1.5", -1},
		{"1e3", "999.99", 1},
		{"123456789012345678901234567890", "123456789012345678901234567891", -1},
		{"-0.0", "0", 0},
	}
	for _, tc := range cmp {
		t.Run(tc.a+" vs "+tc.b, func(t *testing.T) {
			got, ok := compareDec(tc.a, tc.b)
			if !ok || got != tc.want {
				t.Errorf("got %d %v, want %d", got, ok, tc.want)
			}
		})
	}
	bounds := []struct {
		in, low, high string
	}{
		{"1.0", "0.95", "1.05"},
		{"1", "0.5", "1.5"},
		{"-1.0", "-1.05", "-0.95"},
		{"1.587", "1.5865", "1.5875"},
	}
	for _, tc := range bounds {
		t.Run("boundary "+tc.in, func(t *testing.T) {
			low, _ := decBoundary(tc.in, false)
			high, _ := decBoundary(tc.in, true)
			if low != tc.low || high != tc.high {
				t.Errorf("got [%s, %s], want [%s, %s]", low, high, tc.low, tc.high)
			}
		})
	}
	arith := []struct {
		op   byte
		a, b string
		want string
	}{
		{'+', "1.5", "2", "3.5"},
		{'-', "2", "0.25", "1.75"},
		{'*', "1.5", "1.5", "2.25"},
		{'/', "3", "2", "1.5"},
		{'/', "1", "3", "0.33333333"},
	}
	for _, tc := range arith {
		t.Run(tc.a+string(tc.op)+tc.b, func(t *testing.T) {
			if got, _ := decArith(tc.op, tc.a, tc.b); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	for _, s := range []string{"1e999999999", "1e-999999999"} {
		if _, ok := ratOf(s); ok {
			t.Errorf("ratOf(%s): got ok, want refused", s)
		}
	}
	if n, ok := decimal128Of("1.5"); !ok || n.ToString(decimalScale) != "1.500000000000000000" {
		t.Errorf("decimal128Of(1.5): got %v %v", n.ToString(decimalScale), ok)
	}
	if _, ok := decimal128Of("1e30"); ok {
		t.Error("decimal128Of(1e30): got ok, want overflow")
	}
}

func TestDateTime(t *testing.T) {
	tests := []struct {
		in        string
		low, high string
		dateTime  bool
	}{
		{"2020", "2020-01-01", "2020-12-31", false},
		{"2020-02", "2020-02-01", "2020-02-29", false},
		{"2010-10-10", "2010-10-10T00:00:00.000+14:00", "2010-10-10T23:59:59.999-12:00", true},
		{"2010-10-10T10:00:00Z", "2010-10-10T10:00:00.000Z", "2010-10-10T10:00:00.999Z", true},
		{"2015-02-07T13:28:17.239+02:00", "2015-02-07T13:28:17.239+02:00", "2015-02-07T13:28:17.239+02:00", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d, ok := parseDateTime(tc.in)
			if !ok {
				t.Fatal("parse failed")
			}
			if got := d.boundary(false, tc.dateTime).format(); got != tc.low {
				t.Errorf("low: got %s, want %s", got, tc.low)
			}
			if got := d.boundary(true, tc.dateTime).format(); got != tc.high {
				t.Errorf("high: got %s, want %s", got, tc.high)
			}
		})
	}
	for _, bad := range []string{"20", "2020-13", "2020-02-30", "2020-01-01T25:00", "2020-01-01T10:00+2", "2020-01-01X"} {
		if _, ok := parseDateTime(bad); ok {
			t.Errorf("parseDateTime(%q): got ok, want refused", bad)
		}
	}
	cmp := []struct {
		a, b string
		want int
		ok   bool
	}{
		{"2020-01-01T10:00:00+02:00", "2020-01-01T08:00:00Z", 0, true},
		{"2020", "2020-01", 0, false},
		{"2019", "2020-01", -1, true},
		{"2020-01-02", "2020-01-01", 1, true},
	}
	for _, tc := range cmp {
		t.Run(tc.a+" vs "+tc.b, func(t *testing.T) {
			a, _ := parseDateTime(tc.a)
			b, _ := parseDateTime(tc.b)
			got, ok := compareDtm(a, b)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if d, _ := parseDateTime("1970-01-02T00:00:00+01:00"); d.epochMicros() != 23*3600*1e6 {
		t.Errorf("epochMicros: got %d", d.epochMicros())
	}
	if d, _ := parseTime("12:34:56.5"); d.dayMicros() != (12*3600+34*60+56)*1e6+500000 {
		t.Errorf("dayMicros: got %d", d.dayMicros())
	}
}

func TestSwarSpecial(t *testing.T) {
	special := func(c int) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	word := func(b []byte) uint64 {
		x := uint64(0)
		for i := 7; i >= 0; i-- {
			x = x<<8 | uint64(b[i])
		}
		return x
	}
	// The lowest flag must mark the first special byte, whatever follows:
	// every pair of bytes at every pair of positions.
	for c1 := 0; c1 < 256; c1++ {
		for c2 := 0; c2 < 256; c2++ {
			for p1 := 0; p1 < 8; p1++ {
				for p2 := p1 + 1; p2 < 8; p2++ {
					b := []byte("abcdefgh")
					b[p1], b[p2] = byte(c1), byte(c2)
					first := 8
					if special(c1) {
						first = p1
					} else if special(c2) {
						first = p2
					}
					m := swarSpecial(word(b))
					got := 8
					if m != 0 {
						got = bits.TrailingZeros64(m) >> 3
					}
					if got != first {
						t.Fatalf("bytes %#x at %d, %#x at %d: got first special at %d, want %d", c1, p1, c2, p2, got, first)
					}
				}
			}
		}
	}
}
