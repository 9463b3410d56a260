package notification

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"fhirlake/internal/testenv"
	"fhirlake/synth"
)

// syntheaResources reads up to n Synthea resources, taking them in turn from
// several resource types so that sizes vary as in a real feed.
func syntheaResources(tb testing.TB, n int) [][]byte {
	tb.Helper()
	dir := testenv.Shared(tb, "data", "synthea-small")
	types := []string{"Observation", "Encounter", "Condition", "Patient", "ExplanationOfBenefit", "Claim", "Procedure", "MedicationRequest"}
	perType := make([][][]byte, len(types))
	for i, typ := range types {
		f, err := os.Open(filepath.Join(dir, typ+".ndjson"))
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 8<<20)
		for len(perType[i]) < n && sc.Scan() {
			perType[i] = append(perType[i], bytes.Clone(sc.Bytes()))
		}
		f.Close()
	}
	var out [][]byte
	for k := 0; len(out) < n; k++ {
		added := false
		for i := range perType {
			if k < len(perType[i]) && len(out) < n {
				out = append(out, perType[i][k])
				added = true
			}
		}
		if !added {
			tb.Fatalf("only %d resources in %s, want %d", len(out), dir, n)
		}
	}
	return out
}

// syntheaNotification builds an R5 full-resource notification carrying n
// Synthea resources, as a FHIR server sends it.
func syntheaNotification(tb testing.TB, n int) []byte {
	tb.Helper()
	const base = "https://fhir.example.org/fhir"
	var events, entries bytes.Buffer
	for i, r := range syntheaResources(tb, n) {
		var h struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(r, &h); err != nil {
			tb.Fatal(err)
		}
		if i > 0 {
			events.WriteByte(',')
		}
		fmt.Fprintf(&events, `{"eventNumber":"%d","focus":{"reference":"%s/%s/%s"}}`, i+1, base, h.ResourceType, h.ID)
		fmt.Fprintf(&entries, `,{"fullUrl":"%s/%s/%s","resource":%s,"request":{"method":"PUT","url":"%s/%s"},"response":{"status":"200"}}`,
			base, h.ResourceType, h.ID, r, h.ResourceType, h.ID)
	}
	return fmt.Appendf(nil, `{"resourceType":"Bundle","id":"bench","type":"subscription-notification","timestamp":"2024-01-01T00:00:00Z","entry":[`+
		`{"fullUrl":"urn:uuid:0f6a4a38-98a8-4d3c-8b9e-6bfc6ba8e7a1","resource":{"resourceType":"SubscriptionStatus","status":"active","type":"event-notification",`+
		`"eventsSinceSubscriptionStart":"%d","notificationEvent":[%s],"subscription":{"reference":"%s/Subscription/s1"},"topic":"http://example.org/topic/all"}}%s]}`,
		n, events.Bytes(), base, entries.Bytes())
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		value := syntheaNotification(b, n)
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			for b.Loop() {
				note, err := Decode(value)
				if err != nil {
					b.Fatal(err)
				}
				if len(note.Events) != n {
					b.Fatalf("got %d events, want %d", len(note.Events), n)
				}
			}
		})
	}
}

// BenchmarkDecodeStream decodes the synthetic stream that `fhirlake demo`
// and the ingest benchmark produce: every notification format, one
// resource each.
func BenchmarkDecodeStream(b *testing.B) {
	opts := synth.DefaultOptions()
	opts.Patients = 200
	opts.Tenants = []string{"acme", "globex", "initech"}
	opts.Malformed, opts.Unroutable, opts.Controls = 0, 0, 0
	gen, err := synth.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	var values [][]byte
	var size int64
	for len(values) < 20_000 {
		r, ok := gen.Next()
		if !ok {
			break
		}
		values = append(values, r.Value)
		size += int64(len(r.Value))
	}
	b.SetBytes(size / int64(len(values)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := DecodeRecord(values[i%len(values)], nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
