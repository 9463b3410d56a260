package consumer

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRouter(t *testing.T) {
	r := NewRouter("fhir-tenant", map[string]string{"acme.events": "acme", "ghost.events": "ghost"}, []string{"acme", "globex"})
	h := func(v string) []kgo.RecordHeader { return []kgo.RecordHeader{{Key: "fhir-tenant", Value: []byte(v)}} }
	for _, tc := range []struct {
		name    string
		rec     kgo.Record
		want    string
		wantErr string
	}{
		{"header", kgo.Record{Topic: "shared", Headers: h("globex")}, "globex", ""},
		{"topic map", kgo.Record{Topic: "acme.events"}, "acme", ""},
		{"header agrees with topic", kgo.Record{Topic: "acme.events", Headers: h("acme")}, "acme", ""},
		{"header conflicts with topic", kgo.Record{Topic: "acme.events", Headers: h("globex")}, "", "conflicting_tenants"},
		{"two headers disagree", kgo.Record{Topic: "shared", Headers: append(h("acme"), h("globex")...)}, "", "conflicting_tenants"},
		{"unknown tenant", kgo.Record{Topic: "shared", Headers: h("initech")}, "", "unknown_tenant"},
		{"mapped to unknown tenant", kgo.Record{Topic: "ghost.events"}, "", "unknown_tenant"},
		{"empty header", kgo.Record{Topic: "shared", Headers: h("")}, "", "no_tenant"},
		{"nothing", kgo.Record{Topic: "shared"}, "", "no_tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Resolve(&tc.rec)
			if tc.wantErr != "" {
				re, ok := err.(*RouteError)
				if !ok || re.Class != tc.wantErr {
					t.Fatalf("got %q, %v; want error class %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
