//go:build integration

// Helpers for the integration tests that break things on purpose: consumer
// processes that are killed, restarted and scaled, a producer that can pace
// a synthetic stream, control of the local stack's services, and the final
// check that a run's lake holds exactly the expected state with no gap in
// Kafka offsets.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"fhirlake/internal/testenv"
	"fhirlake/query"
	"fhirlake/sink"
	"fhirlake/synth"
)

// mergeYAML overlays extra onto base, key by key in nested mappings; any
// other value in extra (a scalar or a list) replaces the base value.
func mergeYAML(base, extra string) (string, error) {
	var b, e map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		return "", fmt.Errorf("base config: %w", err)
	}
	if err := yaml.Unmarshal([]byte(extra), &e); err != nil {
		return "", fmt.Errorf("extra config: %w", err)
	}
	out, err := yaml.Marshal(overlay(b, e))
	return string(out), err
}

func overlay(base, extra map[string]any) map[string]any {
	if base == nil {
		base = map[string]any{}
	}
	for k, v := range extra {
		if em, ok := v.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				base[k] = overlay(bm, em)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// ---------------------------------------------------------------- members --

// member is one `fhirlake consume` process of a run's consumer group, with
// its own metrics address and log file.
type member struct {
	name    string
	cmd     *exec.Cmd
	metrics string
	log     string
	started time.Time
	// stopping is when SIGTERM was sent.
	stopping time.Time
	exited   chan struct{} // closed once the process has exited
	err      error         // its exit status, set before exited is closed
}

// startMember starts `fhirlake consume` for the run. Every member gets a
// metrics address and Kafka client id of its own through the environment,
// so that several can run side by side on one configuration. Its log is
// printed when the test fails.
func (r *run) startMember(t *testing.T, name string) *member {
	t.Helper()
	m := &member{name: name, metrics: freeAddr(t), log: filepath.Join(r.dir, "consume-"+name+".log"), exited: make(chan struct{})}
	m.cmd = r.cmd(context.Background(), "consume", "--log-level", "info")
	m.cmd.Env = append(m.cmd.Env, "FHIRLAKE_METRICS_LISTEN="+m.metrics, "FHIRLAKE_KAFKA_CLIENT_ID=fhirlake-"+name)
	logf, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	r.members = append(r.members, m)
	go func() {
		m.err = m.cmd.Wait()
		logf.Close()
		close(m.exited)
	}()
	t.Cleanup(func() {
		if m.alive() {
			// ErrProcessDone: it exited since alive looked, and exited is closed.
			if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("kill consumer %s: %v", m.name, err)
			} else {
				<-m.exited
			}
		}
		if t.Failed() {
			logTail(t, m.log, 25)
		}
	})
	return m
}

func (m *member) alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL: a crash, nothing flushed, nothing committed.
func (m *member) kill(t *testing.T) {
	t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill consumer %s: %v", m.name, err)
	}
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("consumer %s still running 30s after SIGKILL", m.name)
	}
}

// stop sends SIGTERM and requires a clean exit within the shutdown budget.
// It returns how long the member took to flush, commit and leave.
func (m *member) stop(t *testing.T) time.Duration {
	t.Helper()
	m.terminate()
	return m.waitStopped(t)
}

// terminate sends SIGTERM without waiting, so that several members can
// leave at once. It first waits (up to a minute) until the process answers
// /readyz: a signal that arrives before the process has installed its
// handler would kill it outright instead of shutting it down.
func (m *member) terminate() {
	deadline := time.Now().Add(time.Minute)
	c := http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			deadline = time.Time{}
			continue
		default:
		}
		resp, err := c.Get("http://" + m.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stopping = time.Now()
	// It fails only when the member has already exited; waitStopped then
	// reports how it ended.
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
}

// waitStopped waits for the exit that terminate asked for and requires it
// to be clean. It returns the time since the signal.
func (m *member) waitStopped(t *testing.T) time.Duration {
	t.Helper()
	select {
	case <-m.exited:
		if m.err != nil {
			t.Fatalf("consumer %s exited with %v after SIGTERM", m.name, m.err)
		}
	case <-time.After(60 * time.Second):
		_ = m.cmd.Process.Kill() // the test fails either way; this only stops the process
		t.Fatalf("consumer %s did not exit within 60s of SIGTERM", m.name)
	}
	return time.Since(m.stopping)
}

// requireAlive fails the test when the member has exited on its own.
func (m *member) requireAlive(t *testing.T) {
	t.Helper()
	if !m.alive() {
		t.Fatalf("consumer %s exited on its own: %v", m.name, m.err)
	}
}

// metric is the value of one metric of the member (summed over labels); ok
// is false while its metrics endpoint does not answer.
func (m *member) metric(name string) (v float64, ok bool) {
	got, err := scrapeAddr(m.metrics)
	if err != nil {
		return 0, false
	}
	return got[name], true
}

// waitWorking waits until the member has received records, that is until it
// has joined the group, got partitions and polled them. It returns the time
// since the process started.
func (m *member) waitWorking(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m.requireAlive(t)
		if n, ok := m.metric("fhirlake_consumer_records_total"); ok && n > 0 {
			return time.Since(m.started)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("consumer %s received no record within %s of its start", m.name, timeout)
	return 0
}

// scrapeAddr reads a /metrics endpoint, summing every metric over its
// labels (keyed by name) and per single label (name{label="value"}).
func scrapeAddr(addr string) (map[string]float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out[name] += v
			for _, l := range m.GetLabel() {
				out[fmt.Sprintf("%s{%s=%q}", name, l.GetName(), l.GetValue())] += v
			}
		}
	}
	return out, nil
}

// logSummary counts the warnings and errors in the logs of every member of
// the run, by message: "3× commit failed; range will replay, …".
func (r *run) logSummary() string {
	counts := map[string]int{}
	for _, m := range r.members {
		f, err := os.Open(m.log)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if g := logLine.FindStringSubmatch(sc.Text()); g != nil {
				counts[g[1]+" "+strings.Trim(g[2], `"`)]++
			}
		}
		f.Close()
	}
	if len(counts) == 0 {
		return "no warnings"
	}
	msgs := make([]string, 0, len(counts))
	for msg := range counts {
		msgs = append(msgs, msg)
	}
	sort.Slice(msgs, func(i, j int) bool {
		return counts[msgs[i]] > counts[msgs[j]] || counts[msgs[i]] == counts[msgs[j]] && msgs[i] < msgs[j]
	})
	out := make([]string, len(msgs))
	for i, msg := range msgs {
		out[i] = fmt.Sprintf("%d× %s", counts[msg], msg)
	}
	return strings.Join(out, "; ")
}

// logLine matches the level and message of a warning or error in slog's
// text format.
var logLine = regexp.MustCompile(`level=(WARN|ERROR) msg=("[^"]*"|\S+)`)

// logTail prints the last n lines of a consumer's log.
func logTail(t *testing.T, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	t.Logf("--- last %d lines of %s:\n%s", len(lines), filepath.Base(path), strings.Join(lines, "\n"))
}

// ---------------------------------------------------------------- stream --

// stream produces a synthetic notification stream to a run's topic, in
// slices and at a chosen pace. The expected state is the generator's, written
// and read back through the same file format as `fhirlake generate --expect`.
type stream struct {
	gen      *synth.Generator
	next     func() (synth.Record, bool)
	cl       *kgo.Client
	topic    string
	total    int
	produced atomic.Int64
	mu       sync.Mutex // one producing call at a time
}

// streamOptions are the generator options of the failure tests: every
// record is an event notification with one change, so that every Kafka
// offset yields exactly one row.
func streamOptions(tenants []string, patients int, seed int64) synth.Options {
	o := synth.DefaultOptions()
	o.Tenants, o.Patients, o.Seed = tenants, patients, seed
	o.Controls, o.Malformed, o.Unroutable = 0, 0, 0
	return o
}

// newStream creates the run's topics and a producer for the stream that
// opts describe, in the generator's order.
func (r *run) newStream(t *testing.T, st stack, opts synth.Options) *stream {
	t.Helper()
	gen, err := synth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r.streamOf(t, st, gen, gen.Next)
}

// newShuffledStream is newStream with the tenants' notifications interleaved
// at random (seeded): each tenant's own records keep their order, so every
// resource's versions still arrive in order, but which tenant comes next is
// drawn in proportion to what each has left.
func (r *run) newShuffledStream(t *testing.T, st stack, opts synth.Options, seed uint64) *stream {
	t.Helper()
	gen, err := synth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	queues := map[string][]synth.Record{}
	var names []string
	for {
		rec, ok := gen.Next()
		if !ok {
			break
		}
		if _, seen := queues[rec.Tenant]; !seen {
			names = append(names, rec.Tenant)
		}
		queues[rec.Tenant] = append(queues[rec.Tenant], rec)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	left := gen.Total()
	next := func() (synth.Record, bool) {
		if left == 0 {
			return synth.Record{}, false
		}
		pick := rng.IntN(left)
		for _, n := range names {
			q := queues[n]
			if pick < len(q) {
				queues[n] = q[1:]
				left--
				return q[0], true
			}
			pick -= len(q)
		}
		panic("unreachable")
	}
	return r.streamOf(t, st, gen, next)
}

func (r *run) streamOf(t *testing.T, st stack, gen *synth.Generator, next func() (synth.Record, bool)) *stream {
	t.Helper()
	r.fhirlake(t, "topics", "create")
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(st.brokers...),
		kgo.DefaultProduceTopic(r.topic),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(4<<20),
		kgo.MaxBufferedRecords(50_000),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &stream{gen: gen, next: next, cl: cl, topic: r.topic, total: gen.Total()}
}

// produce sends the next n records (all that are left when n < 0) and waits
// until the broker has acknowledged every one of them.
func (s *stream) produce(ctx context.Context, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		emu      sync.Mutex
		firstErr error
		sent     int
	)
	for n < 0 || sent < n {
		rec, ok := s.next()
		if !ok {
			break
		}
		kr := &kgo.Record{Topic: s.topic, Key: rec.Key, Value: rec.Value}
		for _, h := range rec.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		s.cl.Produce(ctx, kr, func(_ *kgo.Record, err error) {
			if err != nil {
				emu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				emu.Unlock()
			}
		})
		sent++
	}
	if err := s.cl.Flush(ctx); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	emu.Lock()
	defer emu.Unlock()
	if firstErr != nil {
		return fmt.Errorf("produce: %w", firstErr)
	}
	s.produced.Add(int64(sent))
	return nil
}

// paced sends n records (all that are left when n < 0) in small slices
// spread evenly over d, so that consumers work on a live stream rather
// than a backlog.
func (s *stream) paced(ctx context.Context, n int, d time.Duration) error {
	if n < 0 || n > s.left() {
		n = s.left()
	}
	const step = 100 * time.Millisecond
	slices := max(int(d/step), 1)
	start := time.Now()
	for i := range slices {
		want := n * (i + 1) / slices
		if err := s.produce(ctx, want-n*i/slices); err != nil {
			return err
		}
		if wait := time.Until(start.Add(time.Duration(i+1) * step)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

func (s *stream) left() int { return s.total - int(s.produced.Load()) }

// expect returns the expected final state once the whole stream is out.
func (s *stream) expect(t *testing.T, r *run) expectation {
	t.Helper()
	if s.left() != 0 {
		t.Fatalf("expectation asked with %d of %d records not produced", s.left(), s.total)
	}
	path := filepath.Join(r.dir, "expect.ndjson")
	if err := writeExpectFile(path, s.gen); err != nil {
		t.Fatal(err)
	}
	exp := readExpect(t, path)
	if got := exp.counts.Events + exp.counts.Controls + exp.counts.Malformed + exp.counts.Unroutable; got != s.total {
		t.Fatalf("expect file counts %d records, the stream had %d", got, s.total)
	}
	return exp
}

// ----------------------------------------------------------------- offsets --

// endOffsets are the ends of every partition of topic.
func endOffsets(t *testing.T, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// committedOffsets are the group's committed offsets on topic (absent for a
// partition without a commit).
func committedOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		if o.Err == nil && o.At >= 0 {
			out[p] = o.At
		}
	}
	return out, nil
}

func sumOffsets(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// waitCommitted waits until the group has committed at least n records of
// the run's topic in total, and returns how long that took.
func (r *run) waitCommitted(t *testing.T, adm *kadm.Client, n int64, timeout time.Duration, alive ...*member) time.Duration {
	t.Helper()
	start := time.Now()
	var last int64
	for time.Since(start) < timeout {
		for _, m := range alive {
			m.requireAlive(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := committedOffsets(ctx, adm, r.group, r.topic)
		cancel()
		if err == nil {
			last = sumOffsets(got)
			if last >= n {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%d records committed after %s, want %d", last, timeout, n)
	return 0
}

// groupAssignment is the run's group as the coordinator sees it: its state
// and the number of partitions assigned to each member, by client id.
func groupAssignment(ctx context.Context, adm *kadm.Client, group string) (string, map[string]int, error) {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return "", nil, err
	}
	g, ok := described[group]
	if !ok {
		return "", nil, fmt.Errorf("group %s not described", group)
	}
	if g.Err != nil {
		return "", nil, g.Err
	}
	parts := map[string]int{}
	for _, m := range g.Members {
		n := 0
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				n += len(tp.Partitions)
			}
		}
		parts[m.ClientID] += n
	}
	return g.State, parts, nil
}

// waitGroup waits until the group is stable with exactly the named members
// (by their names given to startMember), each holding at least one
// partition and together all of them. It returns how long that took.
func (r *run) waitGroup(t *testing.T, adm *kadm.Client, partitions int, timeout time.Duration, members ...*member) time.Duration {
	t.Helper()
	start := time.Now()
	var state string
	var parts map[string]int
	for time.Since(start) < timeout {
		for _, m := range members {
			m.requireAlive(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		state, parts, err = groupAssignment(ctx, adm, r.group)
		cancel()
		if err == nil && state == "Stable" && len(parts) == len(members) {
			total, ok := 0, true
			for _, m := range members {
				n := parts["fhirlake-"+m.name]
				ok = ok && n > 0
				total += n
			}
			if ok && total == partitions {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("group %s after %s: state %s, partitions per member %v; want %d members sharing %d partitions", r.group, timeout, state, parts, len(members), partitions)
	return 0
}

// committedNow is the total the group has committed on the run's topic,
// retried until the broker answers.
func (r *run) committedNow(t *testing.T, adm *kadm.Client, timeout time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := committedOffsets(ctx, adm, r.group, r.topic)
		cancel()
		if err == nil {
			return sumOffsets(got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watchCommitted reports the first moment the group has committed more
// than n records of the run's topic in total. It polls every 100ms until
// then or until the test ends.
func (r *run) watchCommitted(t *testing.T, adm *kadm.Client, n int64) <-chan time.Time {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	at := make(chan time.Time, 1)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			got, err := committedOffsets(pctx, adm, r.group, r.topic)
			pcancel()
			if err == nil && sumOffsets(got) > n {
				at <- time.Now()
				return
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}()
	return at
}

// dropOnSuccess removes the run's topics, group and objects (in every
// tenant's bucket) once the test has passed, so that repeated runs do not
// fill the stack's disks: the failure tests write hundreds of megabytes,
// and every retained partition lengthens the broker's log recovery after
// a crash. A failed run keeps them for inspection.
func (r *run) dropOnSuccess(t *testing.T, st stack, tenants []string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept for inspection: topics %s and %s, group %s, objects under %s/ in the tenants' buckets", r.topic, r.dlq, r.group, r.prefix)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if cl, err := kgo.NewClient(kgo.SeedBrokers(st.brokers...)); err == nil {
			adm := kadm.NewClient(cl)
			if _, err := adm.DeleteGroups(ctx, r.group); err != nil {
				t.Logf("delete group %s: %v", r.group, err)
			}
			if _, err := adm.DeleteTopics(ctx, r.topic, r.dlq); err != nil {
				t.Logf("delete topics of the run: %v", err)
			}
			cl.Close()
		}
		for _, tn := range tenants {
			store, err := sink.NewS3(ctx, sink.S3Options{
				Bucket: bucket(tn), Prefix: r.prefix, Endpoint: st.endpoint, PathStyle: true,
				AccessKey: os.Getenv(envName(tn, "ACCESS_KEY")), SecretKey: os.Getenv(envName(tn, "SECRET_KEY")),
			})
			if err != nil {
				t.Logf("remove %s's objects: %v", tn, err)
				continue
			}
			objs, err := store.List(ctx, "")
			if err != nil {
				t.Logf("remove %s's objects: %v", tn, err)
				continue
			}
			var g errgroup.Group
			g.SetLimit(8)
			for _, o := range objs {
				g.Go(func() error { return store.Delete(ctx, o.Key) })
			}
			if err := g.Wait(); err != nil {
				t.Logf("remove %s's objects: %v", tn, err)
			}
		}
	})
}

// ------------------------------------------------------------------ stack --

// stackCmd runs deploy/local/stack with args and returns how long it took.
func stackCmd(t *testing.T, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "deploy", "local", "stack"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/local/stack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return time.Since(start)
}

// keepServiceRunning makes sure svc runs again when the test ends, whatever
// happened in between, so later tests find a whole stack.
func keepServiceRunning(t *testing.T, svc string) {
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "deploy", "local", "stack"), "start", svc)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("restart %s after the test: %v\n%s", svc, err, out)
		}
	})
}

// ----------------------------------------------------------------- verify --

// lakeReport sums up what the run's buckets hold.
type lakeReport struct {
	rows       int64 // every stored row, replays included
	duplicates int64 // rows beyond one per (tenant, type, id, version)
	// sessions are the tenants' query sessions, each over its own bucket.
	sessions map[string]*query.Session
}

// verifyLake reads every tenant's bucket with that tenant's own key and
// checks the exact expected state: the latest version of every resource,
// nothing missing, nothing extra, no row of another tenant. With gapless,
// it also checks that the rows cover every Kafka offset of the run's topic,
// partition by partition, each in exactly one tenant's bucket: 0..end-1
// without a hole (the stream must yield one row per record).
func (r *run) verifyLake(t *testing.T, st stack, adm *kadm.Client, tenants []string, exp expectation, gapless bool) lakeReport {
	t.Helper()
	for tn := range exp.state {
		if !contains(tenants, tn) {
			t.Fatalf("the expectation names tenant %s, which the run does not serve", tn)
		}
	}
	var ends map[int32]int64
	seen := map[int32][]string{} // partition → offset → tenant that holds it
	if gapless {
		ends = endOffsets(t, adm, r.topic)
		for p, end := range ends {
			seen[p] = make([]string, end)
		}
	}
	rep := lakeReport{sessions: map[string]*query.Session{}}
	for _, tn := range tenants {
		s := r.tenantLake(t, st, tn, bucket(tn))
		rep.sessions[tn] = s
		rows := checkLake(t, s, tn, exp.state[tn])
		distinct := scalar[int64](t, s, "SELECT count(*) FROM (SELECT DISTINCT resource_type, id, version_id FROM resources_all)")
		rep.rows += rows
		rep.duplicates += rows - distinct
		if foreign := scalar[int64](t, s, fmt.Sprintf("SELECT count(*) FROM resources_all WHERE topic <> '%s'", r.topic)); foreign != 0 {
			t.Errorf("tenant %s: %d rows from another topic than the run's", tn, foreign)
		}
		if !gapless {
			continue
		}
		res, err := s.Query(context.Background(), `SELECT DISTINCT "partition", "offset" FROM resources_all`)
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for res.Next() {
			var p int32
			var off int64
			if err := res.Scan(&p, &off); err != nil {
				t.Fatal(err)
			}
			holders, ok := seen[p]
			switch {
			case !ok || off < 0 || off >= int64(len(holders)):
				bad++
				if bad <= 5 {
					t.Errorf("tenant %s: row at partition %d offset %d, beyond the partition's end %d", tn, p, off, ends[p])
				}
			case holders[off] != "":
				bad++
				if bad <= 5 {
					t.Errorf("partition %d offset %d is stored for tenant %s and for tenant %s", p, off, holders[off], tn)
				}
			default:
				holders[off] = tn
			}
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		res.Close()
	}
	if gapless {
		var parts []int32
		for p := range seen {
			parts = append(parts, p)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			if holes := missingRanges(seen[p]); len(holes) > 0 {
				t.Errorf("partition %d: offsets missing from every bucket: %s (end %d)", p, strings.Join(holes, ", "), ends[p])
			}
		}
	}
	return rep
}

// missingRanges lists the offsets nobody holds as ranges, at most ten.
func missingRanges(holders []string) []string {
	var out []string
	for i := 0; i < len(holders); i++ {
		if holders[i] != "" {
			continue
		}
		j := i
		for j+1 < len(holders) && holders[j+1] == "" {
			j++
		}
		if len(out) == 10 {
			out = append(out, "…")
			break
		}
		if i == j {
			out = append(out, fmt.Sprint(i))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", i, j))
		}
		i = j
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
