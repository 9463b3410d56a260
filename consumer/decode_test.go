package consumer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirlake/internal/testenv"
)

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
			switch {
			case strings.Contains(name, "id-only"):
				de, ok := IsDecodeError(err)
				if !ok || de.Class != ClassIDOnly {
					t.Fatalf("got %v, want an %s error (no fetch configured)", err, ClassIDOnly)
				}
				return
			case err != nil:
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
			case strings.Contains(name, "full-resource") && strings.Contains(name, "2-events"):
				wantEvents = 2
			case strings.Contains(name, "full-resource"):
				wantEvents = 1
			}
			if len(n.Events) != wantEvents {
				t.Fatalf("events: got %d, want %d", len(n.Events), wantEvents)
			}
			for _, ev := range n.Events {
				if ev.Operation != OpUpsert || ev.ResourceType == "" || ev.ID == "" || len(ev.Resource) == 0 {
					t.Errorf("event %+v: want an upsert with type, id and resource", ev)
				}
			}
			if wantEvents == 0 && !n.Control() {
				t.Errorf("got a change-carrying notification, want control")
			}
		})
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
		{"huge number", `123456789012345678901234567890`, true},
		{"text", `"abc"`, true},
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
		})
	}
}

const r5Status = `{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active","notificationEvent":[{"eventNumber":7,"focus":{"reference":"https://fhir.example.org/Patient/p1/_history/3"}}]}`

func TestDecodeDelete(t *testing.T) {
	doc := `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":` + r5Status + `},
	  {"fullUrl":"https://fhir.example.org/Patient/p1","request":{"method":"DELETE","url":"Patient/p1"},"response":{"status":"204"}}]}`
	n, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Events) != 1 {
		t.Fatalf("events: got %d, want 1", len(n.Events))
	}
	ev := n.Events[0]
	if ev.Operation != OpDelete || ev.ResourceType != "Patient" || ev.ID != "p1" || ev.VersionID != "3" || ev.Resource != nil {
		t.Fatalf("got %+v, want a delete of Patient/p1 version 3 without resource", ev)
	}
}

func TestDecodeBad(t *testing.T) {
	deep := strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1)
	for _, tc := range []struct {
		name, doc, class string
	}{
		{"empty", ``, ClassMalformed},
		{"truncated", `{"resourceType":"Bundle","type":"hist`, ClassMalformed},
		{"invalid utf8", "{\"resourceType\":\"Bundle\xff\"}", ClassMalformed},
		{"deep nesting", deep, ClassMalformed},
		{"not a bundle", `{"resourceType":"Patient","id":"x"}`, ClassNotNotification},
		{"no resourceType", `{"hello":"world"}`, ClassNotNotification},
		{"searchset", `{"resourceType":"Bundle","type":"searchset","entry":[]}`, ClassNotNotification},
		{"no status", `{"resourceType":"Bundle","type":"history","entry":[]}`, ClassInvalid},
		{"wrong first entry", `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Patient","id":"x"}}]}`, ClassInvalid},
		{"status without type", `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":{"resourceType":"SubscriptionStatus"}}]}`, ClassInvalid},
		{"focus missing", `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":` + r5Status + `}]}`, ClassIDOnly},
		{"resource mismatch", `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":` + r5Status + `},
		  {"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient","id":"p2"},"request":{"method":"PUT","url":"Patient/p1"}}]}`, ClassInvalid},
		{"resource without id", `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":` + r5Status + `},
		  {"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/p1"}}]}`, ClassInvalid},
		{"bad resourceType", `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":` + r5Status + `},
		  {"fullUrl":"https://fhir.example.org/Patient/p1","resource":{"resourceType":"not a type","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}}]}`, ClassInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.doc))
			de, ok := IsDecodeError(err)
			if !ok {
				t.Fatalf("got %v, want a DecodeError of class %s", err, tc.class)
			}
			if de.Class != tc.class {
				t.Fatalf("class: got %s (%s), want %s", de.Class, de.Reason, tc.class)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":` + r5Status + `}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"Bundle"}}]}`))
	f.Add([]byte(`[]`))
	if dir := os.Getenv("FHIRLAKE_SHARED"); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "data", "notifications", "examples", "*.json"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Decode(data)
		if err != nil {
			if _, ok := IsDecodeError(err); !ok {
				t.Fatalf("error %v is not a DecodeError", err)
			}
			return
		}
		for _, ev := range n.Events {
			if ev.ResourceType == "" || ev.ID == "" {
				t.Fatalf("event without type or id: %+v", ev)
			}
		}
	})
}
