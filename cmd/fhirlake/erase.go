package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"fhirlake/audit"
	"fhirlake/compactor"
	"fhirlake/config"
	"fhirlake/lake"
)

func newEraseCmd(g *globals) *cobra.Command {
	var (
		tenant, patient string
		waitLease       time.Duration
		noKafka         bool
	)
	cmd := &cobra.Command{
		Use:   "erase --tenant T --patient ID [--wait-lease D]",
		Short: "Erase one patient's data from a tenant's lake (a GDPR erasure request)",
		Long: `erase removes every version of a patient's resources, and of the resources in the
patient's compartment (the FHIR R4 Patient compartment: Observation.subject,
Encounter.subject, Claim.patient, …), from the tenant's lake:

  - the speed layer: every file holding their rows, raw and per view, is rewritten
    under its own key without them (or deleted when nothing is left);
  - the batch layer: a snapshot is built from the current one's state without them
    and published, under the compactor's lease; every other snapshot is deleted.

It first writes an erasure record (_erasure/<sha256 of the id>.json) holding the
SHA-256 of every erased resource and each Kafka partition's end offset: the consumer
and the compactor leave those resources' changes out up to there, so a replay of the
topic never brings them back, while a change after the erasure comes in.

Kafka itself cannot delete single records: the topics keep them until their
retention deletes them. erase reads each topic's retention.ms from the broker and
prints it, dead-letter topic included. A run that stops midway is finished by
running it again; the audit trail records each run (kind erasure).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" || patient == "" {
				return errors.New("--tenant and --patient are required")
			}
			if waitLease < 0 {
				return fmt.Errorf("--wait-lease: must not be negative, got %s", waitLease)
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			cc := cfg.Compact.WithDefaults()
			if err := cc.Validate(); err != nil {
				return err
			}
			log := g.logger()
			ctx := contextOf(cmd)
			c, ts, err := buildCompactor(ctx, cfg, cc, []string{tenant}, false, waitLease, nil, log)
			if err != nil {
				return err
			}
			aw, err := openAudit(cfg.Audit, nil, log)
			if err != nil {
				return err
			}
			defer aw.Close()
			started := time.Now()
			var kst *kafkaState
			if !noKafka {
				if kst, err = readKafkaState(ctx, cfg.Kafka); err != nil {
					err = fmt.Errorf("read the topics' end offsets and retention (--no-kafka erases without them, leaving records not yet consumed unprotected): %w", err)
					auditErasure(aw, tenant, patient, nil, err, started)
					return err
				}
			}
			req := compactor.EraseRequest{Patient: patient}
			if kst != nil {
				req.Positions = kst.positions
			}
			res, err := c.Erase(ctx, ts[0], req)
			auditErasure(aw, tenant, patient, res, err, started)
			if err != nil {
				return err
			}
			printErasure(cmd.OutOrStdout(), res, kst, cfg.Kafka)
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant whose lake holds the patient (required)")
	cmd.Flags().StringVar(&patient, "patient", "", "the Patient's id (required)")
	cmd.Flags().DurationVar(&waitLease, "wait-lease", 0, "wait up to this long for the tenant's lease a running compactor holds; default: give up at once")
	cmd.Flags().BoolVar(&noKafka, "no-kafka", false, "erase without reading Kafka: replays are protected only up to the changes the lake holds, and the output cannot state the topics' retention")
	return cmd
}

// kafkaState is what an erasure reads of Kafka: the end of every partition of the
// consumed topics, and the retention of those and of the dead-letter topic.
type kafkaState struct {
	positions []lake.Position
	// retention is retention.ms by topic, as the broker reports it ("-1": forever).
	retention map[string]string
}

// readKafkaState asks the brokers for the consumed topics' end offsets and every
// topic's retention.ms.
func readKafkaState(ctx context.Context, k config.Kafka) (*kafkaState, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := kafkaClient(ctx, k)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, k.Topics...)
	if err != nil {
		return nil, kafkaErr(err)
	}
	st := &kafkaState{retention: map[string]string{}}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", o.Topic, o.Partition, o.Err))
			return
		}
		st.positions = append(st.positions, lake.Position{Topic: o.Topic, Partition: o.Partition, Before: o.Offset})
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	topics := append(append([]string{}, k.Topics...), k.DeadLetterTopic)
	configs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, kafkaErr(err)
	}
	for _, rc := range configs {
		if rc.Err != nil {
			return nil, fmt.Errorf("describe %s: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" && c.Value != nil {
				st.retention[rc.Name] = *c.Value
			}
		}
	}
	return st, nil
}

// auditErasure writes the run's audit record: the patient by the SHA-256 of its id.
func auditErasure(w *audit.Writer, tenant, patient string, res *compactor.EraseResult, err error, started time.Time) {
	rec := audit.Record{Kind: audit.KindErasure, Source: audit.SourceErase, Tenant: tenant, Key: actor(),
		PatientSHA256: audit.SHA256(patient), Status: audit.StatusOK,
		DurationMS: float64(time.Since(started).Microseconds()) / 1000}
	if res != nil {
		for _, d := range res.Speed {
			rec.Rows += d.Rows
		}
		for _, n := range res.State {
			rec.Rows += n
		}
		rec.Snapshot = res.Snapshot
		rec.Reason = fmt.Sprintf("%d resources erased", res.Resources)
	}
	if err != nil {
		rec.Status, rec.Reason = "failed", err.Error()
	}
	w.Write(rec)
}

// printErasure says what the erasure did, and what it could not: Kafka's copies.
func printErasure(w io.Writer, res *compactor.EraseResult, kst *kafkaState, k config.Kafka) {
	fmt.Fprintf(w, "Erased %d resources of the patient from tenant %s (erasure record %s).\n\n", res.Resources, res.Tenant, res.RecordKey)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATASET\tROWS REMOVED\tFILES REWRITTEN\tFILES DELETED")
	names := make([]string, 0, len(res.Speed))
	for n := range res.Speed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := res.Speed[n]
		fmt.Fprintf(tw, "speed/%s\t%d\t%d\t%d\n", n, d.Rows, d.FilesRewritten, d.FilesDeleted)
	}
	if len(names) == 0 {
		fmt.Fprintln(tw, "speed/*\t0\t0\t0")
	}
	models := make([]string, 0, len(res.State))
	for n := range res.State {
		models = append(models, n)
	}
	sort.Strings(models)
	for _, n := range models {
		if res.State[n] > 0 {
			fmt.Fprintf(tw, "batch/%s\t%d\t\t\n", n, res.State[n])
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	switch {
	case res.Snapshot == "":
		fmt.Fprintln(w, "Batch snapshot: none published yet.")
	case res.Republished:
		fmt.Fprintf(w, "Batch snapshot: published %s without the patient (marts rebuilt from the state above); %d other snapshots deleted.\n", res.Snapshot, res.SnapshotsDeleted)
	default:
		fmt.Fprintf(w, "Batch snapshot: %s holds nothing of the patient; %d other snapshots deleted.\n", res.Snapshot, res.SnapshotsDeleted)
	}
	fmt.Fprintf(w, "Replays: the consumer and the compactor leave these resources' changes out up to %s; a change after them comes in.\n\n", positionsText(res.Record.Positions))
	fmt.Fprintln(w, "Kafka keeps the patient's records until each topic's retention deletes them: a topic cannot delete single records.")
	topics := append(append([]string{}, k.Topics...), k.DeadLetterTopic)
	for _, t := range topics {
		what, note := "topic", ""
		if t == k.DeadLetterTopic {
			what, note = "dead-letter topic", "; fhirlake keeps no other copy of dead letters"
		}
		ret := "unknown (--no-kafka)"
		if kst != nil {
			ret = retentionText(kst.retention[t])
		}
		fmt.Fprintf(w, "  %s %s: retention.ms %s%s\n", what, t, ret, note)
	}
}

// retentionText is a retention.ms value with its meaning.
func retentionText(ms string) string {
	n, err := strconv.ParseInt(ms, 10, 64)
	switch {
	case ms == "":
		return "not reported"
	case err != nil:
		return ms
	case n < 0:
		return ms + " (kept forever: the records stay until the topic is deleted or its retention is lowered)"
	}
	return fmt.Sprintf("%s (%s)", ms, time.Duration(n)*time.Millisecond)
}

// positionsText lists positions briefly: topic[partition]<offset, ….
func positionsText(ps []lake.Position) string {
	if len(ps) == 0 {
		return "the changes the lake held"
	}
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s[%d] offset %d", p.Topic, p.Partition, p.Before))
	}
	if len(parts) > 8 {
		parts = append(parts[:8], fmt.Sprintf("… (%d partitions)", len(ps)))
	}
	return strings.Join(parts, ", ")
}
