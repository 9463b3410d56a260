package rows

import (
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/notification"
	"fhirlake/sink"
	"fhirlake/synth"
)

// TestDecoderTreesGiveTheSameRows feeds the synthetic stream to two
// buffers with every default view: one with the trees a notification
// Decoder parsed while decoding (each resource tokenized once), one with
// events of DecodeRecord, which the buffer parses itself. Every dataset
// must hold the same rows.
func TestDecoderTreesGiveTheSameRows(t *testing.T) {
	views, err := flatten.DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	opts := synth.DefaultOptions()
	opts.Patients = 20
	opts.Tenants = []string{"acme"}
	opts.Malformed, opts.Unroutable, opts.Controls = 0, 0, 0
	gen, err := synth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	viewErr := func(_, view string, ev *notification.Event, _ Coordinates, err error) {
		t.Errorf("view %s, %s/%s: %v", view, ev.ResourceType, ev.ID, err)
	}
	withTrees, parsing := NewBuffer(mem, views, viewErr), NewBuffer(mem, views, viewErr)
	defer withTrees.Release()
	defer parsing.Release()
	var dec notification.Decoder
	ingest := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	trees := 0
	for i := 0; ; i++ {
		r, ok := gen.Next()
		if !ok {
			break
		}
		var headers []notification.Header
		for _, h := range r.Headers {
			headers = append(headers, notification.Header{Key: h.Key, Value: h.Value})
		}
		at := Coordinates{Topic: "t", Partition: 0, Offset: int64(i)}
		n, err := dec.DecodeRecord(r.Value, headers)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		for k := range n.Events {
			if n.Events[k].Parsed != nil {
				trees++
			}
			withTrees.Add("acme", &n.Events[k], at, ingest)
		}
		plain, err := notification.DecodeRecord(r.Value, headers)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		for k := range plain.Events {
			parsing.Add("acme", &plain.Events[k], at, ingest)
		}
	}
	if trees == 0 {
		t.Fatal("the Decoder handed on no parsed resource")
	}
	key := func(view string) string { return view }
	got, err := withTrees.Files(key)
	if err != nil {
		t.Fatal(err)
	}
	want, err := parsing.Files(key)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseAll(got)
	defer releaseAll(want)
	byView := map[string]string{}
	for _, f := range want {
		byView[f.View] = recordsText(t, f.Records)
	}
	if len(got) != len(want) || len(got) < 5 {
		t.Fatalf("got %d datasets with the Decoder's trees, %d without; want the same, and the raw dataset with the views of the stream's types", len(got), len(want))
	}
	for _, f := range got {
		if g, w := recordsText(t, f.Records), byView[f.View]; g != w {
			t.Errorf("dataset %s differs with the Decoder's trees:\n got %.600s\nwant %.600s", f.View, g, w)
		}
	}
}

func recordsText(t *testing.T, recs []arrow.RecordBatch) string {
	t.Helper()
	var s string
	for _, r := range recs {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		s += string(b)
	}
	return s
}

func releaseAll(files []sink.File) {
	for _, f := range files {
		f.Release()
	}
}
