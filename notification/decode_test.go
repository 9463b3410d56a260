package notification

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"fhirlake/internal/testenv"
)

// summary renders an event compactly for table tests:
// "upsert Patient/p1 v3 resource", "upsert Encounter/2 fetch http://x/fhir",
// "delete Patient/p1 v3".
func summary(ev Event) string {
	s := string(ev.Operation) + " " + ev.ResourceType + "/" + ev.ID
	if ev.VersionID != "" {
		s += " v" + ev.VersionID
	}
	switch {
	case ev.Fetch != nil:
		s += " fetch"
		if ev.Fetch.BaseURL != "" {
			s += " " + ev.Fetch.BaseURL
		}
	case ev.Resource != nil:
		s += " resource"
	}
	return s
}

func summaries(n *Notification) []string {
	var out []string
	for _, ev := range n.Events {
		out = append(out, summary(ev))
	}
	return out
}

// TestDecodeExamples decodes every published notification example and checks
// what each must yield.
func TestDecodeExamples(t *testing.T) {
	dir := testenv.Shared(t, "data", "notifications", "examples")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in %s: %v", dir, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n, err := Decode(data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			wantFormat := FormatR5
			switch {
			case strings.HasPrefix(name, "R4-backport"):
				wantFormat = FormatR4Backport
			case strings.HasPrefix(name, "R4B"):
				wantFormat = FormatR4BHistory
			}
			if n.Format != wantFormat {
				t.Errorf("format: got %s, want %s", n.Format, wantFormat)
			}
			if got, want := n.Wrapped, strings.Contains(name, "message-wrapped"); got != want {
				t.Errorf("wrapped: got %v, want %v", got, want)
			}
			wantEvents := 0
			switch {
			case strings.Contains(name, "2-events"):
				wantEvents = 2
			case strings.Contains(name, "full-resource") || strings.Contains(name, "id-only"):
				wantEvents = 1
			}
			if len(n.Events) != wantEvents {
				t.Fatalf("events: got %d, want %d", len(n.Events), wantEvents)
			}
			idOnly := strings.Contains(name, "id-only")
			for _, ev := range n.Events {
				switch {
				case ev.Operation != OpUpsert || ev.ResourceType != "Encounter" || ev.ID == "":
					t.Errorf("event %s: want an upsert of an Encounter", summary(ev))
				case idOnly && (ev.Fetch == nil || ev.Resource != nil || ev.Fetch.BaseURL == "" ||
					ev.Fetch.ResourceType != ev.ResourceType || ev.Fetch.ID != ev.ID):
					t.Errorf("event %s: want an id-only event with an absolute base URL", summary(ev))
				case !idOnly && (ev.Fetch != nil || len(ev.Resource) == 0):
					t.Errorf("event %s: want a resource", summary(ev))
				}
			}
			if got, want := n.NeedsFetch(), idOnly; got != want {
				t.Errorf("needs fetch: got %v, want %v", got, want)
			}
			if wantEvents == 0 && !n.Control() {
				t.Errorf("got a change-carrying notification, want control")
			}
			if n.Type != "status" && len(n.BaseURLs) == 0 {
				t.Errorf("base URLs: got none, want the subscription's or the entries'")
			}
			assertNoSecrets(t, n, "ZGFhNDFjY2MtZGFmMi00YjZkLThiNDYtN2JlZDk1MWEyYzk2")
		})
	}
}

// assertNoSecrets fails when any of secrets appears anywhere in n.
func assertNoSecrets(t *testing.T, n *Notification, secrets ...string) {
	t.Helper()
	dump := fmt.Sprintf("%+v", *n)
	for _, ev := range n.Events {
		dump += fmt.Sprintf("%+v %s", ev.Fetch, ev.Resource)
	}
	for _, s := range secrets {
		if strings.Contains(dump, s) {
			t.Fatalf("notification keeps %q: %s", s, dump)
		}
	}
}

func TestDecodeCounters(t *testing.T) {
	for _, tc := range []struct {
		name, counter string
		wantErr       bool
	}{
		{"string", `"42"`, false},
		{"number", `42`, false},
		{"absent", ``, false},
		{"null", `null`, false},
		{"max int64", `9223372036854775807`, false},
		{"int64 overflow", `9223372036854775808`, true},
		{"huge number", `123456789012345678901234567890`, true},
		{"fraction", `4.5`, true},
		{"exponent", `1e3`, true},
		{"text", `"abc"`, true},
		{"object", `{}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			field := ""
			if tc.counter != "" {
				field = `,"eventsSinceSubscriptionStart":` + tc.counter
			}
			doc := `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"heartbeat","status":"active"` + field + `}}]}`
			_, err := Decode([]byte(doc))
			if (err != nil) != tc.wantErr {
				t.Fatalf("got err %v, want error %v", err, tc.wantErr)
			}
			if de, ok := IsDecodeError(err); err != nil && (!ok || de.Class != ClassInvalid) {
				t.Fatalf("got %v, want class %s", err, ClassInvalid)
			}
		})
	}
}

const r5Status = `{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active","notificationEvent":[{"eventNumber":7,"focus":{"reference":"https://fhir.example.org/Patient/p1/_history/3"}}]}`

func r5Bundle(entries ...string) string {
	all := append([]string{`{"resource":` + r5Status + `}`}, entries...)
	return `{"resourceType":"Bundle","type":"subscription-notification","entry":[` + strings.Join(all, ",") + `]}`
}

func TestDecodeDelete(t *testing.T) {
	doc := r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","request":{"method":"DELETE","url":"Patient/p1"},"response":{"status":"204"}}`)
	n, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summaries(n), []string{"delete Patient/p1 v3"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestDecodeIDOnly covers how an id-only focus is told from a missing one.
func TestDecodeIDOnly(t *testing.T) {
	status := func(focus ...string) string {
		var evs []string
		for i, f := range focus {
			evs = append(evs, fmt.Sprintf(`{"eventNumber":"%d","focus":{"reference":%q}}`, i+1, f))
		}
		return `{"resource":{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active","notificationEvent":[` + strings.Join(evs, ",") + `]}}`
	}
	bundle := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"history","entry":[` + strings.Join(entries, ",") + `]}`
	}
	const patient = `{"fullUrl":"https://fhir.example.org/fhir/Patient/p2","resource":{"resourceType":"Patient","id":"p2"},"request":{"method":"PUT","url":"Patient/p2"}}`
	for _, tc := range []struct {
		name, doc string
		want      []string
		class     string
	}{
		{"entry without resource", bundle(status("https://fhir.example.org/fhir/Patient/p1"),
			`{"fullUrl":"https://fhir.example.org/fhir/Patient/p1","request":{"method":"PUT","url":"Patient/p1"}}`),
			[]string{"upsert Patient/p1 fetch https://fhir.example.org/fhir"}, ""},
		{"no entry at all", bundle(status("https://fhir.example.org/fhir/Patient/p1/_history/4")),
			[]string{"upsert Patient/p1 v4 fetch https://fhir.example.org/fhir"}, ""},
		{"relative focus, absolute fullUrl", bundle(status("Patient/p1"),
			`{"fullUrl":"https://fhir.example.org/fhir/Patient/p1","request":{"method":"POST","url":"Patient"},"response":{"etag":"W/\"5\""}}`),
			[]string{"upsert Patient/p1 v5 fetch https://fhir.example.org/fhir"}, ""},
		{"relative everything", bundle(status("Patient/p1")),
			[]string{"upsert Patient/p1 fetch"}, ""},
		{"the same focus twice", bundle(status("Patient/p1", "Patient/p1")),
			[]string{"upsert Patient/p1 fetch"}, ""},
		{"entries without events", bundle(`{"resource":{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active"}}`,
			`{"fullUrl":"https://fhir.example.org/fhir/Patient/p1","request":{"method":"PUT","url":"Patient/p1"}}`),
			[]string{"upsert Patient/p1 fetch https://fhir.example.org/fhir"}, ""},
		{"full and id-only entries", bundle(status("Patient/p2", "Patient/p1"), patient,
			`{"fullUrl":"https://fhir.example.org/fhir/Patient/p1","request":{"method":"PUT","url":"Patient/p1"}}`),
			[]string{"upsert Patient/p2 resource", "upsert Patient/p1 fetch https://fhir.example.org/fhir"}, ""},
		{"missing from a full-resource notification", bundle(status("Patient/p2", "Patient/p1"), patient), nil, ClassInvalid},
		{"focus is not a reference", bundle(status("urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427")), nil, ClassInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Decode([]byte(tc.doc))
			if tc.class != "" {
				if de, ok := IsDecodeError(err); !ok || de.Class != tc.class {
					t.Fatalf("got %v, want class %s", err, tc.class)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := summaries(n); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeHints(t *testing.T) {
	status := `{"resource":{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active","subscription":{"reference":"https://b.example.org/fhir/Subscription/s1"},"notificationEvent":[{"eventNumber":1,"focus":{"reference":"https://a.example.org/fhir/Patient/p1"}},{"eventNumber":2,"focus":{"reference":"https://a.example.org/fhir/Patient/p2"}}]}}`
	entry := func(id, tags string) string {
		return `{"fullUrl":"https://a.example.org/fhir/Patient/` + id + `","resource":{"resourceType":"Patient","id":"` + id + `","meta":{"tag":[` + tags + `]}},"request":{"method":"PUT","url":"Patient/` + id + `"}}`
	}
	doc := `{"resourceType":"Bundle","type":"subscription-notification","entry":[` + status + `,` +
		entry("p1", `{"system":"urn:tenant","code":"acme"},{"system":"urn:x","code":"y"}`) + `,` +
		entry("p2", `{"system":"urn:tenant","code":"acme"}`) + `,` +
		`{"fullUrl":"urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427","resource":{"resourceType":"Provenance","id":"pv"}}]}`
	n, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n.BaseURLs, []string{"https://b.example.org/fhir", "https://a.example.org/fhir"}; !slices.Equal(got, want) {
		t.Errorf("base URLs: got %q, want %q", got, want)
	}
	if got, want := n.Tags, []Tag{{"urn:tenant", "acme"}, {"urn:x", "y"}}; !slices.Equal(got, want) {
		t.Errorf("tags: got %v, want %v", got, want)
	}
	if n.TenantID != "" || n.PartitionID != "" {
		t.Errorf("tenant/partition: got %q/%q, want none", n.TenantID, n.PartitionID)
	}
}

// TestDecodeKeepsNoHeaders checks that channel headers and authorization
// values never reach the notification.
func TestDecodeKeepsNoHeaders(t *testing.T) {
	const secret = "c2VjcmV0LXRva2Vu"
	headers := []Header{
		{Key: "Authorization", Value: []byte("Bearer " + secret)},
		{Key: "fhir-tenant", Value: []byte(secret)},
		{Key: HeaderInteraction, Value: []byte("update")},
	}
	for _, tc := range []struct{ name, doc string }{
		{"bare resource", `{"resourceType":"Patient","id":"p1"}`},
		{"HAPI channel headers", `{"headers":{"Authorization":"Bearer ` + secret + `","customHeaders":{"x-api-key":"` + secret + `"}},"payload":{"operationType":"CREATE","payloadId":"Patient/p1/_history/1","payload":"{\"resourceType\":\"Patient\",\"id\":\"p1\"}"}}`},
		{"backport authorization-value", `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"type","valueCode":"event-notification"},{"name":"notification-event","part":[{"name":"focus","valueReference":{"reference":"https://x.example.org/Patient/p1"}},{"name":"authorization-value","valueString":"` + secret + `"}]}]}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := DecodeRecord([]byte(tc.doc), headers)
			if err != nil {
				t.Fatal(err)
			}
			assertNoSecrets(t, n, secret)
		})
	}
}

func TestDecodeAcceptsBOMAndSpace(t *testing.T) {
	doc := "\xef\xbb\xbf \n" + r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}}`) + "\n"
	n, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summaries(n), []string{"upsert Patient/p1 resource"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := string(n.Events[0].Resource); got != `{"resourceType":"Patient","id":"p1"}` {
		t.Fatalf("resource: got %s, want the entry's resource as received", got)
	}
}

// TestDecodeResourceAsReceived checks that a resource is kept byte for
// byte, escapes and all, and that its header is read through escapes.
func TestDecodeResourceAsReceived(t *testing.T) {
	res := `{ "resourceType" : "Patient", "\u0069d" : "p1", "name":[{"text":"Zo\u00eb \"Z\""}], "meta":{"versionId":"2","lastUpdated":"2024-05-01T10:00:00.5+02:00"} }`
	doc := r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":` + res + `,"request":{"method":"PUT","url":"Patient/p1"}}`)
	n, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ev := n.Events[0]
	if string(ev.Resource) != res {
		t.Errorf("resource: got %s, want %s", ev.Resource, res)
	}
	if ev.ID != "p1" || ev.VersionID != "2" || ev.LastUpdated.Format("2006-01-02T15:04:05.0Z07:00") != "2024-05-01T08:00:00.5Z" {
		t.Errorf("got %s at %s, want Patient/p1 v2 at 2024-05-01T08:00:00.5Z", summary(ev), ev.LastUpdated)
	}
}

// fuzzSeeds are one of every shape the decoder knows, good and bad.
func fuzzSeeds(f *testing.F) [][]byte {
	seeds := []string{
		r5Bundle(),
		r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","tag":[{"system":"s","code":"c"}]}},"request":{"method":"PUT","url":"Patient/p1"}}`),
		r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","request":{"method":"DELETE","url":"Patient/p1"}}`),
		`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"Bundle"}}]}`,
		`[]`, `null`, `"x"`, `1`, `{}`, "\xef\xbb\xbf{}", `<Bundle/>`,
	}
	for _, c := range vendorCases() {
		seeds = append(seeds, c.doc)
	}
	for _, c := range restHookCases(f) {
		seeds = append(seeds, c.doc)
	}
	for _, c := range badInputs(f) {
		if len(c.doc) < 64<<10 {
			seeds = append(seeds, c.doc)
		}
	}
	out := make([][]byte, 0, len(seeds))
	for _, s := range seeds {
		out = append(out, []byte(s))
	}
	if dir := sharedDir("data", "notifications", "examples"); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// sharedDir is testenv.Shared for fuzz seeds, which must not skip: "" when
// the shared data is absent.
func sharedDir(sub ...string) string {
	dir := os.Getenv("FHIRLAKE_SHARED")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(), "..", "shared")
	}
	p := filepath.Join(append([]string{dir}, sub...)...)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// checkDecoded states what must hold of any decode result.
func checkDecoded(t *testing.T, data []byte, n *Notification, err error) {
	t.Helper()
	if err != nil {
		de, ok := IsDecodeError(err)
		if !ok {
			t.Fatalf("error %v is not a DecodeError", err)
		}
		switch de.Class {
		case ClassMalformed, ClassOversized, ClassNotNotification, ClassInvalid:
		default:
			t.Fatalf("unknown class %q", de.Class)
		}
		return
	}
	if n == nil {
		t.Fatal("no notification and no error")
	}
	for _, ev := range n.Events {
		if !isResourceType(ev.ResourceType) || !isFHIRID(ev.ID) {
			t.Fatalf("event without a valid type or id: %s", summary(ev))
		}
		switch {
		case ev.Operation != OpUpsert && ev.Operation != OpDelete:
			t.Fatalf("event with operation %q", ev.Operation)
		case ev.Fetch != nil && (ev.Resource != nil || ev.Operation != OpUpsert ||
			ev.Fetch.ResourceType != ev.ResourceType || ev.Fetch.ID != ev.ID):
			t.Fatalf("inconsistent id-only event: %s", summary(ev))
		case ev.Fetch != nil && ev.Fetch.VersionID != "" && !isFHIRID(ev.Fetch.VersionID):
			t.Fatalf("id-only event with version %q", ev.Fetch.VersionID)
		case ev.Fetch == nil && ev.Operation == OpUpsert && ev.Resource == nil:
			t.Fatalf("upsert without resource or fetch: %s", summary(ev))
		}
		if ev.Resource != nil && !json.Valid(ev.Resource) {
			t.Fatalf("event resource is not valid JSON: %.200s", ev.Resource)
		}
	}
	// Whatever decodes as a JSON shape must be JSON by encoding/json's
	// rules too (the scanner must not be laxer).
	trimmed := strings.TrimPrefix(string(data), utf8BOM)
	if !strings.HasPrefix(strings.TrimSpace(trimmed), "projects/") && !json.Valid([]byte(trimmed)) {
		t.Fatalf("decoded input that encoding/json rejects: %q", data)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Decode(data)
		checkDecoded(t, data, n, err)
		// The scanner must be no stricter than encoding/json either: valid
		// JSON is never malformed (beyond the nesting limit).
		if de, ok := IsDecodeError(err); ok && de.Class == ClassMalformed && json.Valid(data) && utf8.Valid(data) &&
			!strings.Contains(de.Reason, "nests deeper") {
			t.Fatalf("valid JSON classed malformed: %v", err)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, "", "")
	}
	f.Add([]byte(`{}`), HeaderMedplumDeleted, "Patient/p1")
	f.Add([]byte(`{}`), HeaderResource, "Patient/p1/_history/2")
	f.Add([]byte(`{"resourceType":"Patient","id":"p1"}`), HeaderInteraction, "delete")
	f.Add([]byte(`{"resourceType":"Patient","id":"p1"}`), "action", "UpdateResource")
	f.Add([]byte(`projects/p/locations/l/datasets/d/fhirStores/s/fhir/Patient/p1`), "action", "DeleteResource")
	f.Fuzz(func(t *testing.T, data []byte, key, value string) {
		headers := []Header{{Key: key, Value: []byte(value)}, {Key: HeaderInteraction, Value: []byte("delete")}}
		n, err := DecodeRecord(data, headers[:1])
		checkDecoded(t, data, n, err)
		n, err = DecodeRecord(data, headers)
		checkDecoded(t, data, n, err)
	})
}

// TestDecodeMemberOrder checks that a Bundle decodes the same whatever the
// order of its members (entry before resourceType is legal JSON).
func TestDecodeMemberOrder(t *testing.T) {
	entries := `[{"resource":` + r5Status + `},{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"meta":{"versionId":"3"},"id":"p1","resourceType":"Patient","active":true},"request":{"url":"Patient/p1","method":"PUT"}}]`
	for _, doc := range []string{
		`{"resourceType":"Bundle","type":"subscription-notification","entry":` + entries + `}`,
		`{"entry":` + entries + `,"type":"subscription-notification","resourceType":"Bundle"}`,
	} {
		n, err := Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := summaries(n), []string{"upsert Patient/p1 v3 resource"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// TestDecodeLargeBundle matches foci to entries in a Bundle large enough to
// be indexed, with events listed in another order than the entries.
func TestDecodeLargeBundle(t *testing.T) {
	const count = 200
	var events, entries []string
	for i := range count {
		events = append(events, fmt.Sprintf(`{"eventNumber":%d,"focus":{"reference":"Observation/o%d"}}`, i+1, count-1-i))
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"https://fhir.example.org/fhir/Observation/o%d","resource":{"resourceType":"Observation","id":"o%d","status":"final"},"request":{"method":"PUT","url":"Observation/o%d"}}`, i, i, i))
	}
	n, err := Decode([]byte(statusBundle("["+strings.Join(events, ",")+"]", entries...)))
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Events) != count {
		t.Fatalf("events: got %d, want %d", len(n.Events), count)
	}
	for i, ev := range n.Events {
		if want := fmt.Sprintf("o%d", count-1-i); ev.ID != want {
			t.Fatalf("event %d: got %s, want Observation/%s", i, summary(ev), want)
		}
	}
	if got, want := n.BaseURLs, []string{"https://fhir.example.org/fhir"}; !slices.Equal(got, want) {
		t.Fatalf("base URLs: got %q, want %q", got, want)
	}
}
