package notification

import (
	"slices"
	"strconv"
	"testing"
)

type vendorCase struct {
	name    string
	doc     string
	headers map[string]string
	format  Format
	want    []string // event summaries
	// Routing hints expected; nil/"" means none.
	tenant, partition string
	bases             []string
	tags              []Tag
}

// hapiMessage is a HAPI/Smile message-channel event with the resource as a
// JSON string.
func hapiMessage(op, payloadID, resource, extra string) string {
	payload := ""
	if resource != "" {
		payload = `,"payload":` + strconv.Quote(resource)
	}
	return `{"headers":{"retryCount":0,"customHeaders":{}},"payload":{"operationType":"` + op + `","payloadId":"` + payloadID + `"` + payload + extra + `,"mediaType":"JSON"}}`
}

func vendorCases() []vendorCase {
	const patient = `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05Z","tag":[{"system":"urn:tenant","code":"acme"}]},"gender":"female"}`
	return []vendorCase{
		{name: "HAPI create", format: FormatHAPI,
			doc:       hapiMessage("CREATE", "Patient/p1/_history/2", patient, `,"partitionId":{"allPartitions":false,"partitionIds":[3],"partitionNames":["ACME"]}`),
			want:      []string{"upsert Patient/p1 v2 resource"},
			partition: "ACME", tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "HAPI update, partition id only, absolute payloadId", format: FormatHAPI,
			doc:       hapiMessage("UPDATE", "http://hapi.example.org/fhir/Patient/p1/_history/2", patient, `,"payloadVersion":2,"partitionId":{"partitionIds":[7],"partitionNames":[null]}`),
			want:      []string{"upsert Patient/p1 v2 resource"},
			partition: "7", bases: []string{"http://hapi.example.org/fhir"}, tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "HAPI delete", format: FormatHAPI,
			doc:  hapiMessage("DELETE", "Patient/p1/_history/3", "", ""),
			want: []string{"delete Patient/p1 v3"}},
		{name: "HAPI without payload", format: FormatHAPI,
			doc:  hapiMessage("UPDATE", "Patient/p1/_history/4", "", ""),
			want: []string{"upsert Patient/p1 v4 fetch"}},
		{name: "HAPI payload as an object", format: FormatHAPI,
			doc:  `{"payload":{"operationType":"MANUALLY_TRIGGERED","payloadId":"Patient/p1","payload":` + patient + `}}`,
			want: []string{"upsert Patient/p1 v2 resource"}, tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "IBM create with resource", format: FormatIBM,
			doc:    `{"lastUpdated":"2024-01-02T03:04:05Z","location":"Patient/p1/_history/2","operationType":"create","resourceId":"p1","tenantId":"acme","datasourceId":"default","resource":` + patient + `}`,
			want:   []string{"upsert Patient/p1 v2 resource"},
			tenant: "acme", tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "IBM resource trimmed", format: FormatIBM,
			doc:    `{"location":"Patient/p1/_history/5","operationType":"update","resourceId":"p1","tenantId":"acme","resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"5"}}}`,
			want:   []string{"upsert Patient/p1 v5 fetch"},
			tenant: "acme"},
		{name: "IBM resource absent", format: FormatIBM,
			doc:    `{"location":"Observation/o1/_history/1","operationType":"update","resourceId":"o1","tenantId":"globex","datasourceId":"default"}`,
			want:   []string{"upsert Observation/o1 v1 fetch"},
			tenant: "globex"},
		{name: "IBM delete", format: FormatIBM,
			doc:    `{"location":"Patient/p1/_history/6","operationType":"delete","resourceId":"p1","tenantId":"acme"}`,
			want:   []string{"delete Patient/p1 v6"},
			tenant: "acme"},
		{name: "Aidbox", format: FormatAidbox,
			doc: `{"resourceType":"Bundle","type":"history","timestamp":"2024-01-02T03:04:05Z","entry":[` +
				`{"resource":{"resourceType":"AidboxSubscriptionStatus","status":"active","type":"event-notification","notificationEvent":[{"eventNumber":12,"focus":{"reference":"Patient/p1"}}],"topic":"http://aidbox.app/SubscriptionTopic/patients","topic-destination":{"reference":"AidboxTopicDestination/kafka"}}},` +
				`{"resource":` + patient + `,"request":{"method":"PUT","url":"/fhir/Patient/p1"},"fullUrl":"http://aidbox.example.org/fhir/Patient/p1"}]}`,
			want:  []string{"upsert Patient/p1 v2 resource"},
			bases: []string{"http://aidbox.example.org/fhir"}, tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "bare resource", format: FormatResource,
			doc:  patient,
			want: []string{"upsert Patient/p1 v2 resource"}, tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "Medplum update", format: FormatResource,
			doc:     patient,
			headers: map[string]string{"X-Medplum-Subscription": "Subscription/s1", "X-Signature": "abc"},
			want:    []string{"upsert Patient/p1 v2 resource"}, tags: []Tag{{"urn:tenant", "acme"}}},
		{name: "stub resource", format: FormatResource,
			doc:  `{"resourceType":"Patient","id":"p1","meta":{"versionId":"3"}}`,
			want: []string{"upsert Patient/p1 v3 fetch"}},
		{name: "HAPI stub payload", format: FormatHAPI,
			doc:  hapiMessage("UPDATE", "Patient/p1/_history/4", `{"resourceType":"Patient","id":"p1"}`, ""),
			want: []string{"upsert Patient/p1 v4 fetch"}},
		{name: "Medplum delete", format: FormatResource,
			doc:     `{}`,
			headers: map[string]string{"X-Medplum-Deleted-Resource": "Patient/p1"},
			want:    []string{"delete Patient/p1"}},
		{name: "rest-hook delete with the resource", format: FormatResource,
			doc:     patient,
			headers: map[string]string{HeaderInteraction: "delete"},
			want:    []string{"delete Patient/p1 v2"}},
		{name: "body-less update names the resource", format: FormatResource,
			doc:     `{}`,
			headers: map[string]string{HeaderInteraction: "update", HeaderResource: "Patient/p1/_history/8"},
			want:    []string{"upsert Patient/p1 v8 fetch"}},
		{name: "Google full resource", format: FormatResource,
			doc:     `{"resourceType":"Patient","id":"p1","active":true}`,
			headers: map[string]string{"action": "UpdateResource", "versionId": "MTY4", "payloadType": "FullResource"},
			want:    []string{"upsert Patient/p1 vMTY4 resource"}},
		{name: "Google name only", format: FormatGoogle,
			doc:     `projects/proj/locations/us-central1/datasets/ds/fhirStores/acme/fhir/Patient/p1`,
			headers: map[string]string{"action": "CreateResource", "payloadType": "NameOnly", "resourceType": "Patient"},
			want:    []string{"upsert Patient/p1 fetch https://healthcare.googleapis.com/v1/projects/proj/locations/us-central1/datasets/ds/fhirStores/acme/fhir"},
			bases:   []string{"https://healthcare.googleapis.com/v1/projects/proj/locations/us-central1/datasets/ds/fhirStores/acme/fhir"}},
		{name: "Google delete", format: FormatGoogle,
			doc:     `projects/proj/locations/us-central1/datasets/ds/fhirStores/acme/fhir/Patient/p1/_history/MTY5`,
			headers: map[string]string{"action": "DeleteResource"},
			want:    []string{"delete Patient/p1 vMTY5"},
			bases:   []string{"https://healthcare.googleapis.com/v1/projects/proj/locations/us-central1/datasets/ds/fhirStores/acme/fhir"}},
		{name: "Azure Event Grid", format: FormatAzure,
			doc:   `{"id":"e1","topic":"/subscriptions/x","subject":"ws-fhir.fhir.azurehealthcareapis.com/Patient/p1","data":{"resourceType":"Patient","resourceFhirAccount":"ws-fhir.fhir.azurehealthcareapis.com","resourceFhirId":"p1","resourceVersionId":3},"eventType":"Microsoft.HealthcareApis.FhirResourceUpdated","dataVersion":"1","metadataVersion":"1","eventTime":"2024-01-02T03:04:05Z"}`,
			want:  []string{"upsert Patient/p1 v3 fetch https://ws-fhir.fhir.azurehealthcareapis.com"},
			bases: []string{"https://ws-fhir.fhir.azurehealthcareapis.com"}},
		{name: "Azure CloudEvents delete", format: FormatAzure,
			doc:   `{"specversion":"1.0","id":"e2","source":"/subscriptions/x","subject":"ws-fhir.fhir.azurehealthcareapis.com/Patient/p1","type":"Microsoft.HealthcareApis.FhirResourceDeleted","data":{"resourceType":"Patient","resourceFhirAccount":"ws-fhir.fhir.azurehealthcareapis.com","resourceFhirId":"p1","resourceVersionId":4}}`,
			want:  []string{"delete Patient/p1 v4"},
			bases: []string{"https://ws-fhir.fhir.azurehealthcareapis.com"}},
	}
}

func recordHeaders(m map[string]string) []Header {
	var hs []Header
	for k, v := range m {
		hs = append(hs, Header{Key: k, Value: []byte(v)})
	}
	return hs
}

func TestDecodeVendors(t *testing.T) {
	for _, tc := range vendorCases() {
		t.Run(tc.name, func(t *testing.T) {
			n, err := DecodeRecord([]byte(tc.doc), recordHeaders(tc.headers))
			if err != nil {
				t.Fatal(err)
			}
			if n.Format != tc.format {
				t.Errorf("format: got %s, want %s", n.Format, tc.format)
			}
			if got := summaries(n); !slices.Equal(got, tc.want) {
				t.Errorf("events: got %q, want %q", got, tc.want)
			}
			if n.TenantID != tc.tenant || n.PartitionID != tc.partition {
				t.Errorf("tenant/partition: got %q/%q, want %q/%q", n.TenantID, n.PartitionID, tc.tenant, tc.partition)
			}
			if !slices.Equal(n.BaseURLs, tc.bases) {
				t.Errorf("base URLs: got %q, want %q", n.BaseURLs, tc.bases)
			}
			if !slices.Equal(n.Tags, tc.tags) {
				t.Errorf("tags: got %v, want %v", n.Tags, tc.tags)
			}
			if n.Control() {
				t.Errorf("got a control notification, want a change")
			}
			assertNoSecrets(t, n, "abc", "customHeaders", "retryCount")
		})
	}
}

// TestDecodeHAPIResourceIsUnescaped checks that the payload string becomes
// the resource JSON itself.
func TestDecodeHAPIResourceIsUnescaped(t *testing.T) {
	const res = `{"resourceType":"Patient","id":"p1","name":[{"text":"Zoë \"Z\" / é"}]}`
	n, err := Decode([]byte(hapiMessage("CREATE", "Patient/p1/_history/1", res, "")))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(n.Events[0].Resource); got != res {
		t.Fatalf("resource: got %s, want %s", got, res)
	}
}
