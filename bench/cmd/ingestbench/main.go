// Command ingestbench measures fhirlake's ingestion against the real local
// stack (Kafka and the S3 server of deploy/local/stack): end-to-end
// throughput of `fhirlake consume`, the files it writes, its peak memory,
// freshness at a fixed input rate, and the same records through a Benthos
// pipeline (kafka_franz → mapping → parquet_encode → aws_s3) for comparison.
//
// Every run is isolated: its own topics, consumer groups and key prefix in
// each tenant's bucket, all removed at the end (-keep leaves them). The
// stack is started if it is down and stopped again afterwards.
//
//	ingestbench -fhirlake bin/fhirlake -stack deploy/local/stack
//
// Build it with -tags duckdb_arrow and -ldflags=-checklinkname=0 (Benthos's
// Parquet library links to runtime internals that Go 1.26 otherwise
// refuses): `make bench-ingest` does both.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

type options struct {
	fhirlake    string
	stackScript string
	tenants     []string
	records     int
	rate        int
	freshFor    time.Duration
	pollEvery   time.Duration
	timeout     time.Duration
	runs        map[string]bool
	profile     string
	keep        bool
	partitions  int
	// memoryLimit is fhirlake's memory.limit ("" or "0": not set).
	memoryLimit string
	timeline    bool
	repeat      int
	// replicas are the group sizes of the scale-out runs, each started
	// replicaStagger after the previous.
	replicas       []int
	replicaStagger time.Duration
	// Benthos batching, per partition at its input: fhirlake's flush limits.
	batchCount      int
	batchBytes      int64
	batchPeriod     time.Duration
	checkpointLimit int
}

func main() {
	// The consumers under test run as processes of this binary.
	subcommands := map[string]func([]string) error{"consume": runConsume, "benthos": runBenthos}
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "ingestbench", os.Args[1]+":", err)
				os.Exit(1)
			}
			return
		}
	}
	var o options
	var tenants string
	flag.StringVar(&o.fhirlake, "fhirlake", "bin/fhirlake", "the fhirlake binary (built with -tags duckdb_arrow)")
	flag.StringVar(&o.stackScript, "stack", "deploy/local/stack", "the local stack script")
	flag.StringVar(&tenants, "tenants", "acme,globex,initech", "tenants of the synthetic stream")
	flag.IntVar(&o.records, "records", 300_000, "notifications for the throughput runs (one resource each)")
	flag.IntVar(&o.rate, "rate", 20_000, "resources per second in the freshness run")
	flag.DurationVar(&o.freshFor, "fresh-for", 60*time.Second, "how long the freshness run produces")
	flag.DurationVar(&o.pollEvery, "poll", 200*time.Millisecond, "bucket listing interval in the freshness run")
	flag.DurationVar(&o.timeout, "timeout", 4*time.Minute, "longest wait for a consumer to catch up")
	runs := flag.String("runs", "fhirlake,raw,benthos,replicas,fresh", "what to run: fhirlake (the binary), raw (fhirlake's packages with no views), benthos, replicas (several fhirlake consume in one group, see -replicas), fresh (the freshness phase)")
	replicas := flag.String("replicas", "2,3", "group sizes of the replicas runs: fhirlake consume processes in one consumer group on the topic")
	flag.DurationVar(&o.replicaStagger, "replica-stagger", 0, "time between the starts of a replicas run's processes (0: together, gathered by the group's initial rebalance delay); a later start is a rebalance while the group consumes")
	flag.StringVar(&o.profile, "cpuprofile", "", "also run fhirlake's consumer with the default views in a profiled process and write its CPU profile here")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's topics, groups and objects")
	flag.IntVar(&o.partitions, "partitions", 6, "partitions of the benchmark topics")
	flag.StringVar(&o.memoryLimit, "memory-limit", "512MiB", "fhirlake's memory.limit in every run (0: not set)")
	flag.IntVar(&o.batchCount, "benthos-batch-count", 100_000, "Benthos batch: records (fhirlake flush.max_rows)")
	flag.Int64Var(&o.batchBytes, "benthos-batch-bytes", 64<<20, "Benthos batch: bytes (fhirlake flush.max_bytes)")
	flag.DurationVar(&o.batchPeriod, "benthos-batch-period", 5*time.Second, "Benthos batch: period (fhirlake flush.max_age)")
	flag.IntVar(&o.checkpointLimit, "benthos-checkpoint-limit", 200_000, "Benthos kafka_franz checkpoint_limit (must exceed a batch)")
	flag.IntVar(&o.repeat, "repeat", 3, "rounds of the throughput runs, each system once per round in turn; ratios are reported per round and as the median")
	flag.BoolVar(&o.timeline, "timeline", false, "print the cores each consumer (and the whole machine) used over every quarter second")
	flag.Parse()
	o.tenants = strings.Split(tenants, ",")
	o.runs = map[string]bool{}
	for _, r := range strings.Split(*runs, ",") {
		switch r = strings.TrimSpace(r); r {
		case "fhirlake", "raw", "benthos", "replicas", "fresh":
			o.runs[r] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "ingestbench: unknown run %q in -runs\n", r)
			os.Exit(2)
		}
	}
	for _, r := range strings.Split(*replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "ingestbench: -replicas: %q is not a number of replicas (1 or more)\n", r)
			os.Exit(2)
		}
		o.replicas = append(o.replicas, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ingestbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.fhirlake, err = filepath.Abs(o.fhirlake); err != nil {
		return err
	}
	if _, err := os.Stat(o.fhirlake); err != nil {
		return fmt.Errorf("fhirlake binary: %w (run make build)", err)
	}
	st := &stack{script: o.stackScript}
	if err := st.ensure(90 * time.Second); err != nil {
		return err
	}
	defer st.restore()
	if err := st.exportEnv(); err != nil {
		return err
	}
	b, err := newBench(ctx, o)
	if err != nil {
		return err
	}
	err = b.all(ctx)
	b.cleanup(err != nil)
	if err != nil {
		return err
	}
	b.report(os.Stdout)
	return nil
}
