//go:build integration

// Failure tests against the real local stack: consumers killed at random,
// scaled in and out, a broker restarted under them, the object store taken
// away for half a minute, and ten tenants interleaved at random. Each ends
// with the exact expected state of every tenant's lake and, where every
// record yields one row, with no Kafka offset missing.
package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fhirlake/consumer"
	"fhirlake/sink"
)

// failureConfig makes a group notice a crashed member within seconds and
// flushes often enough that a kill can land anywhere in a flush: building,
// uploading, or between the upload and the commit.
const failureConfig = `
kafka:
  session_timeout: 6s
flush:
  max_rows: 20000
  max_age: 1s
`

// isolationTenants are the tenants `deploy/local/stack up` provisions.
var isolationTenants = []string{"acme", "globex", "initech", "umbrella", "hooli", "soylent", "tyrell", "wonka", "cyberdyne", "massive-dynamic"}

// testSeed is a random seed for the test's own random choices, logged so a
// failing run can be repeated with FHIRLAKE_IT_SEED.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FHIRLAKE_IT_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("FHIRLAKE_IT_SEED: %v", err)
		}
	}
	t.Logf("seed %d (repeat with FHIRLAKE_IT_SEED=%d)", seed, seed)
	return seed
}

// TestIntegrationCrashLoop: a consumer SIGKILLed at random moments at least
// 20 times while it works through 200k notifications of three tenants, and
// restarted at once each time; then one last consumer catches up. Nothing
// may be lost: every offset of every partition is in the lake, and the lake
// holds exactly the expected state. Duplicates (replays of ranges that were
// uploaded but not committed) are allowed; readers collapse them.
func TestIntegrationCrashLoop(t *testing.T) {
	st := needStack(t)
	began := time.Now()
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	r := newRun(t, st, itTenants, bucket, failureConfig)
	r.dropOnSuccess(t, st, itTenants)
	s := r.newStream(t, st, streamOptions(itTenants, 2850, 11))
	if s.total < 200_000 {
		t.Fatalf("stream of %d notifications, want at least 200k", s.total)
	}
	adm := r.admin(t, st)

	// The stream is produced while the consumer dies and restarts, at a pace
	// that ends it around the last kill, so that every kill hits a consumer
	// with records in flight. The pace adapts to the measured length of a
	// life (join, work, kill).
	const minKills = 20
	var kills atomic.Int64
	var life atomic.Int64 // mean life so far, ns
	life.Store(int64(9 * time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	produced := make(chan struct{})
	var produceErr error
	defer func() { cancel(); <-produced }()
	go func() {
		defer close(produced)
		const step = 200 * time.Millisecond
		for s.left() > 0 {
			n := s.left()
			if k := kills.Load(); k < minKills {
				rest := time.Duration(minKills-k) * time.Duration(life.Load())
				n = max(int(int64(n)*int64(step)/int64(rest)), 1)
			}
			if produceErr = s.produce(ctx, n); produceErr != nil {
				return
			}
			select {
			case <-time.After(step):
			case <-ctx.Done():
				produceErr = ctx.Err()
				return
			}
		}
	}()
	producing := func() bool {
		select {
		case <-produced:
			if produceErr != nil {
				t.Fatal(produceErr)
			}
			return false
		default:
			return true
		}
	}

	var joins, inFlight []time.Duration
	var uncommitted []int64
	for kills.Load() < minKills || producing() {
		m := r.startMember(t, fmt.Sprintf("life%02d", kills.Load()+1))
		joins = append(joins, m.waitWorking(t, 2*time.Minute))
		d := 500*time.Millisecond + time.Duration(rng.Int64N(int64(3500*time.Millisecond)))
		time.Sleep(d)
		m.requireAlive(t)
		if lag, err := consumer.Lag(context.Background(), adm, r.group, []string{r.topic}); err == nil {
			uncommitted = append(uncommitted, lag.Total)
		}
		m.kill(t)
		inFlight = append(inFlight, d)
		n := kills.Add(1)
		life.Store(int64(time.Since(began) / time.Duration(n)))
		if n >= 3*minKills {
			t.Fatalf("%d kills and %d records still to produce: the producer cannot keep up", n, s.left())
		}
	}
	<-produced
	if produceErr != nil {
		t.Fatal(produceErr)
	}
	killPhase := time.Since(began)
	busy := 0
	for _, n := range uncommitted {
		if n > 0 {
			busy++
		}
	}

	last := r.startMember(t, "last")
	catchUp := time.Now()
	r.waitLag(t, adm, 5*time.Minute)
	caughtUp := time.Since(catchUp)
	last.requireAlive(t)
	last.stop(t)

	exp := s.expect(t, r)
	rep := r.verifyLake(t, st, adm, itTenants, exp, true)
	overlaps := 0
	for _, tn := range itTenants {
		overlaps += overlappingFiles(t, r.speedNames[tn])
	}
	t.Logf("%d notifications (%d resources), %d SIGKILLs in %s; join-to-work after a restart: mean %s, max %s; killed %s after work started (mean); %d kills with records not yet committed: mean %d, max %d",
		s.total, exp.counts.Resources, kills.Load(), killPhase.Round(time.Second), mean(joins).Round(10*time.Millisecond), maxOf(joins).Round(10*time.Millisecond),
		mean(inFlight).Round(10*time.Millisecond), busy, meanInt(uncommitted), maxInt(uncommitted))
	t.Logf("last consumer caught up in %s; lake: %d rows, %d duplicates in resources_all (rows minus distinct type/id/version), %d raw files overlapping another file's offsets (ranges replayed after an upload without commit); consumer logs: %s; total %s",
		caughtUp.Round(100*time.Millisecond), rep.rows, rep.duplicates, overlaps, r.logSummary(), time.Since(began).Round(time.Second))
}

// TestIntegrationRebalance: one consumer, then three, then one again, in
// one group, while the stream is produced in three slices. Members join and
// leave (SIGTERM) with records in flight; nothing is lost.
func TestIntegrationRebalance(t *testing.T) {
	st := needStack(t)
	began := time.Now()
	r := newRun(t, st, itTenants, bucket, failureConfig)
	r.dropOnSuccess(t, st, itTenants)
	s := r.newStream(t, st, streamOptions(itTenants, 1300, 12))
	adm := r.admin(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	third := s.total / 3
	const partitions = 6

	a := r.startMember(t, "a")
	if err := s.paced(ctx, third, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r.waitCommitted(t, adm, int64(third), 2*time.Minute, a)

	// 1 → 3 while the second slice streams in.
	produced := make(chan error, 1)
	go func() { produced <- s.paced(ctx, third, 12*time.Second) }()
	b, c := r.startMember(t, "b"), r.startMember(t, "c")
	scaleOut := r.waitGroup(t, adm, partitions, time.Minute, a, b, c)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.waitCommitted(t, adm, int64(2*third), 2*time.Minute, a, b, c)
	for _, m := range []*member{b, c} {
		if n, _ := m.metric("fhirlake_consumer_records_total"); n == 0 {
			t.Errorf("member %s consumed nothing while it held partitions", m.name)
		}
	}

	// 3 → 1 while the last slice streams in.
	go func() { produced <- s.paced(ctx, -1, 12*time.Second) }()
	time.Sleep(3 * time.Second)
	b.terminate()
	c.terminate()
	stopB, stopC := b.waitStopped(t), c.waitStopped(t)
	scaleIn := r.waitGroup(t, adm, partitions, time.Minute, a)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.waitLag(t, adm, 3*time.Minute)
	a.requireAlive(t)
	m, _ := scrapeAddr(a.metrics)
	a.stop(t)

	exp := s.expect(t, r)
	rep := r.verifyLake(t, st, adm, itTenants, exp, true)
	// Every handoff was graceful: a member gives up a partition only after
	// flushing and committing it, so its new owner starts exactly where the
	// old one stopped.
	if rep.duplicates != 0 {
		t.Errorf("%d duplicate rows after graceful rebalances, want 0: a revoked or stopped member did not commit what it had stored", rep.duplicates)
	}
	t.Logf("consumer log: %s", r.logSummary())
	t.Logf("%d notifications; 1→3 members balanced in %s, b and c stopped in %s and %s, 3→1 balanced in %s; member a flushed on revoke %v times; lake: %d rows, %d duplicates; total %s",
		s.total, scaleOut.Round(10*time.Millisecond), stopB.Round(10*time.Millisecond), stopC.Round(10*time.Millisecond), scaleIn.Round(10*time.Millisecond),
		m[`fhirlake_consumer_flushes_total{reason="revoke"}`], rep.rows, rep.duplicates, time.Since(began).Round(time.Second))
}

// TestIntegrationBrokerRestart: the Kafka broker is restarted cleanly, and
// later killed and started again, under a consumer working through a live
// stream. The consumer must carry on by itself; nothing is lost.
func TestIntegrationBrokerRestart(t *testing.T) {
	st := needStack(t)
	keepServiceRunning(t, "kafka")
	began := time.Now()
	r := newRun(t, st, itTenants, bucket, failureConfig)
	r.dropOnSuccess(t, st, itTenants)
	s := r.newStream(t, st, streamOptions(itTenants, 850, 13))
	adm := r.admin(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	a := r.startMember(t, "a")
	produced := make(chan error, 1)
	go func() { produced <- s.paced(ctx, -1, 40*time.Second) }()

	type outage struct {
		how            string
		down, recovery time.Duration
		committed      int64 // when the broker was back
	}
	var outages []outage
	for _, step := range []struct {
		at   int64 // committed records before the outage
		how  string
		args [][]string
	}{
		{int64(s.total / 4), "restart (SIGTERM, start)", [][]string{{"restart", "kafka"}}},
		{int64(s.total / 2), "crash (SIGKILL, start)", [][]string{{"kill", "kafka"}, {"start", "kafka"}}},
	} {
		r.waitCommitted(t, adm, step.at, 3*time.Minute, a)
		o := outage{how: step.how}
		for _, args := range step.args {
			o.down += stackCmd(t, args...)
		}
		a.requireAlive(t)
		// Recovered: the consumer commits beyond what the group had
		// committed when the broker was back.
		o.committed = r.committedNow(t, adm, time.Minute)
		o.recovery = r.waitCommitted(t, adm, o.committed+1, 3*time.Minute, a)
		outages = append(outages, o)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.waitLag(t, adm, 3*time.Minute)
	a.requireAlive(t)
	a.stop(t)

	exp := s.expect(t, r)
	rep := r.verifyLake(t, st, adm, itTenants, exp, true)
	for _, o := range outages {
		t.Logf("broker %s: broker back after %s; consumer committing again %s later (from %d committed records)",
			o.how, o.down.Round(100*time.Millisecond), o.recovery.Round(100*time.Millisecond), o.committed)
	}
	t.Logf("%d notifications; lake: %d rows, %d duplicates; consumer log: %s; total %s", s.total, rep.rows, rep.duplicates, r.logSummary(), time.Since(began).Round(time.Second))
}

// TestIntegrationStorageOutage: the S3 server goes away for 30 s under a
// working consumer. Nothing may be committed meanwhile (no file can become
// durable), the consumer must keep running, and once the server is back it
// must carry on by itself; nothing is lost.
func TestIntegrationStorageOutage(t *testing.T) {
	st := needStack(t)
	keepServiceRunning(t, "s3")
	began := time.Now()
	// A small memory budget: what piles up while nothing can be stored must
	// stay within it.
	const budget = 48 << 20
	r := newRun(t, st, itTenants, bucket, `
kafka:
  session_timeout: 6s
flush:
  max_rows: 20000
  max_bytes: 16MiB
  max_age: 1s
memory:
  max_buffered_bytes: 48MiB
`)
	r.dropOnSuccess(t, st, itTenants)
	s := r.newStream(t, st, streamOptions(itTenants, 850, 14))
	adm := r.admin(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	a := r.startMember(t, "a")
	produced := make(chan error, 1)
	go func() { produced <- s.paced(ctx, -1, 45*time.Second) }()
	r.waitCommitted(t, adm, int64(s.total/4), 3*time.Minute, a)

	const outage = 30 * time.Second
	down := time.Now()
	stopTook := stackCmd(t, "stop", "s3")
	// A flush whose uploads all returned before the server went away may
	// still commit: let it.
	time.Sleep(time.Second)
	frozen, err := committedOffsets(context.Background(), adm, r.group, r.topic)
	if err != nil {
		t.Fatal(err)
	}
	samples := 0
	var maxBuffered, maxPaused, flushErrors float64
	for time.Since(down) < outage {
		time.Sleep(min(5*time.Second, max(outage-time.Since(down), 0)))
		a.requireAlive(t)
		got, err := committedOffsets(context.Background(), adm, r.group, r.topic)
		if err != nil {
			t.Fatal(err)
		}
		samples++
		if fmt.Sprint(got) != fmt.Sprint(frozen) {
			t.Fatalf("committed offsets moved while no file could be stored: %v, then %v", frozen, got)
		}
		if m, err := scrapeAddr(a.metrics); err == nil {
			maxBuffered = max(maxBuffered, m["fhirlake_consumer_buffered_bytes"])
			maxPaused = max(maxPaused, m["fhirlake_consumer_paused_partitions"])
			flushErrors = m["fhirlake_consumer_flush_errors_total"]
		}
	}
	if samples < 4 {
		t.Fatalf("only %d samples of the committed offsets during the outage", samples)
	}
	if flushErrors == 0 {
		t.Errorf("no failed flush reported during the outage")
	}
	if limit := float64(budget + consumer.FetchMaxBytes(budget)); maxBuffered > limit {
		t.Errorf("%.1f MiB buffered during the outage, beyond the budget plus one fetch (%.1f MiB)", maxBuffered/(1<<20), limit/(1<<20))
	}
	// The offsets are frozen, so the first commit seen is the first one
	// after the server came back.
	back := r.watchCommitted(t, adm, sumOffsets(frozen))
	restart := time.Now()
	startTook := stackCmd(t, "start", "s3")
	outageLasted := time.Since(down)
	var recovery time.Duration
	select {
	case at := <-back:
		recovery = at.Sub(restart)
	case <-time.After(3 * time.Minute):
		t.Fatalf("nothing committed within 3m of S3 being back")
	}
	a.requireAlive(t)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.waitLag(t, adm, 3*time.Minute)
	a.requireAlive(t)
	a.stop(t)

	exp := s.expect(t, r)
	rep := r.verifyLake(t, st, adm, itTenants, exp, true)
	t.Logf("S3 down %s (stop %s, start %s); committed offsets unchanged over %d samples at %d records; during the outage: %v failed flushes, up to %.1f MiB buffered, up to %v partitions paused; first commit %s after `stack start s3` was issued",
		outageLasted.Round(100*time.Millisecond), stopTook.Round(100*time.Millisecond), startTook.Round(100*time.Millisecond), samples, sumOffsets(frozen),
		flushErrors, maxBuffered/(1<<20), maxPaused, recovery.Round(100*time.Millisecond))
	t.Logf("%d notifications; lake: %d rows, %d duplicates; consumer log: %s; total %s", s.total, rep.rows, rep.duplicates, r.logSummary(), time.Since(began).Round(time.Second))
}

// TestIntegrationTenantIsolation: ten tenants' notifications interleaved at
// random on the same topic. Every tenant's bucket, read with that tenant's
// key, holds exactly that tenant's expected state and not one row of
// another tenant, in the raw dataset and in every view; and no tenant's key
// can read or write another tenant's bucket.
func TestIntegrationTenantIsolation(t *testing.T) {
	st := needStack(t)
	began := time.Now()
	for _, tn := range isolationTenants {
		if os.Getenv(envName(tn, "ACCESS_KEY")) == "" {
			t.Fatalf("%s is not set: run deploy/local/stack up (it provisions %d tenants) and eval \"$(deploy/local/stack env)\"", envName(tn, "ACCESS_KEY"), len(isolationTenants))
		}
	}
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	r := newRun(t, st, isolationTenants, bucket, "")
	r.dropOnSuccess(t, st, isolationTenants)
	s := r.newShuffledStream(t, st, streamOptions(isolationTenants, 120, int64(seed%1_000_000)), seed)
	adm := r.admin(t, st)
	if err := s.produce(context.Background(), -1); err != nil {
		t.Fatal(err)
	}
	a := r.startMember(t, "a")
	r.waitLag(t, adm, 3*time.Minute)
	a.requireAlive(t)
	a.stop(t)

	exp := s.expect(t, r)
	rep := r.verifyLake(t, st, adm, isolationTenants, exp, true)
	ctx := context.Background()
	views := 0
	for _, tn := range isolationTenants {
		sess := rep.sessions[tn]
		for _, v := range sess.Views {
			views++
			if n := scalar[int64](t, sess, fmt.Sprintf("SELECT count(*) FROM %s_all WHERE _tenant IS DISTINCT FROM '%s'", v, tn)); n != 0 {
				t.Errorf("tenant %s: view %s holds %d rows of other tenants", tn, v, n)
			}
		}
	}

	// Every tenant's key is refused on every other tenant's bucket, and on
	// one of them, chosen at random, for reading an object and writing one.
	f := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(f, []byte("probe"), 0o644); err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for i, tn := range isolationTenants {
		others := make([]string, 0, len(isolationTenants)-1)
		for _, o := range isolationTenants {
			if o != tn {
				others = append(others, o)
			}
		}
		for _, o := range others {
			intruder := storeFor(t, st, tn, bucket(o))
			if _, err := intruder.List(ctx, r.prefix+"/"); !errors.Is(err, sink.ErrAccessDenied) {
				t.Errorf("%s's key listing %s: got %v, want access denied", tn, bucket(o), err)
			} else {
				refusals++
			}
		}
		o := others[rng.IntN(len(others))]
		objs, err := storeFor(t, st, o, "").List(ctx, r.prefix+"/speed/")
		if err != nil || len(objs) == 0 {
			t.Fatalf("%s's objects: %d, %v", o, len(objs), err)
		}
		intruder := storeFor(t, st, tn, bucket(o))
		if err := intruder.Get(ctx, objs[rng.IntN(len(objs))].Key, discard{}); !errors.Is(err, sink.ErrAccessDenied) {
			t.Errorf("%s's key reading an object of %s: got %v, want access denied", tn, o, err)
		} else {
			refusals++
		}
		if err := intruder.Put(ctx, fmt.Sprintf("%s/intrusion-%d.parquet", r.prefix, i), f); !errors.Is(err, sink.ErrAccessDenied) {
			t.Errorf("%s's key writing into %s: got %v, want access denied", tn, bucket(o), err)
		} else {
			refusals++
		}
	}
	perTenant := make([]string, 0, len(isolationTenants))
	for _, tn := range isolationTenants {
		perTenant = append(perTenant, fmt.Sprintf("%s %d", tn, len(exp.state[tn])))
	}
	t.Logf("%d notifications of %d tenants interleaved at random; resources per tenant: %s; lake: %d rows, %d duplicates, %d tenant views checked; %d cross-tenant requests refused; total %s",
		s.total, len(isolationTenants), strings.Join(perTenant, ", "), rep.rows, rep.duplicates, views, refusals, time.Since(began).Round(time.Second))
}

// storeFor is a store over bucket (the tenant's own when empty) reached
// with the tenant's own key, at the bucket's root.
func storeFor(t *testing.T, st stack, tenant, bkt string) *sink.S3 {
	t.Helper()
	if bkt == "" {
		bkt = bucket(tenant)
	}
	s, err := sink.NewS3(context.Background(), sink.S3Options{
		Bucket: bkt, Endpoint: st.endpoint, PathStyle: true,
		AccessKey: os.Getenv(envName(tenant, "ACCESS_KEY")), SecretKey: os.Getenv(envName(tenant, "SECRET_KEY")),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// overlappingFiles counts the raw-dataset files of a tenant lake (their
// names) whose Kafka offset range overlaps another file's on the same partition:
// each is a range that was uploaded, not committed, and replayed with other
// boundaries.
func overlappingFiles(t *testing.T, files []string) int {
	t.Helper()
	type span struct{ first, last int64 }
	byPartition := map[string][]span{}
	for _, f := range files {
		// <topic>-<partition>-<first>-<last>.parquet; topics have no dashes here
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".parquet"), "-")
		if len(parts) < 4 {
			t.Fatalf("unexpected file name %s", f)
		}
		n := len(parts)
		first, err1 := strconv.ParseInt(parts[n-2], 10, 64)
		last, err2 := strconv.ParseInt(parts[n-1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("unexpected file name %s", f)
		}
		p := strings.Join(parts[:n-2], "-")
		byPartition[p] = append(byPartition[p], span{first, last})
	}
	n := 0
	for _, spans := range byPartition {
		sort.Slice(spans, func(i, j int) bool { return spans[i].first < spans[j].first })
		reach := int64(-1)
		for i, s := range spans {
			if i > 0 && s.first <= reach {
				n++
			}
			reach = max(reach, s.last)
		}
	}
	return n
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func meanInt(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	var sum int64
	for _, x := range xs {
		sum += x
	}
	return sum / int64(len(xs))
}

func maxInt(xs []int64) int64 {
	var m int64
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
