package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/synth"
)

type generateFlags struct {
	tenants    []string
	patients   int
	seed       int64
	updates    float64
	deletes    float64
	formats    []string
	perNotif   int
	controls   int
	malformed  int
	unroutable int
	out        string
	expect     string
	topic      string
	quiet      bool
}

func (f *generateFlags) register(cmd *cobra.Command) {
	d := synth.DefaultOptions()
	cmd.Flags().StringSliceVar(&f.tenants, "tenants", d.Tenants, "tenant names")
	cmd.Flags().IntVar(&f.patients, "patients", d.Patients, "patients per tenant (about 30 resources each)")
	cmd.Flags().Int64Var(&f.seed, "seed", d.Seed, "seed; the same flags give a byte-identical stream")
	cmd.Flags().Float64Var(&f.updates, "updates", d.UpdateRatio, "share of resources that get later versions")
	cmd.Flags().Float64Var(&f.deletes, "deletes", d.DeleteRatio, "share of deletable resources that are deleted")
	formats := make([]string, len(d.Formats))
	for i, x := range d.Formats {
		formats[i] = string(x)
	}
	cmd.Flags().StringSliceVar(&f.formats, "formats", formats, "envelopes: r4-backport, r4b-history, r5")
	cmd.Flags().IntVar(&f.perNotif, "per-notification", d.ResourcesPerNotification, "events per notification")
	cmd.Flags().IntVar(&f.controls, "controls", d.Controls, "handshake and heartbeat notifications")
	cmd.Flags().IntVar(&f.malformed, "malformed", d.Malformed, "malformed records (dead letters)")
	cmd.Flags().IntVar(&f.unroutable, "unroutable", d.Unroutable, "records for unknown tenants (dead letters)")
	cmd.Flags().StringVar(&f.expect, "expect", "", "write the expected final state as NDJSON to this file")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar")
}

func (f *generateFlags) options() synth.Options {
	o := synth.Options{
		Tenants: f.tenants, Patients: f.patients, Seed: f.seed,
		UpdateRatio: f.updates, DeleteRatio: f.deletes,
		ResourcesPerNotification: f.perNotif,
		Controls:                 f.controls, Malformed: f.malformed, Unroutable: f.unroutable,
	}
	for _, x := range f.formats {
		o.Formats = append(o.Formats, synth.Format(strings.TrimSpace(x)))
	}
	return o
}

func newGenerateCmd(g *globals) *cobra.Command {
	f := &generateFlags{}
	cmd := &cobra.Command{
		Use:   "generate [--out FILE | --topic T]",
		Short: "Generate deterministic synthetic notifications into Kafka or a file",
		Long: `generate writes synthetic FHIR R4 data for the given tenants — Patients with US Core
race, ethnicity and birth sex, Encounters, Observations (vitals, labs, blood pressure with
components), Conditions and MedicationRequests — as subscription notifications, with
updates, deletes, control messages and, on request, malformed and unroutable records.

Without --out it produces to the first configured Kafka topic with the tenant in a header.
With --out FILE it writes one JSON object per record: {"key","headers","value"}.
--expect FILE writes the expected final state (one line per resource, then the counts).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gen, err := synth.New(f.options())
			if err != nil {
				return err
			}
			ctx := contextOf(cmd)
			bar := newBar(gen.Total(), "generating", f.quiet)
			if f.out != "" {
				err = writeRecords(ctx, gen, f.out, bar)
			} else {
				cfg, lerr := g.load()
				if lerr != nil {
					return lerr
				}
				topic := f.topic
				if topic == "" {
					topic = cfg.Kafka.Topics[0]
				}
				if err := ensureTopics(ctx, cfg.Kafka); err != nil {
					return err
				}
				err = produceRecords(ctx, gen, cfg.Kafka, topic, bar)
			}
			_ = bar.Finish() // only the progress display; it cannot fail the run
			if err != nil {
				return err
			}
			c := gen.Counts()
			fmt.Fprintf(cmd.ErrOrStderr(), "generated %d records: %d event notifications (%d upserts, %d deletes of %d resources), %d control, %d malformed, %d unroutable\n",
				c.Records(), c.Events, c.Upserts, c.Deletes, c.Resources, c.Controls, c.Malformed, c.Unroutable)
			if f.expect != "" {
				return writeExpectFile(f.expect, gen)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&f.out, "out", "o", "", "write records to this NDJSON file instead of Kafka")
	cmd.Flags().StringVar(&f.topic, "topic", "", "Kafka topic (default: the first configured topic)")
	return cmd
}

func newBar(total int, what string, quiet bool) *progressbar.ProgressBar {
	if quiet {
		return progressbar.DefaultSilent(int64(total), what)
	}
	return progressbar.NewOptions64(int64(total),
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)
}

func writeExpectFile(path string, gen *synth.Generator) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := synth.WriteExpected(w, gen); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fileRecord is one line of a --out file.
type fileRecord struct {
	Key     string            `json:"key"`
	Headers map[string]string `json:"headers,omitempty"`
	Value   string            `json:"value"`
}

func writeRecords(ctx context.Context, gen *synth.Generator, path string, bar *progressbar.ProgressBar) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		r, ok := gen.Next()
		if !ok {
			break
		}
		fr := fileRecord{Key: string(r.Key), Value: string(r.Value)}
		if len(r.Headers) > 0 {
			fr.Headers = map[string]string{}
			for _, h := range r.Headers {
				fr.Headers[h.Key] = string(h.Value)
			}
		}
		if err := enc.Encode(fr); err != nil {
			f.Close()
			return err
		}
		_ = bar.Add(1) // only the progress display; it cannot fail the run
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// produceRecords sends the stream to Kafka and waits until every record is
// acknowledged by all in-sync replicas.
func produceRecords(ctx context.Context, gen *synth.Generator, k config.Kafka, topic string, bar *progressbar.ProgressBar) error {
	cl, err := kafkaClient(ctx, k,
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5e6),
		kgo.ProducerBatchMaxBytes(4<<20),
		kgo.MaxBufferedRecords(50_000),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	return produceTo(ctx, cl, gen, topic, bar)
}

func produceTo(ctx context.Context, cl *kgo.Client, gen *synth.Generator, topic string, bar *progressbar.ProgressBar) error {
	var mu sync.Mutex
	var firstErr error
	for {
		r, ok := gen.Next()
		if !ok {
			break
		}
		rec := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			if bar != nil {
				_ = bar.Add(1) // only the progress display; it cannot fail the run
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return fmt.Errorf("produce: %w", kafkaErr(firstErr))
	}
	return errors.Join(ctx.Err())
}
