package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"fhirlake/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [FILE]",
		Short: "Load a configuration as every command does and report every problem in it",
		Long: `validate loads FILE (else --config, $FHIRLAKE_CONFIG or ./fhirlake.yaml) over the defaults,
applies the FHIRLAKE_* environment overrides and checks it as consume, compact and serve
would: unknown keys, missing or conflicting settings, tenants sharing a store, environment
variables named by a tenant that are not set, the compact and serve sections, and with a
catalog, views and marts whose Iceberg tables would share a name. It prints a
summary and exits non-zero on any problem. Nothing is contacted: brokers and stores are
not reached.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := config.Locate(g.configPath)
			if len(args) == 1 {
				path = args[0]
			}
			if path == "" {
				return errors.New("no configuration file: give FILE, --config or $FHIRLAKE_CONFIG")
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			cc := cfg.Compact.WithDefaults()
			sc := cfg.Serve.WithDefaults()
			errs := []error{cc.Validate(), sc.Validate(cfg.Tenants), checkTableNames(cfg)}
			// The receive section is checked when it holds secrets: most
			// deployments run no receiver (which refuses to start without).
			rc := cfg.Receive.WithDefaults(cfg.Kafka)
			receiving := len(cfg.Receive.Secrets) > 0
			if receiving {
				errs = append(errs, rc.Validate(cfg.Tenants))
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			if len(cfg.Tenants) == 0 {
				return errors.New("tenants: none configured; consume, compact and serve need at least one")
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: ok\n", path)
			fmt.Fprintf(out, "  kafka:    group %s, topics %v, dead letters %s, brokers %v%s\n", cfg.Kafka.Group, cfg.Kafka.Topics, cfg.Kafka.DeadLetterTopic, cfg.Kafka.Brokers, kafkaSecurity(cfg.Kafka))
			fmt.Fprintf(out, "  flush:    %d rows / %s / %s per partition; shutdown within %s\n", cfg.Flush.MaxRows, cfg.Flush.MaxBytes, cfg.Flush.MaxAge, cfg.ShutdownTimeout)
			fmt.Fprintf(out, "  metrics:  %s\n", orNone(cfg.Metrics.Listen))
			fmt.Fprintf(out, "  serve:    %s, %d API keys\n", sc.Listen, len(sc.APIKeys))
			if receiving {
				fmt.Fprintf(out, "  receive:  %s, into %s, %d secrets\n", rc.Listen, rc.Topic, len(rc.Secrets))
			}
			fmt.Fprintf(out, "  compact:  %q\n", cc.Schedule)
			for _, t := range cfg.Tenants {
				where := t.Store.Path
				if t.Store.Type == "s3" {
					where = "s3://" + t.Store.Bucket
					switch {
					case t.Store.RoleARN != "":
						where += " as " + t.Store.RoleARN
					case t.Store.AccessKeyEnv != "":
						where += " with $" + t.Store.AccessKeyEnv
					default:
						where += " with the default AWS credentials"
					}
				}
				fmt.Fprintf(out, "  tenant:   %s → %s\n", t.Name, where)
			}
			return nil
		},
	})
	return cmd
}

// kafkaSecurity says how the brokers are reached, when not in plaintext.
func kafkaSecurity(k config.Kafka) string {
	var parts []string
	if k.TLS.Enabled {
		tls := "TLS"
		if k.TLS.CertFile != "" {
			tls = "mutual TLS"
		}
		parts = append(parts, tls)
	}
	if k.SASL.Mechanism != "" {
		parts = append(parts, "SASL "+k.SASL.Mechanism)
	}
	if len(parts) == 0 {
		return ""
	}
	return " over " + strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(off)"
	}
	return s
}
