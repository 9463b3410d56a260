package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

func mb(b int64) float64 { return float64(b) / 1e6 }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func size(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", d.Seconds())
}

func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func (b *bench) report(w io.Writer) {
	end := loadAvg()
	fmt.Fprintf(w, "\nIngest benchmark %s: %s notifications (one resource each; tenants %s; %.1f MB), %d partitions\n",
		b.id, thousands(float64(b.o.records)), strings.Join(b.o.tenants, ", "), mb(b.inBytes), b.o.partitions)
	fmt.Fprintf(w, "Kafka %s, S3 %s, %d cores; load average (1 min) %.2f at start, %.2f at end; produced in %.1fs\n\n",
		strings.Join(b.brokers, ","), envOr("FHIRLAKE_S3_ENDPOINT", "?"), numCPU(), b.loadStart[0], end[0], b.produceFor.Seconds())

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "run\tresources/s\tMB/s\ts to lag 0\ts to read all\tread res/s\tCPU s\tres/CPU-s\tpeak RSS\tfiles\tdatasets\tp50 file\tp90 file\tmax file\traw files\traw p50\traw max\tload 1m\t")
	for _, r := range b.results {
		readRate := "-"
		if r.ReadAll > 0 {
			readRate = thousands(float64(r.Records) / r.ReadAll.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%.1f→%.1f\t\n",
			b.label(r), thousands(r.rate()), mb(r.Bytes)/r.Elapsed.Seconds(), secs(r.Elapsed), secs(r.ReadAll), readRate,
			secs(r.CPU), thousands(float64(r.Records)/r.CPU.Seconds()), mib(r.PeakRSS),
			r.Files.Files, r.Files.Datasets, size(r.Files.P50), size(r.Files.P90), size(r.Files.Max),
			r.Raw.Files, size(r.Raw.P50), size(r.Raw.Max), r.Load[0], r.Load[1])
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range b.results {
		fmt.Fprintf(w, "  %-22s %s%s\n", b.label(r)+":", r.Note, flushSummary(r.Metrics))
	}

	fmt.Fprintln(w)
	rounds := b.ratios()
	for _, rr := range rounds {
		prefix := "fhirlake / Benthos"
		if len(rounds) > 1 {
			prefix = fmt.Sprintf("round %d: fhirlake / Benthos", rr.round)
		}
		fmt.Fprintf(w, "%s, wall clock: %.2f× (raw + 17 views vs one dataset)", prefix, rr.wall)
		if rr.rawWall > 0 {
			fmt.Fprintf(w, ", %.2f× with no views", rr.rawWall)
		}
		fmt.Fprintf(w, "; per CPU-second: %.2f×", rr.cpu)
		if rr.rawCPU > 0 {
			fmt.Fprintf(w, " and %.2f×", rr.rawCPU)
		}
		if len(rounds) == 1 {
			fmt.Fprintf(w, "  %s", targets(rr.wall, rr.rawWall))
		}
		fmt.Fprintln(w)
	}
	if len(rounds) > 1 {
		med := func(get func(roundRatios) float64) (m, lo, hi float64) {
			v := make([]float64, 0, len(rounds))
			for _, rr := range rounds {
				v = append(v, get(rr))
			}
			slices.Sort(v)
			m = v[len(v)/2]
			if len(v)%2 == 0 {
				m = (v[len(v)/2-1] + v[len(v)/2]) / 2
			}
			return m, v[0], v[len(v)-1]
		}
		show := func(get func(roundRatios) float64) string {
			m, lo, hi := med(get)
			return fmt.Sprintf("%.2f× (%.2f–%.2f)", m, lo, hi)
		}
		wall, lo, hi := med(func(r roundRatios) float64 { return r.wall })
		rawWall, _, _ := med(func(r roundRatios) float64 { return r.rawWall })
		fmt.Fprintf(w, "median of %d rounds (min–max), wall clock: %.2f× (%.2f–%.2f) with views, %s with no views; per CPU-second: %s and %s  %s\n",
			len(rounds), wall, lo, hi, show(func(r roundRatios) float64 { return r.rawWall }),
			show(func(r roundRatios) float64 { return r.cpu }), show(func(r roundRatios) float64 { return r.rawCPU }), targets(wall, rawWall))
	}
	b.reportScale(w)
	if f := b.fresh; f != nil {
		fmt.Fprintf(w, "\nFreshness (fhirlake consume, default flush limits, max_age 5s): %s resources/s wanted, %.0f/s produced for %.1fs (%s records, %.1f MB/s)\n",
			thousands(float64(f.Target)), float64(f.Produced)/f.ProduceFor.Seconds(), f.ProduceFor.Seconds(), thousands(float64(f.Produced)), mb(f.Bytes)/f.ProduceFor.Seconds())
		fmt.Fprintf(w, "  produce → raw-dataset file listed: p50 %.2fs  p99 %.2fs  max %.2fs  over %s records (%d never listed)  [target p99 ≤ %v: %s]\n",
			f.P50.Seconds(), f.P99.Seconds(), f.Max.Seconds(), thousands(float64(f.Measured)), f.Missing, targetFreshP99, verdict(f.Missing == 0 && f.P99 <= targetFreshP99))
		fmt.Fprintf(w, "  peak RSS %s [target ≤ 512 MiB: %s]; CPU %.1fs (%.0f%% of one core); lag 0 %.1fs after production ended; load %.1f→%.1f\n",
			mib(f.PeakRSS), verdict(f.PeakRSS <= 512<<20), f.CPU.Seconds(), 100*f.CPU.Seconds()/(f.ProduceFor+f.CatchUp).Seconds(), f.CatchUp.Seconds(), f.Load[0], f.Load[1])
		fmt.Fprintf(w, "  %s\n", strings.TrimPrefix(flushSummary(f.Metrics), "; "))
		fmt.Fprintf(w, "  raw-dataset files %d: p50 %s, p90 %s, max %s; %d listing rounds (every %s, slowest %s, %d errors): appearance times are late by up to one round\n",
			f.Files.Files, size(f.Files.P50), size(f.Files.P90), size(f.Files.Max), f.Polls, b.o.pollEvery, f.SlowList.Round(time.Millisecond), f.ListErrs)
	}
	fmt.Fprintln(w)
	peak := max(b.loadStart[0], end[0])
	for _, r := range b.results {
		peak = max(peak, r.Load[0], r.Load[1])
	}
	if b.fresh != nil {
		peak = max(peak, b.fresh.Load[0], b.fresh.Load[1])
	}
	for _, s := range b.scale {
		peak = max(peak, s.Load[0], s.Load[1])
	}
	if peak > float64(numCPU()) {
		fmt.Fprintf(w, "The 1-minute load average reached %.1f on %d cores during this run: other work competed for the CPU and the figures are disturbed; rerun when `uptime` shows a quiet machine (CPU seconds per resource are the least affected figure).\n", peak, numCPU())
	}
	fmt.Fprintf(w, "Total benchmark time %.0fs.\n", time.Since(b.started).Seconds())
}

// label names a run in the report, with its round when there are several.
func (b *bench) label(r result) string {
	if b.o.repeat > 1 && r.Round > 0 {
		return fmt.Sprintf("%s #%d", r.Name, r.Round)
	}
	return r.Name
}

// roundRatios compares the systems of one round of throughput runs.
type roundRatios struct {
	round                      int
	wall, rawWall, cpu, rawCPU float64
}

// ratios returns, per round that ran both fhirlake and Benthos, fhirlake's
// throughput over Benthos's, in wall-clock time and per CPU-second.
func (b *bench) ratios() []roundRatios {
	var out []roundRatios
	perCPU := func(r *result) float64 { return float64(r.Records) / r.CPU.Seconds() }
	for round := 1; round <= max(b.o.repeat, 1); round++ {
		var fl, raw, bt *result
		for i := range b.results {
			r := &b.results[i]
			if r.Round != round {
				continue
			}
			switch {
			case strings.HasPrefix(r.Name, "Benthos"):
				bt = r
			case r.Name == "fhirlake consume":
				fl = r
			case r.Name == "fhirlake, no views":
				raw = r
			}
		}
		if fl == nil || bt == nil {
			continue
		}
		rr := roundRatios{round: round, wall: fl.rate() / bt.rate(), cpu: perCPU(fl) / perCPU(bt)}
		if raw != nil {
			rr.rawWall, rr.rawCPU = raw.rate()/bt.rate(), perCPU(raw)/perCPU(bt)
		}
		out = append(out, rr)
	}
	return out
}

// The targets: throughput against Benthos in wall-clock time, with the
// default views and with the raw dataset only, and freshness.
const (
	targetViews = 4.0
	targetRaw   = 7.0
	// targetFreshP99 bounds the freshness run's p99, produce → file listed.
	targetFreshP99 = 5 * time.Second
)

// targets says whether the ratios meet the throughput targets; a ratio of
// 0 (the run was not made) is left out.
func targets(views, raw float64) string {
	s := fmt.Sprintf("[target ≥ %g× with views: %s", targetViews, verdict(views >= targetViews))
	if raw > 0 {
		s += fmt.Sprintf("; ≥ %g× with no views: %s", targetRaw, verdict(raw >= targetRaw))
	}
	return s + "]"
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// flushSummary describes fhirlake's flushes from its metrics.
func flushSummary(m map[string]float64) string {
	n := m["fhirlake_consumer_flush_duration_seconds_count"]
	if n == 0 {
		return ""
	}
	var reasons []string
	for _, r := range []string{"rows", "bytes", "age", "caught-up", "memory", "revoke", "shutdown"} {
		if v := m[`fhirlake_consumer_flushes_total{reason="`+r+`"}`]; v > 0 {
			reasons = append(reasons, fmt.Sprintf("%s %.0f", r, v))
		}
	}
	return fmt.Sprintf("; flushes: %s; mean flush (encode + upload, all files) %.2fs", strings.Join(reasons, ", "), m["fhirlake_consumer_flush_duration_seconds_sum"]/n)
}
