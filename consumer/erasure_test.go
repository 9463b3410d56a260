package consumer

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/notification"
	"fhirlake/rows"
)

// TestErasuresLoad: a tenant's records are applied to its changes only; a failed
// reading keeps the records read before, so an erasure never lapses with a store's
// outage.
func TestErasuresLoad(t *testing.T) {
	rec := &lake.Erasure{Version: lake.ErasureVersion, Tenant: "acme", Patient: lake.PatientHash("p1"),
		Keys: []string{lake.ResourceKeyHash("Patient", "p1")}, Positions: []lake.Position{{Topic: "fhir", Partition: 0, Before: 10}}}
	fail := false
	read := func(_ context.Context, tenant string) ([]*lake.Erasure, error) {
		if fail {
			return nil, errors.New("store unreachable")
		}
		if tenant == "acme" {
			return []*lake.Erasure{rec}, nil
		}
		return nil, nil
	}
	e := newErasures(read, []string{"acme", "globex"}, time.Minute, nil, slog.New(slog.DiscardHandler))
	ev := &notification.Event{ResourceType: "Observation", ID: "o1", Resource: []byte(`{"subject":{"reference":"Patient/p1"}}`)}
	at := rows.Coordinates{Topic: "fhir", Partition: 0, Offset: 3}
	if e.erased("acme", ev, at) {
		t.Fatal("erased before any record was read")
	}
	if err := e.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !e.erased("acme", ev, at) {
		t.Error("acme's patient's observation before the position: not erased")
	}
	if e.erased("globex", ev, at) {
		t.Error("another tenant's change erased by acme's record")
	}
	if e.erased("acme", ev, rows.Coordinates{Topic: "fhir", Partition: 0, Offset: 10}) {
		t.Error("a change at the position erased")
	}
	fail = true
	if err := e.load(context.Background()); err == nil {
		t.Fatal("a failed reading reported no error")
	}
	if !e.erased("acme", ev, at) {
		t.Error("a failed reading dropped the records read before")
	}
	var none *erasures
	if none.erased("acme", ev, at) {
		t.Error("a consumer without erasures erased a change")
	}
}
