//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"fhirlake/internal/testenv"
	"fhirlake/query"
)

// exportHTTP sends the requests of the export tests to HAPI: loading a
// transaction of 500 resources takes tens of seconds on a busy machine.
var exportHTTP = &http.Client{Timeout: 5 * time.Minute}

// hapiDo sends a request to url (absolute) on HAPI, failing the test on anything but 2xx.
func hapiDo(t *testing.T, method, url string, body []byte) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := exportHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %.2000s", method, url, resp.Status, b)
	}
	return b
}

// transaction PUTs resources (JSON objects with resourceType and id) in one
// transaction Bundle.
func putAll(t *testing.T, h *hapiServer, resources []json.RawMessage) {
	t.Helper()
	type entry struct {
		Resource json.RawMessage   `json:"resource"`
		Request  map[string]string `json:"request"`
	}
	var entries []entry
	for _, r := range resources {
		var head struct{ ResourceType, ID string }
		if err := json.Unmarshal(r, &head); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry{Resource: r, Request: map[string]string{"method": "PUT", "url": head.ResourceType + "/" + head.ID}})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	hapiDo(t, http.MethodPost, h.base, b)
}

// exists reports whether a read of path (/Type/id) finds the resource.
func hapiHas(t *testing.T, h *hapiServer, path string) bool {
	t.Helper()
	resp, err := exportHTTP.Get(h.base + path)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// search reads every resource of a type through the search API, following
// the Bundle's next links: id → the resource.
func searchAll(t *testing.T, h *hapiServer, typ string) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	next := h.base + "/" + typ + "?_count=500"
	for pages := 0; next != ""; pages++ {
		if pages > 10_000 {
			t.Fatalf("search %s: more than 10,000 pages", typ)
		}
		var page struct {
			Link []struct {
				Relation, URL string
			}
			Entry []struct {
				Resource json.RawMessage
			}
		}
		if err := json.Unmarshal(hapiDo(t, http.MethodGet, next, nil), &page); err != nil {
			t.Fatal(err)
		}
		next = ""
		for _, l := range page.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		for _, e := range page.Entry {
			var head struct{ ID string }
			if err := json.Unmarshal(e.Resource, &head); err != nil {
				t.Fatal(err)
			}
			out[head.ID] = e.Resource
		}
	}
	return out
}

// syntheaOrder puts referenced types before the types referring to them, so
// that HAPI's referential integrity accepts each transaction.
var syntheaOrder = []string{"Organization", "Practitioner", "Patient", "Encounter", "Condition", "AllergyIntolerance",
	"Procedure", "Immunization", "MedicationRequest", "Observation", "DiagnosticReport", "ImagingStudy", "Goal",
	"CarePlan", "Claim", "ExplanationOfBenefit"}

// loadSynthea PUTs the shared Synthea sample (about 2,800 resources) into
// HAPI, type by type; it returns the count, 0 when the sample is absent.
func loadSynthea(t *testing.T, h *hapiServer) int {
	t.Helper()
	shared := os.Getenv("FHIRLAKE_SHARED")
	if shared == "" {
		shared = filepath.Join(testenv.RepoRoot(), "..", "shared")
	}
	dir := filepath.Join(shared, "data", "synthea-small")
	n := 0
	for _, typ := range syntheaOrder {
		f, err := os.Open(filepath.Join(dir, typ+".ndjson"))
		if err != nil {
			t.Logf("no Synthea %s: %v", typ, err)
			return n
		}
		var batch []json.RawMessage
		seen := map[string]bool{} // the sample repeats some Organizations
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var head struct{ ID string }
			if err := json.Unmarshal(sc.Bytes(), &head); err != nil {
				t.Fatal(err)
			}
			if seen[head.ID] {
				continue
			}
			seen[head.ID] = true
			batch = append(batch, json.RawMessage(bytes.Clone(sc.Bytes())))
			if len(batch) == 500 {
				putAll(t, h, batch)
				n, batch = n+len(batch), nil
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if len(batch) > 0 {
			putAll(t, h, batch)
			n += len(batch)
		}
	}
	return n
}

// generated are patients with observations and an encounter each, under ids
// of the run.
func generated(run string, patients, obsEach int) (pats, rest []json.RawMessage) {
	for i := range patients {
		p := fmt.Sprintf("%s-p%d", run, i)
		pats = append(pats, json.RawMessage(fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":"female","birthDate":"19%02d-02-03","name":[{"family":"Export","given":["P%d"]}]}`, p, i%100, i)))
		rest = append(rest, json.RawMessage(fmt.Sprintf(`{"resourceType":"Encounter","id":"%s-e","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/%s"}}`, p, p)))
		for j := range obsEach {
			rest = append(rest, json.RawMessage(fmt.Sprintf(`{"resourceType":"Observation","id":"%s-o%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"},"encounter":{"reference":"Encounter/%s-e"},"valueQuantity":{"value":%d,"unit":"/min"}}`, p, j, p, p, 60+j)))
		}
	}
	return pats, rest
}

// latest reads a tenant's current state from its lake: Type/id → version
// and resource, deletes left out.
func latest(t *testing.T, s *query.Session, types []string) map[string]lakeResource {
	t.Helper()
	rows, err := s.Query(context.Background(), fmt.Sprintf("SELECT resource_type, id, version_id, resource FROM resources_latest WHERE operation = 'upsert' AND resource_type IN ('%s')", strings.Join(types, "','")))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]lakeResource{}
	for rows.Next() {
		var typ, id string
		var ver, res *string
		if err := rows.Scan(&typ, &id, &ver, &res); err != nil {
			t.Fatal(err)
		}
		var lr lakeResource
		if ver != nil {
			lr.version = *ver
		}
		if res != nil {
			lr.json = *res
		}
		out[typ+"/"+id] = lr
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type lakeResource struct{ version, json string }

// compareWithHAPI checks that the lake holds exactly what HAPI's search
// returns for the types (keep narrows HAPI's side): the same ids, versions
// and content.
func compareWithHAPI(t *testing.T, what string, h *hapiServer, s *query.Session, types []string, keep func(typ, id string) bool) int {
	t.Helper()
	got := latest(t, s, types)
	want := map[string]json.RawMessage{}
	for _, typ := range types {
		for id, r := range searchAll(t, h, typ) {
			if keep == nil || keep(typ, id) {
				want[typ+"/"+id] = r
			}
		}
	}
	bad := 0
	errorf := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(what+": "+format, args...)
		}
	}
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			errorf("%s: in HAPI, not in the lake", key)
			continue
		}
		var wm, gm map[string]any
		if err := json.Unmarshal(w, &wm); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(g.json), &gm); err != nil {
			errorf("%s: the lake's JSON: %v", key, err)
			continue
		}
		if v := wm["meta"].(map[string]any)["versionId"]; v != g.version {
			errorf("%s: version %s in the lake, %v in HAPI", key, g.version, v)
		}
		if !reflect.DeepEqual(wm, gm) {
			errorf("%s: content differs:\nlake %.600s\nHAPI %.600s", key, g.json, w)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			errorf("%s: in the lake, not in HAPI's search", key)
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d differences between the lake (%d resources) and HAPI (%d)", what, bad, len(got), len(want))
	}
	return len(want)
}

var exportSummary = regexp.MustCompile(`export of (\S+): (\d+) files, (\d+) bytes downloaded, (\d+) resources, (\d+) deletes; the server built it in ([0-9.]+[a-zµ]+(?:[0-9.]+[a-zµ]+)*)`)

// exported runs backfill --from-server and returns its output and the
// resources it loaded.
func exported(t *testing.T, r *run, tenant, base string, args ...string) (string, int) {
	t.Helper()
	out := r.fhirlake(t, append([]string{"backfill", "-q", "--tenant", tenant, "--from-server", base, "--max-poll-wait", "1s"}, args...)...)
	m := exportSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no export summary in:\n%s", out)
	}
	n, _ := strconv.Atoi(m[4])
	return out, n
}

// TestIntegrationExportFromHAPI (issue 19 (c)): HAPI FHIR's $export at
// system, Group and Patient level into a tenant's S3 lake, each compared
// resource by resource (ids, versions, content) with HAPI's own search
// results; _since honoured, and --since-last picking up only the changes
// made after the last export.
func TestIntegrationExportFromHAPI(t *testing.T) {
	st := needStack(t)
	h := needHAPI(t)
	const tenant = "globex"
	runID := fmt.Sprintf("x%d", time.Now().UnixNano()%1_000_000_000)
	synthea := loadSynthea(t, h)
	pats, rest := generated(runID, 20, 4)
	putAll(t, h, pats)
	putAll(t, h, rest)
	members := []string{runID + "-p1", runID + "-p2", runID + "-p3"}
	var refs []string
	for _, m := range members {
		refs = append(refs, fmt.Sprintf(`{"entity":{"reference":"Patient/%s"}}`, m))
	}
	group := runID + "-g"
	putAll(t, h, []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"resourceType":"Group","id":%q,"type":"person","actual":true,"member":[%s]}`, group, strings.Join(refs, ",")))})
	t.Logf("HAPI holds the Synthea sample (%d resources loaded) and %d generated resources", synthea, len(pats)+len(rest)+1)

	// System level, every type: the lake is HAPI's search, resource by resource.
	// --since-last continues from the kick-off's Date (whole seconds) when it is
	// earlier than the transactionTime, as it is with HAPI: let that second
	// pass first, so that the next export holds the later changes only.
	time.Sleep(1100 * time.Millisecond)
	sys := newRun(t, st, []string{tenant}, bucket, "")
	start := time.Now()
	out, n := exported(t, sys, tenant, h.base, "--since-last")
	took := time.Since(start)
	t.Logf("system export:\n%s", out)
	types := append(append([]string{}, syntheaOrder...), "Group")
	s := sys.tenantLake(t, st, tenant, bucket(tenant))
	if compared := compareWithHAPI(t, "system export", h, s, types, nil); compared != n {
		t.Errorf("system export: loaded %d resources, HAPI's search has %d", n, compared)
	}
	t.Logf("system $export: %d resources into the lake in %s: %.0f resources/s end to end", n, took.Round(time.Millisecond), float64(n)/took.Seconds())

	// Changes after it: --since-last exports only those.
	time.Sleep(1100 * time.Millisecond) // HAPI's lastUpdated has millisecond precision; keep the changes clearly after transactionTime
	changedPats, changedRest := generated(runID, 2, 1)
	for i := range changedPats {
		changedPats[i] = json.RawMessage(strings.Replace(string(changedPats[i]), `"gender":"female"`, `"gender":"male"`, 1))
	}
	changed := len(changedPats)
	for i := range changedRest {
		// The observations change; the encounters are written again as they
		// are, which HAPI does not count as a change (no new version).
		if c := strings.Replace(string(changedRest[i]), `"value":60`, `"value":99`, 1); c != string(changedRest[i]) {
			changedRest[i] = json.RawMessage(c)
			changed++
		}
	}
	newPats, newRest := generated(runID+"n", 2, 1)
	putAll(t, h, append(changedPats, newPats...))
	putAll(t, h, append(changedRest, newRest...))
	out, n2 := exported(t, sys, tenant, h.base, "--since-last")
	if !strings.Contains(out, "since the last export: ") {
		t.Errorf("--since-last did not continue from the recorded export:\n%s", out)
	}
	if want := changed + len(newPats) + len(newRest); n2 != want {
		t.Errorf("--since-last exported %d resources, want the %d changed since the last export\n%s", n2, want, out)
	}
	s = sys.tenantLake(t, st, tenant, bucket(tenant))
	compareWithHAPI(t, "after --since-last", h, s, types, nil)

	// Group level, with an explicit _since before everything: the members'
	// compartments only.
	grp := newRun(t, st, []string{tenant}, bucket, "")
	_, ng := exported(t, grp, tenant, h.base, "--group", group, "--type", "Patient,Observation,Encounter", "--since", "2000-01-01")
	inGroup := func(typ, id string) bool {
		for _, m := range members {
			if id == m || strings.HasPrefix(id, m+"-") {
				return true
			}
		}
		return false
	}
	if c := compareWithHAPI(t, "group export", h, grp.tenantLake(t, st, tenant, bucket(tenant)), []string{"Patient", "Observation", "Encounter"}, inGroup); c != ng {
		t.Errorf("group export: loaded %d resources, HAPI's search has %d of the members", ng, c)
	}
	// _since after the last change: nothing at group level (for the types
	// asked: without _type, HAPI adds the Group itself, whatever _since says).
	_, none := exported(t, grp, tenant, h.base, "--group", group, "--type", "Patient,Observation,Encounter", "--since", time.Now().Add(time.Minute).UTC().Format(time.RFC3339))
	if none != 0 {
		t.Errorf("group export since a minute from now: %d resources, want none", none)
	}

	// Patient level: every patient's compartment, for the types asked.
	pat := newRun(t, st, []string{tenant}, bucket, "")
	_, np := exported(t, pat, tenant, h.base, "--level", "patient", "--type", "Patient,Observation,Encounter")
	if c := compareWithHAPI(t, "patient export", h, pat.tenantLake(t, st, tenant, bucket(tenant)), []string{"Patient", "Observation", "Encounter"}, nil); c != np {
		t.Errorf("patient export: loaded %d resources, HAPI's search has %d", np, c)
	}
}

// TestIntegrationExportBenchmark measures `backfill --from-server` against
// the local HAPI FHIR server: FHIRLAKE_BENCH_EXPORT_PATIENTS generated
// patients (an encounter and ten observations each, loaded once per HAPI
// start), exported at system level into a fresh prefix of a tenant's S3 lake
// FHIRLAKE_BENCH_EXPORT_ROUNDS times (3). It reports resources per second
// end to end (kick-off to the last file in the lake), the time HAPI took to
// build the export, and the rate of the rest (downloads and loading).
func TestIntegrationExportBenchmark(t *testing.T) {
	patients, _ := strconv.Atoi(os.Getenv("FHIRLAKE_BENCH_EXPORT_PATIENTS"))
	if patients <= 0 {
		t.Skip("set FHIRLAKE_BENCH_EXPORT_PATIENTS (make bench-export)")
	}
	rounds, _ := strconv.Atoi(os.Getenv("FHIRLAKE_BENCH_EXPORT_ROUNDS"))
	if rounds <= 0 {
		rounds = 3
	}
	st := needStack(t)
	h := needHAPI(t)
	const run = "bench"
	if !hapiHas(t, h, fmt.Sprintf("/Patient/%s-p%d", run, patients-1)) {
		start := time.Now()
		pats, rest := generated(run, patients, 10)
		for i := 0; i < len(pats); i += 500 {
			putAll(t, h, pats[i:min(i+500, len(pats))])
		}
		for i := 0; i < len(rest); i += 500 {
			putAll(t, h, rest[i:min(i+500, len(rest))])
		}
		t.Logf("loaded %d resources into HAPI in %s", len(pats)+len(rest), time.Since(start).Round(time.Second))
	}
	for round := range rounds {
		r := newRun(t, st, []string{"globex"}, bucket, "")
		start := time.Now()
		out, n := exported(t, r, "globex", h.base, "--type", "Patient,Observation,Encounter", "--parallel", "4")
		took := time.Since(start)
		built, err := time.ParseDuration(exportSummary.FindStringSubmatch(out)[6])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d resources in %s: %.0f resources/s end to end; HAPI built the export in %s, downloads and loading %.0f resources/s",
			round+1, n, took.Round(time.Millisecond), float64(n)/took.Seconds(), built, float64(n)/(took-built).Seconds())
	}
}
