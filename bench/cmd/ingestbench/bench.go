package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/kafkaconn"
	"fhirlake/lake"
	"fhirlake/sink"
)

// result is one consumer's catch-up over the pre-produced topic.
type result struct {
	Name    string
	Note    string
	Round   int // 1-based round of the throughput runs (-repeat)
	Records int
	Bytes   int64         // notification bytes read
	Elapsed time.Duration // process start → group lag 0
	ReadAll time.Duration // process start → every record read (fhirlake metrics; 0 unknown)
	CPU     time.Duration // user + system time of the process
	PeakRSS int64
	Files   fileStats // every object written
	Raw     fileStats // the raw-resource dataset (speed/resources)
	Rows    int64     // rows in the raw dataset
	Covered int64     // distinct Kafka records in the raw dataset
	Load    [2]float64
	Metrics map[string]float64 // the consumer's metrics just before it stopped
}

func (r result) rate() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// freshResult is the fixed-rate phase.
type freshResult struct {
	Target     int
	Produced   int
	Bytes      int64
	ProduceFor time.Duration
	CatchUp    time.Duration // end of production → lag 0
	Measured   int
	Missing    int
	P50, P99   time.Duration
	Max        time.Duration
	PeakRSS    int64
	CPU        time.Duration
	Files      fileStats
	Polls      int
	ListErrs   int
	SlowList   time.Duration
	Load       [2]float64
	Metrics    map[string]float64
}

type bench struct {
	o          options
	round      int // the round of throughput runs in progress
	id         string
	dir        string
	self       string
	brokers    []string
	kafka      config.Kafka
	conn       []kgo.Opt // kafkaconn.Options of kafka
	adm        *kadm.Client
	admCl      *kgo.Client
	topic, dlq string
	freshTopic string
	topics     []string
	groups     []string
	prefixes   []string
	inBytes    int64
	produceFor time.Duration
	results    []result
	scale      []scaleResult
	fresh      *freshResult
	loadStart  [3]float64
	started    time.Time
}

func newBench(ctx context.Context, o options) (*bench, error) {
	// The cluster as fhirlake's defaults and FHIRLAKE_KAFKA_* describe it
	// (brokers, TLS, SASL); the processes started here inherit the same
	// environment.
	defaults, err := config.Load("")
	if err != nil {
		return nil, err
	}
	k := defaults.Kafka
	conn, err := kafkaconn.Options(ctx, k)
	if err != nil {
		return nil, err
	}
	if os.Getenv("FHIRLAKE_S3_ENDPOINT") == "" {
		return nil, fmt.Errorf("FHIRLAKE_S3_ENDPOINT is not set: is the stack's env available?")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ingestbench-")
	if err != nil {
		return nil, err
	}
	adm, cl, err := newAdmin(conn)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("ib%d", time.Now().UnixNano())
	return &bench{
		o: o, id: id, dir: dir, self: self, brokers: k.Brokers, kafka: k, conn: conn, adm: adm, admCl: cl,
		topic: id + ".notifications", dlq: id + ".deadletter", freshTopic: id + ".fresh",
		loadStart: loadAvg(), started: time.Now(),
	}, nil
}

func (b *bench) all(ctx context.Context) error {
	logf("run %s: load average %.2f %.2f %.2f on %d cores; logs and configurations in %s", b.id, b.loadStart[0], b.loadStart[1], b.loadStart[2], numCPU(), b.dir)
	if b.loadStart[0] > float64(numCPU()) {
		logf("warning: the machine is busy (1-minute load %.1f > %d cores); figures will be disturbed", b.loadStart[0], numCPU())
	}
	b.topics = append(b.topics, b.topic, b.dlq)
	if err := createTopics(ctx, b.adm, int32(b.o.partitions), b.topic, b.dlq); err != nil {
		return err
	}
	gen, err := generator(b.o.tenants, b.o.records, 1)
	if err != nil {
		return err
	}
	logf("producing %d notifications for %s into %s", b.o.records, strings.Join(b.o.tenants, ", "), b.topic)
	start := time.Now()
	if b.inBytes, err = produceAll(ctx, b.conn, b.topic, gen, b.o.records); err != nil {
		return err
	}
	b.produceFor = time.Since(start)
	logf("produced %d notifications (%.1f MB) in %.1fs", b.o.records, mb(b.inBytes), b.produceFor.Seconds())

	fhirlakeRun := func(name, note string, env []string, argv func(cfg string) []string, suffix string) error {
		group := b.id + "-" + suffix
		prefix := "runs/" + b.id + "/" + suffix
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		cfg := filepath.Join(b.dir, suffix+".yaml")
		if err := fhirlakeConfig(cfg, b.brokers, b.topic, b.dlq, group, prefix, addr, filepath.Join(b.dir, suffix+"-work"), b.o.memoryLimit, b.o.tenants); err != nil {
			return err
		}
		r, err := b.catchUp(ctx, name, note, group, prefix, addr, "fhirlake_consumer_records_total", env, argv(cfg))
		if err != nil {
			return err
		}
		b.results = append(b.results, r)
		return nil
	}
	// Rounds interleave the systems, so that a change in the machine's speed
	// during the benchmark weighs on each of them alike.
	for round := 1; round <= max(b.o.repeat, 1); round++ {
		b.round = round
		sfx := ""
		if round > 1 {
			sfx = fmt.Sprintf("-r%d", round)
		}
		if b.o.runs["fhirlake"] {
			if err := fhirlakeRun("fhirlake consume", "the binary: raw dataset + 17 default views", nil,
				func(cfg string) []string {
					return []string{b.o.fhirlake, "--config", cfg, "consume", "--log-level", "warn"}
				}, "fhirlake"+sfx); err != nil {
				return err
			}
		}
		if b.o.runs["raw"] {
			if err := fhirlakeRun("fhirlake, no views", "consumer + sink packages, raw dataset only", nil,
				func(cfg string) []string { return []string{b.self, "consume", "-config", cfg, "-views", "none"} }, "raw"+sfx); err != nil {
				return err
			}
		}
		if b.o.runs["benthos"] {
			if err := b.benthosRun(ctx, sfx); err != nil {
				return err
			}
		}
	}
	if b.o.runs["replicas"] {
		for _, n := range b.o.replicas {
			if err := b.scaleOut(ctx, n); err != nil {
				return err
			}
		}
	}
	if b.o.profile != "" {
		prof, err := filepath.Abs(b.o.profile)
		if err != nil {
			return err
		}
		if err := fhirlakeRun("fhirlake, profiled", "consumer + sink packages, default views, CPU profile", []string{"INGESTBENCH_CPUPROFILE=" + prof},
			func(cfg string) []string { return []string{b.self, "consume", "-config", cfg, "-views", "default"} }, "profiled"); err != nil {
			return err
		}
		logf("CPU profile written to %s", prof)
	}
	if b.o.runs["fresh"] {
		if err := b.freshness(ctx); err != nil {
			return err
		}
	}
	return nil
}

// catchUp starts a consumer on the pre-produced topic and times it until
// its group's lag is zero, then lists what it wrote.
func (b *bench) catchUp(ctx context.Context, name, note, group, prefix, metricsAddr, readCounter string, env, argv []string) (result, error) {
	b.groups = append(b.groups, group)
	b.prefixes = append(b.prefixes, prefix)
	r := result{Name: name, Note: note, Round: b.round, Records: b.o.records, Bytes: b.inBytes}
	r.Load[0] = loadAvg()[0]
	logf("%s: consuming %d records (group %s)", name, b.o.records, group)
	p, err := startProc(name, logPath(b.dir, group), env, argv...)
	if err != nil {
		return r, err
	}
	// For the early returns, which have an error of their own to report;
	// the normal path stops it below and logs how.
	defer func() { _ = p.stop(time.Minute) }()
	watch := watchProc(p.cmd.Process.Pid, b.o.timeline)
	var readAt atomic.Int64
	mctx, stopMetrics := context.WithCancel(ctx)
	defer stopMetrics()
	if metricsAddr != "" {
		go recordsRead(mctx, metricsAddr, readCounter, b.o.records, &readAt)
	}
	end, err := waitLag(ctx, b.adm, group, b.topic, b.o.timeout, p.alive)
	if err != nil {
		watch.Stop()
		return r, fmt.Errorf("%s: %w", name, err)
	}
	r.Elapsed = end.Sub(p.start)
	if at := readAt.Load(); at != 0 {
		r.ReadAll = time.Unix(0, at).Sub(p.start)
	}
	r.CPU, _ = cpuTime(p.cmd.Process.Pid)
	r.PeakRSS = watch.Stop()
	if b.o.timeline {
		logf("%s: cores in use (process/machine):%s", name, watch.Timeline(p.start, 250*time.Millisecond))
	}
	r.Load[1] = loadAvg()[0]
	stopMetrics()
	if metricsAddr != "" {
		r.Metrics, _ = scrape(&http.Client{Timeout: 2 * time.Second}, metricsAddr)
	}
	if err := p.stop(time.Minute); err != nil {
		logf("%s: %v", name, err)
	}
	stores, err := b.stores(ctx, prefix)
	if err != nil {
		return r, err
	}
	objs, err := listAll(ctx, stores, "")
	if err != nil {
		return r, err
	}
	all := joinAll(objs)
	r.Files, r.Raw = statsOf(all), statsOf(onlyDataset(all, lake.RawDataset))
	if r.Rows, r.Covered, err = countRows(ctx, stores, objs, filepath.Join(b.dir, "verify")); err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	if r.Covered != int64(r.Records) {
		return r, fmt.Errorf("%s: the raw dataset holds %d of the %d records produced (%d rows)", name, r.Covered, r.Records, r.Rows)
	}
	logf("%s: %d records in %.1fs = %.0f resources/s, %.1f MB/s; CPU %.1fs; peak RSS %s; %d files; %d rows for %d records", name, r.Records, r.Elapsed.Seconds(), r.rate(), mb(r.Bytes)/r.Elapsed.Seconds(), r.CPU.Seconds(), mib(r.PeakRSS), r.Files.Files, r.Rows, r.Covered)
	return r, nil
}

func (b *bench) stores(ctx context.Context, prefix string) (map[string]*sink.S3, error) {
	out := map[string]*sink.S3{}
	for _, t := range b.o.tenants {
		s, err := tenantStore(ctx, t, prefix)
		if err != nil {
			return nil, err
		}
		out[t] = s
	}
	return out, nil
}

func (b *bench) benthosRun(ctx context.Context, sfx string) error {
	group := b.id + "-benthos" + sfx
	prefix := "runs/" + b.id + "/benthos" + sfx
	tenant := b.o.tenants[0]
	conf, err := benthosConfig(benthosOptions{
		Brokers: b.brokers, Kafka: b.kafka, Topic: b.topic, Group: group,
		Bucket: tenantBucket(tenant), Prefix: prefix,
		Endpoint: os.Getenv("FHIRLAKE_S3_ENDPOINT"), Region: envOr("FHIRLAKE_S3_REGION", "us-east-1"),
		AccessKey: os.Getenv(tenantEnv(tenant, "ACCESS_KEY")), SecretKey: os.Getenv(tenantEnv(tenant, "SECRET_KEY")),
		BatchCount: b.o.batchCount, BatchBytes: b.o.batchBytes, BatchPeriod: b.o.batchPeriod,
		CheckpointLimit: b.o.checkpointLimit,
	})
	if err != nil {
		return err
	}
	path := filepath.Join(b.dir, "benthos"+sfx+".yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	r, err := b.catchUp(ctx, "Benthos v4.27.0", "kafka_franz → mapping → parquet_encode → aws_s3, one bucket", group, prefix, "", "", nil,
		[]string{b.self, "benthos", "-config", path})
	if err != nil {
		return err
	}
	b.results = append(b.results, r)
	return nil
}

// freshness runs `fhirlake consume` while producing at a fixed rate and
// measures, for every record, the time from its production to the first
// listing that shows the raw-dataset file holding it.
func (b *bench) freshness(ctx context.Context) error {
	f := &freshResult{Target: b.o.rate}
	group := b.id + "-fresh"
	prefix := "runs/" + b.id + "/fresh"
	b.topics = append(b.topics, b.freshTopic)
	b.groups = append(b.groups, group)
	b.prefixes = append(b.prefixes, prefix)
	if err := createTopics(ctx, b.adm, int32(b.o.partitions), b.freshTopic); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cfg := filepath.Join(b.dir, "fresh.yaml")
	if err := fhirlakeConfig(cfg, b.brokers, b.freshTopic, b.dlq, group, prefix, addr, filepath.Join(b.dir, "fresh-work"), b.o.memoryLimit, b.o.tenants); err != nil {
		return err
	}
	total := int(float64(b.o.rate) * b.o.freshFor.Seconds())
	gen, err := generator(b.o.tenants, total, 2)
	if err != nil {
		return err
	}
	f.Load[0] = loadAvg()[0]
	p, err := startProc("fhirlake consume (freshness)", logPath(b.dir, group), nil, b.o.fhirlake, "--config", cfg, "consume", "--log-level", "warn")
	if err != nil {
		return err
	}
	// For the early returns, which have an error of their own to report;
	// the normal path stops it below and logs how.
	defer func() { _ = p.stop(time.Minute) }()
	watch := watchProc(p.cmd.Process.Pid, false)
	if err := waitStable(ctx, b.adm, group, time.Minute, p.alive); err != nil {
		watch.Stop()
		return err
	}
	stores, err := b.stores(ctx, prefix)
	if err != nil {
		watch.Stop()
		return err
	}
	app := &appearance{first: map[string]time.Time{}, size: map[string]int64{}}
	pctx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		app.poll(pctx, stores, lake.DatasetPrefix(lake.RawDataset), b.o.pollEvery)
	}()
	defer stopPoll()

	logf("freshness: producing %d resources/s for %s into %s while fhirlake consumes", b.o.rate, b.o.freshFor, b.freshTopic)
	recs := newProduced(b.o.tenants)
	if f.ProduceFor, err = producePaced(ctx, b.conn, b.freshTopic, gen, b.o.rate, b.o.freshFor, recs); err != nil {
		watch.Stop()
		return err
	}
	prodEnd := time.Now()
	f.Produced, f.Bytes = recs.count, recs.bytes
	end, err := waitLag(ctx, b.adm, group, b.freshTopic, b.o.timeout, p.alive)
	if err != nil {
		watch.Stop()
		return fmt.Errorf("freshness: %w", err)
	}
	f.CatchUp = end.Sub(prodEnd)
	// Two more listing rounds, so that the last files are seen.
	time.Sleep(2*b.o.pollEvery + 100*time.Millisecond)
	stopPoll()
	<-polled
	f.CPU, _ = cpuTime(p.cmd.Process.Pid)
	f.PeakRSS = watch.Stop()
	f.Load[1] = loadAvg()[0]
	f.Metrics, _ = scrape(&http.Client{Timeout: 2 * time.Second}, addr)
	if err := p.stop(time.Minute); err != nil {
		logf("freshness: %v", err)
	}
	f.Polls, f.ListErrs, f.SlowList = app.polls, app.errs, app.slow

	lat, missing, files := freshnessOf(recs, app, b.o.tenants)
	f.Measured, f.Missing = len(lat), missing
	f.Files = statsOf(files)
	if len(lat) > 0 {
		f.P50, f.P99, f.Max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	}
	b.fresh = f
	logf("freshness: %d records measured (%d not seen in any file): p50 %s, p99 %s, max %s; peak RSS %s", f.Measured, f.Missing, f.P50.Round(time.Millisecond), f.P99.Round(time.Millisecond), f.Max.Round(time.Millisecond), mib(f.PeakRSS))
	return nil
}

// freshnessOf matches every produced record with the earliest-seen file of
// its tenant whose offset range covers it; it returns the sorted
// latencies, the records no file covered, and the files seen.
func freshnessOf(recs *produced, app *appearance, tenants []string) ([]time.Duration, int, []sink.Object) {
	seen := map[int32][]int64{} // partition → per offset: first appearance, unix ns (0 = none)
	idx := map[string]uint8{}
	for i, t := range tenants {
		idx[t] = uint8(i)
	}
	var files []sink.Object
	for k, at := range app.first {
		tn, key, _ := strings.Cut(k, "\x00")
		files = append(files, sink.Object{Key: key, Size: app.size[k]})
		// A name shortened with a hash does not say which ranges it omits.
		name, ok := lake.ParseSpeedName(key)
		if !ok || name.Omitted > 0 {
			continue
		}
		for _, r := range name.Ranges {
			pr := recs.parts[r.Partition]
			if pr == nil {
				continue
			}
			s := seen[r.Partition]
			if s == nil {
				s = make([]int64, len(pr.ts))
				seen[r.Partition] = s
			}
			ti := idx[tn]
			for off := r.First; off <= r.Last && off < int64(len(pr.ts)); off++ {
				if pr.ts[off] == 0 || pr.tenant[off] != ti {
					continue
				}
				if s[off] == 0 || at.UnixNano() < s[off] {
					s[off] = at.UnixNano()
				}
			}
		}
	}
	var lat []time.Duration
	missing := 0
	for part, pr := range recs.parts {
		s := seen[part]
		for off, ts := range pr.ts {
			if ts == 0 {
				continue
			}
			if s == nil || s[off] == 0 {
				missing++
				continue
			}
			lat = append(lat, time.Duration(s[off]-ts))
		}
	}
	slices.Sort(lat)
	return lat, missing, files
}

// cleanup removes the run's topics, groups and objects unless -keep; the
// logs stay when the run failed.
func (b *bench) cleanup(failed bool) {
	defer b.admCl.Close()
	if failed {
		logf("logs kept in %s", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	if b.o.keep {
		logf("keeping topics %v, groups %v and prefixes %v", b.topics, b.groups, b.prefixes)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := 0
	for _, prefix := range b.prefixes {
		stores, err := b.stores(ctx, prefix)
		if err == nil {
			var k int
			k, err = deleteAll(ctx, stores)
			n += k
		}
		if err != nil {
			logf("cleanup %s: %v", prefix, err)
		}
	}
	if len(b.groups) > 0 {
		if _, err := b.adm.DeleteGroups(ctx, b.groups...); err != nil {
			logf("cleanup groups: %v", err)
		}
	}
	if len(b.topics) > 0 {
		if _, err := b.adm.DeleteTopics(ctx, b.topics...); err != nil {
			logf("cleanup topics: %v", err)
		}
	}
	logf("cleaned up: %d topics, %d groups, %d objects", len(b.topics), len(b.groups), n)
}
