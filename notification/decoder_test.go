package notification

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestDecoderParsesEachResource checks that a Decoder hands on the tree it
// parsed each entry's resource into, and that a notification's strings
// outlive the Decoder's next record even when they were escaped in the
// JSON (the trees are reused, the strings are the caller's).
func TestDecoderParsesEachResource(t *testing.T) {
	first := r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"\u0033","tag":[{"system":"s","code":"\u0063"}]},"active":true},"request":{"method":"PUT","url":"Patient/p1"}}`)
	second := r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"\u0039","tag":[{"system":"t","code":"\u0064"}]},"active":false},"request":{"method":"PUT","url":"Patient/p1"}}`)
	var d Decoder
	n, err := d.DecodeRecord([]byte(first), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Events) != 1 {
		t.Fatalf("got %d events, want 1", len(n.Events))
	}
	ev := n.Events[0]
	if ev.Parsed == nil {
		t.Fatal("event of a Bundle entry has no parsed resource")
	}
	if got, want := ev.Parsed.ResourceType()+"/"+ev.Parsed.ID(), "Patient/p1"; got != want {
		t.Fatalf("parsed resource is %s, want %s", got, want)
	}
	tags := slices.Clone(n.Tags) // the notification itself is the Decoder's
	if _, err := d.DecodeRecord([]byte(second), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := summary(ev), "upsert Patient/p1 v3 resource"; got != want {
		t.Errorf("after the next record: got %q, want %q", got, want)
	}
	if got, want := tags, []Tag{{System: "s", Code: "c"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the next record: got tags %v, want %v", got, want)
	}
}

// FuzzDecoder checks that a Decoder, reused from input to input, decodes
// exactly as DecodeRecord does, and that each resource it hands on is the
// event's resource, parsed.
func FuzzDecoder(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	var d Decoder
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := DecodeRecord(data, nil)
		got, gotErr := d.DecodeRecord(data, nil)
		checkDecoded(t, data, got, gotErr)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			// A syntax error's position and wording may differ (the parser
			// reports it in the resource, the scanner where it stands), never
			// its class.
			g, _ := IsDecodeError(gotErr)
			w, _ := IsDecodeError(wantErr)
			if g == nil || w == nil || g.Class != w.Class || g.Class != ClassMalformed {
				t.Fatalf("Decoder: %v; DecodeRecord: %v", gotErr, wantErr)
			}
		}
		if wantErr != nil || gotErr != nil {
			return
		}
		for i := range got.Events {
			ev := &got.Events[i]
			if ev.Parsed != nil {
				if ev.Parsed.ResourceType() != ev.ResourceType || !bytes.Equal(ev.Resource, want.Events[i].Resource) {
					t.Fatalf("event %d: parsed %s for %s", i, ev.Parsed.ResourceType(), summary(*ev))
				}
				ev.Parsed = nil
			}
		}
		// A Decoder's notification reuses its lists: an empty one is not nil.
		for _, n := range []*Notification{got, want} {
			n.Events, n.BaseURLs, n.Tags = emptyNil(n.Events), emptyNil(n.BaseURLs), emptyNil(n.Tags)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decoder: %+v\nDecodeRecord: %+v", got, want)
		}
	})
}

func emptyNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// TestEnvelopeResource checks which resources a Decoder scans instead of
// parsing into a tree: statuses and Bundles named first, nothing else.
func TestEnvelopeResource(t *testing.T) {
	for _, c := range []struct {
		obj  string
		want bool
	}{
		{`{"resourceType":"Parameters","parameter":[]}`, true},
		{`{ "resourceType" : "SubscriptionStatus" }`, true},
		{"{\n  \"resourceType\": \"AidboxSubscriptionStatus\"}", true},
		{`{"resourceType":"Bundle","type":"history"}`, true},
		{`{"resourceType":"Patient","id":"p1"}`, false},
		{`{"id":"s1","resourceType":"SubscriptionStatus"}`, false}, // not first: parsed, the same answer
		{`{"resourceType":"ParametersX"}`, false},
		{`{"resourceType":"Parameters`, false},
		{`{}`, false},
	} {
		if got := envelopeResource([]byte(c.obj)); got != c.want {
			t.Errorf("envelopeResource(%s) = %v, want %v", c.obj, got, c.want)
		}
	}
}

// TestDecoderKeepsBoundedMemory checks what a Decoder keeps after a large
// record: at most keptTrees trees, none larger than keptTreeBytes.
func TestDecoderKeepsBoundedMemory(t *testing.T) {
	var entries, events []string
	for i := range 100 {
		events = append(events, fmt.Sprintf(`{"eventNumber":%d,"focus":{"reference":"Observation/o%d"}}`, i+1, i))
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"https://fhir.example.org/fhir/Observation/o%d","resource":{"resourceType":"Observation","id":"o%d","status":"final"},"request":{"method":"PUT","url":"Observation/o%d"}}`, i, i, i))
	}
	many := statusBundle("["+strings.Join(events, ",")+"]", entries...)
	huge := r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p1","x":[` +
		strings.Repeat("1,", 100_000) + `1]},"request":{"method":"PUT","url":"Patient/p1"}}`)
	small := r5Bundle(`{"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}}`)
	var d Decoder
	for _, rec := range []string{many, huge, small} {
		if _, err := d.DecodeRecord([]byte(rec), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.trees) > keptTrees {
		t.Errorf("a Decoder keeps %d trees after a record of 100 resources, want at most %d", len(d.trees), keptTrees)
	}
	for i, tr := range d.trees {
		if tr != nil && tr.Retained() > keptTreeBytes {
			t.Errorf("tree %d keeps %d bytes, want at most %d", i, tr.Retained(), keptTreeBytes)
		}
	}
}
