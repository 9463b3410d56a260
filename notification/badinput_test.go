package notification

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The dead-letter catalogue: every input here must be refused with its
// class and a reason that names the problem, never a crash or a silent
// drop.
//
// Not here, because the decoder does not decide them (the worker
// dead-letters them and should test them):
//   - routing: unknown_tenant (a header or topic names a tenant that is not
//     configured), conflicting_tenants (header and topic map, or two
//     headers, disagree; or a payload hint — TenantID, PartitionID,
//     BaseURLs, Tags — contradicts them, when the router trusts hints),
//     no_tenant (nothing names a tenant; there is no default).
//   - fetching id-only events (Fetcher.Fetch/Resolve returns *FetchError):
//     id_only (the tenant has no FHIR server configured), fetch_failed
//     (429/5xx/network errors after MaxRetries, 400/401/403 and other
//     statuses without retry, a redirect to another origin), fetch_invalid
//     (the server answered with another type, id or version, not JSON, or
//     more than MaxRecordBytes). A non-FetchError from Fetch means the
//     context ended: replay, do not dead-letter.

type badInput struct {
	name    string
	doc     string
	headers map[string]string
	class   string
	reason  string // a substring of the reason
}

// status builds an R5 notification Bundle: its status with the given
// notificationEvent array, then the given entries.
func statusBundle(events string, entries ...string) string {
	all := append([]string{`{"resource":{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active","notificationEvent":` + events + `}}`}, entries...)
	return `{"resourceType":"Bundle","type":"subscription-notification","entry":[` + strings.Join(all, ",") + `]}`
}

func badInputs(tb testing.TB) []badInput {
	tb.Helper()
	const focusP1 = `[{"eventNumber":1,"focus":{"reference":"https://fhir.example.org/Patient/p1"}}]`
	putP1 := func(resource string) string {
		return `{"fullUrl":"https://fhir.example.org/Patient/p1","resource":` + resource + `,"request":{"method":"PUT","url":"Patient/p1"}}`
	}
	notification := r5Bundle(putP1(`{"resourceType":"Patient","id":"p1"}`))
	manyEntries := `{"resourceType":"Bundle","type":"history","entry":[` + strings.Repeat(`{},`, MaxEntries) + `{}]}`
	deep := strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1)
	deepInResource := r5Bundle(putP1(`{"resourceType":"Patient","id":"p1","extension":` +
		strings.Repeat(`[{"extension":`, MaxNesting/2) + `[]` + strings.Repeat(`}]`, MaxNesting/2) + `}`))
	oversized := `{"resourceType":"Patient","id":"p1","text":{"div":"` + strings.Repeat("x", MaxRecordBytes) + `"}}`
	return []badInput{
		// Not JSON at all.
		{name: "empty value", doc: ``, class: ClassMalformed, reason: "empty"},
		{name: "only whitespace", doc: " \n\t ", class: ClassMalformed, reason: "empty"},
		{name: "truncated JSON", doc: `{"resourceType":"Bundle","type":"hist`, class: ClassMalformed, reason: "unterminated string"},
		{name: "truncated after a member", doc: `{"resourceType":"Bundle",`, class: ClassMalformed, reason: "want a string key"},
		{name: "truncated notification", doc: notification[:len(notification)/2], class: ClassMalformed, reason: "invalid JSON"},
		{name: "invalid UTF-8", doc: "{\"resourceType\":\"Bundle\xff\"}", class: ClassMalformed, reason: "UTF-8"},
		{name: "NUL byte in a string", doc: "{\"resourceType\":\"Pat\x00ient\",\"id\":\"p1\"}", class: ClassMalformed, reason: "control character"},
		{name: "NUL byte after the value", doc: "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\x00", class: ClassMalformed, reason: "after the JSON value"},
		{name: "two JSON values", doc: `{"resourceType":"Patient","id":"p1"}{"resourceType":"Patient","id":"p2"}`, class: ClassMalformed, reason: "after the JSON value"},
		{name: "XML", doc: `<?xml version="1.0" encoding="UTF-8"?><Bundle xmlns="http://hl7.org/fhir"><type value="history"/></Bundle>`, class: ClassMalformed, reason: "XML"},
		{name: "JavaScript object literal", doc: `{resourceType:'Bundle'}`, class: ClassMalformed, reason: "want a string key"},
		{name: "trailing comma", doc: `{"resourceType":"Patient","id":"p1",}`, class: ClassMalformed, reason: "want a string key"},
		{name: "leading zero", doc: `{"resourceType":"Patient","id":"p1","multipleBirthInteger":01}`, class: ClassMalformed, reason: "want ',' or '}'"},
		{name: "bad escape", doc: `{"resourceType":"Patient","id":"p\x1"}`, class: ClassMalformed, reason: "invalid escape"},
		{name: "very deep nesting", doc: deep, class: ClassMalformed, reason: "nests deeper than 256"},
		{name: "very deep nesting inside a resource", doc: deepInResource, class: ClassMalformed, reason: "nests deeper than 256"},
		{name: "not a Google resource name", doc: `projects/p/secrets/s`, class: ClassMalformed, reason: "neither JSON nor a Google"},

		// Too large.
		{name: "oversized message", doc: oversized, class: ClassOversized, reason: "more than 16777216"},
		{name: "too many entries", doc: manyEntries, class: ClassOversized, reason: "more than 50000 entries"},

		// JSON, but not a notification.
		{name: "JSON array", doc: `[{"resourceType":"Bundle","type":"history","entry":[]}]`, class: ClassNotNotification, reason: "array"},
		{name: "null", doc: `null`, class: ClassNotNotification, reason: "null"},
		{name: "a string", doc: `"Patient/p1"`, class: ClassNotNotification, reason: "string"},
		{name: "a number", doc: `42`, class: ClassNotNotification, reason: "number"},
		{name: "empty object without headers", doc: `{}`, class: ClassNotNotification, reason: "empty JSON object"},
		{name: "no resourceType", doc: `{"hello":"world"}`, class: ClassNotNotification, reason: "no resourceType"},
		{name: "resourceType not a string", doc: `{"resourceType":["Bundle"],"type":"history"}`, class: ClassNotNotification, reason: "resourceType is not a string"},
		{name: "lowercase resourceType", doc: `{"resourceType":"patient","id":"p1"}`, class: ClassNotNotification, reason: "not a FHIR resource type"},
		{name: "searchset Bundle", doc: `{"resourceType":"Bundle","type":"searchset","entry":[]}`, class: ClassNotNotification, reason: `"searchset"`},
		{name: "transaction Bundle", doc: `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}}]}`, class: ClassNotNotification, reason: `"transaction"`},
		{name: "Bundle without type", doc: `{"resourceType":"Bundle","entry":[]}`, class: ClassNotNotification, reason: `Bundle.type ""`},
		{name: "Parameters that is not a status", doc: `{"resourceType":"Parameters","parameter":[{"name":"x","valueString":"y"}]}`, class: ClassNotNotification, reason: "not a subscription status"},
		{name: "object that is not HAPI", doc: `{"payload":{"hello":"world"}}`, class: ClassNotNotification, reason: "not a HAPI message"},

		// Notification Bundles that break the spec.
		{name: "Bundle without status", doc: `{"resourceType":"Bundle","type":"history","entry":[]}`, class: ClassInvalid, reason: "no status entry"},
		{name: "history Bundle of plain resources", doc: `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Patient","id":"x"}}]}`, class: ClassInvalid, reason: "first entry is \"Patient\""},
		{name: "Bundle.entry not an array", doc: `{"resourceType":"Bundle","type":"history","entry":{"resource":{}}}`, class: ClassInvalid, reason: "Bundle.entry is not an array"},
		{name: "status without type", doc: `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":{"resourceType":"SubscriptionStatus"}}]}`, class: ClassInvalid, reason: "status has no type"},
		{name: "unknown notification type", doc: `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"event"}}]}`, class: ClassInvalid, reason: "unknown notification type"},
		{name: "status without events", doc: `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active"}}]}`, class: ClassInvalid, reason: "lists no events"},
		{name: "notificationEvent not an array", doc: statusBundle(`{"eventNumber":1}`), class: ClassInvalid, reason: "notificationEvent is not an array"},
		{name: "focus missing from full-resource", doc: statusBundle(`[{"eventNumber":1,"focus":{"reference":"Patient/p1"}},{"eventNumber":2,"focus":{"reference":"Patient/p2"}}]`, putP1(`{"resourceType":"Patient","id":"p1"}`)), class: ClassInvalid, reason: "focus Patient/p2 is missing"},
		{name: "focus not a resource reference", doc: statusBundle(`[{"eventNumber":1,"focus":{"reference":"urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"}}]`), class: ClassInvalid, reason: "names no Type/id"},
		{name: "focus with a path trick", doc: statusBundle(`[{"eventNumber":1,"focus":{"reference":"https://fhir.example.org/Patient/.."}}]`), class: ClassInvalid, reason: "names no Type/id"},
		{name: "entry holds another resource", doc: statusBundle(focusP1, putP1(`{"resourceType":"Patient","id":"p2"}`)), class: ClassInvalid, reason: "holds Patient/p2"},
		{name: "resource without id", doc: statusBundle(focusP1, putP1(`{"resourceType":"Patient"}`)), class: ClassInvalid, reason: "has no id"},
		{name: "resource with a bad resourceType", doc: statusBundle(focusP1, putP1(`{"resourceType":"not a type","id":"p1"}`)), class: ClassInvalid, reason: "not a FHIR resource type"},
		{name: "resource id escaping a path", doc: statusBundle(`[{"eventNumber":1,"focus":{"reference":"urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"}}]`, `{"fullUrl":"urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427","resource":{"resourceType":"Patient","id":"p\u002f..\u002f1"},"request":{"method":"POST","url":"Patient"}}`), class: ClassInvalid, reason: "not a FHIR id"},
		{name: "resource is an array", doc: statusBundle(focusP1, putP1(`[{"resourceType":"Patient","id":"p1"}]`)), class: ClassInvalid, reason: "resource is not a JSON object"},
		{name: "meta is a string", doc: statusBundle(focusP1, putP1(`{"resourceType":"Patient","id":"p1","meta":"v2"}`)), class: ClassInvalid, reason: "meta is not an object"},
		{name: "delete without type or id", doc: r5Bundle(`{"fullUrl":"urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427","request":{"method":"DELETE","url":"Patient"}}`), class: ClassInvalid, reason: "delete entry names no Type/id"},
		{name: "duplicated resourceType", doc: `{"resourceType":"Bundle","type":"searchset","resourceType":"Patient","id":"p1"}`, class: ClassInvalid, reason: `key "resourceType" appears twice`},
		{name: "duplicated id in a resource", doc: statusBundle(focusP1, putP1(`{"resourceType":"Patient","id":"p1","id":"p2"}`)), class: ClassInvalid, reason: `key "id" appears twice`},
		{name: "duplicated id through an escape", doc: statusBundle(focusP1, putP1(`{"resourceType":"Patient","id":"p1","\u0069d":"p2"}`)), class: ClassInvalid, reason: `key "id" appears twice`},
		{name: "duplicated status type", doc: `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"heartbeat","type":"event-notification"}}]}`, class: ClassInvalid, reason: `key "type" appears twice`},
		{name: "message Bundle without notification", doc: `{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"MessageHeader","id":"m"}}]}`, class: ClassInvalid, reason: "holds no notification Bundle"},
		{name: "nested message Bundles", doc: `{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"Bundle","type":"message","entry":[{"resource":` + notification + `}]}}]}`, class: ClassInvalid, reason: "nested in a message Bundle"},
		{name: "huge event number", doc: statusBundle(`[{"eventNumber":123456789012345678901234567890}]`), class: ClassInvalid, reason: "not a 64-bit integer"},
		{name: "fractional event number", doc: statusBundle(`[{"eventNumber":"2.5"}]`), class: ClassInvalid, reason: "not a 64-bit integer"},
		{name: "Parameters status with a non-integer event number", doc: `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"type","valueCode":"event-notification"},{"name":"notification-event","part":[{"name":"event-number","valueString":"two"}]}]}}]}`, class: ClassInvalid, reason: `event-number "two" is not an integer`},
		{name: "Parameters events-since-subscription-start overflow", doc: `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"type","valueCode":"heartbeat"},{"name":"events-since-subscription-start","valueInteger64":"99999999999999999999"}]}}]}`, class: ClassInvalid, reason: "events-since-subscription-start"},

		// Other envelopes.
		{name: "HAPI payload not JSON", doc: hapiMessage("CREATE", "Patient/p1/_history/1", `{"resourceType":"Patient","id":"p1"`, ""), class: ClassInvalid, reason: "payload is not valid JSON"},
		{name: "HAPI payload in XML", doc: hapiMessage("CREATE", "Patient/p1/_history/1", `<Patient xmlns="http://hl7.org/fhir"><id value="p1"/></Patient>`, ""), class: ClassInvalid, reason: "payload is XML"},
		{name: "HAPI payload type disagrees with payloadId", doc: hapiMessage("UPDATE", "Patient/p1/_history/2", `{"resourceType":"Observation","id":"p1"}`, ""), class: ClassInvalid, reason: "payloadId names Patient/p1"},
		{name: "HAPI unknown operationType", doc: hapiMessage("UPSERT", "Patient/p1/_history/2", "", ""), class: ClassInvalid, reason: "unknown operationType"},
		{name: "HAPI payloadId not a reference", doc: hapiMessage("CREATE", "p1", "", ""), class: ClassInvalid, reason: "payloadId \"p1\" is not Type/id"},
		{name: "IBM event without resourceId", doc: `{"location":"Patient/p1/_history/1","operationType":"create","tenantId":"acme"}`, class: ClassInvalid, reason: "without resourceId"},
		{name: "IBM unknown operationType", doc: `{"location":"Patient/p1/_history/1","operationType":"merge","resourceId":"p1","tenantId":"acme"}`, class: ClassInvalid, reason: "unknown operationType"},
		{name: "IBM location names another resource", doc: `{"location":"Patient/p2/_history/1","operationType":"update","resourceId":"p1"}`, class: ClassInvalid, reason: "location"},
		{name: "IBM event names no type", doc: `{"operationType":"update","resourceId":"p1","tenantId":"acme"}`, class: ClassInvalid, reason: "names no resource type"},
		{name: "bare resource without id", doc: `{"resourceType":"Patient","gender":"female"}`, class: ClassInvalid, reason: "has no id"},
		{name: "bare resource with a bad id", doc: `{"resourceType":"Patient","id":"p 1"}`, class: ClassInvalid, reason: "not a FHIR id"},
		{name: "delete header names another resource", doc: `{"resourceType":"Patient","id":"p1"}`, headers: map[string]string{HeaderMedplumDeleted: "Patient/p2"}, class: ClassInvalid, reason: "header names Patient/p2"},
		{name: "conflicting interaction headers", doc: `{"resourceType":"Patient","id":"p1"}`, headers: map[string]string{HeaderInteraction: "update", "action": "DeleteResource"}, class: ClassInvalid, reason: "another header says"},
		{name: "unknown interaction", doc: `{"resourceType":"Patient","id":"p1"}`, headers: map[string]string{HeaderInteraction: "purge"}, class: ClassInvalid, reason: "unknown interaction"},
		{name: "empty body, delete header without target", doc: `{}`, headers: map[string]string{HeaderInteraction: "delete"}, class: ClassInvalid, reason: "no header naming the resource"},
		{name: "Azure unknown event type", doc: `{"eventType":"Microsoft.HealthcareApis.FhirResourceRead","data":{"resourceType":"Patient","resourceFhirAccount":"x.fhir.azurehealthcareapis.com","resourceFhirId":"p1"}}`, class: ClassInvalid, reason: "unknown event type"},
		{name: "Azure event without data", doc: `{"eventType":"Microsoft.HealthcareApis.FhirResourceCreated"}`, class: ClassInvalid, reason: "without data"},
		{name: "Google name without Type/id", doc: `projects/p/locations/l/datasets/d/fhirStores/s/fhir/patient/p1`, class: ClassInvalid, reason: "does not end in Type/id"},
	}
}

func TestBadInputs(t *testing.T) {
	cases := badInputs(t)
	if len(cases) < 30 {
		t.Fatalf("catalogue has %d cases, want at least 30", len(cases))
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("case %q appears twice", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			n, err := DecodeRecord([]byte(tc.doc), recordHeaders(tc.headers))
			de, ok := IsDecodeError(err)
			if !ok {
				t.Fatalf("got %v (%d events), want a DecodeError of class %s", err, eventCount(n), tc.class)
			}
			if de.Class != tc.class {
				t.Fatalf("class: got %s (%s), want %s", de.Class, de.Reason, tc.class)
			}
			if !strings.Contains(de.Reason, tc.reason) {
				t.Fatalf("reason: got %q, want it to contain %q", de.Reason, tc.reason)
			}
		})
	}
}

func eventCount(n *Notification) int {
	if n == nil {
		return 0
	}
	return len(n.Events)
}

// TestBadInputReasonIsBounded checks that a reason quoting the input stays
// short enough for a dead-letter header.
func TestBadInputReasonIsBounded(t *testing.T) {
	focus := "https://fhir.example.org/" + strings.Repeat("é", 5000) + "/Patient/p2"
	doc := statusBundle(`[{"eventNumber":1,"focus":{"reference":"`+focus+`"}}]`,
		`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}}`)
	_, err := Decode([]byte(doc))
	de, ok := IsDecodeError(err)
	if !ok || de.Class != ClassInvalid {
		t.Fatalf("got %v, want class %s", err, ClassInvalid)
	}
	if len(de.Reason) > maxReason+len("…") || !utf8.ValidString(de.Reason) {
		t.Fatalf("reason: got %d bytes (valid UTF-8: %v), want at most %d", len(de.Reason), utf8.ValidString(de.Reason), maxReason+len("…"))
	}
}
