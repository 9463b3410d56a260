package synth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Expected is the final state of one resource of a known tenant after the
// whole stream: what a reader of the lake should see once every record has
// been consumed.
type Expected struct {
	Tenant       string `json:"tenant"`
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	// VersionID is the versionId of the resource's last event. For a
	// deleted resource it is the version of the deletion, one above the last
	// version that had content.
	VersionID string `json:"versionId"`
	Deleted   bool   `json:"deleted"`
}

// Expected returns the final state of every resource the stream creates for
// the configured tenants, in the order of creation. It describes the whole
// stream however much of it has been read; it is computed from the plan, not
// kept while generating.
func (g *Generator) Expected() []Expected {
	out := make([]Expected, 0, g.resources)
	// The callback never fails, so neither does the walk.
	_ = g.eachExpected(func(e Expected) error {
		out = append(out, e)
		return nil
	})
	return out
}

func (g *Generator) eachExpected(fn func(Expected) error) error {
	p := newPlanner(g.opts)
	var items []item
	for patient := range g.opts.Patients {
		for _, t := range g.tenants {
			items = p.plan(items, t.hash, patient)
			for local, it := range items {
				e := Expected{
					Tenant:       t.name,
					ResourceType: it.typ.String(),
					ID:           resourceID(g.seed, t.hash, patient, local),
					VersionID:    strconv.Itoa(it.finalVersion()),
					Deleted:      it.deleted,
				}
				if err := fn(e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// WriteExpected writes the expected state of an exhausted generator as
// NDJSON: one line per resource, in the order of Expected,
//
//	{"tenant":"acme","resourceType":"Observation","id":"…","versionId":"3","deleted":true}
//
// then one last line with the counts of the stream,
//
//	{"counts":{"events":…,"resources":…,"upserts":…,"deletes":…,"controls":…,"malformed":…,"unroutable":…}}
//
// A reader knows the last line by its "counts" member. The number of
// resource lines equals counts.resources.
func WriteExpected(w io.Writer, g *Generator) error {
	if g.yielded < g.total {
		return fmt.Errorf("write expected: stream not exhausted: %d of %d records read", g.yielded, g.total)
	}
	bw := bufio.NewWriter(w)
	var line []byte
	err := g.eachExpected(func(e Expected) error {
		line = append(line[:0], `{"tenant":`...)
		line = appendString(line, e.Tenant)
		line = append(line, `,"resourceType":`...)
		line = appendString(line, e.ResourceType)
		line = append(line, `,"id":`...)
		line = appendString(line, e.ID)
		line = append(line, `,"versionId":`...)
		line = appendString(line, e.VersionID)
		line = append(line, `,"deleted":`...)
		line = strconv.AppendBool(line, e.Deleted)
		line = append(line, "}\n"...)
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return fmt.Errorf("write expected: %w", err)
	}
	counts, err := json.Marshal(struct {
		Counts Counts `json:"counts"`
	}{g.counts})
	if err != nil {
		return fmt.Errorf("write expected counts: %w", err)
	}
	if _, err := bw.Write(append(counts, '\n')); err != nil {
		return fmt.Errorf("write expected counts: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write expected: %w", err)
	}
	return nil
}
