package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"fhirlake/config"
	"fhirlake/consumer"
)

func newTopicsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "topics", Short: "Manage the Kafka topics fhirlake uses"}
	cmd.AddCommand(&cobra.Command{
		Use:   "create",
		Short: "Create the notification and dead-letter topics if they are missing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			return ensureTopics(contextOf(cmd), cfg.Kafka)
		},
	})
	return cmd
}

// ensureTopics creates the consumed topics and the dead-letter topic when
// they do not exist.
func ensureTopics(ctx context.Context, k config.Kafka) error {
	cl, err := kafkaClient(ctx, k)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := append(append([]string{}, k.Topics...), k.DeadLetterTopic)
	resp, err := adm.CreateTopics(ctx, k.Partitions, k.ReplicationFactor, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", kafkaErr(err))
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, kafkaErr(r.Err))
		}
	}
	return nil
}

func newLagCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "lag",
		Short: "Show the consumer group's lag per partition and in total",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx := contextOf(cmd)
			cl, err := kafkaClient(ctx, cfg.Kafka)
			if err != nil {
				return err
			}
			defer cl.Close()
			lag, err := consumer.Lag(ctx, kadm.NewClient(cl), cfg.Kafka.Group, cfg.Kafka.Topics)
			if err != nil {
				return kafkaErr(err)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG")
			sort.Slice(lag.Partitions, func(i, j int) bool {
				a, b := lag.Partitions[i], lag.Partitions[j]
				return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
			})
			for _, p := range lag.Partitions {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", p.Topic, p.Partition, p.Committed, p.End, p.Lag)
			}
			fmt.Fprintf(tw, "TOTAL\t\t\t\t%d\n", lag.Total)
			return tw.Flush()
		},
	}
}
