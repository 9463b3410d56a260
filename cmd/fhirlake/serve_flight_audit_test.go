package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"fhirlake/audit"
	"fhirlake/config"
)

// TestServeFlightWritesAuditRecords: a statement asked through Flight SQL
// leaves its line in the audit trail, as one asked through the HTTP API
// does: tenant, key name, the SQL, its rows and the protocol.
func TestServeFlightWritesAuditRecords(t *testing.T) {
	flightAddr := freeAddr(t)
	extra := fmt.Sprintf("serve:\n  listen: %s\n  api_keys: [{tenant: acme, name: dashboards, key_sha256: %s}]\n  flight: {listen: %s}\n",
		freeAddr(t), config.HashAPIKey("k"), flightAddr)
	conf, trail := auditLake(t, extra)
	root := newRoot()
	root.SetArgs([]string{"--config", conf, "serve", "--log-level", "error"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}
	defer stop()
	eventually(t, "Flight SQL to listen", func() bool {
		c, err := net.Dial("tcp", flightAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	cl, err := flightsql.NewClient(flightAddr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	qctx, qcancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer k"), time.Minute)
	defer qcancel()
	const q = "SELECT id FROM patient ORDER BY id"
	info, err := cl.Execute(qctx, q)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	r, err := cl.DoGet(qctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatalf("do get: %v", err)
	}
	rows := int64(0)
	for r.Next() {
		rows += r.RecordBatch().NumRows()
	}
	r.Release()
	if rows != 2 {
		t.Fatalf("got %d rows, want 2", rows)
	}
	stop() // the trail is written out when serve ends

	var got []audit.Record
	for _, rec := range readTrail(t, trail) {
		if rec.Protocol == audit.ProtocolFlightSQL && rec.Kind == audit.KindQuery {
			got = append(got, rec)
		}
	}
	if len(got) != 1 {
		t.Fatalf("got %d Flight SQL query records, want 1: %+v", len(got), readTrail(t, trail))
	}
	if g := got[0]; g.Tenant != "acme" || g.Key != "dashboards" || g.Source != audit.SourceServe || g.SQL != q ||
		g.Rows != 2 || g.Status != audit.StatusOK || g.RequestID == "" {
		t.Errorf("got %+v, want acme's statement by key dashboards, 2 rows, ok", g)
	}
}
