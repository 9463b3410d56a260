package query

import (
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats accepted by Write.
var Formats = []string{"table", "csv", "json"}

// Write renders rows as an aligned table, CSV with a header, or JSON lines
// (one object per row). It returns the number of rows written.
func Write(w io.Writer, rows *sql.Rows, format string) (int, error) {
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var emit func([]any) error
	var finish func() error
	switch format {
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
		emit = func(v []any) error {
			s := make([]string, len(v))
			for i, x := range v {
				s[i] = strings.ReplaceAll(text(x), "\t", " ")
			}
			_, err := fmt.Fprintln(tw, strings.Join(s, "\t"))
			return err
		}
		finish = tw.Flush
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(cols); err != nil {
			return 0, err
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
		enc := json.NewEncoder(w)
		emit = func(v []any) error {
			obj := make(map[string]any, len(cols))
			for i, c := range cols {
				obj[c] = jsonValue(v[i])
			}
			return enc.Encode(obj)
		}
		finish = func() error { return nil }
	default:
		return 0, fmt.Errorf("unknown format %q (want %s)", format, strings.Join(Formats, ", "))
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		if err := emit(vals); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, finish()
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
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return v
}
