package synth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func testOptions() Options {
	return Options{
		Tenants:      []string{"acme", "globex", "initech"},
		Patients:     12,
		Seed:         7,
		UpdateRatio:  0.3,
		DeleteRatio:  0.2,
		Formats:      []Format{FormatR4Backport, FormatR5, FormatR4BHistory},
		Controls:     9,
		Malformed:    7,
		Unroutable:   3,
		TenantHeader: "x-tenant",
	}
}

func collect(t *testing.T, o Options) (*Generator, []Record) {
	t.Helper()
	g, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var recs []Record
	for {
		r, ok := g.Next()
		if !ok {
			break
		}
		recs = append(recs, r)
	}
	if _, ok := g.Next(); ok {
		t.Fatal("Next yielded a record after reporting the end")
	}
	return g, recs
}

func header(r Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestDeterministic(t *testing.T) {
	o := testOptions()
	o.ResourcesPerNotification = 2
	_, a := collect(t, o)
	_, b := collect(t, o)
	if len(a) != len(b) {
		t.Fatalf("got %d and %d records from the same options", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) ||
			a[i].Tenant != b[i].Tenant || a[i].Kind != b[i].Kind || a[i].Variant != b[i].Variant ||
			fmt.Sprint(a[i].Headers) != fmt.Sprint(b[i].Headers) {
			t.Fatalf("record %d differs between two runs of the same options", i)
		}
	}

	o.Seed++
	_, c := collect(t, o)
	same := 0
	for i := range min(len(a), len(c)) {
		if bytes.Equal(a[i].Value, c[i].Value) {
			same++
		}
	}
	if same == len(a) {
		t.Error("got the same stream for different seeds")
	}
}

// TestStream reads whole streams with the independent checker and verifies
// everything a consumer relies on.
func TestStream(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{"one event per notification", func(*Options) {}},
		{"three events per notification", func(o *Options) { o.ResourcesPerNotification = 3 }},
		{"large notifications", func(o *Options) { o.ResourcesPerNotification = 50; o.Patients = 5 }},
		{"r5 only", func(o *Options) { o.Formats = []Format{FormatR5} }},
		{"no updates or deletes", func(o *Options) { o.UpdateRatio, o.DeleteRatio = 0, 0 }},
		{"everything updated and deleted", func(o *Options) { o.UpdateRatio, o.DeleteRatio = 1, 1 }},
		{"no patients", func(o *Options) { o.Patients = 0 }},
		{"fewer controls than tenants", func(o *Options) { o.Controls = 2; o.Unroutable = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions()
			tt.edit(&o)
			g, recs := collect(t, o)
			verifyStream(t, o, g, recs)
		})
	}
}

type resourceKey struct{ tenant, typ, id string }

type resourceState struct {
	version     int
	lastUpdated string
	deleted     bool
	resource    map[string]any
}

func verifyStream(t *testing.T, o Options, g *Generator, recs []Record) {
	t.Helper()
	c := g.Counts()
	if got, want := len(recs), g.Total(); got != want {
		t.Fatalf("got %d records, Total says %d", got, want)
	}
	if got, want := len(recs), c.Events+c.Controls+c.Malformed+c.Unroutable; got != want {
		t.Fatalf("got %d records, counts add up to %d (%+v)", got, want, c)
	}
	if c.Records() != len(recs) {
		t.Errorf("got Counts.Records %d, want %d", c.Records(), len(recs))
	}
	if got, want := c.Controls, o.Controls; got != want {
		t.Errorf("got %d controls, want %d", got, want)
	}
	if got, want := c.Malformed, o.Malformed; got != want {
		t.Errorf("got %d malformed, want %d", got, want)
	}
	if got, want := c.Unroutable, o.Unroutable; got != want {
		t.Errorf("got %d unroutable, want %d", got, want)
	}

	known := map[string]bool{}
	for _, name := range o.Tenants {
		known[name] = true
	}
	kinds := map[Kind]int{}
	state := map[resourceKey]*resourceState{}
	lastNumber := map[string]int64{} // per tenant
	handshakes := map[string]int{}
	seenEvent := map[string]bool{}
	var numericR5, stringR5 bool
	var upserts, deletes, headerless int
	for i, r := range recs {
		kinds[r.Kind]++
		name, hasHeader := header(r, o.TenantHeader)
		if hasHeader != (r.Tenant != "") || name != r.Tenant {
			t.Fatalf("record %d: tenant header %q (present %v), Record.Tenant %q", i, name, hasHeader, r.Tenant)
		}
		if ct, _ := header(r, "content-type"); !strings.HasPrefix(ct, "application/fhir+") {
			t.Errorf("record %d: content-type %q", i, ct)
		}
		switch r.Kind {
		case KindMalformed:
			if !known[r.Tenant] {
				t.Errorf("record %d: malformed record with tenant %q, want a configured tenant", i, r.Tenant)
			}
			if n, err := check(r.Value); err == nil {
				t.Errorf("record %d: malformed %s record passes the checker: %+v", i, r.Variant, n)
			}
			continue
		case KindUnroutable:
			n, err := check(r.Value)
			if err != nil {
				t.Fatalf("record %d: unroutable record does not decode: %v", i, err)
			}
			if known[r.Tenant] {
				t.Errorf("record %d: unroutable record names configured tenant %q", i, r.Tenant)
			}
			if r.Tenant == "" {
				headerless++
			}
			base := focusPattern.FindStringSubmatch(n.events[0].focus)[2]
			if known[base] || (r.Tenant != "" && base != r.Tenant) {
				t.Errorf("record %d: unroutable record with header %q has base URL tenant %q", i, r.Tenant, base)
			}
			continue
		}
		if !known[r.Tenant] {
			t.Fatalf("record %d: %s record for tenant %q", i, r.Kind, r.Tenant)
		}
		n, err := check(r.Value)
		if err != nil {
			t.Fatalf("record %d (%s %s): %v\n%s", i, r.Kind, r.Format, err, r.Value)
		}
		if n.format != r.Format {
			t.Errorf("record %d: envelope reads as %s, Record.Format says %s", i, n.format, r.Format)
		}
		if !slices.Contains(o.withDefaults().Formats, n.format) {
			t.Errorf("record %d: format %s not among the options", i, n.format)
		}
		if want := "https://fhir." + r.Tenant + ".example.org/fhir/Subscription/fhirlake-" + r.Tenant; n.subscription != want {
			t.Errorf("record %d: subscription %q, want %q", i, n.subscription, want)
		}
		if n.format == FormatR5 {
			numericR5 = numericR5 || n.sinceNumeric
			stringR5 = stringR5 || !n.sinceNumeric
		}
		if n.since < lastNumber[r.Tenant] {
			t.Errorf("record %d: events since subscription start went back from %d to %d", i, lastNumber[r.Tenant], n.since)
		}
		if r.Kind == KindControl {
			if string(r.Key) != "fhirlake-"+r.Tenant {
				t.Errorf("record %d: control key %q, want the subscription id", i, r.Key)
			}
			switch n.typ {
			case "handshake":
				handshakes[r.Tenant]++
				if seenEvent[r.Tenant] || n.status != "requested" || n.since != 0 {
					t.Errorf("record %d: handshake after events, or with status %q and %d events", i, n.status, n.since)
				}
			case "heartbeat":
				if n.status != "active" {
					t.Errorf("record %d: heartbeat with status %q", i, n.status)
				}
			default:
				t.Errorf("record %d: control record of type %q", i, n.typ)
			}
			lastNumber[r.Tenant] = n.since
			continue
		}
		if n.typ != "event-notification" {
			t.Fatalf("record %d: event record of type %q", i, n.typ)
		}
		seenEvent[r.Tenant] = true
		if len(n.events) > o.withDefaults().ResourcesPerNotification {
			t.Errorf("record %d: %d events, want at most %d", i, len(n.events), o.ResourcesPerNotification)
		}
		if want := n.events[0].resourceType + "/" + n.events[0].id; string(r.Key) != want {
			t.Errorf("record %d: key %q, want %q", i, r.Key, want)
		}
		if got, want := n.events[0].number, lastNumber[r.Tenant]+1; got != want {
			t.Errorf("record %d: first event number %d, want %d", i, got, want)
		}
		lastNumber[r.Tenant] = n.since
		for _, ev := range n.events {
			k := resourceKey{r.Tenant, ev.resourceType, ev.id}
			v, err := strconv.Atoi(ev.version)
			if err != nil {
				t.Fatalf("record %d: versionId %q", i, ev.version)
			}
			s := state[k]
			switch {
			case s == nil && v != 1:
				t.Fatalf("record %d: %v first seen at version %d", i, k, v)
			case s != nil && v != s.version+1:
				t.Fatalf("record %d: %v version %d after %d", i, k, v, s.version)
			case s != nil && s.deleted:
				t.Fatalf("record %d: %v changed after its deletion", i, k)
			case s != nil && ev.lastUpdated <= s.lastUpdated:
				t.Fatalf("record %d: %v lastUpdated %s not after %s", i, k, ev.lastUpdated, s.lastUpdated)
			}
			if s == nil {
				s = &resourceState{}
				state[k] = s
			}
			s.version, s.lastUpdated, s.deleted = v, ev.lastUpdated, ev.deleted
			if ev.deleted {
				deletes++
			} else {
				upserts++
				s.resource = ev.resource
			}
		}
	}
	if got, want := kinds[KindEvent], c.Events; got != want {
		t.Errorf("got %d event records, counts say %d", got, want)
	}
	if got, want := kinds[KindControl], c.Controls; got != want {
		t.Errorf("got %d control records, counts say %d", got, want)
	}
	if got, want := upserts, c.Upserts; got != want {
		t.Errorf("got %d upsert entries, counts say %d", got, want)
	}
	if got, want := deletes, c.Deletes; got != want {
		t.Errorf("got %d delete entries, counts say %d", got, want)
	}
	if got, want := len(state), c.Resources; got != want {
		t.Errorf("got %d distinct resources, counts say %d", got, want)
	}
	if o.Patients > 0 && o.DeleteRatio > 0 && deletes == 0 {
		t.Error("no deletes in a stream with a delete ratio")
	}
	if o.Patients > 0 && len(o.Formats) > 1 && !slices.Contains(o.Formats, FormatR5) {
		t.Log("no R5 in this stream")
	} else if c.Events > 20 && slices.Contains(o.Formats, FormatR5) && (!numericR5 || !stringR5) {
		t.Errorf("R5 counters: numeric seen %v, string seen %v; want both", numericR5, stringR5)
	}
	wantHandshakes := min(o.Controls, len(o.Tenants))
	if got := len(handshakes); got != wantHandshakes {
		t.Errorf("got handshakes for %d tenants, want %d", got, wantHandshakes)
	}
	if o.Unroutable >= 2 && headerless != 1 {
		t.Errorf("got %d unroutable records without a tenant header, want 1", headerless)
	}

	// The expected state is the last event seen for each resource.
	exp := g.Expected()
	if got, want := len(exp), len(state); got != want {
		t.Fatalf("got %d expected resources, stream has %d", got, want)
	}
	patients := map[string]int{}
	for _, e := range exp {
		s := state[resourceKey{e.Tenant, e.ResourceType, e.ID}]
		if s == nil {
			t.Fatalf("expected %+v never appears in the stream", e)
		}
		if got, want := e.VersionID, strconv.Itoa(s.version); got != want || e.Deleted != s.deleted {
			t.Errorf("%s/%s: got expected version %s deleted %v, stream ends at %s deleted %v", e.ResourceType, e.ID, got, e.Deleted, want, s.deleted)
		}
		if e.ResourceType == "Patient" {
			patients[e.Tenant]++
		}
		verifyResource(t, e.Tenant, s.resource, state)
	}
	for _, name := range o.Tenants {
		if got := patients[name]; got != o.Patients {
			t.Errorf("tenant %s: got %d patients, want %d", name, got, o.Patients)
		}
	}
}

func path(m map[string]any, keys ...any) any {
	var v any = m
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			mm, _ := v.(map[string]any)
			v = mm[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// verifyResource checks the clinical content of the last version of a
// resource: references resolve within the tenant, codes and units are set.
func verifyResource(t *testing.T, tenant string, r map[string]any, state map[resourceKey]*resourceState) {
	t.Helper()
	typ, id := str(r, "resourceType"), str(r, "id")
	refOK := func(field, wantType string) {
		ref, _ := path(r, field, "reference").(string)
		typ, rid, _ := strings.Cut(ref, "/")
		if typ != wantType || state[resourceKey{tenant, typ, rid}] == nil {
			t.Errorf("%s/%s: %s reference %q does not name a %s of tenant %s", str(r, "resourceType"), id, field, ref, wantType, tenant)
		}
	}
	switch typ {
	case "Patient":
		exts := arr(r, "extension")
		urls := map[string]map[string]any{}
		for _, e := range exts {
			em, _ := e.(map[string]any)
			urls[str(em, "url")] = em
		}
		race := urls["http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"]
		if path(race, "extension", 0, "url") != "ombCategory" || path(race, "extension", 0, "valueCoding", "system") != "urn:oid:2.16.840.1.113883.6.238" {
			t.Errorf("Patient/%s: race extension %v", id, race)
		}
		if last := arr(race, "extension"); len(last) < 2 || path(race, "extension", len(last)-1, "url") != "text" {
			t.Errorf("Patient/%s: race extension without text", id)
		}
		if path(urls["http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"], "extension", 0, "url") != "ombCategory" {
			t.Errorf("Patient/%s: no ethnicity extension", id)
		}
		if s, _ := path(urls["http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"], "valueCode").(string); s == "" {
			t.Errorf("Patient/%s: no birthsex valueCode", id)
		}
		if str(r, "gender") == "" || str(r, "birthDate") == "" || path(r, "name", 0, "family") == nil || path(r, "address", 0, "city") == nil {
			t.Errorf("Patient/%s: missing gender, birthDate, name or address", id)
		}
	case "Encounter":
		refOK("subject", "Patient")
		if path(r, "class", "code") == nil || path(r, "type", 0, "coding", 0, "system") != "http://snomed.info/sct" || path(r, "period", "start") == nil {
			t.Errorf("Encounter/%s: missing class, SNOMED type or period", id)
		}
	case "Observation":
		refOK("subject", "Patient")
		refOK("encounter", "Encounter")
		cat, _ := path(r, "category", 0, "coding", 0, "code").(string)
		code, _ := path(r, "code", "coding", 0, "code").(string)
		if path(r, "code", "coding", 0, "system") != "http://loinc.org" || (cat != "vital-signs" && cat != "laboratory") || str(r, "effectiveDateTime") == "" {
			t.Errorf("Observation/%s: category %q, code %v", id, cat, path(r, "code"))
		}
		quantities := []any{path(r, "valueQuantity")}
		if code == "85354-9" {
			quantities = []any{path(r, "component", 0, "valueQuantity"), path(r, "component", 1, "valueQuantity")}
			if path(r, "component", 0, "code", "coding", 0, "code") != "8480-6" || path(r, "component", 1, "code", "coding", 0, "code") != "8462-4" {
				t.Errorf("Observation/%s: blood pressure components %v", id, path(r, "component"))
			}
		}
		for _, q := range quantities {
			qm, _ := q.(map[string]any)
			if _, ok := qm["value"].(json.Number); !ok || str(qm, "system") != "http://unitsofmeasure.org" || str(qm, "code") == "" {
				t.Errorf("Observation/%s: quantity %v", id, q)
			}
			if code == "85354-9" && str(qm, "code") != "mm[Hg]" {
				t.Errorf("Observation/%s: blood pressure unit %v", id, qm)
			}
		}
	case "Condition":
		refOK("subject", "Patient")
		if path(r, "clinicalStatus", "coding", 0, "code") == nil || path(r, "verificationStatus", "coding", 0, "code") == nil ||
			path(r, "code", "coding", 0, "system") != "http://snomed.info/sct" || str(r, "onsetDateTime") == "" {
			t.Errorf("Condition/%s: missing status, SNOMED code or onset", id)
		}
	case "MedicationRequest":
		refOK("subject", "Patient")
		if path(r, "medicationCodeableConcept", "coding", 0, "system") != "http://www.nlm.nih.gov/research/umls/rxnorm" ||
			str(r, "status") == "" || str(r, "intent") == "" || str(r, "authoredOn") == "" {
			t.Errorf("MedicationRequest/%s: missing RxNorm code, status, intent or authoredOn", id)
		}
	case "":
		// Deleted resources keep the content of their last upsert, which
		// may be absent only if they were never upserted: impossible.
		t.Errorf("resource without content")
	default:
		t.Errorf("unexpected resource type %q", typ)
	}
}

func TestMalformedVariants(t *testing.T) {
	o := testOptions()
	o.Malformed = len(malformedShapes)
	_, recs := collect(t, o)
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Kind == KindMalformed {
			seen[r.Variant] = true
		}
	}
	for _, v := range malformedShapes {
		if !seen[v] {
			t.Errorf("no malformed record of shape %q", v)
		}
	}
}

func TestWriteExpected(t *testing.T) {
	o := testOptions()
	o.Patients = 5
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	g.Next()
	if err := WriteExpected(&bytes.Buffer{}, g); err == nil {
		t.Error("got no error before the stream is exhausted, want one")
	}
	for {
		if _, ok := g.Next(); !ok {
			break
		}
	}
	var buf bytes.Buffer
	if err := WriteExpected(&buf, g); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	exp := g.Expected()
	if got, want := len(lines), len(exp)+1; got != want {
		t.Fatalf("got %d lines, want %d", got, want)
	}
	for i, e := range exp {
		var got Expected
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if got != e {
			t.Errorf("line %d: got %+v, want %+v", i+1, got, e)
		}
	}
	var last struct {
		Counts *Counts `json:"counts"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Counts == nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	if got, want := *last.Counts, g.Counts(); got != want {
		t.Errorf("got counts %+v, want %+v", got, want)
	}
	if got, want := last.Counts.Resources, len(exp); got != want {
		t.Errorf("got counts.resources %d, want %d lines", got, want)
	}
}

func TestUnknownTenantAvoidsConfiguredNames(t *testing.T) {
	o := Options{Tenants: []string{"unknown-1", "unknown-1x"}, Patients: 1, Unroutable: 1}
	_, recs := collect(t, o)
	for _, r := range recs {
		if r.Kind == KindUnroutable && slices.Contains(o.Tenants, r.Tenant) {
			t.Errorf("unroutable record names configured tenant %q", r.Tenant)
		}
	}
}

func TestRecordsOwnTheirBytes(t *testing.T) {
	g, err := New(Options{Tenants: []string{"acme"}, Patients: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := g.Next()
	keep := bytes.Clone(a.Value)
	g.Next()
	if !bytes.Equal(a.Value, keep) {
		t.Error("a record's value changed when the next one was generated")
	}
}
