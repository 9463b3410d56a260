package worker

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirlake/audit"
	"fhirlake/query"
	"fhirlake/query/web"
)

// TestTheFrontAuditsWhatItsWorkersAnswer: the front writes the audit
// record of a request its tenant's worker answered, with the rows the
// worker returned and the error code it answered, which the client never
// sees as trailers of its own.
func TestTheFrontAuditsWhatItsWorkersAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	aw, err := audit.Open(audit.Options{Path: path}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aw.Close() })
	f := newFrontFixture(t, Options{}, query.Options{}, nil, web.Options{Audit: aw})

	// reply is what the test reads of a response besides its body.
	type reply struct {
		StatusCode      int
		Header, Trailer http.Header
	}
	post := func(sql, accept string) (reply, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/tenants/acme/query", strings.NewReader(sql))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Accept", accept)
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return reply{resp.StatusCode, resp.Header, resp.Trailer}, b
	}
	const q = "SELECT id FROM patient"
	csv, csvBody := post(q, "text/csv")
	js, jsBody := post(q, "application/json")
	refused, _ := post("DROP TABLE patient", "text/csv")
	missing, _ := post("SELECT no_such_column FROM patient", "application/json")
	for i, r := range []reply{csv, js, refused, missing} {
		if want := []int{200, 200, 400, 400}[i]; r.StatusCode != want {
			t.Fatalf("request %d: got %d, want %d", i, r.StatusCode, want)
		}
		_, rows := r.Trailer[web.RowsTrailer]
		_, code := r.Trailer[web.ErrorCodeTrailer]
		if rows || code || r.Header.Get(web.RowsTrailer) != "" || strings.Contains(strings.Join(r.Header.Values("Trailer"), ","), "Fhirlake-Rows") {
			t.Errorf("request %d: the worker's report reached the client: %v %v", i, r.Header, r.Trailer)
		}
	}
	if !strings.Contains(string(jsBody), "a1") {
		t.Fatalf("json: %s", jsBody)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var recs []audit.Record
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		recs = append(recs, r)
	}
	type got struct {
		SQL, Status string
		Rows, Bytes int64
		HTTP        int
	}
	wants := []got{
		{q, "ok", 1, int64(len(csvBody)), 200},
		{q, "ok", 1, int64(len(jsBody)), 200},
		{"DROP TABLE patient", "statement_refused", 0, -1, 400},
		{"SELECT no_such_column FROM patient", "query_error", 0, -1, 400},
	}
	if len(recs) != len(wants) {
		t.Fatalf("got %d records, want %d: %+v", len(recs), len(wants), recs)
	}
	for i, w := range wants {
		r := recs[i]
		g := got{r.SQL, r.Status, r.Rows, r.Bytes, r.HTTPStatus}
		if w.Bytes < 0 {
			g.Bytes = -1
		}
		if g != w || r.Tenant != "acme" || r.Source != audit.SourceServe || r.RequestID == "" {
			t.Errorf("record %d: got %+v, want %+v from serve for acme", i, r, w)
		}
	}
	if recs[0].RequestID != csv.Header.Get(web.RequestIDHeader) {
		t.Errorf("request id: got %s, want the response's %s", recs[0].RequestID, csv.Header.Get(web.RequestIDHeader))
	}
}
