//go:build integration

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirlake/sink"
)

// TestIntegrationReceiveBenchmark measures `fhirlake receive` on the local
// stack, loopback only:
//
//   - throughput and latency from an HTTP call to Kafka's acknowledgement:
//     FHIRLAKE_BENCH_RECEIVE calls (classic PUTs of a 1.3 KB Patient, R4
//     Backport Bundles of 10 entries), by 1 and by 16 clients on kept-alive
//     connections;
//   - with the stack's HAPI server, the end-to-end latency from a HAPI write
//     to its row's Parquet file in the tenant's bucket, through a classic
//     rest-hook, the receiver, Kafka and the consumer, one write at a time.
//
// Figures, never assertions on time. Run by `make bench-receive`.
func TestIntegrationReceiveBenchmark(t *testing.T) {
	calls, _ := strconv.Atoi(os.Getenv("FHIRLAKE_BENCH_RECEIVE"))
	if calls < 1 {
		t.Skip("set FHIRLAKE_BENCH_RECEIVE to a number of calls (make bench-receive)")
	}
	st := needStack(t)
	secret := "acme-bench-" + fmt.Sprint(time.Now().UnixNano())
	r := newRun(t, st, []string{"acme"}, bucket, receiveConfig(map[string]string{"acme": secret}))
	r.fhirlake(t, "topics", "create")
	rc := r.startReceiver(t)

	patient := func(i int) (string, string) {
		id := fmt.Sprintf("bench-p%d", i)
		return "/notify/Patient/" + id, `{"resourceType":"Patient","id":"` + id + `","meta":{"versionId":"1","lastUpdated":"2026-01-02T03:04:05.678Z"},` +
			`"identifier":[{"system":"urn:oid:1.2.36.146.595.217.0.1","value":"` + id + `"}],"active":true,` +
			`"name":[{"use":"official","family":"Chalmers","given":["Peter","James"]},{"use":"usual","given":["Jim"]}],` +
			`"telecom":[{"system":"phone","value":"(03) 5555 6473","use":"work","rank":1},{"system":"email","value":"jim@example.org"}],` +
			`"gender":"male","birthDate":"1974-12-25","address":[{"use":"home","type":"both","text":"534 Erewhon St PeasantVille, Rainbow, Vic  3999",` +
			`"line":["534 Erewhon St"],"city":"PleasantVille","district":"Rainbow","state":"Vic","postalCode":"3999","period":{"start":"1974-12-25"}}],` +
			`"contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N"}]}],` +
			`"name":{"family":"du Marché","given":["Bénédicte"]},"telecom":[{"system":"phone","value":"+33 (237) 998327"}],"gender":"female"}],` +
			`"managingOrganization":{"reference":"Organization/1"}}`
	}
	bundle := func(i int) (string, string) {
		var events, entries []string
		for k := range 10 {
			_, res := patient(i*10 + k)
			id := fmt.Sprintf("bench-p%d", i*10+k)
			events = append(events, fmt.Sprintf(`{"name":"notification-event","part":[{"name":"event-number","valueString":"%d"},{"name":"focus","valueReference":{"reference":"Patient/%s"}}]}`, k+1, id))
			entries = append(entries, `{"fullUrl":"Patient/`+id+`/_history/1","resource":`+res+`,"request":{"method":"PUT","url":"Patient/`+id+`"}}`)
		}
		status := `{"resource":{"resourceType":"Parameters","meta":{"profile":["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"]},"parameter":[` +
			`{"name":"subscription","valueReference":{"reference":"Subscription/1"}},{"name":"topic","valueCanonical":"http://fhirlake.test/topic/changes"},` +
			`{"name":"status","valueCode":"active"},{"name":"type","valueCode":"event-notification"},{"name":"events-since-subscription-start","valueString":"10"},` +
			strings.Join(events, ",") + `]}}`
		return "/notify", `{"resourceType":"Bundle","type":"history","entry":[` + status + "," + strings.Join(entries, ",") + `]}`
	}
	for _, c := range []struct {
		name    string
		method  string
		body    func(int) (string, string)
		clients int
	}{
		{"classic PUT, 1 client", "PUT", patient, 1},
		{"classic PUT, 16 clients", "PUT", patient, 16},
		{"R4 Backport Bundle of 10, 1 client", "POST", bundle, 1},
		{"R4 Backport Bundle of 10, 16 clients", "POST", bundle, 16},
	} {
		n := calls
		if c.method == "POST" {
			n = max(calls/10, 1)
		}
		lat, took, bytes := driveReceiver(t, rc, secret, c.method, c.body, n, c.clients)
		slices.Sort(lat)
		q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		t.Logf("%-38s %6d calls in %6.2fs: %7.0f calls/s, %5.1f MB/s; to Kafka's ack p50 %v p99 %v max %v",
			c.name, n, took.Seconds(), float64(n)/took.Seconds(), float64(bytes)/took.Seconds()/1e6,
			q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	}

	if os.Getenv("FHIRLAKE_HAPI_URL") == "" {
		t.Log("end to end: skipped, the stack's HAPI server is not running (deploy/local/stack up hapi)")
		return
	}
	h := needHAPI(t)
	e2e := newRun(t, st, []string{"globex"}, bucket, receiveConfig(map[string]string{"globex": secret}))
	e2e.fhirlake(t, "topics", "create")
	e2e.startMember(t, "c1")
	erc := e2e.startReceiver(t)
	tag := e2e.id + "-e2e"
	h.classicHooks(t, erc.endpoint(), secret, tag)
	store, err := sink.NewS3(context.Background(), sink.S3Options{Bucket: bucket("globex"), Prefix: e2e.prefix, Endpoint: st.endpoint, PathStyle: true,
		AccessKey: os.Getenv(envName("globex", "ACCESS_KEY")), SecretKey: os.Getenv(envName("globex", "SECRET_KEY"))})
	if err != nil {
		t.Fatal(err)
	}
	files := func() int {
		objs, err := store.List(context.Background(), "speed/resources/")
		if err != nil {
			t.Fatal(err)
		}
		return len(objs)
	}
	var e2eLat []time.Duration
	const writes = 20
	for i := range writes {
		before := files()
		start := time.Now()
		h.must(t, "PUT", fmt.Sprintf("Patient/%s-%d", e2e.id, i), map[string]any{"resourceType": "Patient", "id": fmt.Sprintf("%s-%d", e2e.id, i),
			"meta": map[string]any{"tag": []any{map[string]any{"system": runTagSys, "code": tag}}}, "active": true})
		deadline := start.Add(2 * time.Minute)
		for files() == before {
			if time.Now().After(deadline) {
				t.Fatalf("write %d: no new speed file within 2 minutes", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
		e2eLat = append(e2eLat, time.Since(start))
	}
	slices.Sort(e2eLat)
	t.Logf("end to end, HAPI write → its row's Parquet file in S3 (HAPI subscription interval 500 ms, flush.max_age 1s), %d writes one at a time: p50 %v p95 %v max %v",
		writes, e2eLat[writes/2].Round(time.Millisecond), e2eLat[writes*95/100].Round(time.Millisecond), e2eLat[writes-1].Round(time.Millisecond))
}

// driveReceiver sends n calls from clients goroutines and returns each
// call's latency, the wall time and the bytes sent. Every call must be
// answered 200.
func driveReceiver(t *testing.T, rc *receiver, secret, method string, body func(int) (string, string), n, clients int) ([]time.Duration, time.Duration, int64) {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	lat := make([]time.Duration, n)
	var sent int64
	var mu sync.Mutex
	var failed error
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for i := range next {
				path, b := body(i)
				req, _ := http.NewRequest(method, "http://"+rc.addr+path, strings.NewReader(b))
				req.Header.Set("X-Fhirlake-Secret", secret)
				req.Header.Set("Content-Type", "application/fhir+json")
				t0 := time.Now()
				rsp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, rsp.Body)
					rsp.Body.Close()
					if err == nil && rsp.StatusCode != 200 {
						err = fmt.Errorf("status %d", rsp.StatusCode)
					}
				}
				lat[i] = time.Since(t0)
				mu.Lock()
				sent += int64(len(b))
				if err != nil && failed == nil {
					failed = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if failed != nil {
		t.Fatalf("%s call: %v", method, failed)
	}
	return lat, took, sent
}
