package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gofhir/fhirpath"
	"github.com/gofhir/fhirpath/eval"
)

// gofhirView evaluates the columns of a flat ViewDefinition (one select of
// plain columns) with github.com/gofhir/fhirpath, the reference point for
// FHIRPath evaluation speed.
type gofhirView struct {
	names []string
	exprs []*fhirpath.Expression
}

// compileGofhir compiles the column paths of def. getResourceKey() is not a
// gofhir function; for a resource read on its own it is the id, so that
// column reads id instead.
func compileGofhir(def []byte) (*gofhirView, error) {
	var vd struct {
		Select []struct {
			Column []struct {
				Name string `json:"name"`
				Path string `json:"path"`
			} `json:"column"`
			ForEach string            `json:"forEach"`
			Select  []json.RawMessage `json:"select"`
		} `json:"select"`
	}
	if err := json.Unmarshal(def, &vd); err != nil {
		return nil, err
	}
	g := &gofhirView{}
	for _, s := range vd.Select {
		if s.ForEach != "" || len(s.Select) > 0 {
			return nil, fmt.Errorf("only flat views are supported")
		}
		for _, c := range s.Column {
			path := strings.ReplaceAll(c.Path, "getResourceKey()", "id")
			e, err := fhirpath.Compile(path)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", c.Name, err)
			}
			g.names = append(g.names, c.Name)
			g.exprs = append(g.exprs, e)
		}
	}
	return g, nil
}

// row evaluates every column over one resource, read once, into out (the
// first value of each column as text, "" when empty).
func (g *gofhirView) row(doc []byte, out []string) error {
	ctx := eval.NewContext(doc)
	for i, e := range g.exprs {
		col, err := e.EvaluateWithContext(ctx)
		if err != nil {
			return fmt.Errorf("column %s: %w", g.names[i], err)
		}
		out[i] = ""
		if len(col) > 0 {
			out[i] = col[0].String()
		}
	}
	return nil
}
