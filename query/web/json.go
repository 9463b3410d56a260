package web

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"net/http"
	"strconv"

	"fhirlake/query"
)

// column is one column of a JSON result. Name is its key in the rows;
// SQLName, set only when the two differ, is the name the query gave it.
type column struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	SQLName string `json:"sql_name,omitempty"`
}

// uniqueNames are the keys of a result's columns in its JSON rows: each
// column's own name, except that a name an earlier column has already
// taken gets the first suffix _2, _3, … that no column of the result is
// named, so that no column is lost and the same query always gets the
// same keys (SELECT 1 AS a, 2 AS a: a and a_2).
func uniqueNames(names []string) []string {
	taken := make(map[string]bool, len(names))
	for _, n := range names {
		taken[n] = true
	}
	used := make(map[string]bool, len(names))
	out := make([]string, len(names))
	for i, n := range names {
		if !used[n] {
			used[n], out[i] = true, n
			continue
		}
		for k := 2; ; k++ {
			c := n + "_" + strconv.Itoa(k)
			if !taken[c] {
				taken[c], out[i] = true, c
				break
			}
		}
	}
	return out
}

// queryJSON streams the result as one JSON document:
//
//	{"columns": [{"name", "type"}…], "rows": [{column: value…}…],
//	 "row_count": n, "truncated": false}
//
// Each row is an object whose keys are the columns' names (see
// uniqueNames), in the columns' order. An error before the first row is a
// JSON error response; one after it ends the document with "error".
func (s *Server) queryJSON(w http.ResponseWriter, r *http.Request, sess *query.Session, tenant, q string, args []any) int {
	n := 0
	started := false
	var bw *bufio.Writer
	err := sess.Run(r.Context(), q, func(rows *sql.Rows) error {
		types, err := rows.ColumnTypes()
		if err != nil {
			return err
		}
		names := make([]string, len(types))
		for i, t := range types {
			names[i] = t.Name()
		}
		keys := uniqueNames(names)
		cols := make([]column, len(types))
		// keyJSON[i] is `"key":`, the start of column i in every row.
		keyJSON := make([][]byte, len(types))
		for i, t := range types {
			cols[i] = column{Name: keys[i], Type: t.DatabaseTypeName()}
			if keys[i] != names[i] {
				cols[i].SQLName = names[i]
			}
			b, _ := json.Marshal(keys[i])
			keyJSON[i] = append(b, ':')
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
		var row []byte
		var sent int64
		for rows.Next() {
			if n >= s.opts.MaxResultRows || sent >= s.opts.MaxResultBytes {
				truncated = true
				break
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			row = append(row[:0], '{')
			for i, v := range vals {
				if i > 0 {
					row = append(row, ',')
				}
				b, err := json.Marshal(query.JSONValue(v))
				if err != nil {
					return err
				}
				row = append(append(row, keyJSON[i]...), b...)
			}
			row = append(row, '}')
			if n > 0 {
				_ = bw.WriteByte(',')
			}
			_, _ = bw.Write(row)
			sent += int64(len(row)) + 1
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
	}, args...)
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
