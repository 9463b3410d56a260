package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersionPrintsLinkTimeInformation(t *testing.T) {
	defer func(v, c, d string) { version, commit, buildDate = v, c, d }(version, commit, buildDate)
	version, commit, buildDate = "1.4.0", "0123456789abcdef", "2026-01-02T03:04:05Z"
	out, err := runRoot(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fhirlake 1.4.0\n", "commit:   0123456789abcdef\n", "built:    2026-01-02T03:04:05Z\n", "go:       go1.", "duckdb:   v1."} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	version, commit, buildDate = "", "", ""
	if out, _ := runRoot(t, "version"); !strings.HasPrefix(out, "fhirlake ") {
		t.Errorf("version without link-time information:\n%s", out)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("FHIRLAKE_TEST_ACME_ACCESS", "a")
	t.Setenv("FHIRLAKE_TEST_ACME_SECRET", "s")
	good := write("good.yaml", `
kafka: {brokers: ["kafka:9092"], topics: [fhir.notifications], group: fhirlake}
tenants:
  - name: acme
    store: {type: s3, bucket: lake-acme, region: eu-west-1, access_key_env: FHIRLAKE_TEST_ACME_ACCESS, secret_key_env: FHIRLAKE_TEST_ACME_SECRET}
  - name: globex
    store: {type: s3, bucket: lake-globex, role_arn: "arn:aws:iam::123456789012:role/fhirlake-globex"}
serve:
  api_keys: [{tenant: acme, key_sha256: 0000000000000000000000000000000000000000000000000000000000000000}]
`)
	out, err := runRoot(t, "config", "validate", good)
	if err != nil {
		t.Fatalf("valid configuration refused: %v\n%s", err, out)
	}
	for _, want := range []string{good + ": ok", "acme → s3://lake-acme with $FHIRLAKE_TEST_ACME_ACCESS", "globex → s3://lake-globex as arn:aws:iam::123456789012:role/fhirlake-globex"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	// --config works as for every other command.
	if _, err := runRoot(t, "--config", good, "config", "validate"); err != nil {
		t.Errorf("--config: %v", err)
	}

	for name, c := range map[string]struct{ body, want string }{
		"unknown key":    {"kafka: {brokrs: [x]}\n", "brokrs"},
		"missing secret": {"tenants: [{name: acme, store: {type: s3, bucket: b, access_key_env: FHIRLAKE_TEST_UNSET_A, secret_key_env: FHIRLAKE_TEST_UNSET_B}}]\n", "FHIRLAKE_TEST_UNSET_A is not set"},
		"serve key":      {"tenants: [{name: acme, store: {type: local, path: /x}}]\nserve: {api_keys: [{tenant: globex, key_sha256: abc}]}\n", "serve.api_keys[0].tenant"},
		"compact":        {"tenants: [{name: acme, store: {type: local, path: /x}}]\ncompact: {relationship_severity: fatal}\n", "compact.relationship_severity"},
		"no tenants":     {"kafka: {group: g}\n", "no"},
	} {
		_, err := runRoot(t, "config", "validate", write(strings.ReplaceAll(name, " ", "-")+".yaml", c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %q", name, err, c.want)
		}
	}
}
