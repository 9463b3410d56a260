package consumer

import (
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// RawView is the speed-layer dataset holding every change with its lineage
// and the resource JSON, from which the batch layer can re-derive any column.
const RawView = "resources"

// Lineage column names, shared by every speed-layer dataset.
const (
	ColTenant       = "tenant"
	ColResourceType = "resource_type"
	ColID           = "id"
	ColVersionID    = "version_id"
	ColLastUpdated  = "last_updated"
	ColOperation    = "operation"
	ColTopic        = "topic"
	ColPartition    = "partition"
	ColOffset       = "offset"
	ColIngestTime   = "ingest_time"
	ColResource     = "resource"
)

var tsUTC = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// RawSchema is the Arrow schema of RawView.
var RawSchema = arrow.NewSchema([]arrow.Field{
	{Name: ColTenant, Type: arrow.BinaryTypes.String},
	{Name: ColResourceType, Type: arrow.BinaryTypes.String},
	{Name: ColID, Type: arrow.BinaryTypes.String},
	{Name: ColVersionID, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ColLastUpdated, Type: tsUTC, Nullable: true},
	{Name: ColOperation, Type: arrow.BinaryTypes.String},
	{Name: ColTopic, Type: arrow.BinaryTypes.String},
	{Name: ColPartition, Type: arrow.PrimitiveTypes.Int32},
	{Name: ColOffset, Type: arrow.PrimitiveTypes.Int64},
	{Name: ColIngestTime, Type: tsUTC},
	{Name: ColResource, Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// Coordinates say where a record came from.
type Coordinates struct {
	Topic     string
	Partition int32
	Offset    int64
}

// rawBuilder accumulates RawView rows for one tenant.
type rawBuilder struct {
	b     *array.RecordBuilder
	rows  int
	bytes int
}

func newRawBuilder(mem memory.Allocator) *rawBuilder {
	return &rawBuilder{b: array.NewRecordBuilder(mem, RawSchema)}
}

func (r *rawBuilder) append(tenant string, ev *Event, at Coordinates, ingest time.Time) {
	f := r.b.Fields()
	appendIdentity(f[0:5], tenant, ev)
	f[5].(*array.StringBuilder).Append(string(ev.Operation))
	appendCoordinates(f[6:10], at, ingest)
	if ev.Resource != nil {
		appendGently(f[10].(*array.StringBuilder).BinaryBuilder, ev.Resource)
	} else {
		f[10].AppendNull()
	}
	r.rows++
	r.bytes += len(ev.Resource) + len(ev.ID) + len(ev.ResourceType) + len(tenant) + len(at.Topic) + 64
}

// appendGently appends v, growing the value buffer by half rather than to
// the next power of two: the resources column holds most of a buffer's
// memory, and doubling it could take up to twice what the rows need, all
// of it counted against the memory budget at once.
func appendGently(b *array.BinaryBuilder, v []byte) {
	if need := b.DataLen() + len(v); need > b.DataCap() {
		b.ReserveData(need/2 + len(v))
	}
	b.Append(v)
}

// appendIdentity appends tenant, resource type, id, versionId and
// lastUpdated to the first five builders of f, in that order: the columns
// every dataset starts with.
func appendIdentity(f []array.Builder, tenant string, ev *Event) {
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

// record returns the rows built so far and resets the builder.
func (r *rawBuilder) record() arrow.RecordBatch {
	r.rows, r.bytes = 0, 0
	return r.b.NewRecordBatch()
}

func (r *rawBuilder) release() { r.b.Release() }
