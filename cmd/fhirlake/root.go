package main

import (
	"context"
	"log/slog"
	"os"

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
		newServeWorkerCmd(g),
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
		newReceiveCmd(g),
		newCompactCmd(g),
		newEraseCmd(g),
		newConfigCmd(g),
		newRegisterCmd(g),
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

// contextOf returns the command's context (cancelled on SIGINT/SIGTERM).
func contextOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
