//go:build integration

// Integration tests of tenants configured with a role (store.role_arn) and no static
// key, against the stack's local STS: moto's server, serving STS, IAM and S3 with IAM
// authentication on. fhirlake runs as the stack's base user, which may only assume the
// tenants' roles, as a pod's own identity would; each role may use only its tenant's
// bucket, and S3 accepts a session's key only with its session token.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"fhirlake/catalog"
	"fhirlake/config"
	"fhirlake/lake"
	"fhirlake/sink"
)

// stsStack is the local STS as `deploy/local/stack env` describes it.
type stsStack struct {
	endpoint, account string
	// key and secret are the base user's.
	key, secret string
}

func needSTS(t *testing.T) stsStack {
	t.Helper()
	s := stsStack{endpoint: os.Getenv("FHIRLAKE_STS_ENDPOINT"), account: os.Getenv("FHIRLAKE_STS_ACCOUNT"),
		key: os.Getenv("FHIRLAKE_STS_ACCESS_KEY"), secret: os.Getenv("FHIRLAKE_STS_SECRET_KEY")}
	if s.endpoint == "" || s.account == "" || s.key == "" || s.secret == "" {
		t.Fatal(`the local STS is not configured: run "make test", or eval "$(deploy/local/stack env)" after "deploy/local/stack up"`)
	}
	return s
}

func (s stsStack) role(name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:role/%s", s.account, name)
}

// roleEnv is the environment of a fhirlake process running as the base user through
// the default AWS chain: its key in AWS_*, and no tenant key anywhere.
func (s stsStack) roleEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "FHIRLAKE_TENANT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "AWS_ACCESS_KEY_ID="+s.key, "AWS_SECRET_ACCESS_KEY="+s.secret,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
}

// roleStore is what a reader with the role sees of the run's prefix of a bucket.
func (s stsStack) roleStore(t *testing.T, bucket, prefix, role string) sink.Store {
	t.Helper()
	store, err := sink.NewS3(context.Background(), sink.S3Options{
		Bucket: bucket, Prefix: prefix, Endpoint: s.endpoint, PathStyle: true,
		AccessKey: s.key, SecretKey: s.secret, RoleARN: role, STSEndpoint: s.endpoint, SessionName: "fhirlake-reader",
	})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// writePatients writes n Patients as bulk-export NDJSON, versioned v<version>.
func writePatients(t *testing.T, path string, from, n, version int) {
	t.Helper()
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, `{"resourceType":"Patient","id":"pat-%03d","meta":{"versionId":"%d","lastUpdated":"2026-03-0%dT10:00:00Z"},"gender":"female","birthDate":"1980-01-01","name":[{"family":"Role","given":["P%d"]}]}`+"\n",
			i, version, version, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationCompactWithRole: a tenant with only role_arn (no key, no Secret)
// is backfilled and compacted by processes that hold nothing but the base user's key;
// dbt reads its bucket with the role's temporary credentials, session token included.
// The snapshot is then read as a reader with the role would: the patients mart holds
// every patient, at its last version after an incremental run, which reads the
// previous snapshot from the bucket too. A tenant whose role does not trust the base
// user fails at once with the role's refusal, and the exit status says so.
func TestIntegrationCompactWithRole(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	sts := needSTS(t)
	id := fmt.Sprintf("it%d", time.Now().UnixNano())
	prefix := "runs/" + id
	dir := t.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, "kafka:\n  brokers: [%q]\nwork_dir: %q\n%s  overlap: 0s\ntenants:\n", strings.Join(st.brokers, ","), filepath.Join(dir, "work"), compactSettings)
	for _, tn := range []struct{ name, bucket, role string }{
		{"acme", bucket("acme"), sts.role("fhirlake-acme")},
		{"globex", bucket("globex"), sts.role("fhirlake-untrusted")},
	} {
		fmt.Fprintf(&conf, "  - name: %s\n    store:\n      type: s3\n      bucket: %s\n      prefix: %s\n      endpoint: %s\n      region: us-east-1\n      path_style: true\n      role_arn: %s\n      sts_endpoint: %s\n",
			tn.name, tn.bucket, prefix, sts.endpoint, tn.role, sts.endpoint)
	}
	const serveKey = "it-role-key"
	fmt.Fprintf(&conf, "serve:\n  refresh_interval: 250ms\n  api_keys: [{tenant: acme, key_sha256: %s}]\n", config.HashAPIKey(serveKey))
	catalogDB := filepath.Join(dir, "catalog.db")
	fmt.Fprintf(&conf, "iceberg:\n  catalog: sql\n  uri: %s\n  warehouse: _iceberg\n", catalogDB)
	r := &run{id: id, prefix: prefix, dir: dir, config: filepath.Join(dir, "fhirlake.yaml")}
	if err := os.WriteFile(r.config, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	fhirlake := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		c := r.cmd(ctx, args...)
		c.Env = sts.roleEnv()
		out, err := c.CombinedOutput()
		if c.ProcessState == nil {
			t.Fatalf("fhirlake %s: %v", strings.Join(args, " "), err)
		}
		return string(out), c.ProcessState.ExitCode()
	}
	must := func(args ...string) string {
		t.Helper()
		out, code := fhirlake(args...)
		if code != 0 {
			t.Fatalf("fhirlake %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}

	first := filepath.Join(dir, "patients-v1.ndjson")
	writePatients(t, first, 0, 30, 1)
	must("backfill", "--tenant", "acme", "-q", first)
	out := must("compact", "--tenant", "acme", "--log-format", "json")
	t.Logf("first compaction:\n%s", lastLines(out, 3))
	reader := sts.roleStore(t, bucket("acme"), prefix, sts.role("fhirlake-acme"))
	snap := currentSnapshot(t, reader)
	if !snap.m.FullRefresh || snap.m.Tenant != "acme" {
		t.Fatalf("first snapshot %s: full=%v tenant=%s", snap.m.SnapshotID, snap.m.FullRefresh, snap.m.Tenant)
	}
	if n := count(t, snap, "SELECT count(*) FROM patients"); n != 30 {
		t.Errorf("the patients mart holds %d rows, want 30", n)
	}

	// S3 dates objects to the second: the second load is newer than the watermark.
	time.Sleep(1100 * time.Millisecond)
	second := filepath.Join(dir, "patients-v2.ndjson")
	writePatients(t, second, 20, 20, 2)
	must("backfill", "--tenant", "acme", "-q", second)
	out = must("compact", "--tenant", "acme", "--log-format", "json")
	t.Logf("incremental compaction:\n%s", lastLines(out, 3))
	next := currentSnapshot(t, reader)
	if next.m.FullRefresh || next.m.Previous != snap.m.SnapshotID {
		t.Errorf("second snapshot %s: full=%v previous=%s, want an incremental run on %s", next.m.SnapshotID, next.m.FullRefresh, next.m.Previous, snap.m.SnapshotID)
	}
	if n := count(t, next, "SELECT count(*) FROM patients"); n != 40 {
		t.Errorf("the patients mart holds %d rows, want 40", n)
	}
	if n := count(t, next, "SELECT count(*) FROM int_resources__latest WHERE version_id = '2'"); n != 20 {
		t.Errorf("%d resources at version 2, want 20", n)
	}

	// The change tables are written with the role's credentials too, and read back
	// with them: every change of the raw dataset, once.
	out = must("register", "--once", "--tenant", "acme")
	t.Logf("register:\n%s", out)
	if n := icebergRows(t, catalog.Options{Type: catalog.TypeSQL, URI: catalogDB, Tenant: "acme",
		Warehouse: "s3://" + bucket("acme") + "/" + prefix + "/_iceberg",
		S3:        catalog.S3{Endpoint: sts.endpoint, Region: "us-east-1", PathStyle: true, Credentials: reader.(*sink.S3).Credentials()}},
		lake.RawDataset, lake.RawSchema); n != 50 {
		t.Errorf("acme.%s holds %d rows, want the 50 changes", lake.RawDataset, n)
	}

	// The query server reads acme's bucket through the role too: its worker gets the
	// role's temporary key from the front, never the base user's.
	addr := freeAddr(t)
	srv := r.cmd(context.Background(), "serve", "--listen", addr, "--log-level", "warn")
	srv.Env = sts.roleEnv()
	var serveLog strings.Builder
	srv.Stdout, srv.Stderr = &serveLog, &serveLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = srv.Process.Signal(os.Interrupt)
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("serve:\n%s", lastLines(serveLog.String(), 30))
		}
	}()
	api := &serveClient{t: t, base: "http://" + addr}
	api.waitHealthy(60 * time.Second)
	if got := api.scalar("acme", serveKey, "SELECT count(*) FROM patient"); got != "40" {
		t.Errorf("acme's patients through the query server: %s, want 40", got)
	}
	for _, pid := range children(srv.Process.Pid) {
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err == nil && strings.Contains(string(environ), sts.secret) {
			t.Errorf("the worker %d holds the base user's secret in its environment", pid)
		}
	}

	out, code := fhirlake("compact", "--tenant", "globex", "--log-format", "json")
	refusal := "assume role " + sts.role("fhirlake-untrusted")
	if code == 0 || !strings.Contains(out, refusal) || !strings.Contains(out, "AccessDenied") {
		t.Errorf("compact with a role that cannot be assumed: exit %d, want non-zero and %q with AccessDenied:\n%s", code, refusal, out)
	}
	if runs, _ := os.ReadDir(filepath.Join(dir, "work", "compact", "globex")); len(runs) > 0 {
		t.Errorf("dbt ran for a tenant whose role could not be assumed")
	}
	if m, err := sink.ReadManifest(context.Background(), sts.roleStore(t, bucket("globex"), prefix, sts.role("fhirlake-globex"))); err != nil || m != nil {
		t.Errorf("globex: manifest %v, %v; want none", m, err)
	}
	if objs, err := reader.List(context.Background(), lake.BatchPrefix); err != nil || len(objs) == 0 {
		t.Errorf("acme's batch layer: %d objects, %v", len(objs), err)
	}
}

// icebergRows counts the rows of one of a tenant's Iceberg tables, read through the
// catalog with the options' file IO.
func icebergRows(t *testing.T, o catalog.Options, name string, schema *arrow.Schema) int64 {
	t.Helper()
	ctx := context.Background()
	cat, err := catalog.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	tbl, err := cat.Table(ctx, name, schema)
	if err != nil {
		t.Fatal(err)
	}
	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatalf("scan %s: %v", name, err)
	}
	defer at.Release()
	return at.NumRows()
}

func count(t *testing.T, s snapshot, q string) int {
	t.Helper()
	var n int
	if err := s.db(t).QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
