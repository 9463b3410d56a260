package query

import (
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats accepted by Session.Export. Write renders the first three from
// rows; arrow (an Arrow IPC stream) and parquet (one Parquet file) need the
// result's Arrow schema, so only Export writes them.
var Formats = []string{"table", "csv", "json", "arrow", "parquet"}

func validFormat(f string) bool { return f == "" || slices.Contains(Formats, f) }

// Write renders rows as an aligned table, CSV with a header, or JSON lines
// (one object per row). It returns the number of rows written.
func Write(w io.Writer, rows *sql.Rows, format string) (int, error) {
	n, _, err := write(w, rows, format, ExportOptions{})
	return n, err
}

// write renders at most o.MaxRows rows and about o.MaxBytes bytes (0: no
// limit) and reports whether rows were left out.
func write(w io.Writer, rows *sql.Rows, format string, o ExportOptions) (int, bool, error) {
	cols, err := rows.Columns()
	if err != nil {
		return 0, false, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var emit func([]any) error
	var finish func() error
	// sent counts the bytes written below the encoders, held is what the
	// table's tabwriter keeps until it flushes.
	sent := &countingWriter{w: w}
	var held int64
	switch format {
	case "table", "":
		tw := tabwriter.NewWriter(sent, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
		emit = func(v []any) error {
			s := make([]string, len(v))
			for i, x := range v {
				s[i] = strings.ReplaceAll(text(x), "\t", " ")
			}
			line := strings.Join(s, "\t")
			held += int64(len(line)) + 1
			_, err := fmt.Fprintln(tw, line)
			return err
		}
		finish = tw.Flush
	case "csv":
		cw := csv.NewWriter(sent)
		if err := cw.Write(cols); err != nil {
			return 0, false, err
		}
		emit = func(v []any) error {
			s := make([]string, len(v))
			for i, x := range v {
				s[i] = text(x)
			}
			return cw.Write(s)
		}
		finish = func() error { cw.Flush(); return cw.Error() }
	case "json":
		enc := json.NewEncoder(sent)
		emit = func(v []any) error {
			obj := make(map[string]any, len(cols))
			for i, c := range cols {
				obj[c] = JSONValue(v[i])
			}
			return enc.Encode(obj)
		}
		finish = func() error { return nil }
	case "arrow", "parquet":
		return 0, false, fmt.Errorf("format %s: use Session.Export, which writes it from the result's Arrow schema", format)
	default:
		return 0, false, fmt.Errorf("unknown format %q (want %s)", format, strings.Join(Formats, ", "))
	}
	n := 0
	truncated := false
	for rows.Next() {
		if (o.MaxRows > 0 && n >= o.MaxRows) || (o.MaxBytes > 0 && sent.n+held >= o.MaxBytes) {
			truncated = true
			break
		}
		if err := rows.Scan(ptrs...); err != nil {
			return n, truncated, err
		}
		if err := emit(vals); err != nil {
			return n, truncated, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, truncated, err
	}
	return n, truncated, finish()
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case map[string]any, []any:
		b, _ := json.Marshal(JSONValue(x))
		return string(b)
	}
	return fmt.Sprint(v)
}

// JSONValue turns a value scanned from DuckDB into one encoding/json
// renders faithfully: bytes as text, times as RFC 3339 in UTC, DuckDB's
// maps, decimals, intervals and UUIDs as JSON-friendly values, nested
// values recursively.
func JSONValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = JSONValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = JSONValue(e)
		}
		return out
	case fmt.Stringer:
		return x.String()
	}
	return v
}
