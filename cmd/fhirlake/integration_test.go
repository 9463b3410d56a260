//go:build integration

// Integration tests against the real local stack (deploy/local/stack): an
// Apache Kafka broker, the versitygw S3 server with one identity per tenant,
// and the fhirlake binary run as a separate process.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/consumer"
	"fhirlake/query"
	"fhirlake/sink"
)

var binary string

func TestMain(m *testing.M) {
	runWorkerIfAsked()
	dir, err := os.MkdirTemp("", "fhirlake-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// $FHIRLAKE_TEST_BINARY runs the tests against a binary built elsewhere (a
	// benchmark comparing two builds, make bench-compact BENCH_COMPACT_BINARY=…).
	binary = os.Getenv("FHIRLAKE_TEST_BINARY")
	if binary == "" {
		binary = filepath.Join(dir, "fhirlake")
		build := exec.Command("go", "build", "-tags", "duckdb_arrow", "-o", binary, ".")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build fhirlake:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var itTenants = []string{"acme", "globex", "initech"}

// stack reads the environment printed by `deploy/local/stack env`.
type stack struct {
	brokers  []string
	endpoint string
}

func needStack(t *testing.T) stack {
	t.Helper()
	s := stack{brokers: strings.Split(os.Getenv("FHIRLAKE_KAFKA_BROKERS"), ","), endpoint: os.Getenv("FHIRLAKE_S3_ENDPOINT")}
	if s.brokers[0] == "" || s.endpoint == "" {
		t.Fatal(`the local stack is not configured: run "make test", or eval "$(deploy/local/stack env)" after "deploy/local/stack up"`)
	}
	return s
}

func envName(tenant, what string) string {
	return "FHIRLAKE_TENANT_" + strings.ToUpper(strings.ReplaceAll(tenant, "-", "_")) + "_" + what
}

// run is one isolated run: its own topics, group and key prefix in every
// bucket, so runs never see each other's data.
type run struct {
	id, topic, dlq, group, prefix string
	dir, config                   string
	metricsAddr                   string
	// speedNames are the names of each tenant's raw speed files as
	// tenantLake last listed them.
	speedNames map[string][]string
	// members are the consumer processes started with startMember.
	members []*member
}

func newRun(t *testing.T, st stack, tenants []string, bucketOf func(tenant string) string, extra string) *run {
	t.Helper()
	id := fmt.Sprintf("it%d", time.Now().UnixNano())
	r := &run{id: id, topic: id + ".notifications", dlq: id + ".deadletter", group: id, prefix: "runs/" + id, dir: t.TempDir()}
	r.metricsAddr = freeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  brokers: [%q]\n  topics: [%q]\n  group: %q\n  dead_letter_topic: %q\n  partitions: 6\n", strings.Join(st.brokers, ","), r.topic, r.group, r.dlq)
	fmt.Fprintf(&b, "flush:\n  max_rows: 100000\n  max_bytes: 64MiB\n  max_age: 1s\nmetrics:\n  listen: %q\nwork_dir: %q\n", r.metricsAddr, filepath.Join(r.dir, "work"))
	b.WriteString("tenants:\n")
	for _, tn := range tenants {
		fmt.Fprintf(&b, "  - name: %s\n    store:\n      type: s3\n      bucket: %s\n      prefix: %s\n      endpoint: %s\n      region: us-east-1\n      path_style: true\n      access_key_env: %s\n      secret_key_env: %s\n",
			tn, bucketOf(tn), r.prefix, st.endpoint, envName(tn, "ACCESS_KEY"), envName(tn, "SECRET_KEY"))
	}
	conf := b.String()
	if extra != "" {
		// extra is YAML laid over the defaults above, key by key.
		var err error
		if conf, err = mergeYAML(conf, extra); err != nil {
			t.Fatal(err)
		}
	}
	r.config = filepath.Join(r.dir, "fhirlake.yaml")
	if err := os.WriteFile(r.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *run) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, binary, append([]string{"--config", r.config}, args...)...)
	c.Env = os.Environ()
	return c
}

func (r *run) fhirlake(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := r.cmd(ctx, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("fhirlake %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startConsumer starts `fhirlake consume` as its own process.
func (r *run) startConsumer(t *testing.T) *exec.Cmd {
	t.Helper()
	c := r.cmd(context.Background(), "consume", "--log-level", "warn")
	logf, err := os.Create(filepath.Join(r.dir, fmt.Sprintf("consume-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.ProcessState == nil {
			// Still running, or exited on its own and not yet waited for:
			// Kill fails only in the second case, and either way the exit
			// status says nothing the test has not already checked.
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		logf.Close()
	})
	return c
}

func stopConsumer(t *testing.T, c *exec.Cmd) {
	t.Helper()
	// It fails only when the consumer has already exited; Wait then reports how it ended.
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("consumer exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		_ = c.Process.Kill() // the test fails either way; this only stops the process
		t.Fatal("consumer did not exit within 60s of SIGTERM")
	}
}

func (r *run) admin(t *testing.T, st stack) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// waitLag waits until the group's lag is zero.
func (r *run) waitLag(t *testing.T, adm *kadm.Client, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last consumer.GroupLag
	for time.Now().Before(deadline) {
		lag, err := consumer.Lag(context.Background(), adm, r.group, []string{r.topic})
		if err == nil {
			last = lag
			if lag.Total == 0 && len(lag.Partitions) > 0 {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("lag still %d after %s", last.Total, timeout)
}

// scrape returns every metric of the running consumer summed over labels,
// keyed by name and by name{label="value"} for single-label series.
func (r *run) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	m, err := scrapeAddr(r.metricsAddr)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return m
}

type expectation struct {
	state  map[string]map[string]expected // tenant → "Type/id" → state
	counts struct {
		Events, Resources, Upserts, Deletes, Controls, Malformed, Unroutable int
	}
}

type expected struct {
	Tenant, ResourceType, ID, VersionID string
	Deleted                             bool
}

func readExpect(t *testing.T, path string) expectation {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := expectation{state: map[string]map[string]expected{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Tenant       string `json:"tenant"`
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			VersionID    string `json:"versionId"`
			Deleted      bool   `json:"deleted"`
			Counts       *struct {
				Events, Resources, Upserts, Deletes, Controls, Malformed, Unroutable int
			} `json:"counts"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("expect file: %v", err)
		}
		if line.Counts != nil {
			e.counts = *line.Counts
			continue
		}
		if e.state[line.Tenant] == nil {
			e.state[line.Tenant] = map[string]expected{}
		}
		e.state[line.Tenant][line.ResourceType+"/"+line.ID] = expected{line.Tenant, line.ResourceType, line.ID, line.VersionID, line.Deleted}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return e
}

// tenantLake opens a query session over one tenant's bucket, read
// directly with its own key, and notes the names of its raw speed files
// (r.speedNames).
func (r *run) tenantLake(t *testing.T, st stack, tenant, bucket string) *query.Session {
	t.Helper()
	ctx := context.Background()
	access := query.S3Access{Bucket: bucket, Prefix: r.prefix, Endpoint: st.endpoint, Region: "us-east-1", PathStyle: true,
		AccessKey: os.Getenv(envName(tenant, "ACCESS_KEY")), SecretKey: os.Getenv(envName(tenant, "SECRET_KEY"))}
	store, err := sink.NewS3(ctx, sink.S3Options{
		Bucket: bucket, Prefix: r.prefix, Endpoint: st.endpoint, PathStyle: true,
		AccessKey: access.AccessKey, SecretKey: access.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := store.List(ctx, "speed/resources/")
	if err != nil {
		t.Fatalf("list %s's bucket: %v", tenant, err)
	}
	if r.speedNames == nil {
		r.speedNames = map[string][]string{}
	}
	r.speedNames[tenant] = nil
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			r.speedNames[tenant] = append(r.speedNames[tenant], path.Base(o.Key))
		}
	}
	s, err := query.OpenS3(ctx, tenant, store, access, query.Options{HTTPFSExtension: os.Getenv("FHIRLAKE_HTTPFS_EXTENSION")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func scalar[T any](t *testing.T, s *query.Session, q string) T {
	t.Helper()
	rows, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var v T
	if !rows.Next() {
		t.Fatalf("%s: no row", q)
	}
	if err := rows.Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

// checkLake compares a tenant's latest state with the expectation and
// returns the number of rows stored.
func checkLake(t *testing.T, s *query.Session, tenant string, want map[string]expected) (rows int64) {
	t.Helper()
	ctx := context.Background()
	rows = scalar[int64](t, s, "SELECT count(*) FROM resources_all")
	if other := scalar[int64](t, s, fmt.Sprintf("SELECT count(*) FROM resources_all WHERE tenant <> '%s'", tenant)); other != 0 {
		t.Errorf("tenant %s: %d rows of other tenants in its bucket", tenant, other)
	}
	res, err := s.Query(ctx, "SELECT resource_type, id, version_id, operation FROM resources_latest")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	got := map[string]bool{}
	// A broken lake can differ in every resource: report the first few
	// differences of each kind and count the rest.
	var unexpected, wrong, missing int
	errorf := func(n *int, format string, args ...any) {
		if *n++; *n <= 10 {
			t.Errorf(format, args...)
		}
	}
	for res.Next() {
		var typ, id, op string
		var ver *string
		if err := res.Scan(&typ, &id, &ver, &op); err != nil {
			t.Fatal(err)
		}
		key := typ + "/" + id
		got[key] = true
		w, ok := want[key]
		if !ok {
			errorf(&unexpected, "tenant %s: unexpected resource %s", tenant, key)
			continue
		}
		v := ""
		if ver != nil {
			v = *ver
		}
		if v != w.VersionID || (op == "delete") != w.Deleted {
			errorf(&wrong, "tenant %s: %s: got version %s %s, want version %s deleted=%v", tenant, key, v, op, w.VersionID, w.Deleted)
		}
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	for key := range want {
		if !got[key] {
			errorf(&missing, "tenant %s: resource %s is missing", tenant, key)
		}
	}
	if unexpected+wrong+missing > 0 {
		t.Errorf("tenant %s: %d unexpected resources, %d in the wrong version, %d missing (of %d expected)", tenant, unexpected, wrong, missing, len(want))
	}
	return rows
}

// deadLetters reads the run's dead-letter topic from the start.
func deadLetters(t *testing.T, st stack, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		f := cl.PollFetches(ctx)
		cancel()
		f.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	// Anything beyond want would be a duplicate or a wrong dead letter.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	cancel()
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func bucket(tenant string) string { return "fhirlake-" + tenant }

// TestIntegrationPipeline: ~10k notifications for three tenants through the
// real broker into the real S3 server, checked end to end.
func TestIntegrationPipeline(t *testing.T) {
	st := needStack(t)
	r := newRun(t, st, itTenants, bucket, "")
	expectFile := filepath.Join(r.dir, "expect.ndjson")
	r.fhirlake(t, "generate", "-q", "--tenants", strings.Join(itTenants, ","), "--patients", "110", "--seed", "7",
		"--updates", "0.3", "--deletes", "0.1", "--controls", "6", "--malformed", "5", "--unroutable", "3",
		"--formats", "r4-backport,r5,r4b-history", "--expect", expectFile)
	exp := readExpect(t, expectFile)
	produced := exp.counts.Events + exp.counts.Controls + exp.counts.Malformed + exp.counts.Unroutable
	t.Logf("produced %d notifications: %+v", produced, exp.counts)
	if produced < 9000 {
		t.Fatalf("produced %d notifications, want about 10k", produced)
	}

	c := r.startConsumer(t)
	adm := r.admin(t, st)
	r.waitLag(t, adm, 3*time.Minute)
	m := r.scrape(t)
	stopConsumer(t, c)

	// Offsets are committed: nothing left to read.
	lag, err := consumer.Lag(context.Background(), adm, r.group, []string{r.topic})
	if err != nil || lag.Total != 0 {
		t.Fatalf("lag after stop: %d, %v", lag.Total, err)
	}

	var rows int64
	for _, tn := range itTenants {
		s := r.tenantLake(t, st, tn, bucket(tn))
		n := checkLake(t, s, tn, exp.state[tn])
		deletes := scalar[int64](t, s, "SELECT count(*) FROM resources_all WHERE operation = 'delete' AND resource IS NULL")
		t.Logf("tenant %s: %d rows, %d delete rows, %d resources expected", tn, n, deletes, len(exp.state[tn]))
		if deletes == 0 {
			t.Errorf("tenant %s: no delete rows", tn)
		}
		rows += n
	}

	dls := deadLetters(t, st, r.dlq, exp.counts.Malformed+exp.counts.Unroutable)
	if got, want := len(dls), exp.counts.Malformed+exp.counts.Unroutable; got != want {
		t.Errorf("dead letters: got %d, want %d", got, want)
	}
	for _, d := range dls {
		if header(d, consumer.HeaderErrorReason) == "" || header(d, consumer.HeaderErrorClass) == "" || header(d, consumer.HeaderOriginalTopic) != r.topic {
			t.Errorf("dead letter at %d lacks its reason headers: %v", d.Offset, d.Headers)
		}
		if _, err := strconv.ParseInt(header(d, consumer.HeaderOriginalOffset), 10, 64); err != nil {
			t.Errorf("dead letter original offset: %v", err)
		}
	}
	controls := int(m["fhirlake_consumer_control_messages_total"])
	if controls != exp.counts.Controls {
		t.Errorf("control messages: got %d, want %d", controls, exp.counts.Controls)
	}
	// Every notification carries one change, so rows count notifications.
	if got := int(rows) + controls + len(dls); got != produced {
		t.Errorf("reconciliation: %d rows + %d control + %d dead letters = %d, want %d produced", rows, controls, len(dls), got, produced)
	}
	if int(rows) != exp.counts.Upserts+exp.counts.Deletes {
		t.Errorf("rows: got %d, want %d upserts + %d deletes", rows, exp.counts.Upserts, exp.counts.Deletes)
	}
	t.Logf("reconciled: %d produced = %d rows + %d control + %d dead letters", produced, rows, controls, len(dls))

	if out := r.fhirlake(t, "lag"); !strings.Contains(out, "TOTAL") || !strings.HasSuffix(strings.TrimSpace(out), " 0") {
		t.Errorf("fhirlake lag after catch-up:\n%s", out)
	}

	// The batch layer's tools work on this lake: dbt reads acme's bucket
	// through httpfs with acme's key and builds the marts.
	wantPatients := 0
	for _, e := range exp.state["acme"] {
		if e.ResourceType == "Patient" && !e.Deleted {
			wantPatients++
		}
	}
	db := runDBT(t, st, r, "acme")
	if got := martCount(t, db, "SELECT count(*) FROM patients"); got != wantPatients {
		t.Errorf("dbt patients mart: got %d rows, want %d", got, wantPatients)
	}
	if got := martCount(t, db, "SELECT count(*) FROM patients WHERE birth_sex IS NULL"); got != 0 {
		t.Errorf("dbt patients mart: %d patients without the US Core birth sex extension value", got)
	}
}

// TestIntegrationCrossTenantWriteRefused: a tenant's credentials cannot
// write into another tenant's bucket; the consumer reports the refusal,
// writes nothing elsewhere and commits nothing.
func TestIntegrationCrossTenantWriteRefused(t *testing.T) {
	st := needStack(t)
	ctx := context.Background()
	// The store refuses directly.
	acmeInGlobex, err := sink.NewS3(ctx, sink.S3Options{
		Bucket: bucket("globex"), Endpoint: st.endpoint, PathStyle: true,
		AccessKey: os.Getenv(envName("acme", "ACCESS_KEY")), SecretKey: os.Getenv(envName("acme", "SECRET_KEY")),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := acmeInGlobex.Put(ctx, "speed/intrusion.parquet", f); !errors.Is(err, sink.ErrAccessDenied) {
		t.Fatalf("acme's key writing to globex's bucket: got %v, want access denied", err)
	}
	if _, err := acmeInGlobex.List(ctx, ""); !errors.Is(err, sink.ErrAccessDenied) {
		t.Fatalf("acme's key listing globex's bucket: got %v, want access denied", err)
	}

	// A misconfigured consumer: acme's store points at globex's bucket
	// (with globex absent, so the configuration check cannot see it).
	r := newRun(t, st, []string{"acme"}, func(string) string { return bucket("globex") }, "")
	r.fhirlake(t, "generate", "-q", "--tenants", "acme", "--patients", "2", "--controls", "0", "--malformed", "0", "--unroutable", "0")
	c := r.startConsumer(t)
	deadline := time.Now().Add(60 * time.Second)
	var m map[string]float64
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		resp, err := http.Get("http://" + r.metricsAddr + "/metrics")
		if err != nil {
			continue
		}
		// Only whether the consumer answers matters here; scrape reads the metrics.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		m = r.scrape(t)
		if m[`fhirlake_sink_store_errors_total{class="access_denied"}`] >= 2 {
			break
		}
	}
	if got := m[`fhirlake_sink_store_errors_total{class="access_denied"}`]; got < 2 {
		t.Fatalf("access-denied store errors: got %v, want the refusal reported (and retried in place) at least twice", got)
	}
	lag, err := consumer.Lag(ctx, r.admin(t, st), r.group, []string{r.topic})
	if err != nil {
		t.Fatal(err)
	}
	if lag.Total == 0 {
		t.Fatal("offsets were committed although nothing could be stored")
	}
	stopConsumer(t, c)
	// Nothing reached globex's bucket under this run, and nothing reached
	// any other bucket either.
	for _, tn := range itTenants {
		store, err := sink.NewS3(ctx, sink.S3Options{Bucket: bucket(tn), Prefix: r.prefix, Endpoint: st.endpoint, PathStyle: true,
			AccessKey: os.Getenv(envName(tn, "ACCESS_KEY")), SecretKey: os.Getenv(envName(tn, "SECRET_KEY"))})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := store.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 0 {
			t.Errorf("bucket %s holds %d objects of this run, want none", bucket(tn), len(objs))
		}
	}
}
