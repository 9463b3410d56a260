package consumer

import (
	"errors"
	"regexp"
	"testing"

	"fhirlake/notification"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRouter(t *testing.T) {
	r := NewRouter(RouteOptions{
		Header: "fhir-tenant", Topics: map[string]string{"acme.events": "acme", "ghost.events": "ghost"},
		PayloadFields:  true,
		BaseURLPattern: regexp.MustCompile(`^https://fhir\.(?P<tenant>[a-z0-9-]+)\.example\.org/`),
		TagSystem:      "https://fhirlake.dev/tenant",
	}, []string{"acme", "globex"})
	h := func(v string) []kgo.RecordHeader { return []kgo.RecordHeader{{Key: "fhir-tenant", Value: []byte(v)}} }
	for _, tc := range []struct {
		name    string
		rec     kgo.Record
		n       *notification.Notification
		want    string
		wantErr string
	}{
		{"ibm tenantId", kgo.Record{Topic: "shared"}, &notification.Notification{TenantID: "globex"}, "globex", ""},
		{"hapi partition agrees with header", kgo.Record{Topic: "shared", Headers: h("acme")}, &notification.Notification{PartitionID: "acme"}, "acme", ""},
		{"payload conflicts with header", kgo.Record{Topic: "shared", Headers: h("acme")}, &notification.Notification{TenantID: "globex"}, "", "conflicting_tenants"},
		{"base url", kgo.Record{Topic: "shared"}, &notification.Notification{BaseURLs: []string{"https://fhir.globex.example.org/fhir"}}, "globex", ""},
		{"two base urls disagree", kgo.Record{Topic: "shared"}, &notification.Notification{BaseURLs: []string{"https://fhir.globex.example.org/fhir", "https://fhir.acme.example.org/fhir"}}, "", "conflicting_tenants"},
		{"base url of unknown tenant", kgo.Record{Topic: "shared"}, &notification.Notification{BaseURLs: []string{"https://fhir.initech.example.org/fhir"}}, "", "unknown_tenant"},
		{"unmatched base url is no answer", kgo.Record{Topic: "shared", Headers: h("acme")}, &notification.Notification{BaseURLs: []string{"https://other.example.com/fhir"}}, "acme", ""},
		{"meta.tag", kgo.Record{Topic: "shared"}, &notification.Notification{Tags: []notification.Tag{{System: "https://fhirlake.dev/tenant", Code: "acme"}, {System: "other", Code: "globex"}}}, "acme", ""},
		{"meta.tag conflicts with topic", kgo.Record{Topic: "acme.events"}, &notification.Notification{Tags: []notification.Tag{{System: "https://fhirlake.dev/tenant", Code: "globex"}}}, "", "conflicting_tenants"},
		{"header", kgo.Record{Topic: "shared", Headers: h("globex")}, nil, "globex", ""},
		{"topic map", kgo.Record{Topic: "acme.events"}, nil, "acme", ""},
		{"header agrees with topic", kgo.Record{Topic: "acme.events", Headers: h("acme")}, nil, "acme", ""},
		{"header conflicts with topic", kgo.Record{Topic: "acme.events", Headers: h("globex")}, nil, "", "conflicting_tenants"},
		{"two headers disagree", kgo.Record{Topic: "shared", Headers: append(h("acme"), h("globex")...)}, nil, "", "conflicting_tenants"},
		{"unknown tenant", kgo.Record{Topic: "shared", Headers: h("initech")}, nil, "", "unknown_tenant"},
		{"mapped to unknown tenant", kgo.Record{Topic: "ghost.events"}, nil, "", "unknown_tenant"},
		{"empty header", kgo.Record{Topic: "shared", Headers: h("")}, nil, "", "no_tenant"},
		{"nothing", kgo.Record{Topic: "shared"}, nil, "", "no_tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Resolve(&tc.rec, tc.n)
			if tc.wantErr != "" {
				var re *RouteError
				if !errors.As(err, &re) || re.Class != tc.wantErr {
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

// TestRouterTenantOutlivesRecord: decoded strings share the record's
// memory, but the tenant a record routes to is kept (buffer maps, metric
// labels), so the router must hand back the configured string, which
// neither changes with the record's bytes nor keeps them alive.
func TestRouterTenantOutlivesRecord(t *testing.T) {
	r := NewRouter(RouteOptions{PayloadFields: true}, []string{"globex"})
	n, overwrite := decodeIBMPatient(t)
	tenant, err := r.Resolve(&kgo.Record{Topic: "shared"}, n)
	if err != nil {
		t.Fatal(err)
	}
	overwrite()
	if tenant != "globex" {
		t.Fatalf("tenant changed with the record's bytes: %q", tenant)
	}
}

// TestEventLabelsOutliveRecord: the resource type of an event points into
// its record; the per-worker counter map and the metric keep copies.
func TestEventLabelsOutliveRecord(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := &worker{c: &Consumer{m: newMetrics(reg)}, dec: decoding{events: map[eventLabels]prometheus.Counter{}}}
	n, overwrite := decodeIBMPatient(t)
	ev := n.Events[0]
	w.eventCounter(n.Format, ev.ResourceType, ev.Operation).Inc()
	overwrite()
	if _, ok := w.dec.events[eventLabels{n.Format, "Patient", ev.Operation}]; !ok {
		t.Errorf("counter map keys changed with the record's bytes: %v", w.dec.events)
	}
	for _, m := range series(t, reg, "fhirlake_consumer_events_total") {
		for _, l := range m.GetLabel() {
			if l.GetName() == "resource_type" && l.GetValue() != "Patient" {
				t.Errorf("resource_type label changed with the record's bytes: %q", l.GetValue())
			}
		}
	}
}

// decodeIBMPatient decodes an IBM event for globex's Patient/p1, and
// returns a function that overwrites the record's bytes afterwards.
func decodeIBMPatient(t *testing.T) (*notification.Notification, func()) {
	t.Helper()
	value := []byte(`{"location":"Patient/p1/_history/1","operationType":"update","resourceId":"p1","tenantId":"globex","resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"}}}`)
	n, err := notification.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	return n, func() {
		for i := range value {
			value[i] = 'x'
		}
	}
}
