//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/lake"
	"fhirlake/sink"
)

// TestIntegrationServeReadsIcebergSnapshot: the query server's sandboxed workers
// read an S3 tenant's batch snapshot through the Iceberg tables that
// _manifest/iceberg.json names, with the tenant's key only. After a full and an
// incremental compaction with an iceberg section, `fhirlake serve` answers; with
// the merged models' changed-key files deleted from the bucket a new server
// answers the same (the tables' position deletes stand in for them); with the
// pointer deleted too, a new server reads the snapshot's files and fails on the
// missing ones.
func TestIntegrationServeReadsIcebergSnapshot(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	needIceberg(t)
	if os.Getenv("FHIRLAKE_ICEBERG_EXTENSION") == "" || os.Getenv("FHIRLAKE_AVRO_EXTENSION") == "" {
		t.Skip("FHIRLAKE_ICEBERG_EXTENSION and FHIRLAKE_AVRO_EXTENSION unset (eval \"$(deploy/local/stack env)\")")
	}
	ctx := context.Background()
	tenant, key := "acme", "it-iceberg-serve-key"
	serveSection := fmt.Sprintf("serve:\n  api_keys:\n    - {tenant: %s, key_sha256: %s}\n", tenant, config.HashAPIKey(key))
	r := newRun(t, st, []string{tenant}, bucket, compactSettings+"  overlap: 0s\n  rebase_share: 0.9\n"+serveSection)
	merged, err := mergeYAML(readFile(t, r.config), "iceberg:\n  catalog: sql\n  uri: \"\"\n  uri_env: FHIRLAKE_STACK_POSTGRES_URI\n  warehouse: _iceberg_serve\n  name: "+r.id+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, []byte(merged), 0o644); err != nil {
		t.Fatal(err)
	}
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", tenant, "--patients", "40", "--seed", "41",
		"--updates", "0.3", "--deletes", "0.15", "--malformed", "0", "--unroutable", "0")
	store := r.tenantStore(t, st, tenant)

	// A full run, then an incremental one with updates and deletes: merged models
	// whose tables carry position deletes.
	s.produce(t, s.total()/2)
	r.consumeAll(t, st)
	r.mustCompact(t)
	s.produce(t, -1)
	r.consumeAll(t, st)
	r.mustCompact(t)
	m, err := sink.ReadManifest(ctx, store)
	if err != nil || m == nil {
		t.Fatalf("manifest %v, %v", m, err)
	}
	var changedKeys []string
	for _, name := range m.ModelNames() {
		if m.Models[name].Merged() {
			changedKeys = append(changedKeys, m.Models[name].Changed.PartFiles()...)
		}
	}
	if len(changedKeys) == 0 {
		t.Fatal("the incremental run merged no model on read")
	}
	var ptr bytes.Buffer
	if err := store.Get(ctx, lake.IcebergKey, &ptr); err != nil {
		t.Fatalf("no %s after the tables' commits: %v", lake.IcebergKey, err)
	}

	// Counts per type, the latest versions, a mart's and a typed view's rows, every
	// mart's count: one value.
	parts := []string{
		`(SELECT coalesce(string_agg(resource_type || ':' || n, ',' ORDER BY resource_type), '') FROM (SELECT resource_type, count(*) AS n FROM resources GROUP BY 1))`,
		`(SELECT md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, '') || '/' || md5(resource::VARCHAR), ',' ORDER BY resource_type, id), '')) FROM resources_latest)`,
		`(SELECT md5(coalesce(string_agg(patient_id || '/' || coalesce(version_id, '') || '/' || coalesce(gender, '') || '/' || coalesce(CAST(birth_date AS VARCHAR), ''), ',' ORDER BY patient_id), '')) FROM patients)`,
		`(SELECT count(*)::VARCHAR || '/' || md5(coalesce(string_agg(_resource_id || '/' || coalesce(_version_id, ''), ',' ORDER BY _resource_id, _row), '')) FROM observation)`,
	}
	for _, name := range m.ModelNames() {
		if _, state := lake.ParseStateModel(name); !state {
			parts = append(parts, "'"+name+"=' || (SELECT count(*) FROM "+name+")")
		}
	}
	question := "SELECT " + strings.Join(parts, " || ' | ' || ")

	// Each step asks a server of its own: new workers, new sessions, nothing
	// cached from the step before.
	before := askServe(t, r, "all files and the pointer", tenant, key, question)
	if before.status != http.StatusOK || !strings.Contains(before.answer, "patients=") {
		t.Fatalf("with every file and the pointer: %d %s", before.status, before.body)
	}
	for _, k := range changedKeys {
		if err := store.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	viaTables := askServe(t, r, "without the changed keys", tenant, key, question)
	if viaTables.status != http.StatusOK || viaTables.answer != before.answer {
		t.Fatalf("without the merged models' changed-key files: %d %s\nwant %s\n%s", viaTables.status, viaTables.body, before.answer, lastLines(viaTables.log, 6))
	}
	if strings.Contains(viaTables.log, "not its Iceberg tables") {
		t.Fatalf("the worker did not read the tables:\n%s", viaTables.log)
	}
	t.Logf("snapshot %s, %d changed-key files deleted: %s", m.SnapshotID, len(changedKeys), viaTables.answer)

	if err := store.Delete(ctx, lake.IcebergKey); err != nil {
		t.Fatal(err)
	}
	viaFiles := askServe(t, r, "without the pointer", tenant, key, question)
	if viaFiles.status == http.StatusOK {
		t.Fatalf("the snapshot's files read without their changed keys: %s", viaFiles.answer)
	}
	missing := false
	for _, k := range changedKeys {
		missing = missing || strings.Contains(viaFiles.log, k)
	}
	if !missing {
		t.Fatalf("without the pointer: %d %s; the log names no changed-key file:\n%s", viaFiles.status, viaFiles.body, viaFiles.log)
	}
	t.Logf("without the pointer: %d %s\n%s", viaFiles.status, viaFiles.body, lastLines(viaFiles.log, 6))
}

// serveAnswer is one answer of the query API: its status, its body, the first
// value of its first row, and the server's log.
type serveAnswer struct {
	status int
	body   string
	answer string
	log    string
}

// askServe starts `fhirlake serve`, sends sql once it is healthy, and stops it.
func askServe(t *testing.T, r *run, step, tenant, key, sql string) serveAnswer {
	t.Helper()
	addr := freeAddr(t)
	logPath := filepath.Join(r.dir, "serve-"+strings.ReplaceAll(step, " ", "-")+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c := r.cmd(context.Background(), "serve", "--listen", addr, "--log-level", "info")
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer stopServe(t, c)
	api := &serveClient{t: t, base: "http://" + addr}
	api.waitHealthy(60 * time.Second)

	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest("POST", api.base+"/v1/tenants/"+tenant+"/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	a := serveAnswer{status: resp.StatusCode, body: string(raw)}
	var res struct {
		Columns []struct{ Name string }
		Rows    []map[string]any
	}
	if a.status == http.StatusOK {
		if err := json.Unmarshal(raw, &res); err != nil || len(res.Rows) != 1 || len(res.Columns) != 1 {
			t.Fatalf("%s: %s (%v)", step, raw, err)
		}
		a.answer = fmt.Sprint(res.Rows[0][res.Columns[0].Name])
	}
	stopServe(t, c)
	a.log = readFile(t, logPath)
	return a
}

// stopServe interrupts serve and waits for it (killing it after 15 s); a second
// call does nothing.
func stopServe(t *testing.T, c *exec.Cmd) {
	t.Helper()
	if c.ProcessState != nil {
		return
	}
	_ = c.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() {
		if err := c.Wait(); err != nil {
			t.Logf("serve exited: %v", err)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}
