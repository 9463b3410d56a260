package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/query"
)

// slowSQL runs for minutes, until it is interrupted.
const slowSQL = "SELECT count(*) FROM range(1000000000000) a"

// TestQueueAndTimeout: a tenant's requests beyond its connections wait in a
// bounded queue; beyond it they get 429 with Retry-After at once, and one
// that waits past the query timeout gets 504 within about the timeout.
// Two servers share the pool, one with a long timeout for the query that
// holds the tenant's only connection, one with a short timeout.
func TestQueueAndTimeout(t *testing.T) {
	const timeout = 700 * time.Millisecond
	f := newPoolFixture(t, Options{QueryTimeout: time.Minute}, query.PoolOptions{Session: query.Options{Connections: 1}, MaxQueued: 1})
	short := *f
	short.srv = httptest.NewServer(New(f.pool, Options{QueryTimeout: timeout,
		Keys: []Key{{Tenant: "acme", SHA256: config.HashAPIKey(acmeKey)}}}, nil, nil).Handler())
	t.Cleanup(short.srv.Close)
	// The session is open before the clock starts.
	if resp, b := f.query(t, "acme", acmeKey, "SELECT 1"); resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d %s", resp.StatusCode, b)
	}

	// A holds acme's only connection.
	ctx, cancel := context.WithCancel(context.Background())
	aDone := make(chan int, 1)
	go func() {
		body, _ := json.Marshal(map[string]string{"sql": slowSQL})
		req, _ := http.NewRequestWithContext(ctx, "POST", f.srv.URL+"/v1/tenants/acme/query", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			aDone <- 0
			return
		}
		resp.Body.Close()
		aDone <- resp.StatusCode
	}()
	defer func() {
		cancel()
		select {
		case <-aDone:
		case <-time.After(10 * time.Second):
			t.Error("the slow query did not end when its client went")
		}
	}()
	time.Sleep(300 * time.Millisecond)

	// B waits in the queue, C finds it full.
	type answer struct {
		resp reply
		body []byte
		took time.Duration
	}
	bDone := make(chan answer, 1)
	go func() {
		start := time.Now()
		resp, b := short.query(t, "acme", acmeKey, "SELECT 1")
		bDone <- answer{resp, b, time.Since(start)}
	}()
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	resp, b := short.query(t, "acme", acmeKey, "SELECT 1")
	if took := time.Since(start); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || took > 300*time.Millisecond {
		t.Errorf("third request: got %d (Retry-After %q) after %s: %s; want 429 with Retry-After at once",
			resp.StatusCode, resp.Header.Get("Retry-After"), took, b)
	}
	if r := decode(t, b); r.Error == nil || r.Error.Code != "queue_full" {
		t.Errorf("third request: got %s, want code queue_full", b)
	}

	select {
	case a := <-bDone:
		if a.resp.StatusCode != http.StatusGatewayTimeout || decode(t, a.body).Error.Code != "query_timeout" {
			t.Errorf("queued request: got %d %s, want 504 query_timeout", a.resp.StatusCode, a.body)
		}
		if a.took < timeout || a.took > timeout+600*time.Millisecond {
			t.Errorf("queued request answered after %s, want about the timeout, %s", a.took, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued request was not answered")
	}
}
