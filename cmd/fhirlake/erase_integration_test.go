//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/audit"
	"fhirlake/internal/testenv"
	"fhirlake/lake"
	"fhirlake/query"
	"fhirlake/sink"
)

// TestIntegrationErase erases a Synthea patient from a tenant's S3 lake fed through
// Kafka and compacted, and reads the lake as a user does, through every table of a
// query session (views, their _all histories, resources, resources_all, the marts):
// afterwards no row names the patient or a resource of its compartment, and every
// other row is as it was. The command states the topics' retention, and the audit
// trail holds the erasure. A replay of the whole topic by a new consumer group,
// compacted, does not bring the patient back; a new change of the patient does come in.
func TestIntegrationErase(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	data := testenv.Shared(t, "data", "synthea-small")
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	r := newRun(t, st, []string{"acme"}, bucket, compactSettings+"  overlap: 0s\n  lease_ttl: 10s\naudit:\n  path: "+auditLog+"\n")
	r.fhirlake(t, "topics", "create")
	records, patient, erased := syntheaRecords(t, r.topic, data)
	produceSync(t, st, records)
	r.consumeAll(t, st)
	r.mustCompact(t)

	before := lakeRows(t, r.tenantLake(t, st, "acme", bucket("acme")))
	hit := 0
	for _, rows := range before {
		for _, row := range rows {
			if erased.MatchString(row) {
				hit++
			}
		}
	}
	if hit < 100 {
		t.Fatalf("only %d rows of the lake name patient %s or its resources before the erasure", hit, patient)
	}

	// A first run killed once it has written the erasure record, midway through
	// rewriting the lake; the same command run again finishes the erasure.
	r.killEraseMidway(t, st, patient)
	out := r.fhirlake(t, "erase", "--tenant", "acme", "--patient", patient, "--wait-lease", "2m")
	t.Logf("erase:\n%s", out)
	retention := topicRetention(t, st, r.dlq)
	for _, want := range []string{"speed/resources", "dead-letter topic " + r.dlq + ": retention.ms " + retention, "topic " + r.topic + ": retention.ms", "Batch snapshot: published"} {
		if !strings.Contains(out, want) {
			t.Errorf("erase output lacks %q", want)
		}
	}
	after := lakeRows(t, r.tenantLake(t, st, "acme", bucket("acme")))
	compareWithout(t, "after the erasure", before, after, erased)
	checkErasureAudit(t, auditLog, patient)

	// A replay of the topic from its start by a new group, then a compaction.
	r.useGroup(t, r.group+"-replay")
	r.consumeAll(t, st)
	r.mustCompact(t)
	replayed := lakeRows(t, r.tenantLake(t, st, "acme", bucket("acme")))
	// A replay stores every change again, with its new ingest time: the histories
	// (_all) hold both copies, and a latest version may now be the new copy.
	compareWithout(t, "after a replay", distinctRows(before), distinctRows(replayed), erased)

	// A new change of the patient comes in, and with it the patient.
	var p map[string]any
	for _, rec := range records {
		if bytes.Contains(rec.Value, []byte(`"resourceType":"Patient","id":"`+patient+`"`)) {
			if err := json.Unmarshal(rec.Value, &p); err != nil {
				t.Fatal(err)
			}
		}
	}
	p["gender"] = "other"
	value, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	produceSync(t, st, []*kgo.Record{{Topic: r.topic, Value: value, Headers: []kgo.RecordHeader{{Key: "fhir-tenant", Value: []byte("acme")}}}})
	r.consumeAll(t, st)
	r.mustCompact(t)
	s := r.tenantLake(t, st, "acme", bucket("acme"))
	if got := scalar[string](t, s, "SELECT string_agg(gender, ',') FROM patients WHERE patient_id = '"+patient+"'"); got != "other" {
		t.Errorf("patients mart after a new change of the erased patient: %q, want other", got)
	}
}

// syntheaRecords reads every resource of the Synthea data as a bare-resource record
// for tenant acme, and picks the patient with most resources. erased matches that
// patient's id and the id of every resource whose JSON refers to it.
func syntheaRecords(t *testing.T, topic, dir string) (records []*kgo.Record, patient string, erased idSet) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Synthea data in %s", dir)
	}
	type line struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	var lines [][]byte
	var ids []line
	count := map[string]int{}
	ref := regexp.MustCompile(`"reference":"Patient/([^"]+)"`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			l := append([]byte(nil), sc.Bytes()...)
			var id line
			if err := json.Unmarshal(l, &id); err != nil {
				t.Fatal(err)
			}
			lines, ids = append(lines, l), append(ids, id)
			for _, m := range ref.FindAllSubmatch(l, -1) {
				count[string(m[1])]++
			}
		}
	}
	for p, n := range count {
		if patient == "" || n > count[patient] || (n == count[patient] && p < patient) {
			patient = p
		}
	}
	erased = idSet{patient: true}
	for i, l := range lines {
		records = append(records, &kgo.Record{Topic: topic, Value: l, Headers: []kgo.RecordHeader{{Key: "fhir-tenant", Value: []byte("acme")}}})
		if bytes.Contains(l, []byte(`"Patient/`+patient+`"`)) {
			if !uuid.MatchString(ids[i].ID) {
				t.Fatalf("%s/%s: the test tells ids in rows by their UUID form", ids[i].ResourceType, ids[i].ID)
			}
			erased[ids[i].ID] = true
		}
	}
	t.Logf("patient %s: %d of %d resources refer to it", patient, len(erased)-1, len(lines))
	return records, patient, erased
}

// uuid matches the ids Synthea gives every resource.
var uuid = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// idSet matches a row naming any of its ids (a regexp of hundreds of alternatives
// is too slow for every row of a lake).
type idSet map[string]bool

func (s idSet) MatchString(row string) bool {
	for _, id := range uuid.FindAllString(row, -1) {
		if s[id] {
			return true
		}
	}
	return false
}

func produceSync(t *testing.T, st stack, records []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// useGroup switches the run to another consumer group, which starts from the
// beginning of the topic.
func (r *run) useGroup(t *testing.T, group string) {
	t.Helper()
	b, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(b), "group: "+r.group, "group: "+group, 1)
	if conf == string(b) {
		t.Fatalf("no group %s in %s", r.group, b)
	}
	if err := os.WriteFile(r.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.group = group
}

// snapshotColumn is a mart's column that names the snapshot, different after any
// publication.
var snapshotColumn = regexp.MustCompile(`"snapshot_id":"[^"]*",?`)

// lakeRows reads every table of the session as sorted JSON rows.
func lakeRows(t *testing.T, s *query.Session) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range s.Catalog().Tables {
		rows, err := s.Query(context.Background(), fmt.Sprintf(`SELECT to_json(t)::VARCHAR FROM "%s" AS t`, tb.Name))
		if err != nil {
			t.Fatalf("%s: %v", tb.Name, err)
		}
		var list []string
		for rows.Next() {
			var j string
			if err := rows.Scan(&j); err != nil {
				t.Fatal(err)
			}
			list = append(list, snapshotColumn.ReplaceAllString(j, ""))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		sort.Strings(list)
		out[tb.Name] = list
	}
	for _, want := range []string{"resources", "resources_all", "observation", "patients", "observations", "encounter_summary"} {
		if _, ok := out[want]; !ok {
			t.Fatalf("the session has no table %s: %v", want, s.Catalog().Tables)
		}
	}
	return out
}

// ingestTime is the column that differs between two stored copies of a change.
var ingestTime = regexp.MustCompile(`"_?ingest_time":"[^"]*",?`)

// distinctRows is every table's distinct rows without their ingest time.
func distinctRows(tables map[string][]string) map[string][]string {
	out := map[string][]string{}
	for name, rows := range tables {
		seen := map[string]bool{}
		for _, row := range rows {
			row = ingestTime.ReplaceAllString(row, "")
			if !seen[row] {
				seen[row] = true
				out[name] = append(out[name], row)
			}
		}
		sort.Strings(out[name])
	}
	return out
}

// compareWithout requires that after holds exactly the rows of before that erased
// does not match, table by table.
func compareWithout(t *testing.T, when string, before, after map[string][]string, erased idSet) {
	t.Helper()
	for name, rows := range before {
		var want []string
		for _, row := range rows {
			if !erased.MatchString(row) {
				want = append(want, row)
			}
		}
		got := after[name]
		for _, row := range got {
			if erased.MatchString(row) {
				t.Errorf("%s: table %s still holds %.300s", when, name, row)
				break
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: table %s has %d rows, want the %d other rows unchanged", when, name, len(got), len(want))
		}
	}
}

// topicRetention reads a topic's retention.ms from the broker.
func topicRetention(t *testing.T, st stack, topic string) string {
	t.Helper()
	adm := (&run{}).admin(t, st)
	rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" && c.Value != nil {
				return *c.Value
			}
		}
	}
	t.Fatalf("%s: no retention.ms", topic)
	return ""
}

// checkErasureAudit requires one erasure record of the patient in the audit trail,
// naming it by the SHA-256 of its id only.
func checkErasureAudit(t *testing.T, path, patient string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(patient)) {
		t.Errorf("the audit trail holds the erased patient's id")
	}
	found := 0
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var rec audit.Record
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatalf("audit line %s: %v", l, err)
		}
		if rec.Kind == audit.KindErasure {
			found++
			if rec.Source != audit.SourceErase || rec.PatientSHA256 != lake.PatientHash(patient) || rec.Status != audit.StatusOK || rec.Rows == 0 || rec.Tenant != "acme" {
				t.Errorf("erasure audit record %+v", rec)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d erasure records in the audit trail, want 1:\n%s", found, b)
	}
}

// killEraseMidway starts `fhirlake erase` and kills it (SIGKILL) as soon as its
// erasure record is in the bucket, before the erasure completes.
func (r *run) killEraseMidway(t *testing.T, st stack, patient string) {
	t.Helper()
	store := r.tenantStore(t, st, "acme")
	key := lake.ErasureKey(lake.PatientHash(patient))
	cmd := r.cmd(context.Background(), "erase", "--tenant", "acme", "--patient", patient)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case err := <-exited:
			t.Fatalf("erase ended (%v) before it could be killed midway:\n%s", err, out.String())
		default:
		}
		if rec, err := sink.ReadErasure(context.Background(), store, key); err == nil && rec != nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no erasure record after 3 minutes:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Fatalf("erase exited cleanly after SIGKILL:\n%s", out.String())
	}
	rec, err := sink.ReadErasure(context.Background(), store, key)
	if err != nil || rec == nil || !rec.Completed.IsZero() {
		t.Fatalf("erasure record after the kill: %+v, %v; want one not completed", rec, err)
	}
	t.Logf("erase killed midway; %d resources in its record", len(rec.Keys))
}
