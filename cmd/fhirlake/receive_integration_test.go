//go:build integration

// fhirlake receive fed by a real FHIR server: the HAPI FHIR JPA server of the
// local stack (deploy/local/stack up hapi) calls the receiver through
// classic rest-hook and R4 Backport topic subscriptions; the tenants' lakes
// must then hold exactly HAPI's current state.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"fhirlake/config"
)

// needHAPI is the base URL of the stack's HAPI server. The suites that need
// it skip without it, unless FHIRLAKE_REQUIRE_HAPI=1 (CI) makes that a
// failure.
func needHAPI(t *testing.T) *hapiServer {
	t.Helper()
	base := os.Getenv("FHIRLAKE_HAPI_URL")
	if base == "" {
		msg := `the HAPI FHIR server of the local stack is not running: "deploy/local/stack up hapi", then eval "$(deploy/local/stack env)"`
		if os.Getenv("FHIRLAKE_REQUIRE_HAPI") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return &hapiServer{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: time.Minute}}
}

type hapiServer struct {
	base   string
	client *http.Client
}

// do sends one request to HAPI and returns the status and body.
func (h *hapiServer) do(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.base+"/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	rsp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("HAPI %s %s: %v", method, path, err)
	}
	defer rsp.Body.Close()
	out, _ := io.ReadAll(rsp.Body)
	return rsp.StatusCode, out
}

// must sends one request to HAPI and fails the test on anything but 2xx.
// A PUT or DELETE that HAPI refuses with 409 because its own subscription
// processing touched the resource at the same moment (HAPI-0550, "version
// constraint failure") is sent again, as HAPI's message advises.
func (h *hapiServer) must(t *testing.T, method, path string, body any) []byte {
	t.Helper()
	code, out := h.do(t, method, path, body)
	for try := 1; try < 5 && code == http.StatusConflict && method != "POST" && bytes.Contains(out, []byte("HAPI-0550")); try++ {
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		code, out = h.do(t, method, path, body)
	}
	if code >= 300 {
		t.Fatalf("HAPI %s %s: %d %s", method, path, code, out)
	}
	return out
}

const (
	// topicURL is the R4 Backport topic of the tests: every create, update
	// and delete of a Patient, Observation or Encounter.
	topicURL  = "http://fhirlake.test/topic/changes"
	runTagSys = "http://fhirlake.test/run"
	backport  = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
)

var hookTypes = []string{"Patient", "Observation", "Encounter"}

// ensureTopic writes the topic (an R4 Basic), idempotently.
func (h *hapiServer) ensureTopic(t *testing.T) {
	t.Helper()
	ext := []any{
		map[string]any{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url", "valueUri": topicURL},
		map[string]any{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.status", "valueCode": "active"},
	}
	for _, typ := range hookTypes {
		ext = append(ext, map[string]any{
			"url": "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic.resourceTrigger",
			"extension": []any{
				map[string]any{"url": "resource", "valueUri": typ},
				map[string]any{"url": "supportedInteraction", "valueCode": "create"},
				map[string]any{"url": "supportedInteraction", "valueCode": "update"},
				map[string]any{"url": "supportedInteraction", "valueCode": "delete"},
			},
		})
	}
	h.must(t, "PUT", "Basic/fhirlake-it-topic", map[string]any{"resourceType": "Basic", "id": "fhirlake-it-topic",
		"code":      map[string]any{"coding": []any{map[string]any{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}}},
		"extension": ext})
}

// subscribe creates a Subscription, waits until HAPI has activated it, and
// deletes it when the test ends (HAPI would otherwise keep calling a
// receiver that is gone).
func (h *hapiServer) subscribe(t *testing.T, sub map[string]any) {
	t.Helper()
	var created struct{ ID string }
	if err := json.Unmarshal(h.must(t, "POST", "Subscription", sub), &created); err != nil || created.ID == "" {
		t.Fatalf("subscription: %v", err)
	}
	t.Cleanup(func() { h.do(t, "DELETE", "Subscription/"+created.ID, nil) })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var s struct{ Status string }
		if err := json.Unmarshal(h.must(t, "GET", "Subscription/"+created.ID, nil), &s); err != nil {
			t.Fatal(err)
		}
		if s.Status == "active" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription %s still %q after 2 minutes", created.ID, s.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// classicHooks subscribes the receiver to every change of the three types
// tagged tag, one classic rest-hook per type, deletes included.
func (h *hapiServer) classicHooks(t *testing.T, endpoint, secret, tag string) {
	t.Helper()
	for _, typ := range hookTypes {
		h.subscribe(t, map[string]any{"resourceType": "Subscription", "status": "requested", "reason": "fhirlake test",
			"criteria": typ + "?_tag=" + runTagSys + "|" + tag,
			"channel": map[string]any{
				"extension": []any{map[string]any{"url": "http://hapifhir.io/fhir/StructureDefinition/subscription-send-delete-messages", "valueBoolean": true}},
				"type":      "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
				"header": []string{"X-Fhirlake-Secret: " + secret},
			}})
	}
}

// topicHook subscribes the receiver to the topic, for resources tagged
// tag, in payload mode content (full-resource or id-only).
func (h *hapiServer) topicHook(t *testing.T, endpoint, secret, tag, content string) {
	t.Helper()
	h.ensureTopic(t)
	var filters []any
	for _, typ := range hookTypes {
		filters = append(filters, map[string]any{"url": backport + "backport-filter-criteria", "valueString": typ + "?_tag=" + runTagSys + "|" + tag})
	}
	h.subscribe(t, map[string]any{"resourceType": "Subscription", "status": "requested", "reason": "fhirlake test",
		"meta":      map[string]any{"profile": []string{backport + "backport-subscription"}},
		"criteria":  topicURL,
		"_criteria": map[string]any{"extension": filters},
		"channel": map[string]any{
			"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
			"_payload": map[string]any{"extension": []any{map[string]any{"url": backport + "backport-payload-content", "valueCode": content}}},
			"header":   []string{"Authorization: Bearer " + secret},
		}})
}

// workload creates, updates and deletes Patients, Observations and
// Encounters tagged tag, with ids starting with prefix, through HAPI's REST
// API, and returns every resource it touched ("Type/id").
func (h *hapiServer) workload(t *testing.T, prefix, tag string, rounds int) []string {
	t.Helper()
	meta := map[string]any{"tag": []any{map[string]any{"system": runTagSys, "code": tag}}}
	var touched []string
	put := func(res map[string]any) {
		res["meta"] = meta
		ref := res["resourceType"].(string) + "/" + res["id"].(string)
		h.must(t, "PUT", ref, res)
		if !slices.Contains(touched, ref) {
			touched = append(touched, ref)
		}
	}
	for r := range rounds {
		p := fmt.Sprintf("%s-p%d", prefix, r)
		put(map[string]any{"resourceType": "Patient", "id": p, "active": true, "name": []any{map[string]any{"family": "Round" + fmt.Sprint(r)}}})
		put(map[string]any{"resourceType": "Observation", "id": fmt.Sprintf("%s-o%d", prefix, r), "status": "preliminary",
			"code": map[string]any{"text": "heart rate"}, "subject": map[string]any{"reference": "Patient/" + p},
			"valueQuantity": map[string]any{"value": 60 + r, "unit": "/min"}})
		put(map[string]any{"resourceType": "Encounter", "id": fmt.Sprintf("%s-e%d", prefix, r), "status": "in-progress",
			"class": map[string]any{"code": "AMB"}, "subject": map[string]any{"reference": "Patient/" + p}})
	}
	for r := range rounds {
		switch r % 3 {
		case 0: // updated twice
			p := fmt.Sprintf("%s-p%d", prefix, r)
			put(map[string]any{"resourceType": "Patient", "id": p, "active": false, "name": []any{map[string]any{"family": "Renamed"}}})
			put(map[string]any{"resourceType": "Patient", "id": p, "active": true, "gender": "female", "name": []any{map[string]any{"family": "Renamed"}}})
			put(map[string]any{"resourceType": "Observation", "id": fmt.Sprintf("%s-o%d", prefix, r), "status": "final",
				"code": map[string]any{"text": "heart rate"}, "valueQuantity": map[string]any{"value": 70 + r, "unit": "/min"}})
		case 1: // deleted
			h.must(t, "DELETE", fmt.Sprintf("Observation/%s-o%d", prefix, r), nil)
			h.must(t, "DELETE", fmt.Sprintf("Encounter/%s-e%d", prefix, r), nil)
		case 2: // updated, then deleted
			put(map[string]any{"resourceType": "Encounter", "id": fmt.Sprintf("%s-e%d", prefix, r), "status": "finished",
				"class": map[string]any{"code": "AMB"}})
			h.must(t, "DELETE", fmt.Sprintf("Patient/%s-p%d", prefix, r), nil)
		}
	}
	return touched
}

// hapiState is HAPI's current state of the resources: the resource JSON,
// or nil when HAPI says it is gone.
func (h *hapiServer) state(t *testing.T, refs []string) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	for _, ref := range refs {
		code, body := h.do(t, "GET", ref, nil)
		switch code {
		case http.StatusOK:
			out[ref] = body
		case http.StatusGone:
			out[ref] = nil
		default:
			t.Fatalf("HAPI GET %s: %d %s", ref, code, body)
		}
	}
	return out
}

// receiver is a `fhirlake receive` process of the run.
type receiver struct {
	addr, log string
}

// startReceiver starts `fhirlake receive` on a free loopback port and waits
// until it answers /healthz.
func (r *run) startReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{addr: freeAddr(t), log: filepath.Join(r.dir, "receive.log")}
	c := r.cmd(context.Background(), "receive", "--listen", rc.addr, "--log-level", "info")
	logf, err := os.Create(rc.log)
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = c.Wait() // killed at the end of the test: its status says nothing
		logf.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		if err := c.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("kill fhirlake receive: %v", err)
		}
		<-exited
		if t.Failed() {
			logTail(t, rc.log, 25)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		rsp, err := http.Get("http://" + rc.addr + "/healthz")
		if err == nil {
			rsp.Body.Close()
			if rsp.StatusCode == 200 {
				return rc
			}
		}
		select {
		case <-exited:
			logTail(t, rc.log, 25)
			t.Fatal("fhirlake receive exited")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("fhirlake receive did not answer /healthz within a minute")
		}
	}
}

func (rc *receiver) endpoint() string { return "http://" + rc.addr + "/notify" }

// receiveConfig is the run's receive section: one secret per tenant.
func receiveConfig(secrets map[string]string) string {
	var b strings.Builder
	b.WriteString("receive:\n  produce_timeout: 2s\n  secrets:\n")
	for tenant, s := range secrets {
		fmt.Fprintf(&b, "    - tenant: %s\n      secret_sha256: %s\n      name: hapi-%s\n", tenant, config.HashAPIKey(s), tenant)
	}
	return b.String()
}

// lakeDiff compares a tenant's latest state with HAPI's, resource by
// resource: the same resources, each in HAPI's version with the same JSON,
// or deleted when HAPI says it is gone. It returns the differences.
func (r *run) lakeDiff(t *testing.T, st stack, tenant string, want map[string]json.RawMessage) []string {
	t.Helper()
	s := r.tenantLake(t, st, tenant, bucket(tenant))
	rows, err := s.Query(context.Background(), "SELECT resource_type, id, coalesce(version_id, ''), operation, coalesce(CAST(resource AS VARCHAR), '') FROM resources_latest")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var diffs []string
	seen := map[string]bool{}
	for rows.Next() {
		var typ, id, ver, op, res string
		if err := rows.Scan(&typ, &id, &ver, &op, &res); err != nil {
			t.Fatal(err)
		}
		ref := typ + "/" + id
		seen[ref] = true
		w, ok := want[ref]
		switch {
		case !ok:
			diffs = append(diffs, ref+": in the lake, not written to HAPI by this test")
		case w == nil && op != "delete":
			diffs = append(diffs, fmt.Sprintf("%s: deleted in HAPI, %s v%s in the lake", ref, op, ver))
		case w == nil:
		case op == "delete":
			diffs = append(diffs, ref+": deleted in the lake, not in HAPI")
		default:
			var hv struct{ Meta struct{ VersionID string } }
			var got, exp any
			if err := errors.Join(json.Unmarshal(w, &hv), json.Unmarshal([]byte(res), &got), json.Unmarshal(w, &exp)); err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			if ver != hv.Meta.VersionID || !reflect.DeepEqual(got, exp) {
				diffs = append(diffs, fmt.Sprintf("%s: lake v%s %s, HAPI v%s %s", ref, ver, res, hv.Meta.VersionID, w))
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for ref := range want {
		if !seen[ref] {
			diffs = append(diffs, ref+": missing from the lake")
		}
	}
	slices.Sort(diffs)
	return diffs
}

// waitLakeMatches polls the tenant's lake until it holds HAPI's state, and
// fails with the differences left after timeout.
func (r *run) waitLakeMatches(t *testing.T, st stack, h *hapiServer, tenant string, refs []string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	want := h.state(t, refs)
	var diffs []string
	for time.Since(start) < timeout {
		if diffs = r.lakeDiff(t, st, tenant, want); len(diffs) == 0 {
			return time.Since(start)
		}
		time.Sleep(2 * time.Second)
	}
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("… %d more", len(diffs)-10))
	}
	t.Fatalf("tenant %s: the lake does not hold HAPI's state after %s:\n%s", tenant, timeout, strings.Join(diffs, "\n"))
	return 0
}

// TestIntegrationHAPIRestHooks: HAPI calls the receiver with classic
// rest-hooks for one tenant and an R4 Backport topic subscription
// (full-resource) for another; each lake ends with exactly HAPI's state of
// its own resources, versions and deletes included.
func TestIntegrationHAPIRestHooks(t *testing.T) {
	st := needStack(t)
	h := needHAPI(t)
	secrets := map[string]string{"acme": "acme-hook-" + fmt.Sprint(time.Now().UnixNano()), "globex": "globex-hook-" + fmt.Sprint(time.Now().UnixNano())}
	r := newRun(t, st, []string{"acme", "globex"}, bucket, receiveConfig(secrets))
	r.fhirlake(t, "topics", "create")
	c1 := r.startMember(t, "c1")
	rc := r.startReceiver(t)

	classicTag, topicTag := r.id+"-classic", r.id+"-topic"
	h.classicHooks(t, rc.endpoint(), secrets["acme"], classicTag)
	h.topicHook(t, rc.endpoint(), secrets["globex"], topicTag, "full-resource")
	classic := h.workload(t, r.id+"-a", classicTag, 6)
	topic := h.workload(t, r.id+"-b", topicTag, 6)

	took := r.waitLakeMatches(t, st, h, "acme", classic, 3*time.Minute)
	t.Logf("acme (classic rest-hooks): %d resources as in HAPI after %s", len(classic), took.Round(time.Millisecond))
	took = r.waitLakeMatches(t, st, h, "globex", topic, 3*time.Minute)
	t.Logf("globex (R4 Backport topic, full-resource): %d resources as in HAPI after %s", len(topic), took.Round(time.Millisecond))
	m, err := scrapeAddr(rc.addr)
	if err != nil {
		t.Fatal(err)
	}
	if m[`fhirlake_receive_requests_total{tenant="acme"}`] == 0 || m[`fhirlake_receive_requests_total{tenant="globex"}`] == 0 {
		t.Errorf("receiver metrics count no call of a tenant: %v", m)
	}
	if n, _ := c1.metric(`fhirlake_consumer_events_total{format="rest-hook"}`); n == 0 {
		t.Errorf("the consumer decoded no rest-hook envelope")
	}
}

// TestIntegrationHAPIIdOnly: an id-only topic subscription carries no
// resources; the consumer reads each one back from HAPI, the tenant's FHIR
// server.
func TestIntegrationHAPIIdOnly(t *testing.T) {
	st := needStack(t)
	h := needHAPI(t)
	secret := "initech-hook-" + fmt.Sprint(time.Now().UnixNano())
	r := newRun(t, st, []string{"initech"}, bucket, receiveConfig(map[string]string{"initech": secret}))
	r.setTenantFHIR(t, "initech", h.base)
	r.fhirlake(t, "topics", "create")
	m := r.startMember(t, "c1")
	rc := r.startReceiver(t)
	tag := r.id + "-idonly"
	h.topicHook(t, rc.endpoint(), secret, tag, "id-only")
	refs := h.workload(t, r.id+"-c", tag, 6)
	took := r.waitLakeMatches(t, st, h, "initech", refs, 3*time.Minute)
	t.Logf("initech (id-only): %d resources as in HAPI after %s", len(refs), took.Round(time.Millisecond))
	// The notifications carried no resource: every one in the lake, equal to
	// HAPI's, was read from HAPI.
	if n, _ := m.metric(`fhirlake_consumer_events_total{format="r4-backport"}`); n == 0 {
		t.Errorf("the consumer decoded no R4 Backport event")
	}
}

// setTenantFHIR gives a tenant of the run's configuration its FHIR server.
func (r *run) setTenantFHIR(t *testing.T, tenant, base string) {
	t.Helper()
	b, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := yaml.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	for _, tn := range conf["tenants"].([]any) {
		if m := tn.(map[string]any); m["name"] == tenant {
			m["fhir"] = map[string]any{"base_url": base}
		}
	}
	if b, err = yaml.Marshal(conf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationHAPIKafkaOutage: the broker is killed while HAPI sends;
// the receiver answers 503, HAPI retries, and once the broker is back the
// lake holds HAPI's state: nothing was lost.
func TestIntegrationHAPIKafkaOutage(t *testing.T) {
	st := needStack(t)
	h := needHAPI(t)
	secret := "hooli-hook-" + fmt.Sprint(time.Now().UnixNano())
	r := newRun(t, st, []string{"hooli"}, bucket, receiveConfig(map[string]string{"hooli": secret}))
	r.fhirlake(t, "topics", "create")
	r.startMember(t, "c1")
	rc := r.startReceiver(t)
	tag := r.id + "-outage"
	h.classicHooks(t, rc.endpoint(), secret, tag)
	before := h.workload(t, r.id+"-d", tag, 3)
	r.waitLakeMatches(t, st, h, "hooli", before, 3*time.Minute)

	keepServiceRunning(t, "kafka")
	stackCmd(t, "kill", "kafka")
	during := h.workload(t, r.id+"-e", tag, 3)
	// HAPI retries a delivery for a minute: bring the broker back as soon as
	// the receiver has turned a call away.
	deadline := time.Now().Add(45 * time.Second)
	for {
		m, err := scrapeAddr(rc.addr)
		if err == nil && m[`fhirlake_receive_rejected_total{reason="kafka"}`] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver answered no call with 503 while Kafka was down: %v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := stackCmd(t, "start", "kafka")
	t.Logf("kafka back after %s", took.Round(time.Millisecond))
	r.waitLakeMatches(t, st, h, "hooli", append(before, during...), 4*time.Minute)
}
