package web

import (
	"net/http"
	"strings"
	"testing"

	"fhirlake/query"
)

// A statement's parameters take the values of "params", bound as data.
func TestQueryParams(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	for _, tc := range []struct {
		body, want string
		status     int
	}{
		{`{"sql": "SELECT count(*) AS n FROM patient WHERE id = ?", "params": ["a1"]}`, `"n":1`, 200},
		{`{"sql": "SELECT count(*) AS n FROM patient WHERE id = ?", "params": ["a1' OR '1'='1"]}`, `"n":0`, 200},
		{`{"sql": "SELECT ? + 1 AS n, ? AS b, ? AS z", "params": [41, true, null]}`, `"n":42,"b":true,"z":null`, 200},
		{`{"sql": "SELECT ? AS n", "params": [{"x": 1}]}`, `params[0]: want a number`, 400},
		{`{"sql": "SELECT ? AS n"}`, ``, 400},
	} {
		resp, b := f.do(t, "POST", "/v1/tenants/acme/query", acmeKey, strings.NewReader(tc.body), "Content-Type", "application/json")
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s, want %d with %s", tc.body, resp.StatusCode, b, tc.status, tc.want)
		}
	}
}

// The parameters route types a statement's parameters without running it,
// after the statement check.
func TestParametersRoute(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	resp, b := f.do(t, "POST", "/v1/tenants/acme/parameters", acmeKey,
		strings.NewReader(`{"sql": "SELECT count(*) FROM patient WHERE id = ? AND \"offset\" < $2"}`), "Content-Type", "application/json")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"type": "VARCHAR"`) || !strings.Contains(string(b), `"type": "BIGINT"`) {
		t.Errorf("parameters: %d %s", resp.StatusCode, b)
	}
	resp, b = f.do(t, "POST", "/v1/tenants/acme/parameters", acmeKey,
		strings.NewReader(`{"sql": "SELECT * FROM read_csv(?)"}`), "Content-Type", "application/json")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "statement_refused") {
		t.Errorf("parameters of a refused statement: %d %s", resp.StatusCode, b)
	}
	resp, _ = f.do(t, "POST", "/v1/tenants/acme/parameters", globexKey, strings.NewReader(`{"sql": "SELECT 1"}`), "Content-Type", "application/json")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("another tenant's key: %d", resp.StatusCode)
	}
}
