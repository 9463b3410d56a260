package web

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"net/http"

	"fhirlake/query"
)

// queryJSON streams the result as one JSON document:
//
//	{"columns": [{"name", "type"}…], "rows": [{column: value…}…],
//	 "row_count": n, "truncated": false}
//
// An error before the first row is a JSON error response; one after it
// ends the document with "error".
func (s *Server) queryJSON(w http.ResponseWriter, r *http.Request, sess *query.Session, tenant, q string) int {
	n := 0
	started := false
	var bw *bufio.Writer
	err := sess.Run(r.Context(), q, func(rows *sql.Rows) error {
		types, err := rows.ColumnTypes()
		if err != nil {
			return err
		}
		cols := make([]map[string]string, len(types))
		names := make([]string, len(types))
		for i, t := range types {
			names[i] = t.Name()
			cols[i] = map[string]string{"name": t.Name(), "type": t.DatabaseTypeName()}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		started = true
		// A bufio.Writer keeps its first write error and returns it from
		// every later write and from Flush, so the writes below leave it to
		// the Flush at the end.
		bw = bufio.NewWriterSize(w, 64<<10)
		head, _ := json.Marshal(cols)
		_, _ = bw.WriteString(`{"columns":`)
		_, _ = bw.Write(head)
		_, _ = bw.WriteString(`,"rows":[`)
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		truncated := false
		for rows.Next() {
			if n >= s.opts.MaxResultRows {
				truncated = true
				break
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			obj := make(map[string]any, len(names))
			for i, c := range names {
				obj[c] = query.JSONValue(vals[i])
			}
			b, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			if n > 0 {
				_ = bw.WriteByte(',')
			}
			_, _ = bw.Write(b)
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		tail, _ := json.Marshal(map[string]any{"row_count": n, "truncated": truncated})
		_, _ = bw.WriteString(`],`)
		_, _ = bw.Write(tail[1:])
		_ = bw.WriteByte('\n')
		return bw.Flush()
	})
	if err == nil {
		return n
	}
	if !started {
		s.queryFailed(w, r, tenant, q, err)
		return 0
	}
	b, _ := json.Marshal(s.failedMidStream(r, tenant, q, n, err))
	// The query's error is the one logged; if the tail that reports it
	// cannot be written either, the client has gone and there is no one
	// left to tell.
	_, _ = bw.WriteString(`],"row_count":`)
	_ = json.NewEncoder(bw).Encode(n)
	_, _ = bw.WriteString(`,"error":`)
	_, _ = bw.Write(b)
	_, _ = bw.WriteString("}\n")
	_ = bw.Flush()
	return n
}
