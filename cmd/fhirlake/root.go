package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"fhirlake/config"
)

// globals are the flags every subcommand shares.
type globals struct {
	configPath string
	logLevel   string
	logFormat  string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "fhirlake",
		Short: "Turn FHIR subscription notifications on Kafka into a per-tenant analytical lake",
		Long: `fhirlake consumes FHIR Subscription notifications from Kafka, routes each change to its
tenant, and writes it as Parquet into that tenant's own bucket or directory, committing
Kafka offsets only once the files are durable. Query the lake with DuckDB seconds later.

Configuration comes from --config, else $FHIRLAKE_CONFIG, else ./fhirlake.yaml, with
FHIRLAKE_* environment overrides (see deploy/config/fhirlake.example.yaml).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", "", "configuration file (default: $FHIRLAKE_CONFIG or ./fhirlake.yaml)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newVersionCmd(),
		newGenerateCmd(g),
		newConsumeCmd(g),
		newLagCmd(g),
		newTopicsCmd(g),
		newQueryCmd(g),
		newDemoCmd(g),
		newViewsCmd(g),
		newBackfillCmd(g),
		newServeCmd(g),
		newCompactCmd(g),
	)
	return root
}

func (g *globals) load() (config.Config, error) {
	return config.Load(config.Locate(g.configPath))
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print build information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, ok := debug.ReadBuildInfo()
			if !ok {
				fmt.Fprintln(cmd.OutOrStdout(), "fhirlake (no build information)")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fhirlake %s (%s)\n", info.Main.Version, info.GoVersion)
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision", "vcs.time", "vcs.modified", "-tags", "CGO_ENABLED", "GOARCH", "GOOS":
					fmt.Fprintf(cmd.OutOrStdout(), "  %s=%s\n", s.Key, s.Value)
				}
			}
			for _, d := range info.Deps {
				switch d.Path {
				case "github.com/duckdb/duckdb-go/v2", "github.com/twmb/franz-go", "github.com/apache/arrow-go/v18":
					fmt.Fprintf(cmd.OutOrStdout(), "  %s %s\n", d.Path, d.Version)
				}
			}
			return nil
		},
	}
}

// contextOf returns the command's context (cancelled on SIGINT/SIGTERM).
func contextOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
