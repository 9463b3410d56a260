package flatten

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Rows evaluates the view over one resource and returns its rows as maps
// from column name to value: string, bool, int64, json.Number (decimals,
// with their written precision), nil (null), []any (collection columns)
// or map[string]any (complex values). Resources of another type yield no
// rows. Rows serves tests, the conformance runner and debugging; it
// shares the compiled plan with Batch but allocates freely.
func (v *View) Rows(r *Resource) ([]map[string]any, error) {
	var rows []map[string]any
	var w *walker
	w = newWalker(v, newEvaluator(v.slots, v.shared), func() error {
		row := make(map[string]any, len(v.cols))
		for _, c := range v.cols {
			row[c.name] = w.anyValue(c, w.vals[c.idx])
		}
		rows = append(rows, row)
		return nil
	})
	if err := w.run(r); err != nil {
		return nil, viewError(v, r, err)
	}
	return rows, nil
}

func (w *walker) anyValue(c *column, vals []item) any {
	if c.collection {
		out := make([]any, 0, len(vals))
		for _, it := range vals {
			if x := w.anyItem(it); x != nil {
				out = append(out, x)
			}
		}
		return out
	}
	if len(vals) == 0 {
		return nil
	}
	return w.anyItem(vals[0])
}

func (w *walker) anyItem(it item) any {
	v, ok := w.ev.scalar(it)
	if !ok {
		return nil
	}
	switch v.kind {
	case vBool:
		return v.b
	case vInt:
		return v.i
	case vDec:
		return json.Number(strings.Clone(v.s))
	case vStr:
		return strings.Clone(v.s)
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(w.ev.res.appendJSON(nil, v.node)))
	dec.UseNumber()
	if dec.Decode(&out) != nil {
		return nil
	}
	return out
}
