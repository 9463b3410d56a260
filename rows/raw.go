package rows

import (
	"time"

	"fhirlake/lake"
	"fhirlake/notification"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Coordinates say where a record came from.
type Coordinates struct {
	Topic     string
	Partition int32
	Offset    int64
}

// rawBuilder accumulates the raw dataset's rows (lake.RawSchema) for one
// tenant, in chunks: the resources column, which holds most of a buffer's
// memory, grows by doubling up to RawChunkBytes, and from then on every chunk
// is allocated at that size and never grown, so no resource is copied again
// and the memory held beyond the rows is at most one chunk.
type rawBuilder struct {
	b     *array.RecordBuilder
	done  []arrow.RecordBatch // full chunks
	rows  int                 // rows in all chunks
	bytes int
}

// RawChunkBytes is the size of the resources column of one chunk of the
// raw dataset.
const RawChunkBytes = 1 << 20

func newRawBuilder(mem memory.Allocator) *rawBuilder {
	return &rawBuilder{b: array.NewRecordBuilder(mem, lake.RawSchema)}
}

func (r *rawBuilder) append(tenant string, ev *notification.Event, at Coordinates, ingest time.Time) {
	if ev.Resource != nil {
		r.reserve(len(ev.Resource))
	}
	f := r.b.Fields()
	appendIdentity(f[0:5], tenant, ev)
	f[5].(*array.StringBuilder).Append(string(ev.Operation))
	appendCoordinates(f[6:10], at, ingest)
	if ev.Resource != nil {
		f[10].(*array.StringBuilder).BinaryBuilder.Append(ev.Resource)
	} else {
		f[10].AppendNull()
	}
	r.rows++
	r.bytes += len(ev.Resource) + len(ev.ID) + len(ev.ResourceType) + len(tenant) + len(at.Topic) + 64
}

// reserve makes room for a resource of n bytes in the resources column,
// starting a new chunk when the current one is full.
func (r *rawBuilder) reserve(n int) {
	res := r.b.Field(10).(*array.StringBuilder)
	used := res.DataLen()
	if used+n <= res.DataCap() {
		return
	}
	if res.DataCap() >= RawChunkBytes && res.Len() > 0 {
		r.done = append(r.done, r.b.NewRecordBatch())
		res.ReserveData(max(RawChunkBytes, n))
		return
	}
	target := max(min(2*(used+n), RawChunkBytes), used+n)
	res.ReserveData(target - used)
}

// appendIdentity appends tenant, resource type, id, versionId and
// lastUpdated to the first five builders of f, in that order: the columns
// every dataset starts with.
func appendIdentity(f []array.Builder, tenant string, ev *notification.Event) {
	f[0].(*array.StringBuilder).Append(tenant)
	f[1].(*array.StringBuilder).Append(ev.ResourceType)
	f[2].(*array.StringBuilder).Append(ev.ID)
	if ev.VersionID != "" {
		f[3].(*array.StringBuilder).Append(ev.VersionID)
	} else {
		f[3].AppendNull()
	}
	if !ev.LastUpdated.IsZero() {
		f[4].(*array.TimestampBuilder).Append(arrow.Timestamp(ev.LastUpdated.UnixMicro()))
	} else {
		f[4].AppendNull()
	}
}

// appendCoordinates appends topic, partition, offset and ingest time.
func appendCoordinates(f []array.Builder, at Coordinates, ingest time.Time) {
	f[0].(*array.StringBuilder).Append(at.Topic)
	f[1].(*array.Int32Builder).Append(at.Partition)
	f[2].(*array.Int64Builder).Append(at.Offset)
	f[3].(*array.TimestampBuilder).Append(arrow.Timestamp(ingest.UnixMicro()))
}

// records returns the rows built so far, chunk by chunk, and resets the
// builder.
func (r *rawBuilder) records() []arrow.RecordBatch {
	out := append(r.done, r.b.NewRecordBatch())
	r.done = nil
	r.rows, r.bytes = 0, 0
	return out
}

func (r *rawBuilder) release() {
	for _, rec := range r.done {
		rec.Release()
	}
	r.done = nil
	r.b.Release()
}
