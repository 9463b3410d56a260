// Package querytest writes small tenant lakes for the tests of the query
// layer and its HTTP server: raw speed files with chosen rows, or a whole
// speed layer from the synthetic notification stream, written the way the
// consumer writes them.
package querytest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/lake"
	"fhirlake/notification"
	"fhirlake/rows"
	"fhirlake/sink"
	"fhirlake/synth"
)

// Row is one change of the raw dataset.
type Row struct {
	Type, ID, Version, Op string
	Offset                int64
	// Resource is the JSON; empty: a minimal resource (none for a delete).
	Resource string
}

// WriteRaw writes rows as one raw speed file of tenant under root, named
// name (speed/resources/date=2026-01-01/<name>.parquet).
func WriteRaw(t testing.TB, root, tenant, name string, rows []Row) {
	t.Helper()
	b := array.NewRecordBuilder(memory.NewGoAllocator(), lake.RawSchema)
	defer b.Release()
	for _, r := range rows {
		f := b.Fields()
		f[0].(*array.StringBuilder).Append(tenant)
		f[1].(*array.StringBuilder).Append(r.Type)
		f[2].(*array.StringBuilder).Append(r.ID)
		f[3].(*array.StringBuilder).Append(r.Version)
		f[4].(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2026, 1, 1, 0, 0, int(r.Offset), 0, time.UTC).UnixMicro()))
		f[5].(*array.StringBuilder).Append(r.Op)
		f[6].(*array.StringBuilder).Append("t")
		f[7].(*array.Int32Builder).Append(0)
		f[8].(*array.Int64Builder).Append(r.Offset)
		f[9].(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2026, 1, 1, 0, 1, int(r.Offset), 0, time.UTC).UnixMicro()))
		switch {
		case r.Op == "delete":
			f[10].AppendNull()
		case r.Resource != "":
			f[10].(*array.StringBuilder).Append(r.Resource)
		default:
			f[10].(*array.StringBuilder).Append(fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":%q}}`, r.Type, r.ID, r.Version))
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	key := lake.PartitionPrefix(lake.RawDataset, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) + name + ".parquet"
	writeFiles(t, root, tenant, []sink.File{{Tenant: tenant, View: lake.RawDataset, Key: key, Records: []arrow.RecordBatch{rec}}})
}

// SynthOptions shape a synthetic lake.
type SynthOptions struct {
	Patients int
	Seed     int64
	// FlushRows is the raw rows per flush (file). Default: 100000.
	FlushRows int
	// Skip and Take select the stream's event records written: Take 0
	// means all after Skip. Offsets count every event record, so two calls
	// with adjacent ranges write what one call would.
	Skip, Take int
	// Ingest is the ingest time of the first record, advancing 1 ms per
	// record. Default: 2025-01-06T08:00:00Z.
	Ingest time.Time
}

// SynthLake writes a tenant's speed layer under root the way the consumer
// does (rows.Buffer → sink.Writer) from the synthetic stream, every
// default view included. It returns the number of raw rows written.
func SynthLake(ctx context.Context, root, tenant string, o SynthOptions) (int, error) {
	if o.FlushRows <= 0 {
		o.FlushRows = 100_000
	}
	if o.Ingest.IsZero() {
		o.Ingest = time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC)
	}
	views, err := flatten.LoadViews("")
	if err != nil {
		return 0, err
	}
	store, err := sink.NewLocal(root)
	if err != nil {
		return 0, err
	}
	w, err := sink.NewWriter(map[string]sink.Store{tenant: store}, sink.WriterOptions{WorkDir: filepath.Join(root, "..", "."+tenant+"-work")}, nil)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	gen, err := synth.New(synth.Options{
		Tenants: []string{tenant}, Patients: o.Patients, Seed: o.Seed,
		UpdateRatio: 0.2, DeleteRatio: 0.05, ResourcesPerNotification: 20,
	})
	if err != nil {
		return 0, err
	}
	buf := rows.NewBuffer(memory.DefaultAllocator, views, nil)
	defer buf.Release()
	const topic = "synth"
	var offset, first int64
	total := 0
	ingest := o.Ingest
	flush := func() error {
		if buf.Rows() == 0 {
			return nil
		}
		last := offset - 1
		files, err := buf.Files(func(view string) string { return lake.Key(view, o.Ingest, topic, 0, first, last) })
		if err != nil {
			return err
		}
		defer func() {
			for _, f := range files {
				f.Release()
			}
		}()
		if _, err := w.Write(ctx, files); err != nil {
			return err
		}
		return nil
	}
	n := 0
	for {
		r, ok := gen.Next()
		if !ok {
			break
		}
		if r.Kind != synth.KindEvent {
			continue
		}
		n++
		if n <= o.Skip {
			offset++
			ingest = ingest.Add(time.Millisecond)
			first = offset
			continue
		}
		if o.Take > 0 && n > o.Skip+o.Take {
			break
		}
		note, err := notification.Decode(r.Value)
		if err != nil {
			return total, fmt.Errorf("decode synthetic record: %w", err)
		}
		for i := range note.Events {
			buf.Add(tenant, &note.Events[i], rows.Coordinates{Topic: topic, Partition: 0, Offset: offset}, ingest)
			total++
		}
		offset++
		ingest = ingest.Add(time.Millisecond)
		if buf.Rows() >= o.FlushRows {
			if err := flush(); err != nil {
				return total, err
			}
			first = offset
		}
	}
	return total, flush()
}

// CountEvents is the number of event records of the synthetic stream that
// SynthLake writes for patients and seed.
func CountEvents(patients int, seed int64) (int, error) {
	gen, err := synth.New(synth.Options{
		Tenants: []string{"acme"}, Patients: patients, Seed: seed,
		UpdateRatio: 0.2, DeleteRatio: 0.05, ResourcesPerNotification: 20,
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		r, ok := gen.Next()
		if !ok {
			return n, nil
		}
		if r.Kind == synth.KindEvent {
			n++
		}
	}
}

// Change is one change of a resource, as a notification would carry it.
type Change struct {
	Type, ID, Version string
	// Delete makes it a tombstone.
	Delete bool
	Offset int64
	// Fields are added to the resource's JSON, e.g. `"gender":"female"`.
	Fields string
	// Updated is its lastUpdated, when not zero; NoUpdated leaves it out.
	Updated   time.Time
	NoUpdated bool
}

// WriteChanges writes changes as one flush of the consumer would: the raw
// file and a file per default view the changes touch, each named from
// the lowest and highest offset (speed/<view>/date=2026-01-01/t-0-<first>-<last>.parquet).
// A change is ingested at 2026-01-01T00:01:00Z plus its offset in
// seconds, and last updated at midnight plus its offset.
func WriteChanges(t testing.TB, root, tenant string, changes []Change) {
	t.Helper()
	views, err := flatten.LoadViews("")
	if err != nil {
		t.Fatal(err)
	}
	buf := rows.NewBuffer(memory.DefaultAllocator, views, nil)
	defer buf.Release()
	first, last := changes[0].Offset, changes[0].Offset
	for _, c := range changes {
		first, last = min(first, c.Offset), max(last, c.Offset)
		updated := time.Date(2026, 1, 1, 0, 0, int(c.Offset), 0, time.UTC)
		if !c.Updated.IsZero() {
			updated = c.Updated
		}
		ev := notification.Event{Operation: notification.OpUpsert, ResourceType: c.Type, ID: c.ID, VersionID: c.Version, LastUpdated: updated}
		if c.NoUpdated {
			ev.LastUpdated = time.Time{}
		}
		if c.Delete {
			ev.Operation = notification.OpDelete
		} else {
			fields := ""
			if c.Fields != "" {
				fields = "," + c.Fields
			}
			meta := map[string]string{}
			if c.Version != "" {
				meta["versionId"] = c.Version
			}
			if !c.NoUpdated {
				meta["lastUpdated"] = updated.Format(time.RFC3339)
			}
			metaJSON, _ := json.Marshal(meta)
			ev.Resource = []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":%s%s}`, c.Type, c.ID, metaJSON, fields))
		}
		buf.Add(tenant, &ev, rows.Coordinates{Topic: "t", Offset: c.Offset}, updated.Add(time.Minute))
	}
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	files, err := buf.Files(func(view string) string { return lake.Key(view, date, "t", 0, first, last) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range files {
			f.Release()
		}
	}()
	writeFiles(t, root, tenant, files)
}

// writeFiles makes files durable in tenant's local lake at root, through
// the sink as the consumer writes them.
func writeFiles(t testing.TB, root, tenant string, files []sink.File) {
	t.Helper()
	store, err := sink.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	w, err := sink.NewWriter(map[string]sink.Store{tenant: store}, sink.WriterOptions{WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(context.Background(), files); err != nil {
		t.Fatal(err)
	}
}
