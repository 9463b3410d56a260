package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"fhirlake/query"
)

// maxParams bounds the parameters of one statement.
const maxParams = 1000

// parseParams turns the request's "params" into the values bound to the
// statement's parameters, in order: a JSON number is a BIGINT when it is
// a whole number that fits, else a DOUBLE; a string is a VARCHAR, which
// DuckDB casts to the parameter's type (a date, a timestamp, a decimal);
// true and false, and null. Arrays and objects are refused.
func parseParams(raw []json.RawMessage) ([]any, error) {
	if len(raw) > maxParams {
		return nil, fmt.Errorf("params: %d values, at most %d", len(raw), maxParams)
	}
	out := make([]any, len(raw))
	for i, m := range raw {
		dec := json.NewDecoder(bytes.NewReader(m))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("params[%d]: %w", i, err)
		}
		switch x := v.(type) {
		case nil, string, bool:
			out[i] = x
		case json.Number:
			if n, err := x.Int64(); err == nil {
				out[i] = n
			} else if f, err := x.Float64(); err == nil {
				out[i] = f
			} else {
				return nil, fmt.Errorf("params[%d]: %s is not a number DuckDB can bind", i, x)
			}
		default:
			return nil, fmt.Errorf("params[%d]: want a number, a string, true, false or null", i)
		}
	}
	return out, nil
}

// parameters serves POST /v1/tenants/{tenant}/parameters: the statement
// of the body ({"sql": …}) checked like a query and its parameters listed,
// without running it.
func (s *Server) parameters(w http.ResponseWriter, r *http.Request, tenant string) int {
	q, _, status, msg := s.readSQL(w, r)
	if status != 0 {
		s.fail(w, r, status, "bad_request", msg, nil)
		return 0
	}
	sess, release, ok := s.acquire(w, r, tenant)
	if !ok {
		return 0
	}
	defer release()
	params, err := sess.Parameters(r.Context(), q)
	if err != nil {
		s.queryFailed(w, r, tenant, q, err)
		return 0
	}
	if params == nil {
		params = []query.Parameter{}
	}
	writeJSON(w, map[string]any{"parameters": params})
	return 0
}
