//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/internal/testcert"
	"fhirlake/query/querytest"
)

// flightServe is a `fhirlake serve` with Flight SQL over TLS, over two
// small synthetic lakes (acme, globex), each tenant in a worker process.
type flightServe struct {
	flight, https string
	ca            string // the CA's PEM file
	keys          map[string]string
	client        *http.Client
}

func startFlightServe(t *testing.T, timeout time.Duration) *flightServe {
	t.Helper()
	work := t.TempDir()
	ctx := context.Background()
	roots := map[string]string{}
	for i, tn := range []string{"acme", "globex"} {
		roots[tn] = filepath.Join(work, tn)
		if _, err := querytest.SynthLake(ctx, roots[tn], tn, querytest.SynthOptions{Patients: 300 - 100*i, Seed: int64(7 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := testcert.NewCA("fhirlake flight test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server("localhost", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	fs := &flightServe{flight: flightAddr(t), https: freeAddr(t), ca: filepath.Join(work, "ca.pem"),
		keys: map[string]string{"acme": "acme-flight-it-key", "globex": "globex-flight-it-key"}}
	for name, b := range map[string][]byte{"ca.pem": ca.CertPEM(), "tls.crt": pair.Cert, "tls.key": pair.Key} {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Kafka is not read: no completeness, and no other stack's broker asked.
	cfg := fmt.Sprintf(`work_dir: %s
kafka: {brokers: ["127.0.0.1:1"]}
tenants:
  - {name: acme, store: {type: local, path: %s}}
  - {name: globex, store: {type: local, path: %s}}
serve:
  listen: %s
  query_timeout: %s
  tls: {cert_file: %s, key_file: %s}
  flight: {listen: %s}
  api_keys:
    - {tenant: acme, name: acme-dashboards, key_sha256: %s}
    - {tenant: globex, name: globex-dashboards, key_sha256: %s}
`, filepath.Join(work, "work"), roots["acme"], roots["globex"], fs.https, timeout, filepath.Join(work, "tls.crt"), filepath.Join(work, "tls.key"),
		fs.flight, config.HashAPIKey(fs.keys["acme"]), config.HashAPIKey(fs.keys["globex"]))
	cfgPath := filepath.Join(work, "fhirlake.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(os.Args[0], "serve", "--config", cfgPath, "--log-level", "warn")
	srv.Env = append(os.Environ(), "FHIRLAKE_TEST_COMMAND=1")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	fs.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := fs.client.Get("https://" + fs.https + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become healthy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fs
}

// httpRows is the HTTP API's answer to sql: its row count and its rows.
func (fs *flightServe) httpRows(t *testing.T, tenant, sql string) (int, []map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest(http.MethodPost, "https://"+fs.https+"/v1/tenants/"+tenant+"/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fs.keys[tenant])
	req.Header.Set("Content-Type", "application/json")
	resp, err := fs.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Rows     []map[string]any `json:"rows"`
		RowCount int              `json:"row_count"`
	}
	if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP API: %d %s", resp.StatusCode, b)
	}
	return out.RowCount, out.Rows
}

func (fs *flightServe) count(t *testing.T, tenant, sql string) string {
	t.Helper()
	_, rows := fs.httpRows(t, tenant, sql)
	for _, v := range rows[0] {
		return fmt.Sprint(v)
	}
	return ""
}

func needFlightClients(t *testing.T) (python, jar string) {
	t.Helper()
	python, jar = os.Getenv("FHIRLAKE_FLIGHT_PYTHON"), os.Getenv("FHIRLAKE_FLIGHT_JDBC_JAR")
	if python == "" || jar == "" {
		t.Skip(`the Flight SQL clients are not installed: deploy/local/stack install, then eval "$(deploy/local/stack env)"`)
	}
	return python, jar
}

// TestIntegrationFlightSQL: ADBC's Flight SQL driver (PyPI) and the Flight
// SQL JDBC driver (Maven Central) against `fhirlake serve` over TLS, each
// tenant's queries in its own worker: the dashboard queries answer as the
// HTTP API does, the tenant's views are listed with their columns, a
// prepared statement binds its value as data, another tenant's key is
// refused and sees no row, writes are refused, and a runaway query is cut
// off by serve.query_timeout.
func TestIntegrationFlightSQL(t *testing.T) {
	python, jar := needFlightClients(t)
	fs := startFlightServe(t, 4*time.Second)

	t.Run("ADBC", func(t *testing.T) {
		queries, _ := json.Marshal(flightDashboards)
		cmd := exec.Command(python, filepath.Join("testdata", "flight", "adbc_client.py"),
			"grpc+tls://"+fs.flight, fs.keys["acme"], fs.keys["globex"], "acme", string(queries), fs.ca)
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("adbc_client.py: %v\n%s", err, b)
		}
		var got struct {
			Dashboards []struct {
				Rows    int      `json:"rows"`
				Columns []string `json:"columns"`
			} `json:"dashboards"`
			Tables            []string `json:"tables"`
			PatientColumns    []string `json:"patient_columns"`
			PreparedFemale    int      `json:"prepared_female"`
			PreparedInjection int      `json:"prepared_injection"`
			LiteralFemale     int      `json:"literal_female"`
			InsertError       string   `json:"insert_error"`
			UpdateError       string   `json:"update_error"`
			RunawayError      string   `json:"runaway_error"`
			OtherKeyError     string   `json:"other_key_error"`
			OtherKeyRows      any      `json:"other_key_rows"`
			UnknownKeyError   string   `json:"unknown_key_error"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		t.Logf("ADBC saw: %s", b)
		for i, q := range flightDashboards {
			want, _ := fs.httpRows(t, "acme", q)
			if i >= len(got.Dashboards) || got.Dashboards[i].Rows != want || want == 0 {
				t.Errorf("dashboard %d: ADBC got %+v, the HTTP API %d rows", i, got.Dashboards, want)
			}
		}
		if !slices.Contains(got.Tables, "patient") || !slices.Contains(got.Tables, "observation") || !slices.Contains(got.PatientColumns, "gender") {
			t.Errorf("tables %v, patient's columns %v", got.Tables, got.PatientColumns)
		}
		if want := fs.count(t, "acme", "SELECT count(*) FROM patient WHERE gender = 'female'"); fmt.Sprint(got.PreparedFemale) != want || got.LiteralFemale != got.PreparedFemale || got.PreparedInjection != 0 {
			t.Errorf("prepared: female %d (literal %d, HTTP %s), injection %d", got.PreparedFemale, got.LiteralFemale, want, got.PreparedInjection)
		}
		for what, e := range map[string][2]string{
			"INSERT":        {got.InsertError, "statement_refused"},
			"update":        {got.UpdateError, "read-only"},
			"runaway query": {got.RunawayError, "did not finish within"},
			"globex's key":  {got.OtherKeyError, "does not open tenant"},
			"unknown key":   {got.UnknownKeyError, "unknown API key"},
		} {
			if !strings.Contains(e[0], e[1]) {
				t.Errorf("%s: got error %q, want one saying %q", what, e[0], e[1])
			}
		}
		if got.OtherKeyRows != nil {
			t.Errorf("globex's key read %v", got.OtherKeyRows)
		}
	})

	t.Run("JDBC", func(t *testing.T) {
		classes := t.TempDir()
		if out, err := exec.Command("javac", "-d", classes, filepath.Join("testdata", "flight", "FlightJdbcClient.java")).CombinedOutput(); err != nil {
			t.Fatalf("javac: %v\n%s", err, out)
		}
		url := fmt.Sprintf("jdbc:arrow-flight-sql://%s?useEncryption=true&tlsRootCerts=%s", fs.flight, fs.ca)
		cmd := exec.Command("java", "--add-opens=java.base/java.nio=ALL-UNNAMED", "-cp", jar+string(os.PathListSeparator)+classes,
			"FlightJdbcClient", url, fs.keys["acme"], fs.keys["globex"], "acme", flightDashboards[0])
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("FlightJdbcClient: %v\n%s", err, b)
		}
		t.Logf("JDBC saw:\n%s", b)
		got := map[string]string{}
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok {
				got[k] = v
			}
		}
		want, _ := fs.httpRows(t, "acme", flightDashboards[0])
		female := fs.count(t, "acme", "SELECT count(*) FROM patient WHERE gender = 'female'")
		for k, w := range map[string]string{
			"dashboard_rows":  fmt.Sprintf("ok %d", want),
			"prepared_female": "ok " + female,
			"literal_female":  "ok " + female,
		} {
			if got[k] != w {
				t.Errorf("%s: got %q, want %q", k, got[k], w)
			}
		}
		for k, w := range map[string]string{
			"tables":          "observation",
			"patient_columns": "gender",
			"insert":          "statement_refused",
			"runaway":         "did not finish within",
			"other_key":       "does not open tenant",
		} {
			if !strings.Contains(got[k], w) {
				t.Errorf("%s: got %q, want it to hold %q", k, got[k], w)
			}
		}
		for _, k := range []string{"insert", "runaway", "other_key"} {
			if !strings.HasPrefix(got[k], "error ") {
				t.Errorf("%s: got %q, want an error", k, got[k])
			}
		}
	})
}
