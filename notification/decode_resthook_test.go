package notification

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// restHookCases are the rest-hook envelopes `fhirlake receive` writes for
// HAPI's classic PUT and DELETE calls, and what each must decode to.
func restHookCases(t testing.TB) []vendorCase {
	t.Helper()
	at := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	env := func(c RestHookCall) string {
		b, err := RestHookEnvelope(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const patient = `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05Z","tag":[{"system":"urn:tenant","code":"acme"}]},"gender":"female"}`
	return []vendorCase{
		{name: "rest-hook PUT", format: FormatRestHook,
			doc:  env(RestHookCall{Method: "PUT", ResourceType: "Patient", ID: "p1", VersionID: "2", Received: at, Resource: []byte(patient)}),
			want: []string{"upsert Patient/p1 v2 resource"}, tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "rest-hook PUT, version from If-Match only", format: FormatRestHook,
			doc:  env(RestHookCall{Method: "PUT", ResourceType: "Observation", ID: "o1", VersionID: "7", Received: at, Resource: []byte(`{"resourceType":"Observation","id":"o1","status":"final"}`)}),
			want: []string{"upsert Observation/o1 v7 resource"}},
		{name: "rest-hook PUT of a stub", format: FormatRestHook,
			doc:  env(RestHookCall{Method: "PUT", ResourceType: "Patient", ID: "p1", Received: at, Resource: []byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"4"}}`)}),
			want: []string{"upsert Patient/p1 v4 fetch"}},
		{name: "rest-hook DELETE", format: FormatRestHook,
			doc:  env(RestHookCall{Method: "DELETE", ResourceType: "Encounter", ID: "e1", Received: at}),
			want: []string{"delete Encounter/e1"}},
		{name: "rest-hook members in another order", format: FormatRestHook,
			doc:  `{"resource":` + patient + `,"fhirRestHook":{"received":"2026-01-02T03:04:05Z","id":"p1","resourceType":"Patient","method":"post"}}`,
			want: []string{"upsert Patient/p1 v2 resource"}, tags: []Tag{{"urn:tenant", "acme"}}},
	}
}

func TestDecodeRestHook(t *testing.T) {
	for _, tc := range restHookCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Decode([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if n.Format != tc.format || n.Type != "event-notification" {
				t.Errorf("format, type: got %s, %s", n.Format, n.Type)
			}
			if got := summaries(n); !slices.Equal(got, tc.want) {
				t.Errorf("events: got %q, want %q", got, tc.want)
			}
			if !slices.Equal(n.Tags, tc.tags) {
				t.Errorf("tags: got %v, want %v", n.Tags, tc.tags)
			}
		})
	}
}

// TestDecodeRestHookTimes: an upsert is dated by its resource's
// lastUpdated; a delete, which has none, by when the receiver took it.
func TestDecodeRestHookTimes(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	del, _ := RestHookEnvelope(RestHookCall{Method: "DELETE", ResourceType: "Patient", ID: "p1", Received: at})
	put, _ := RestHookEnvelope(RestHookCall{Method: "PUT", ResourceType: "Patient", ID: "p1", Received: at,
		Resource: []byte(`{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2025-05-06T07:08:09.5+02:00"},"active":true}`)})
	for _, c := range []struct {
		doc  []byte
		want time.Time
	}{
		{del, at},
		{put, time.Date(2025, 5, 6, 5, 8, 9, 5e8, time.UTC)},
	} {
		n, err := Decode(c.doc)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Events[0].LastUpdated; !got.Equal(c.want) {
			t.Errorf("%s: lastUpdated %s, want %s", c.doc, got, c.want)
		}
	}
}

func TestDecodeRestHookRefused(t *testing.T) {
	const p1 = `{"resourceType":"Patient","id":"p1","active":true}`
	head := func(members string) string { return `{"fhirRestHook":{` + members + `}` }
	for _, c := range []badInput{
		{name: "not an object", doc: `{"fhirRestHook":"PUT"}`, class: ClassInvalid, reason: "fhirRestHook is not an object"},
		{name: "no method", doc: head(`"resourceType":"Patient","id":"p1"`) + `,"resource":` + p1 + `}`, class: ClassInvalid, reason: "method"},
		{name: "GET", doc: head(`"method":"GET","resourceType":"Patient","id":"p1"`) + `}`, class: ClassInvalid, reason: `method "GET"`},
		{name: "unknown type", doc: head(`"method":"DELETE","resourceType":"patient","id":"p1"`) + `}`, class: ClassInvalid, reason: `resourceType "patient"`},
		{name: "bad id", doc: head(`"method":"DELETE","resourceType":"Patient","id":"a b"`) + `}`, class: ClassInvalid, reason: "not a FHIR id"},
		{name: "bad version", doc: head(`"method":"DELETE","resourceType":"Patient","id":"p1","versionId":"a/b"`) + `}`, class: ClassInvalid, reason: "versionId"},
		{name: "bad received", doc: head(`"method":"DELETE","resourceType":"Patient","id":"p1","received":"yesterday"`) + `}`, class: ClassInvalid, reason: "not an instant"},
		{name: "number member", doc: head(`"method":"DELETE","resourceType":"Patient","id":1`) + `}`, class: ClassInvalid, reason: "fhirRestHook.id is not a string"},
		{name: "member twice", doc: head(`"method":"PUT","method":"DELETE","resourceType":"Patient","id":"p1"`) + `}`, class: ClassInvalid, reason: "appears twice"},
		{name: "envelope twice", doc: head(`"method":"DELETE","resourceType":"Patient","id":"p1"`) + `,"fhirRestHook":{}}`, class: ClassInvalid, reason: "appears twice"},
		{name: "PUT without resource", doc: head(`"method":"PUT","resourceType":"Patient","id":"p1"`) + `}`, class: ClassInvalid, reason: "PUT without a resource"},
		{name: "DELETE with resource", doc: head(`"method":"DELETE","resourceType":"Patient","id":"p1"`) + `,"resource":` + p1 + `}`, class: ClassInvalid, reason: "DELETE carries no resource"},
		{name: "resource of another id", doc: head(`"method":"PUT","resourceType":"Patient","id":"p2"`) + `,"resource":` + p1 + `}`, class: ClassInvalid, reason: "names Patient/p2 but the resource is"},
		{name: "resource not an object", doc: head(`"method":"PUT","resourceType":"Patient","id":"p1"`) + `,"resource":[1]}`, class: ClassInvalid, reason: "not a JSON object"},
		{name: "versions disagree", doc: head(`"method":"PUT","resourceType":"Patient","id":"p1","versionId":"3"`) + `,"resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"4"},"active":true}}`, class: ClassInvalid, reason: `version "3" but the resource's meta "4"`},
		{name: "truncated", doc: head(`"method":"PUT"`), class: ClassMalformed, reason: ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.doc))
			de, ok := IsDecodeError(err)
			if !ok {
				t.Fatalf("got %v, want a DecodeError", err)
			}
			if de.Class != c.class || !strings.Contains(de.Reason, c.reason) {
				t.Fatalf("got %s: %s; want %s containing %q", de.Class, de.Reason, c.class, c.reason)
			}
		})
	}
}
