package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"fhirlake/bulk"
	"fhirlake/flatten"
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

func runViews(ctx context.Context, log *slog.Logger, stdout, stderr io.Writer, views []*flatten.View, files []string, f *runFlags) error {
	total, err := bulk.Size(files)
	if err != nil {
		return err
	}
	start := time.Now()
	bar := newByteBar(total, "flattening", f.quiet)
	res, err := bulk.Flatten(ctx, files, bulk.FlattenOptions{
		Views: views, Out: f.out, BatchRows: f.batchRows, Log: log,
		Progress: func(n int) { _ = bar.Add(n) }, // a progress bar that cannot draw changes nothing
	})
	_ = bar.Finish()
	if err != nil {
		return err
	}
	writeFlattenReport(stdout, stderr, res, len(files), total, time.Since(start))
	if res.Failed > 0 {
		return fmt.Errorf("%d resources or files failed (listed above); the rows of all others were written", res.Failed)
	}
	return nil
}

// writeFlattenReport prints the rows and files of each view and a summary
// on stdout, and the failures on stderr.
func writeFlattenReport(stdout, stderr io.Writer, res bulk.FlattenResult, files int, size int64, took time.Duration) {
	nameW, typeW := len("VIEW"), len("RESOURCE")
	for _, v := range res.Views {
		nameW = max(nameW, len(v.Name))
		typeW = max(typeW, len(v.Resource))
	}
	fmt.Fprintf(stdout, "%-*s  %-*s  %10s  %5s\n", nameW, "VIEW", typeW, "RESOURCE", "ROWS", "FILES")
	var rows int64
	for _, v := range res.Views {
		fmt.Fprintf(stdout, "%-*s  %-*s  %10d  %5d\n", nameW, v.Name, typeW, v.Resource, v.Rows, v.Files)
		rows += v.Rows
	}
	fmt.Fprintf(stdout, "%d resources from %d files (%.1f MB read) in %s: %d rows; %d resources of types no selected view reads; %d failed\n",
		res.Resources, files, float64(size)/1e6, took.Round(time.Millisecond), rows, res.Unviewed, res.Failed)
	for _, e := range res.Errors {
		fmt.Fprintln(stderr, "error:", e)
	}
	if res.Failed > len(res.Errors) {
		fmt.Fprintf(stderr, "… and %d more failures\n", res.Failed-len(res.Errors))
	}
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
