package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/internal/bulkserver"
	"fhirlake/lake"
)

// lakeState returns the latest row of every resource of a local lake's raw
// dataset that is not deleted: Type/id → the resource's JSON.
func lakeState(t *testing.T, root string) map[string]string {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(fmt.Sprintf(`SELECT resource_type, id, operation, resource FROM read_parquet('%s/speed/resources/*/*.parquet')
		QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY TRY_CAST(version_id AS BIGINT) DESC NULLS FIRST, ingest_time DESC) = 1`, root))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var typ, id, op string
		var res sql.NullString
		if err := rows.Scan(&typ, &id, &op, &res); err != nil {
			t.Fatal(err)
		}
		if op != "delete" {
			got[typ+"/"+id] = res.String
		}
	}
	return got
}

// TestBackfillFromServer exports a Bulk Data server (SMART Backend
// Services, ES384) into a local lake, then, after changes on the server,
// again with --since-last: the second export asks for _since the first's
// transactionTime, and the lake holds the server's state resource by
// resource.
func TestBackfillFromServer(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	srv := bulkserver.New(bulkserver.Options{ClientID: "lake", KeyID: "k1", PublicKey: &key.PublicKey, Polls: 1, RetryAfter: "1", FileLines: 5})
	defer srv.Close()
	for i := range 12 {
		p := fmt.Sprintf("p%d", i)
		srv.Put("Patient", p, p, map[string]any{"gender": "male", "birthDate": "1970-01-02"})
		srv.Put("Observation", "o"+p, p, map[string]any{"status": "final", "code": map[string]any{"text": "x"}, "subject": map[string]any{"reference": "Patient/" + p}})
	}

	dir := t.TempDir()
	root := filepath.Join(dir, "lake", "acme")
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fhirlake.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("work_dir: %s\ntenants:\n  - name: acme\n    store: {type: local, path: %s}\n", filepath.Join(dir, "work"), root)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		r := newRoot()
		r.SetOut(&out)
		r.SetErr(&out)
		r.SetArgs(append([]string{"--config", cfgPath, "backfill", "-q", "--tenant", "acme", "--from-server", srv.URL,
			"--client-id", "lake", "--private-key", keyFile, "--key-id", "k1", "--max-poll-wait", "10ms"}, args...))
		err := r.ExecuteContext(context.Background())
		return out.String(), err
	}
	want := func() map[string]string {
		m := map[string]string{}
		for k, r := range srv.Resources() {
			m[k] = string(r.Body)
		}
		return m
	}
	check := func(what string) {
		t.Helper()
		got, want := lakeState(t, root), want()
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %s: lake has %q, server %q", what, k, got[k], w)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: %s: in the lake, not on the server", what, k)
			}
		}
	}

	if out, err := run("--since-last"); err != nil {
		t.Fatalf("first export: %v\n%s", err, out)
	} else if !strings.Contains(out, "no earlier export") {
		t.Errorf("first export's output does not say it exports everything:\n%s", out)
	}
	check("first export")
	b, err := os.ReadFile(filepath.Join(root, lake.ExportsKey))
	if err != nil {
		t.Fatal(err)
	}
	first, err := lake.DecodeExports(b)
	if err != nil {
		t.Fatal(err)
	}
	src, ok := first.Last(srv.URL + "/$export")
	if !ok || src.Files != 6 || src.Resources != 24 {
		t.Fatalf("recorded export: got %+v, want 6 files and 24 resources of %s/$export", first.Sources, srv.URL)
	}

	srv.Put("Patient", "p3", "p3", map[string]any{"gender": "female"})
	srv.Put("Observation", "new", "p3", map[string]any{"status": "preliminary"})
	srv.Delete("Observation", "op4")
	out, err := run("--since-last")
	if err != nil {
		t.Fatalf("second export: %v\n%s", err, out)
	}
	check("second export")
	var kicks []string
	for _, r := range srv.Requests() {
		if r.Path == "/$export" {
			kicks = append(kicks, r.Query)
		}
	}
	wantSince := url.Values{"_since": {src.NextSince.UTC().Format(time.RFC3339Nano)}}.Encode()
	if len(kicks) != 2 || kicks[0] != "" || kicks[1] != wantSince {
		t.Errorf("kick-off queries: got %q, want none, then %s", kicks, wantSince)
	}
	if !strings.Contains(out, "2 resources, 1 deletes") {
		t.Errorf("second export: want the two changed resources and the delete loaded:\n%s", out)
	}

	// Errors end the command with the server's message.
	if out, err := run("--type", "Claim"); err == nil || !strings.Contains(err.Error(), "Resource type Claim is not supported") {
		t.Errorf("unsupported type: got %v, want the server's OperationOutcome\n%s", err, out)
	}
	if out, err := run("--since", "yesterday"); err == nil || !strings.Contains(err.Error(), "--since \"yesterday\"") {
		t.Errorf("bad --since: got %v\n%s", err, out)
	}
	if _, err := run("--token-env", "FHIRLAKE_TEST_NO_SUCH_TOKEN"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("SMART and a token: got %v, want a refusal", err)
	}
	if _, err := run("some-file.ndjson"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("files and --from-server: got %v, want a refusal", err)
	}
}
