package main

import (
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Build information, set at link time by release builds (deploy/image/build):
//
//	go build -ldflags "-X main.version=1.4.0 -X main.commit=$(git rev-parse HEAD) -X main.buildDate=2026-01-02T03:04:05Z"
//
// A plain `go build` leaves them empty and `fhirlake version` falls back to
// what the Go toolchain recorded (module version, VCS revision when built
// from a checkout).
var (
	version   string
	commit    string
	buildDate string
)

// buildInfo is what `fhirlake version` prints.
type buildInfo struct {
	Version, Commit, Date, Modified string
	Go, Platform, Tags, CGO         string
	Deps                            [][2]string
}

// readBuildInfo merges the link-time variables with the toolchain's record.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: buildDate, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.time":
				if b.Date == "" {
					b.Date = s.Value
				}
			case "vcs.modified":
				if s.Value == "true" && commit == "" {
					b.Modified = "true"
				}
			case "-tags":
				b.Tags = s.Value
			case "CGO_ENABLED":
				b.CGO = s.Value
			}
		}
		for _, d := range info.Deps {
			switch d.Path {
			case "github.com/duckdb/duckdb-go/v2", "github.com/twmb/franz-go", "github.com/apache/arrow-go/v18",
				"github.com/aws/aws-sdk-go-v2/service/s3":
				v := d.Version
				if d.Replace != nil {
					v = d.Replace.Version
				}
				b.Deps = append(b.Deps, [2]string{d.Path, v})
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

func (b buildInfo) write(w io.Writer, duckdbVersion string) {
	fmt.Fprintf(w, "fhirlake %s\n", b.Version)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-9s %s\n", k+":", v)
		}
	}
	c := b.Commit
	if b.Modified == "true" {
		c += " (modified)"
	}
	row("commit", c)
	row("built", b.Date)
	row("go", b.Go+" "+b.Platform)
	row("cgo", b.CGO)
	row("tags", b.Tags)
	row("duckdb", duckdbVersion)
	for _, d := range b.Deps {
		fmt.Fprintf(w, "  %s %s\n", d[0], d[1])
	}
}

// duckDBVersion is the version of the DuckDB library linked in, which decides
// which extension builds it can load.
func duckDBVersion() string {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return ""
	}
	defer db.Close()
	var v string
	if err := db.QueryRow("SELECT version()").Scan(&v); err != nil {
		return ""
	}
	return v
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print build information",
		Long: `version prints the release, the commit and date it was built from, the Go toolchain,
the build tags, the DuckDB library linked in (an extension loads only into the DuckDB
version it was built for) and the versions of the main libraries.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			readBuildInfo().write(cmd.OutOrStdout(), duckDBVersion())
			return nil
		},
	}
}
