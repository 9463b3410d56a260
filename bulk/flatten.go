package bulk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"golang.org/x/sync/errgroup"

	"fhirlake/flatten"
	"fhirlake/sink"
)

// FlattenOptions configure Flatten.
type FlattenOptions struct {
	// Views are the views to write, one dataset each.
	Views []*flatten.View
	// Out is the directory of the datasets: Out/<view>/part-<n>.parquet.
	Out string
	// BatchRows is the number of rows per Parquet file. Default: 100000.
	BatchRows int
	// Progress, if set, is called with the number of bytes read from the
	// files each time some are read.
	Progress func(n int)
	// Log gets a debug line per Parquet file written. Default: none.
	Log *slog.Logger
}

// MaxErrors bounds the failures FlattenResult describes; all are counted.
const MaxErrors = 100

// maxBatchBytes bounds the memory held by one view's pending rows, so that
// wide rows reach a file before BatchRows does.
const maxBatchBytes = 256 << 20

// FlattenResult says what Flatten read and wrote.
type FlattenResult struct {
	// Views are the datasets written, in the order of FlattenOptions.Views.
	Views []ViewResult
	// Resources counts the resources read, Unviewed those of a type no
	// view reads, Failed the resources and files that could not be read
	// or evaluated.
	Resources, Unviewed, Failed int
	// Errors describe the first MaxErrors failures, "location: reason".
	Errors []string
}

// ViewResult is the dataset of one view.
type ViewResult struct {
	Name, Resource string
	Rows           int64
	Files          int
}

// Flatten reads every resource the files hold (see Reader: NDJSON, Bundles,
// notifications, plain or gzipped), parses each once and evaluates it with
// every view of its type, and writes each view's rows as a Parquet dataset
// of BatchRows rows per file. Changes without a resource (deletes, id-only
// events) have no rows. What cannot be read or evaluated is counted and
// described in the result and skipped; Flatten returns an error only when
// the datasets could not be written. Each dataset is written beside its
// final place and replaces the previous one only when complete.
func Flatten(ctx context.Context, files []string, o FlattenOptions) (FlattenResult, error) {
	if o.BatchRows == 0 {
		o.BatchRows = 100_000
	}
	if o.BatchRows < 0 {
		return FlattenResult{}, fmt.Errorf("batch rows must be positive, got %d", o.BatchRows)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return FlattenResult{}, err
	}
	pq, err := sink.NewParquet(sink.ParquetOptions{})
	if err != nil {
		return FlattenResult{}, err
	}
	defer pq.Close()
	fl, err := newFlattener(o.Out, o.Views, o.BatchRows)
	if err != nil {
		return FlattenResult{}, err
	}
	defer fl.cleanup()
	fl.reader.Progress = o.Progress

	jobs := make(chan writeJob, 2)
	grp, gctx := errgroup.WithContext(ctx)
	// The writer turns full batches into Parquet while the reader goes on
	// flattening; the channel holds at most two batches in between.
	grp.Go(func() error { return writeParts(gctx, o.Log, pq, jobs) })
	grp.Go(func() error {
		defer close(jobs)
		fl.jobs = jobs
		for _, p := range files {
			if err := fl.reader.Read(gctx, p, func(it *Item) error { return fl.item(gctx, it) }); err != nil {
				return err
			}
		}
		return fl.flushAll(gctx)
	})
	if err := grp.Wait(); err != nil {
		return FlattenResult{}, err
	}
	if err := fl.publish(); err != nil {
		return FlattenResult{}, err
	}
	return fl.result(), nil
}

// viewOutput is the dataset of one view being written.
type viewOutput struct {
	view  *flatten.View
	batch *flatten.Batch
	stage string // directory the part files are written to
	final string // directory the dataset is published as
	rows  int64
	files int
}

// writeJob is one part file for the writer.
type writeJob struct {
	view string
	rec  arrow.RecordBatch
	path string
}

// flattener appends every resource read to the batches of the views of its
// type, handing full batches to the writer. It belongs to one goroutine.
type flattener struct {
	outs      []*viewOutput
	byType    map[string][]*viewOutput
	batchRows int
	jobs      chan<- writeJob
	reader    Reader

	resources int      // resources read
	unviewed  int      // resources of a type no selected view reads
	failed    int      // resources and files that failed
	errs      []string // the first MaxErrors failures
}

func newFlattener(out string, views []*flatten.View, batchRows int) (*flattener, error) {
	fl := &flattener{byType: map[string][]*viewOutput{}, batchRows: batchRows}
	fl.reader.Bad = fl.fail
	fl.reader.SkipDeletes = true // a delete has no rows
	for _, v := range views {
		stage, err := os.MkdirTemp(out, "."+v.Name()+"-")
		if err != nil {
			fl.cleanup()
			return nil, fmt.Errorf("stage view %s: %w", v.Name(), err)
		}
		// MkdirTemp makes the directory private; the dataset is not.
		if err := os.Chmod(stage, 0o755); err != nil {
			os.Remove(stage)
			fl.cleanup()
			return nil, fmt.Errorf("stage view %s: %w", v.Name(), err)
		}
		o := &viewOutput{
			view:  v,
			batch: v.NewBatch(memory.NewGoAllocator()),
			stage: stage,
			final: filepath.Join(out, v.Name()),
		}
		fl.outs = append(fl.outs, o)
		fl.byType[v.Resource()] = append(fl.byType[v.Resource()], o)
	}
	return fl, nil
}

// cleanup frees the batches and removes what was not published.
func (fl *flattener) cleanup() {
	for _, o := range fl.outs {
		o.batch.Release()
		os.RemoveAll(o.stage)
	}
}

func (fl *flattener) fail(at Location, err error) {
	fl.failed++
	fl.note(at, err)
}

func (fl *flattener) note(at Location, err error) {
	if len(fl.errs) < MaxErrors {
		fl.errs = append(fl.errs, fmt.Sprintf("%s: %v", at, err))
	}
}

// item appends a resource to every view of its type. Changes without a
// resource of their own have no rows: a notification's resources come as
// KindCarried items.
func (fl *flattener) item(ctx context.Context, it *Item) error {
	if it.Kind == KindEvent {
		return nil
	}
	fl.resources++
	outs := fl.byType[it.Resource.ResourceType()]
	if len(outs) == 0 {
		fl.unviewed++
		return nil
	}
	failed := false
	for _, o := range outs {
		n, err := o.batch.Append(it.Resource)
		if err != nil {
			failed = true
			fl.note(it.At, err) // names the view, the resource and the column
			continue
		}
		o.rows += int64(n)
		if o.batch.Rows() >= fl.batchRows || o.batch.ApproxBytes() >= maxBatchBytes {
			if err := fl.flush(ctx, o); err != nil {
				return err
			}
		}
	}
	if failed {
		fl.failed++
	}
	return nil
}

// flush hands the view's pending rows to the writer as the next part file.
func (fl *flattener) flush(ctx context.Context, o *viewOutput) error {
	rec := o.batch.NewRecordBatch()
	path := filepath.Join(o.stage, fmt.Sprintf("part-%d.parquet", o.files))
	o.files++
	select {
	case fl.jobs <- writeJob{view: o.view.Name(), rec: rec, path: path}:
		return nil
	case <-ctx.Done():
		rec.Release()
		return ctx.Err()
	}
}

// flushAll writes what is left. A view without any row still gets one
// empty file, so that its dataset exists with its schema.
func (fl *flattener) flushAll(ctx context.Context) error {
	for _, o := range fl.outs {
		if o.batch.Rows() > 0 || o.files == 0 {
			if err := fl.flush(ctx, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// publish moves each complete dataset into place, replacing the one a
// previous run left.
func (fl *flattener) publish() error {
	for _, o := range fl.outs {
		if err := os.RemoveAll(o.final); err != nil {
			return fmt.Errorf("replace %s: %w", o.final, err)
		}
		if err := os.Rename(o.stage, o.final); err != nil {
			return fmt.Errorf("publish %s: %w", o.final, err)
		}
	}
	return nil
}

func (fl *flattener) result() FlattenResult {
	res := FlattenResult{Resources: fl.resources, Unviewed: fl.unviewed, Failed: fl.failed, Errors: fl.errs}
	for _, o := range fl.outs {
		res.Views = append(res.Views, ViewResult{Name: o.view.Name(), Resource: o.view.Resource(), Rows: o.rows, Files: o.files})
	}
	return res
}

// writeParts writes the part files handed over by the flattener until the
// channel is closed.
func writeParts(ctx context.Context, log *slog.Logger, pq *sink.Parquet, jobs <-chan writeJob) error {
	for j := range jobs {
		rows := j.rec.NumRows()
		err := pq.Write(ctx, j.rec, j.path, 0)
		j.rec.Release()
		if err != nil {
			return fmt.Errorf("view %s: %w", j.view, err)
		}
		log.Debug("parquet file written", "view", j.view, "path", j.path, "rows", rows)
	}
	return nil
}
