package rows

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/notification"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestRawBuilder(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := newRawBuilder(mem)
	defer b.release()
	lu := time.Date(2026, 5, 1, 10, 0, 0, 123456000, time.UTC)
	ingest := time.Date(2026, 5, 1, 10, 0, 1, 0, time.UTC)
	b.append("acme", &notification.Event{Operation: notification.OpUpsert, ResourceType: "Patient", ID: "p1", VersionID: "2", LastUpdated: lu, Resource: json.RawMessage(`{"resourceType":"Patient","id":"p1"}`)},
		Coordinates{Topic: "t", Partition: 3, Offset: 41}, ingest)
	b.append("acme", &notification.Event{Operation: notification.OpDelete, ResourceType: "Patient", ID: "p2"}, Coordinates{Topic: "t", Partition: 3, Offset: 42}, ingest)
	if b.rows != 2 || b.bytes == 0 {
		t.Fatalf("builder counts: got %d rows, %d bytes", b.rows, b.bytes)
	}
	recs := b.records()
	if len(recs) != 1 {
		t.Fatalf("%d chunks for two small rows, want 1", len(recs))
	}
	rec := recs[0]
	defer rec.Release()
	if rec.NumRows() != 2 || !rec.Schema().Equal(lake.RawSchema) {
		t.Fatalf("record: got %d rows, schema %s", rec.NumRows(), rec.Schema())
	}
	str := func(col, row int) string { return rec.Column(col).(*array.String).Value(row) }
	if str(0, 0) != "acme" || str(1, 0) != "Patient" || str(2, 0) != "p1" || str(3, 0) != "2" || str(5, 0) != "upsert" || str(6, 0) != "t" {
		t.Errorf("row 0: unexpected strings")
	}
	if got := rec.Column(4).(*array.Timestamp).Value(0).ToTime(arrow.Microsecond); !got.Equal(lu) {
		t.Errorf("last_updated: got %s, want %s", got, lu)
	}
	if got := rec.Column(8).(*array.Int64).Value(1); got != 42 {
		t.Errorf("offset: got %d, want 42", got)
	}
	for _, c := range []int{3, 4, 10} {
		if !rec.Column(c).IsNull(1) {
			t.Errorf("delete row: column %s is not null", lake.RawSchema.Field(c).Name)
		}
	}
	if str(5, 1) != "delete" || rec.Column(10).IsNull(0) {
		t.Errorf("delete row operation %q / upsert resource null=%v", str(5, 1), rec.Column(10).IsNull(0))
	}
	if b.rows != 0 || b.bytes != 0 {
		t.Errorf("builder not reset after record()")
	}
}

// TestRawChunks: the resources column grows by doubling up to a chunk and
// then goes on in chunks of RawChunkBytes that are never grown, so no more
// than one chunk is held beyond the rows; the chunks hold every row in
// order, and a resource larger than a chunk gets a chunk of its own size.
func TestRawChunks(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := newRawBuilder(mem)
	defer b.release()
	v := make([]byte, 1500)
	const n = 20_000
	var worst int
	for i := 0; i < n; i++ {
		res := v
		if i == 7_000 {
			res = make([]byte, RawChunkBytes+100)
		}
		b.append("acme", &notification.Event{Operation: notification.OpUpsert, ResourceType: "Patient", ID: fmt.Sprint(i), Resource: res}, Coordinates{Topic: "t", Offset: int64(i)}, time.Now())
		col := b.b.Field(10).(*array.StringBuilder)
		worst = max(worst, col.DataCap()-col.DataLen())
	}
	if worst > RawChunkBytes {
		t.Errorf("the resources column held %d bytes beyond its rows, want at most one chunk (%d)", worst, RawChunkBytes)
	}
	recs := b.records()
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	if len(recs) < n*1500/RawChunkBytes {
		t.Errorf("%d chunks for %d MB of resources", len(recs), n*1500>>20)
	}
	var next int64
	for k, r := range recs {
		if r.NumRows() == 0 {
			t.Errorf("chunk %d is empty", k)
		}
		off := r.Column(8).(*array.Int64)
		for i := 0; i < off.Len(); i++ {
			if off.Value(i) != next {
				t.Fatalf("chunk %d row %d: offset %d, want %d", k, i, off.Value(i), next)
			}
			next++
		}
	}
	if next != n {
		t.Errorf("%d rows in the chunks, want %d", next, n)
	}
}
