package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"fhirlake/flatten"
)

// Targets of the flatten engine.
const (
	targetVsGofhir  = 30.0 // Patient view: flatten at least 30× gofhir/fhirpath per core
	targetVsDecoder = 1.0  // all views + Parquet faster than encoding/json alone
)

// summary holds the results needed for the ratios.
type summary struct {
	views, patient, all []result
	ratios              []ratio
}

// ratio compares two results per core, against a target.
type ratio struct {
	name     string
	num, den result
	target   float64
	atLeast  bool // the target is a minimum (>=), else a bound to exceed (>)
}

func (r ratio) print(w io.Writer) {
	if r.den.perCPU() == 0 {
		return
	}
	x := r.num.perCPU() / r.den.perCPU()
	met, op := x > r.target, ">"
	if r.atLeast {
		met, op = x >= r.target, ">="
	}
	fmt.Fprintf(w, "  %-52s %7.2f×  (target %s %.0f×: %s)\n", r.name, x, op, r.target, verdict(met))
}

func find(rs []result, prefix, suffix string) (result, bool) {
	for _, r := range rs {
		if strings.HasPrefix(r.name, prefix) && strings.HasSuffix(r.name, suffix) {
			return r, true
		}
	}
	return result{}, false
}

func (s summary) print(w io.Writer) {
	fmt.Fprintln(w, "\nRatios (per core: resources per CPU-second)")
	for _, r := range s.ratios {
		r.print(w)
	}
	dec, ok1 := find(s.all, "encoding/json", "")
	pq, ok2 := find(s.all, "all default views + Parquet", "")
	flat, ok3 := find(s.all, "all default views", "views")
	if ok1 && ok2 {
		ratio{name: "all views + Parquet / encoding/json map", num: pq, den: dec, target: targetVsDecoder}.print(w)
	}
	if ok1 && ok3 && dec.perCPU() > 0 {
		fmt.Fprintf(w, "  %-52s %7.2f×\n", "all views, no Parquet / encoding/json map", flat.perCPU()/dec.perCPU())
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// agreement compares, cell by cell, what the two engines return for the
// view's columns over docs, so that the speed comparison is known to compare
// the same work. It returns the agreeing cells, all cells, and a few
// examples of differences.
func agreement(v *flatten.View, g *gofhirView, docs [][]byte) (same, cells int, diffs []string) {
	row := make([]string, len(g.exprs))
	for _, doc := range docs {
		r, err := flatten.Parse(doc)
		if err != nil {
			continue
		}
		rows, err := v.Rows(r)
		if err != nil || len(rows) != 1 || g.row(doc, row) != nil {
			continue
		}
		for i, name := range g.names {
			cells++
			ours := text(rows[0][name])
			if ours == row[i] || sameInstant(ours, row[i]) {
				same++
			} else if len(diffs) < 5 {
				diffs = append(diffs, fmt.Sprintf("%s: flatten %q, gofhir %q", name, ours, row[i]))
			}
		}
	}
	return same, cells, diffs
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}

// sameInstant accepts two texts of the same instant: flatten keeps the
// offset as written ("+00:00"), gofhir prints UTC as "Z".
func sameInstant(a, b string) bool {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, strings.TrimPrefix(b, "@"))
	return err1 == nil && err2 == nil && ta.Equal(tb)
}
