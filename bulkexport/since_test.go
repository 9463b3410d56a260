package bulkexport_test

import (
	"context"
	"testing"
	"time"

	"fhirlake/bulkexport"
	"fhirlake/lake"
	"fhirlake/sink"
)

func TestRecordAndLastExport(t *testing.T) {
	ctx := context.Background()
	store, err := sink.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const sys, grp = "https://x.org/$export", "https://x.org/Group/g/$export"
	if _, ok, err := bulkexport.LastExport(ctx, store, sys); ok || err != nil {
		t.Fatalf("empty lake: got ok %v, %v; want none", ok, err)
	}
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i, src := range []lake.ExportSource{
		{Request: sys, TransactionTime: at, NextSince: at, Loaded: at, Files: 1},
		{Request: grp, TransactionTime: at.Add(time.Hour), NextSince: at.Add(time.Hour), Loaded: at, Files: 2},
		{Request: sys, TransactionTime: at.Add(2 * time.Hour), NextSince: at.Add(2 * time.Hour), Loaded: at, Files: 3},
	} {
		if err := bulkexport.RecordExport(ctx, store, "acme", src); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	for req, want := range map[string]time.Time{sys: at.Add(2 * time.Hour), grp: at.Add(time.Hour)} {
		last, ok, err := bulkexport.LastExport(ctx, store, req)
		if err != nil || !ok || !last.NextSince.Equal(want) {
			t.Errorf("%s: got %v %v %v, want %s", req, last.NextSince, ok, err, want)
		}
	}
}
