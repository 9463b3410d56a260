package bulk

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Inputs shared by the reader's tests and the commands' tests of the same
// files.
const (
	patientA = `{"resourceType":"Patient","id":"a","gender":"female"}`
	patientB = `{"resourceType":"Patient","id":"b","birthDate":"1970-01-02"}`

	// transaction is a transaction Bundle that creates two resources and
	// deletes three: by url, by fullUrl when the url is conditional, and
	// one that names nothing.
	transaction = `{
  "resourceType": "Bundle",
  "type": "transaction",
  "entry": [
    {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "t1"}, "request": {"method": "POST", "url": "Patient"}},
    {"request": {"method": "DELETE", "url": "Patient/gone"}},
    {"fullUrl": "http://example.org/fhir/Observation/o9", "request": {"method": "DELETE", "url": "Observation?code=x"}},
    {"request": {"method": "GET", "url": "Patient?name=x"}},
    {"resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}, "request": {"method": "PUT", "url": "Observation/o1"}},
    {"request": {"method": "DELETE", "url": "?"}}
  ]
}`

	// notificationBundle is an R5 notification of one Encounter change with
	// its Patient as additional context.
	notificationBundle = `{"resourceType":"Bundle","id":"n1","type":"subscription-notification","timestamp":"2024-01-02T03:04:05Z","entry":[
{"fullUrl":"urn:uuid:9e41ff6d-5be6-4e6a-8b85-abd4e7f58400","resource":{"resourceType":"SubscriptionStatus","id":"9e41ff6d-5be6-4e6a-8b85-abd4e7f58400","status":"active","type":"event-notification","eventsSinceSubscriptionStart":"2","notificationEvent":[{"eventNumber":"2","focus":{"reference":"http://example.org/fhir/Encounter/e1"},"additionalContext":[{"reference":"http://example.org/fhir/Patient/p1"}]}],"subscription":{"reference":"http://example.org/fhir/Subscription/s1"},"topic":"http://example.org/topics/encounter"}},
{"fullUrl":"http://example.org/fhir/Encounter/e1","resource":{"resourceType":"Encounter","id":"e1","meta":{"versionId":"1","lastUpdated":"2024-01-02T03:04:05Z"},"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}},"request":{"method":"PUT","url":"Encounter/e1"},"response":{"status":"200"}},
{"fullUrl":"http://example.org/fhir/Patient/p1","resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"3"}}}
]}`
)

// trace reads data and describes each item and each problem reported.
func trace(t testing.TB, r *Reader, name string, data []byte) []string {
	t.Helper()
	var got []string
	r.Bad = func(at Location, err error) { got = append(got, fmt.Sprintf("bad %s: %v", at, err)) }
	err := r.ReadStream(context.Background(), name, bytes.NewReader(data), func(it *Item) error {
		got = append(got, describe(it))
		return nil
	})
	if err != nil {
		t.Fatalf("ReadStream: %v", err)
	}
	return got
}

func describe(it *Item) string {
	if it.Kind == KindEvent {
		s := fmt.Sprintf("event %s %s %s/%s", it.At, it.Event.Operation, it.Event.ResourceType, it.Event.ID)
		if it.Event.Fetch != nil {
			s += " id-only"
		}
		return s
	}
	return fmt.Sprintf("%s %s %s/%s", it.Kind, it.At, it.Resource.ResourceType(), it.Resource.ID())
}

func gzipped(t testing.TB, data string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// record is a line of `fhirlake generate --out`.
func record(value string) string {
	return `{"key":"acme/Encounter/e1","headers":{"fhir-tenant":"acme"},"value":` + strconv.Quote(value) + `}`
}

func TestRead(t *testing.T) {
	pretty := "{\n  \"resourceType\": \"Patient\",\n  \"id\": \"p\"\n}\n"
	tests := []struct {
		name string
		file string
		data []byte
		max  int
		// skipDeletes sets Reader.SkipDeletes.
		skipDeletes bool
		want        []string
		// bad are substrings of the problems, in order, when the trace
		// cannot spell them whole.
		bad []string
	}{
		{name: "NDJSON named .ndjson", file: "Patient.ndjson", data: []byte(patientA + "\n" + patientB + "\n"),
			want: []string{"resource Patient.ndjson:1 Patient/a", "resource Patient.ndjson:2 Patient/b"}},
		{name: "NDJSON of any name, CRLF and blank lines", file: "export", data: []byte("\r\n" + patientA + "\r\n\r\n  " + patientB),
			want: []string{"resource export:2 Patient/a", "resource export:4 Patient/b"}},
		{name: "gzipped NDJSON named .json", file: "x.json", data: gzipped(t, patientA+"\n"+patientB+"\n"),
			want: []string{"resource x.json:1 Patient/a", "resource x.json:2 Patient/b"}},
		{name: "byte order mark", file: "bom", data: []byte("\xef\xbb\xbf" + patientA + "\n" + patientB),
			want: []string{"resource bom:1 Patient/a", "resource bom:2 Patient/b"}},
		{name: "pretty-printed resource", file: "p.json", data: []byte(pretty),
			want: []string{"resource p.json Patient/p"}},
		{name: "one line is a document", file: "one.ndjson", data: []byte(patientA + "\n\n"),
			want: []string{"resource one.ndjson Patient/a"}},
		{name: "transaction with deletes", file: "tx.json", data: []byte(transaction),
			want: []string{
				"resource tx.json entry 0 Patient/t1",
				"event tx.json entry 1 delete Patient/gone",
				"event tx.json entry 2 delete Observation/o9",
				"resource tx.json entry 4 Observation/o1",
				"bad tx.json entry 5: delete names no Type/id",
			}},
		{name: "minified gzipped transaction", file: "tx", data: gzipped(t, strings.Join(strings.Fields(transaction), "")),
			want: []string{
				"resource tx entry 0 Patient/t1",
				"event tx entry 1 delete Patient/gone",
				"event tx entry 2 delete Observation/o9",
				"resource tx entry 4 Observation/o1",
				"bad tx entry 5: delete names no Type/id",
			}},
		{name: "Bundles in NDJSON and in a Bundle", file: "nested.ndjson",
			data: []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + patientA + `},{"resource":{"resourceType":"Bundle","type":"searchset","entry":[{"resource":` + patientB + `}]}}]}` + "\n" +
				`{"type":"batch","resourceType":"Bundle","entry":[{"resource":` + patientA + `}]}` + "\n"),
			want: []string{"resource nested.ndjson:1 entry 0 Patient/a", "resource nested.ndjson:1 entry 1 entry 0 Patient/b", "resource nested.ndjson:2 entry 0 Patient/a"}},
		{name: "notification", file: "n.json", data: []byte(notificationBundle),
			want: []string{
				"carried n.json entry 0 SubscriptionStatus/9e41ff6d-5be6-4e6a-8b85-abd4e7f58400",
				"carried n.json entry 1 Encounter/e1",
				"carried n.json entry 2 Patient/p1",
				"event n.json upsert Encounter/e1",
			}},
		{name: "notification in a message Bundle", file: "m.json",
			data: []byte(`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"MessageHeader","id":"h","eventUri":"http://example.org/e","source":{"endpoint":"http://example.org"}}},{"resource":` + notificationBundle + `}]}`),
			want: []string{
				"carried m.json entry 0 MessageHeader/h",
				"carried m.json entry 1 entry 0 SubscriptionStatus/9e41ff6d-5be6-4e6a-8b85-abd4e7f58400",
				"carried m.json entry 1 entry 1 Encounter/e1",
				"carried m.json entry 1 entry 2 Patient/p1",
				"event m.json upsert Encounter/e1",
			}},
		{name: "a message that is no notification", file: "msg.json",
			data: []byte(`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"MessageHeader","id":"h"}},{"resource":` + patientA + `}]}`),
			want: []string{"resource msg.json entry 0 MessageHeader/h", "resource msg.json entry 1 Patient/a"}},
		{name: "records of generate --out", file: "records",
			data: []byte(record(notificationBundle) + "\n" + record(strings.ReplaceAll(notificationBundle, `"focus":{`, `"focus":{"x":1,`)) + "\n"),
			want: []string{
				"carried records:1 entry 0 SubscriptionStatus/9e41ff6d-5be6-4e6a-8b85-abd4e7f58400",
				"carried records:1 entry 1 Encounter/e1",
				"carried records:1 entry 2 Patient/p1",
				"event records:1 upsert Encounter/e1",
				"carried records:2 entry 0 SubscriptionStatus/9e41ff6d-5be6-4e6a-8b85-abd4e7f58400",
				"carried records:2 entry 1 Encounter/e1",
				"carried records:2 entry 2 Patient/p1",
				"event records:2 upsert Encounter/e1",
			}},
		{name: "status alone", file: "status.json",
			data: []byte(`{"resourceType":"SubscriptionStatus","id":"st","status":"active","type":"heartbeat","subscription":{"reference":"Subscription/s1"}}`),
			want: []string{"carried status.json SubscriptionStatus/st"}},
		{name: "vendor envelopes", file: "hapi.ndjson",
			data: []byte(`{"payload":{"operationType":"UPDATE","payloadId":"Patient/a/_history/2","payload":` + strconv.Quote(patientA) + `}}` + "\n" +
				`{"payload":{"operationType":"DELETE","payloadId":"Patient/b/_history/3"}}` + "\n" +
				`{"payload":{"operationType":"UPDATE","payloadId":"Patient/c/_history/4"}}` + "\n"),
			want: []string{
				"carried hapi.ndjson:1 Patient/a",
				"event hapi.ndjson:1 upsert Patient/a",
				"event hapi.ndjson:2 delete Patient/b",
				"event hapi.ndjson:3 upsert Patient/c id-only",
			}},
		{name: "a bad line among good ones", file: "bad",
			data: []byte(patientA + "\nthis is not JSON\n{\"id\":\"x\"}\n" + patientB + "\n"),
			want: []string{"resource bad:1 Patient/a", "bad bad:2: …", "bad bad:3: parse resource: missing resourceType", "resource bad:4 Patient/b"},
			bad:  []string{"bad:2: parse resource"}},
		{name: "a line too long", file: "long", max: 60,
			data: []byte(patientA + "\n" + `{"resourceType":"Patient","id":"long","name":[{"family":"far too long for the limit"}]}` + "\n" + patientB + "\n"),
			want: []string{"resource long:1 Patient/a", "bad long:2: line longer than 60 bytes", "resource long:3 Patient/b"}},
		{name: "a document too large", file: "big.json", max: 20, data: []byte(pretty),
			want: []string{"bad big.json: document larger than 20 bytes"}},
		{name: "a Bundle cut short", file: "cut.json", data: []byte(transaction[:strings.Index(transaction, `"Observation", "id"`)]),
			// Its deletes are read from the whole Bundle, which does not parse.
			want: []string{"resource cut.json entry 0 Patient/t1", "bad cut.json: …"},
			bad:  []string{"cut.json: bundle: "}},
		{name: "a Bundle whose resourceType comes late", file: "late.json",
			data: []byte(`{"type":"collection","entry":[{"resource":` + patientA + `}],"resourceType":"Bundle"}`),
			want: []string{"resource late.json entry 0 Patient/a"}},
		{name: "deletes left out", file: "tx.json", data: []byte(transaction), skipDeletes: true,
			want: []string{"resource tx.json entry 0 Patient/t1", "resource tx.json entry 4 Observation/o1"}},
		{name: "entries that are not objects", file: "nulls.json",
			data: []byte(`{"resourceType":"Bundle","type":"transaction","entry":[null,{"request":{"method":"DELETE","url":"Patient/x"}},{"resource":` + patientA + `}]}`),
			want: []string{"bad nulls.json: " + errMisaligned.Error(), "resource nulls.json entry 2 Patient/a"}},
		{name: "empty", file: "empty", data: []byte(" \n\n"), want: nil},
		{name: "not gzip after all", file: "broken.gz", data: []byte{0x1f, 0x8b, 0x08, 0x00, 0x01},
			want: []string{"bad broken.gz: …"}, bad: []string{"broken.gz: gunzip: "}},
		{name: "gzip cut short", file: "cut.ndjson.gz", data: gzipped(t, patientA+"\n"+patientB+"\n"+patientA+"\n")[:40],
			want: []string{"bad cut.ndjson.gz:1: …"}, bad: []string{"cut.ndjson.gz:1: read: unexpected EOF"}},
		{name: "not JSON at all", file: "x.xml", data: []byte("<Patient xmlns=\"http://hl7.org/fhir\">\n  <id value=\"a\"/>\n</Patient>\n"),
			want: []string{"bad x.xml: …"}, bad: []string{"x.xml: parse resource"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := trace(t, &Reader{MaxBytes: tt.max, SkipDeletes: tt.skipDeletes}, tt.file, tt.data)
			bad := tt.bad
			for i := range got {
				// A problem whose message is long is checked by substring.
				if i < len(tt.want) && strings.HasSuffix(tt.want[i], ": …") && len(bad) > 0 {
					if !strings.Contains(got[i], bad[0]) {
						t.Errorf("item %d: got %q, want it to contain %q", i, got[i], bad[0])
					}
					got[i], bad = tt.want[i], bad[1:]
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestReadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "Patient.ndjson")
	if err := os.WriteFile(good, []byte(patientA+"\n"+patientB+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var r Reader
	read := 0
	r.Progress = func(n int) { read += n }
	var got []string
	r.Bad = func(at Location, err error) { got = append(got, fmt.Sprintf("bad %s", at)) }
	fn := func(it *Item) error { got = append(got, describe(it)); return nil }
	for _, p := range []string{good, filepath.Join(dir, "absent.ndjson"), good} {
		if err := r.Read(context.Background(), p, fn); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"resource " + good + ":1 Patient/a", "resource " + good + ":2 Patient/b",
		"bad " + filepath.Join(dir, "absent.ndjson"),
		"resource " + good + ":1 Patient/a", "resource " + good + ":2 Patient/b",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	if size, _ := Size([]string{good}); read != 2*int(size) {
		t.Errorf("progress: got %d bytes, want %d (the file twice)", read, 2*size)
	}
	if _, err := Size([]string{dir}); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Size of a directory: got %v, want an error saying it is a directory", err)
	}

	// An error of the callback stops the reading and is returned as is.
	stop := errors.New("enough")
	calls := 0
	err := r.Read(context.Background(), good, func(*Item) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("callback error: got %v after %d calls, want %v after 1", err, calls, stop)
	}
	// So does cancellation, looked at every 1024 items.
	var many strings.Builder
	for i := 0; i < 3000; i++ {
		many.WriteString(patientA + "\n")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	err = r.ReadStream(ctx, "many", strings.NewReader(many.String()), func(*Item) error { calls++; return nil })
	if !errors.Is(err, context.Canceled) || calls >= 1024 {
		t.Errorf("cancelled: got %v after %d items, want context.Canceled within 1024", err, calls)
	}
}

func TestLocation(t *testing.T) {
	for _, tc := range []struct {
		at     Location
		str    string
		offset int64
	}{
		{Location{File: "f"}, "f", 1},
		{Location{File: "f", Line: 7}, "f:7", 7},
		{Location{File: "f", Entries: []int{0}}, "f entry 0", 1},
		{Location{File: "f", Entries: []int{4, 2}}, "f entry 4 entry 2", 5},
		{Location{File: "f", Line: 3, Entries: []int{9}}, "f:3 entry 9", 3},
	} {
		if got := tc.at.String(); got != tc.str {
			t.Errorf("String: got %q, want %q", got, tc.str)
		}
		if got := tc.at.Offset(); got != tc.offset {
			t.Errorf("%s: Offset got %d, want %d", tc.str, got, tc.offset)
		}
	}
	at := Location{File: "f", Entries: []int{1}}
	kept := at.Clone()
	at.Entries[0] = 2
	if kept.Entries[0] != 1 {
		t.Error("a clone shares its entries with the original")
	}
}
