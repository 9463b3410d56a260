package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"fhirlake/flatten"
	"fhirlake/sink"
)

const viewsDirUsage = "directory of ViewDefinitions (*.json) that override the default views of the same name and add new ones"

func newViewsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "views",
		Short: "List, inspect, test and run the SQL-on-FHIR views",
		Long: `views works with the SQL-on-FHIR v2 ViewDefinitions that turn FHIR resources into
table rows: the defaults fhirlake ships with, overridden and extended by the ViewDefinitions
in --views-dir.

  views list                 the views: name, resource type, number of columns
  views show NAME            a view's ViewDefinition and the Arrow schema of its rows
  views test --suite DIR     run the SQL-on-FHIR v2 conformance suite
  views run --all --out DIR  flatten NDJSON, Bundle and notification files into Parquet`,
	}
	cmd.AddCommand(newViewsListCmd(), newViewsShowCmd(), newViewsTestCmd(), newViewsRunCmd(g))
	return cmd
}

func newViewsListCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "list [--views-dir DIR]",
		Short: "List the views: name, resource type, number of columns",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			views, err := flatten.LoadViews(dir)
			if err != nil {
				return err
			}
			sources, err := viewSources(dir)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VIEW\tRESOURCE\tCOLUMNS\tSOURCE")
			for _, v := range views {
				src := "default"
				if s, ok := sources[v.Name()]; ok {
					src = s.path
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", v.Name(), v.Resource(), len(v.Columns()), src)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "views-dir", "", viewsDirUsage)
	return cmd
}

func newViewsShowCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "show NAME [--views-dir DIR]",
		Short: "Print a view's ViewDefinition and the Arrow schema of its rows",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			views, err := flatten.LoadViews(dir)
			if err != nil {
				return err
			}
			v := findView(views, name)
			if v == nil {
				return fmt.Errorf("no view named %q (see fhirlake views list)", name)
			}
			sources, err := viewSources(dir)
			if err != nil {
				return err
			}
			origin := "default view"
			var def []byte
			if s, ok := sources[name]; ok {
				origin, def = s.path, s.data
			} else if def, err = flatten.DefaultViewDefinition(name); err != nil {
				return err
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, bytes.TrimSpace(def), "", "  "); err != nil {
				return fmt.Errorf("view %s: %w", name, err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# ViewDefinition %s (%s)\n%s\n\n", name, origin, pretty.String())
			fmt.Fprintf(out, "# Arrow schema (%d fields)\n", v.Schema().NumFields())
			writeSchema(out, v.Schema())
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "views-dir", "", viewsDirUsage)
	return cmd
}

func writeSchema(w io.Writer, s *arrow.Schema) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIELD\tARROW TYPE\tFHIR TYPE")
	for _, f := range s.Fields() {
		fhirType := ""
		if i := f.Metadata.FindKey("fhir.type"); i >= 0 {
			fhirType = f.Metadata.Values()[i]
		}
		if i := f.Metadata.FindKey("fhirlake.text_of"); i >= 0 {
			fhirType = "exact text of " + f.Metadata.Values()[i]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, f.Type, fhirType)
	}
	tw.Flush()
}

func findView(views []*flatten.View, name string) *flatten.View {
	for _, v := range views {
		if v.Name() == name {
			return v
		}
	}
	return nil
}

// viewSource is a ViewDefinition file of --views-dir.
type viewSource struct {
	path string
	data []byte
}

// viewSources maps the name of each view defined in dir to its file, so
// that list can say where a view comes from and show can print its JSON.
// flatten.LoadViews has validated the files already.
func viewSources(dir string) (map[string]viewSource, error) {
	out := map[string]viewSource{}
	if dir == "" {
		return out, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("views dir %s: %w", dir, err)
	}
	sort.Strings(files)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		v, err := flatten.Compile(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out[v.Name()] = viewSource{path: file, data: data}
	}
	return out, nil
}

func newViewsTestCmd() *cobra.Command {
	var suite, report string
	cmd := &cobra.Command{
		Use:   "test --suite DIR [--report FILE]",
		Short: "Run the SQL-on-FHIR v2 conformance suite",
		Long: `test runs every test file (*.json) of a SQL-on-FHIR v2 conformance suite directory,
prints each failure, and ends with "N passed, M failed". --report writes the results in the
published test report format. Exits non-zero when any test fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := flatten.RunConformance(suite)
			if err != nil {
				return err
			}
			if rep.Passed+rep.Failed == 0 {
				return fmt.Errorf("no tests in %s", suite)
			}
			if report != "" {
				data, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return fmt.Errorf("encode report: %w", err)
				}
				if err := os.WriteFile(report, append(data, '\n'), 0o644); err != nil {
					return fmt.Errorf("write report: %w", err)
				}
			}
			out := cmd.OutOrStdout()
			for _, f := range rep.Failures() {
				fmt.Fprintln(out, "FAIL", f)
			}
			fmt.Fprintln(out, rep.Summary())
			if rep.Failed > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&suite, "suite", "", "directory of conformance test files (required)")
	cmd.Flags().StringVar(&report, "report", "", "write the test report (JSON) to this file")
	_ = cmd.MarkFlagRequired("suite")
	return cmd
}

// selectViews picks the views to run: the named ones, or all of them.
func selectViews(views []*flatten.View, names []string, all bool) ([]*flatten.View, error) {
	switch {
	case all && len(names) > 0:
		return nil, errors.New("--view and --all exclude each other")
	case all:
		return views, nil
	case len(names) == 0:
		return nil, errors.New("name the views with --view NAME or pass --all")
	}
	var out []*flatten.View
	seen := map[string]bool{}
	for _, n := range names {
		v := findView(views, strings.TrimSpace(n))
		if v == nil {
			return nil, fmt.Errorf("no view named %q (see fhirlake views list)", n)
		}
		if !seen[v.Name()] {
			seen[v.Name()] = true
			out = append(out, v)
		}
	}
	return out, nil
}

// runFlags are the flags of views run.
type runFlags struct {
	views     []string
	all       bool
	dir       string
	out       string
	batchRows int
	quiet     bool
}

func newViewsRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run (--view NAME ... | --all) --out DIR FILE...",
		Short: "Flatten FHIR files into one Parquet dataset per view",
		Long: `run reads FHIR resources from files and writes the rows of each selected view as a
Parquet dataset: DIR/<view>/part-<n>.parquet, --batch-rows rows per file.

A file may be NDJSON (one resource per line, read as a stream), a single resource, or a
Bundle of any type, notifications included: every entry.resource is read, and a Bundle
inside a Bundle is opened too. Gzipped files are recognised by their content. Each resource
is parsed once and evaluated by every selected view of its type.

A resource that cannot be read or evaluated is reported (file, line or entry, message) and
skipped, and the command exits non-zero at the end; every other resource's rows are written.
Each dataset is written beside its final place and replaces the previous one only when
complete.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := flatten.LoadViews(f.dir)
			if err != nil {
				return err
			}
			views, err := selectViews(all, f.views, f.all)
			if err != nil {
				return err
			}
			if f.batchRows <= 0 {
				return fmt.Errorf("--batch-rows must be positive, got %d", f.batchRows)
			}
			return runViews(contextOf(cmd), g.logger(), cmd.OutOrStdout(), cmd.ErrOrStderr(), views, args, f)
		},
	}
	cmd.Flags().StringSliceVar(&f.views, "view", nil, "view to run (repeatable, or comma-separated)")
	cmd.Flags().BoolVar(&f.all, "all", false, "run every view")
	cmd.Flags().StringVar(&f.dir, "views-dir", "", viewsDirUsage)
	cmd.Flags().StringVarP(&f.out, "out", "o", "", "output directory (required)")
	cmd.Flags().IntVar(&f.batchRows, "batch-rows", 100_000, "rows per Parquet file")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// maxBatchBytes bounds the memory held by one view's pending rows, so that
// wide rows reach a file before --batch-rows does.
const maxBatchBytes = 256 << 20

// maxLine is the longest NDJSON line read: a whole Bundle may be one line.
const maxLine = 1 << 30

// maxErrorsShown limits the resource errors printed; all are counted.
const maxErrorsShown = 100

func runViews(ctx context.Context, log *slog.Logger, stdout, stderr io.Writer, views []*flatten.View, files []string, f *runFlags) error {
	var total int64
	for _, p := range files {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() {
			return fmt.Errorf("%s is a directory, not a FHIR file", p)
		}
		total += st.Size()
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	pq, err := sink.NewParquet(sink.ParquetOptions{})
	if err != nil {
		return err
	}
	defer pq.Close()
	fl, err := newFlattener(f.out, views, f.batchRows)
	if err != nil {
		return err
	}
	defer fl.cleanup()

	start := time.Now()
	bar := newByteBar(total, "flattening", f.quiet)
	jobs := make(chan writeJob, 2)
	grp, gctx := errgroup.WithContext(ctx)
	// The writer turns full batches into Parquet while the reader goes on
	// flattening; the channel holds at most two batches in between.
	grp.Go(func() error { return writeParts(gctx, log, pq, jobs) })
	grp.Go(func() error {
		defer close(jobs)
		fl.jobs = jobs
		for _, p := range files {
			if err := fl.file(gctx, p, bar); err != nil {
				return err
			}
		}
		return fl.flushAll(gctx)
	})
	err = grp.Wait()
	bar.Finish()
	if err != nil {
		return err
	}
	if err := fl.publish(); err != nil {
		return err
	}
	fl.report(stdout, stderr, len(files), total, time.Since(start))
	if fl.failed > 0 {
		return fmt.Errorf("%d resources or files failed (listed above); the rows of all others were written", fl.failed)
	}
	return nil
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

// flattener reads FHIR files and appends every resource to the batches of
// the views of its type, handing full batches to the writer. It belongs to
// one goroutine.
type flattener struct {
	outs      []*viewOutput
	byType    map[string][]*viewOutput
	batchRows int
	jobs      chan<- writeJob
	r         flatten.Resource // reused: parsing allocates nothing once warm

	resources int      // resources read
	unviewed  int      // resources of a type no selected view reads
	failed    int      // resources and files that failed
	errs      []string // the first maxErrorsShown failures
}

func newFlattener(out string, views []*flatten.View, batchRows int) (*flattener, error) {
	fl := &flattener{byType: map[string][]*viewOutput{}, batchRows: batchRows}
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
		fl.outs = append(fl.outs, &viewOutput{
			view:  v,
			batch: v.NewBatch(memory.NewGoAllocator()),
			stage: stage,
			final: filepath.Join(out, v.Name()),
		})
	}
	for _, o := range fl.outs {
		rt := o.view.Resource()
		if _, done := fl.byType[rt]; done {
			continue
		}
		for _, v := range flatten.ViewsFor(views, rt) {
			for _, o2 := range fl.outs {
				if o2.view == v {
					fl.byType[rt] = append(fl.byType[rt], o2)
				}
			}
		}
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

// location names where a resource came from: a file, its line (NDJSON) and
// the entry index in each enclosing Bundle.
type location struct {
	file    string
	line    int
	entries []int
}

func (l location) String() string {
	var b strings.Builder
	b.WriteString(l.file)
	if l.line > 0 {
		fmt.Fprintf(&b, ":%d", l.line)
	}
	for _, e := range l.entries {
		fmt.Fprintf(&b, " entry %d", e)
	}
	return b.String()
}

func (l location) entry(i int) location {
	l.entries = append(slices.Clip(l.entries), i)
	return l
}

func (fl *flattener) fail(at location, err error) {
	fl.failed++
	fl.note(at, err)
}

func (fl *flattener) note(at location, err error) {
	if len(fl.errs) < maxErrorsShown {
		fl.errs = append(fl.errs, fmt.Sprintf("%s: %v", at, err))
	}
}

// file reads one file: NDJSON line by line, anything else as one JSON
// document. gzip is recognised by its magic number, NDJSON by its first
// line being a whole JSON object. Problems with the file are recorded; only
// cancellation and write errors are returned.
func (fl *flattener) file(ctx context.Context, path string, bar *progressbar.ProgressBar) error {
	at := location{file: path}
	fh, err := os.Open(path)
	if err != nil {
		fl.fail(at, err)
		return nil
	}
	defer fh.Close()
	in := bufio.NewReaderSize(&progressReader{r: fh, bar: bar}, 1<<20)
	if magic, _ := in.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(in)
		if err != nil {
			fl.fail(at, fmt.Errorf("gunzip: %w", err))
			return nil
		}
		defer gz.Close()
		in = bufio.NewReaderSize(gz, 1<<20)
	}
	if bom, _ := in.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		in.Discard(3)
	}
	head, _ := in.Peek(64 << 10)
	if isNDJSON(head) {
		return fl.lines(ctx, at, in)
	}
	data, err := io.ReadAll(in)
	if err != nil {
		fl.fail(at, fmt.Errorf("read: %w", err))
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return fl.doc(ctx, data, at)
}

// isNDJSON tells NDJSON from a single JSON document by the first line: a
// line of NDJSON is a whole object, the first line of a pretty-printed
// document is not. A first line longer than head is NDJSON too.
func isNDJSON(head []byte) bool {
	head = bytes.TrimLeft(head, " \t\r\n")
	line, _, found := bytes.Cut(head, []byte("\n"))
	if !found {
		return len(head) > 0 && head[0] == '{'
	}
	line = bytes.TrimSpace(line)
	return len(line) > 1 && line[0] == '{' && line[len(line)-1] == '}'
}

func (fl *flattener) lines(ctx context.Context, at location, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	for sc.Scan() {
		at.line++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fl.doc(ctx, line, at); err != nil {
			return err
		}
		if at.line%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := sc.Err(); err != nil {
		at.line++
		fl.fail(at, fmt.Errorf("read: %w", err))
	}
	return nil
}

// doc handles one JSON document: a resource, a Bundle (whose entries are
// read in turn), or a record written by fhirlake generate --out.
func (fl *flattener) doc(ctx context.Context, data []byte, at location) error {
	if startsAsBundle(data) {
		return fl.bundle(ctx, data, at)
	}
	if err := fl.r.Parse(data); err != nil {
		if value, ok := recordValue(data); ok {
			return fl.doc(ctx, value, at)
		}
		fl.fail(at, err)
		return nil
	}
	if fl.r.ResourceType() == "Bundle" {
		return fl.bundle(ctx, data, at)
	}
	return fl.resource(ctx, at)
}

// startsAsBundle reports whether data's first member is "resourceType":
// "Bundle", as in nearly every Bundle, so that a Bundle is split into its
// entries without being parsed whole first.
func startsAsBundle(data []byte) bool {
	const key, value = `"resourceType"`, `"Bundle"`
	rest := bytes.TrimLeft(data, " \t\r\n")
	if len(rest) == 0 || rest[0] != '{' {
		return false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if !bytes.HasPrefix(rest, []byte(key)) {
		return false
	}
	rest = bytes.TrimLeft(rest[len(key):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return false
	}
	return bytes.HasPrefix(bytes.TrimLeft(rest[1:], " \t\r\n"), []byte(value))
}

// recordValue returns the notification held by a line of
// `fhirlake generate --out` ({"key", "headers", "value"}).
func recordValue(data []byte) ([]byte, bool) {
	var rec struct {
		ResourceType *string `json:"resourceType"`
		Value        *string `json:"value"`
	}
	if json.Unmarshal(data, &rec) != nil || rec.ResourceType != nil || rec.Value == nil {
		return nil, false
	}
	return []byte(*rec.Value), true
}

// bundle reads every entry.resource of a Bundle of any type: a batch,
// transaction, searchset, history or subscription notification. Entries
// without a resource (deletes, id-only notifications) have no rows. A
// syntax error fails the rest of the Bundle; the entries before it count.
func (fl *flattener) bundle(ctx context.Context, data []byte, at location) error {
	var fatal error
	err := flatten.BundleEntries(data, func(i int, res []byte) error {
		if i%1024 == 0 {
			fatal = ctx.Err()
		}
		if fatal == nil {
			fatal = fl.doc(ctx, res, at.entry(i))
		}
		return fatal
	})
	if fatal != nil {
		return fatal
	}
	if err != nil {
		fl.fail(at, err)
	}
	return nil
}

// resource appends the parsed resource to every view of its type.
func (fl *flattener) resource(ctx context.Context, at location) error {
	fl.resources++
	outs := fl.byType[fl.r.ResourceType()]
	if len(outs) == 0 {
		fl.unviewed++
		return nil
	}
	failed := false
	for _, o := range outs {
		n, err := o.batch.Append(&fl.r)
		if err != nil {
			failed = true
			fl.note(at, err) // names the view, the resource and the column
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

func (fl *flattener) report(stdout, stderr io.Writer, files int, size int64, took time.Duration) {
	nameW, typeW := len("VIEW"), len("RESOURCE")
	for _, o := range fl.outs {
		nameW = max(nameW, len(o.view.Name()))
		typeW = max(typeW, len(o.view.Resource()))
	}
	fmt.Fprintf(stdout, "%-*s  %-*s  %10s  %5s\n", nameW, "VIEW", typeW, "RESOURCE", "ROWS", "FILES")
	var rows int64
	for _, o := range fl.outs {
		fmt.Fprintf(stdout, "%-*s  %-*s  %10d  %5d\n", nameW, o.view.Name(), typeW, o.view.Resource(), o.rows, o.files)
		rows += o.rows
	}
	fmt.Fprintf(stdout, "%d resources from %d files (%.1f MB read) in %s: %d rows; %d resources of types no selected view reads; %d failed\n",
		fl.resources, files, float64(size)/1e6, took.Round(time.Millisecond), rows, fl.unviewed, fl.failed)
	for _, e := range fl.errs {
		fmt.Fprintln(stderr, "error:", e)
	}
	if fl.failed > len(fl.errs) {
		fmt.Fprintf(stderr, "… and %d more failures\n", fl.failed-len(fl.errs))
	}
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

// progressReader advances a progress bar by the bytes read from a file.
type progressReader struct {
	r   io.Reader
	bar *progressbar.ProgressBar
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.bar.Add(n)
	return n, err
}

func newByteBar(total int64, what string, quiet bool) *progressbar.ProgressBar {
	if quiet {
		return progressbar.DefaultSilent(total, what)
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}
