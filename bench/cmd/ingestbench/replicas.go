package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"text/tabwriter"
	"time"

	"fhirlake/lake"
)

// scaleResult is one scale-out run: several `fhirlake consume` replicas in
// one consumer group on the pre-produced topic, started one after another
// so that every start after the first is a rebalance while the group
// consumes.
type scaleResult struct {
	Replicas int
	Stagger  time.Duration
	Records  int
	Elapsed  time.Duration // first start → group lag 0
	Rows     int64         // rows of the raw dataset
	Covered  int64         // distinct Kafka records among them
	Per      []replicaResult
	Load     [2]float64
}

// replicaResult is one replica's share of a scale-out run, read from its
// metrics and its process just before the replicas were stopped.
type replicaResult struct {
	Started time.Duration // after the run's first replica
	Records float64       // records it consumed, re-reads after a rebalance included
	Revokes float64       // flushes on revoke: the rebalances that took partitions from it
	CPU     time.Duration
	PeakRSS int64
}

func (s scaleResult) cpu() time.Duration {
	var d time.Duration
	for _, r := range s.Per {
		d += r.CPU
	}
	return d
}

// reread is what the rebalances cost in records: read by a replica, then
// read again by the one that took its partition over, from the last
// commit.
func (s scaleResult) reread() float64 {
	var n float64
	for _, r := range s.Per {
		n += r.Records
	}
	return n - float64(s.Records)
}

// fairness summarises how evenly the replicas shared the records: the
// smallest and largest share, and Jain's index (1 when every replica read
// as much, 1/n when one read everything).
func fairness(records []float64) (minShare, maxShare, jain float64) {
	var sum, squares float64
	for _, r := range records {
		sum += r
		squares += r * r
	}
	if sum == 0 || len(records) == 0 {
		return 0, 0, 0
	}
	minShare, maxShare = 1, 0
	for _, r := range records {
		minShare, maxShare = min(minShare, r/sum), max(maxShare, r/sum)
	}
	return minShare, maxShare, sum * sum / (float64(len(records)) * squares)
}

// scaleOut runs n replicas of `fhirlake consume` (the binary, raw dataset
// and the default views) in one group until the group's lag is zero.
func (b *bench) scaleOut(ctx context.Context, n int) (err error) {
	name := fmt.Sprintf("replicas%d", n)
	group := b.id + "-" + name
	prefix := "runs/" + b.id + "/" + name
	b.groups = append(b.groups, group)
	b.prefixes = append(b.prefixes, prefix)
	s := scaleResult{Replicas: n, Stagger: b.o.replicaStagger, Records: b.o.records}
	s.Load[0] = loadAvg()[0]
	logf("%d replicas in group %s: consuming %d records, started %s apart", n, group, b.o.records, b.o.replicaStagger)

	procs := make([]*proc, 0, n)
	watches := make([]*procWatch, 0, n)
	addrs := make([]string, 0, n)
	// For the early returns; the normal path stops them below.
	defer func() {
		for i, p := range procs {
			if i < len(watches) {
				watches[i].Stop()
			}
			_ = p.stop(time.Minute)
		}
	}()
	alive := func() error {
		for _, p := range procs {
			if err := p.alive(); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(b.o.replicaStagger):
			}
			if err := alive(); err != nil {
				return err
			}
		}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		sfx := fmt.Sprintf("%s-%d", name, i+1)
		cfg := filepath.Join(b.dir, sfx+".yaml")
		if err := fhirlakeConfig(cfg, b.brokers, b.topic, b.dlq, group, prefix, addr, filepath.Join(b.dir, sfx+"-work"), b.o.memoryLimit, b.o.tenants); err != nil {
			return err
		}
		p, err := startProc(fmt.Sprintf("replica %d of %d", i+1, n), logPath(b.dir, group+"-"+fmt.Sprint(i+1)), nil,
			b.o.fhirlake, "--config", cfg, "consume", "--log-level", "warn")
		if err != nil {
			return err
		}
		procs, addrs = append(procs, p), append(addrs, addr)
		watches = append(watches, watchProc(p.cmd.Process.Pid, false))
	}
	end, err := waitLag(ctx, b.adm, group, b.topic, b.o.timeout, alive)
	if err != nil {
		return fmt.Errorf("%d replicas: %w", n, err)
	}
	s.Elapsed = end.Sub(procs[0].start)
	// Every replica's figures before any stops: a replica that stops hands
	// its partitions to the others, a rebalance that is not the run's.
	for i, p := range procs {
		m, err := scrapeReady(ctx, addrs[i], 15*time.Second)
		if err != nil {
			return fmt.Errorf("replica %d metrics: %w", i+1, err)
		}
		cpu, _ := cpuTime(p.cmd.Process.Pid)
		s.Per = append(s.Per, replicaResult{
			Started: p.start.Sub(procs[0].start),
			Records: m["fhirlake_consumer_records_total"],
			Revokes: m[`fhirlake_consumer_flushes_total{reason="revoke"}`],
			CPU:     cpu,
			PeakRSS: watches[i].Stop(),
		})
	}
	s.Load[1] = loadAvg()[0]
	var stopErrs []error
	for _, p := range procs {
		stopErrs = append(stopErrs, p.stop(time.Minute))
	}
	procs, watches = nil, nil
	if err := errors.Join(stopErrs...); err != nil {
		logf("%d replicas: %v", n, err)
	}
	stores, err := b.stores(ctx, prefix)
	if err != nil {
		return err
	}
	objs, err := listAll(ctx, stores, lake.DatasetPrefix(lake.RawDataset))
	if err != nil {
		return err
	}
	if s.Rows, s.Covered, err = countRows(ctx, stores, objs, filepath.Join(b.dir, "verify")); err != nil {
		return fmt.Errorf("%d replicas: %w", n, err)
	}
	if s.Covered != int64(s.Records) {
		return fmt.Errorf("%d replicas: the raw dataset holds %d of the %d records produced (%d rows)", n, s.Covered, s.Records, s.Rows)
	}
	b.scale = append(b.scale, s)
	minShare, maxShare, jain := fairness(s.records())
	logf("%d replicas: %d records in %.1fs = %.0f resources/s; CPU %.1fs; shares %.0f%%–%.0f%% (Jain %.2f); %.0f records read again after rebalances",
		n, s.Records, s.Elapsed.Seconds(), float64(s.Records)/s.Elapsed.Seconds(), s.cpu().Seconds(), 100*minShare, 100*maxShare, jain, s.reread())
	return nil
}

// scrapeReady scrapes a replica's metrics, waiting for a replica that
// joined last to serve them.
func scrapeReady(ctx context.Context, addr string, wait time.Duration) (map[string]float64, error) {
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(wait)
	for {
		m, err := scrape(cl, addr)
		if err == nil || time.Now().After(deadline) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s scaleResult) records() []float64 {
	out := make([]float64, len(s.Per))
	for i, r := range s.Per {
		out[i] = r.Records
	}
	return out
}

// reportScale writes the scale-out runs beside the single consumer's
// median.
func (b *bench) reportScale(w io.Writer) {
	if len(b.scale) == 0 {
		return
	}
	fmt.Fprintf(w, "\nScale-out: replicas of fhirlake consume (raw + 17 views) in one group on the %d-partition topic, each started %s after the previous\n", b.o.partitions, b.o.replicaStagger)
	var single []result
	for _, r := range b.results {
		if r.Name == "fhirlake consume" {
			single = append(single, r)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "replicas\tresources/s\ts to lag 0\tCPU s (all)\tres/CPU-s\tread again\tduplicate rows\tmin share\tmax share\tJain\tload 1m\t")
	for _, r := range single {
		fmt.Fprintf(tw, "1 (round %d)\t%s\t%s\t%s\t%s\t-\t%d\t100%%\t100%%\t1.00\t%.1f→%.1f\t\n",
			r.Round, thousands(r.rate()), secs(r.Elapsed), secs(r.CPU), thousands(float64(r.Records)/r.CPU.Seconds()), r.Rows-r.Covered, r.Load[0], r.Load[1])
	}
	for _, s := range b.scale {
		minShare, maxShare, jain := fairness(s.records())
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%.0f%%\t%.0f%%\t%.2f\t%.1f→%.1f\t\n",
			s.Replicas, thousands(float64(s.Records)/s.Elapsed.Seconds()), secs(s.Elapsed), secs(s.cpu()), thousands(float64(s.Records)/s.cpu().Seconds()),
			thousands(s.reread()), s.Rows-s.Covered, 100*minShare, 100*maxShare, jain, s.Load[0], s.Load[1])
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "\nreplica\tstarted at s\trecords read\tshare\tCPU s\tres/CPU-s\trevokes\tpeak RSS\t")
	for _, s := range b.scale {
		total := 0.0
		for _, r := range s.Per {
			total += r.Records
		}
		for i, r := range s.Per {
			fmt.Fprintf(tw, "%d of %d\t%.1f\t%s\t%.0f%%\t%s\t%s\t%.0f\t%s\t\n",
				i+1, s.Replicas, r.Started.Seconds(), thousands(r.Records), 100*r.Records/total, secs(r.CPU), thousands(r.Records/r.CPU.Seconds()), r.Revokes, mib(r.PeakRSS))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "  read again: records consumed by more than one replica (a partition revoked before its commit is replayed by its next owner); duplicate rows: raw rows beyond one per record, which readers drop (latest version wins)\n")
}
