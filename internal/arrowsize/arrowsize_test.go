package arrowsize

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// counting counts the allocator's growths of a buffer.
type counting struct {
	memory.Allocator
	reallocs int
}

func (c *counting) Reallocate(size int, b []byte) []byte {
	if size > len(b) { // a trim to the batch's length is no growth
		c.reallocs++
	}
	return c.Allocator.Reallocate(size, b)
}

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.BinaryTypes.String},
	{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
}, nil)

func fill(b *array.RecordBuilder, rows int) {
	for i := range rows {
		b.Field(0).(*array.StringBuilder).Append("Patient/0123456789abcdef")
		if i%7 == 0 {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.Int64Builder).Append(int64(i))
		}
	}
}

// A batch of the previous one's size is built without growing a buffer, and keeps
// its values.
func TestReserveBuildsTheNextBatchWithoutGrowth(t *testing.T) {
	mem := &counting{Allocator: memory.NewGoAllocator()}
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	var last Last
	fill(b, 5000)
	last.Note(b)
	b.NewRecordBatch().Release()
	if grown := mem.reallocs; grown == 0 {
		t.Fatal("the first batch grew no buffer: the test proves nothing")
	}

	mem.reallocs = 0
	last.Reserve(b)
	fill(b, 5000)
	last.Note(b)
	rec := b.NewRecordBatch()
	defer rec.Release()
	if mem.reallocs != 0 {
		t.Errorf("the second batch grew buffers %d times", mem.reallocs)
	}
	if rec.NumRows() != 5000 || rec.Column(0).(*array.String).Value(4999) != "Patient/0123456789abcdef" ||
		!rec.Column(1).IsNull(4998) && rec.Column(1).(*array.Int64).Value(4999) != 4999 {
		t.Errorf("second batch: %d rows, %v", rec.NumRows(), rec.Column(1))
	}
}

// A builder noted empty reserves nothing.
func TestReserveAfterAnEmptyBatch(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	b := array.NewRecordBuilder(mem, schema)
	var last Last
	last.Note(b)
	b.NewRecordBatch().Release()
	last.Reserve(b)
	if n := mem.CurrentAlloc(); n != 0 {
		t.Errorf("an empty batch's builder holds %d bytes after Reserve", n)
	}
	b.Release()
	mem.AssertSize(t, 0)
}
