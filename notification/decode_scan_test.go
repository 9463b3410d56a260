package notification

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestScannerAgreesWithEncodingJSON checks the scanner's idea of valid JSON
// against encoding/json on the corners of the grammar.
func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	for _, doc := range []string{
		`0`, `-0`, `-`, `01`, `1.`, `.5`, `1.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`, `+1`, `0x10`, `1_000`,
		`true`, `false`, `null`, `tru`, `nul`, `True`, `NaN`, `Infinity`,
		`""`, `"a"`, `"\""`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\u00e9"`, `"\u00E9"`, `"\ud83d\ude00"`, `"\ud800"`,
		`"\u12"`, `"\u12g4"`, `"\x41"`, `"\'"`, "\"a\tb\"", "\"a\nb\"", "\"a\x7fb\"", `"abc`, `"`, `"\`,
		`[]`, `[1]`, `[1,]`, `[,1]`, `[1 2]`, `[[[]]]`, `[`, `]`,
		`{}`, `{"a":1}`, `{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":}`, `{a:1}`, `{'a':1}`, `{"a":1 "b":2}`, `{"a":1}}`, `{1:2}`,
		" \t\n\r{ \"a\" : [ 1 , 2 ] } \n", "{}\x00", `{} {}`, ``, ` `,
		`{"a":"` + strings.Repeat("x", 100) + `\"` + strings.Repeat("y", 13) + `"}`,
		`{"a":"0123456789abcdef\u0041","b":"` + strings.Repeat("é", 20) + `"}`,
	} {
		s := newScanner([]byte(doc))
		err := s.skip()
		if err == nil {
			err = s.end()
		}
		if got, want := err == nil, json.Valid([]byte(doc)); got != want {
			t.Errorf("%q: scanner says valid=%v (%v), encoding/json says %v", doc, got, err, want)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`plain`, "plain"},
		{`a\"b\\c\/d`, `a"b\c/d`},
		{`\b\f\n\r\t`, "\b\f\n\r\t"},
		{`\u00e9\u00E9`, "éé"},
		{`\ud83d\ude00`, "😀"},
		{`\ud800x`, "\ufffdx"},
		{`\ud800\u0041`, "\ufffdA"},
		{`\ude00`, "\ufffd"},
	} {
		var want string
		if err := json.Unmarshal([]byte(`"`+tc.in+`"`), &want); err != nil || want != tc.want {
			t.Fatalf("%q: encoding/json gives %q, %v; the table says %q", tc.in, want, err, tc.want)
		}
		if got := string(unescape(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("unescape(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}
