//go:build integration

// Integration tests of the compactor's lease against the real S3 server of the
// stack: its conditional writes, two `fhirlake compact` processes for one tenant,
// and one SIGKILLed while it holds the lease.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// TestIntegrationS3ConditionalWrites: the stack's S3 server honours If-None-Match: *
// and If-Match on PutObject and If-Match on DeleteObject, atomically under racing
// writers.
func TestIntegrationS3ConditionalWrites(t *testing.T) {
	st := needStack(t)
	r := newRun(t, st, []string{"acme"}, bucket, "")
	store := r.tenantStore(t, st, "acme")
	ctx := context.Background()
	const key = "_lease/conditional-test.json"
	t.Cleanup(func() { _ = store.Delete(context.Background(), key) })

	if _, err := store.GetTagged(ctx, key, &bytes.Buffer{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("get of a missing object: %v, want fs.ErrNotExist", err)
	}
	if _, err := store.PutIfMatch(ctx, key, []byte("x"), `"0123"`); !errors.Is(err, sink.ErrPreconditionFailed) {
		t.Errorf("If-Match on a missing object: %v, want ErrPreconditionFailed", err)
	}
	// Writers racing to create the object: one wins.
	const writers = 8
	var wg sync.WaitGroup
	tags := make([]string, writers)
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tags[w], errs[w] = store.PutIfAbsent(ctx, key, fmt.Appendf(nil, "writer %d", w))
		}()
	}
	wg.Wait()
	winner := -1
	for w, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both created %s", winner, w, key)
		case err == nil:
			winner = w
		case !errors.Is(err, sink.ErrPreconditionFailed):
			t.Fatalf("writer %d: %v", w, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer created the object")
	}
	var buf bytes.Buffer
	tag, err := store.GetTagged(ctx, key, &buf)
	if err != nil || tag != tags[winner] || buf.String() != fmt.Sprintf("writer %d", winner) {
		t.Fatalf("get: %q tag %s, %v; want writer %d's, tag %s", buf.String(), tag, err, winner, tags[winner])
	}
	next, err := store.PutIfMatch(ctx, key, []byte("renewed"), tag)
	if err != nil || next == tag {
		t.Fatalf("If-Match with the current ETag: %s, %v", next, err)
	}
	if _, err := store.PutIfMatch(ctx, key, []byte("stale"), tag); !errors.Is(err, sink.ErrPreconditionFailed) {
		t.Errorf("If-Match with a stale ETag: %v, want ErrPreconditionFailed", err)
	}
	if err := store.DeleteIfMatch(ctx, key, tag); !errors.Is(err, sink.ErrPreconditionFailed) {
		t.Errorf("delete with a stale ETag: %v, want ErrPreconditionFailed", err)
	}
	buf.Reset()
	if _, err := store.GetTagged(ctx, key, &buf); err != nil || buf.String() != "renewed" {
		t.Errorf("after the refused writes: %q, %v; want \"renewed\"", buf.String(), err)
	}
	if err := store.DeleteIfMatch(ctx, key, next); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetTagged(ctx, key, &buf); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the conditional delete: %v, want fs.ErrNotExist", err)
	}
}

// compactProc is a `fhirlake compact` process the test runs beside others.
type compactProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once it exited; err is then how
	err  error
}

// startCompact starts `fhirlake compact` with the given arguments and extra
// environment.
func (r *run) startCompact(t *testing.T, env []string, args ...string) *compactProc {
	t.Helper()
	c := r.cmd(context.Background(), append([]string{"compact", "--log-format", "json"}, args...)...)
	c.Env = append(c.Env, env...)
	p := &compactProc{cmd: c, out: &syncBuffer{}, done: make(chan struct{})}
	c.Stdout, c.Stderr = p.out, p.out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = c.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			// Still running when the test ends (it failed): stop it. The signals fail
			// only if it exited meanwhile, and then there is nothing to stop.
			_ = c.Process.Signal(syscall.SIGCONT)
			_ = c.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *compactProc) pid() int { return p.cmd.Process.Pid }

// exitCode waits for the process to end and returns its exit code.
func (p *compactProc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(15 * time.Minute):
		t.Fatalf("fhirlake compact did not end within 15 minutes:\n%s", lastLines(p.out.String(), 20))
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("fhirlake compact: %v\n%s", p.err, p.out.String())
	}
	return 0
}

// syncBuffer is an output buffer a process writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// readLeaseOf returns the tenant's lease, nil when there is none.
func readLeaseOf(t *testing.T, store sink.Store) *lake.Lease {
	t.Helper()
	var buf bytes.Buffer
	_, err := store.GetTagged(context.Background(), lake.LeaseKey, &buf)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	l, err := lake.DecodeLease(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitLeaseHolder waits until the tenant's lease names the process p, and returns it.
func waitLeaseHolder(t *testing.T, store sink.Store, p *compactProc) *lake.Lease {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if l := readLeaseOf(t, store); l != nil && l.Holder.PID == p.pid() {
			return l
		}
		select {
		case <-p.done:
			t.Fatalf("fhirlake compact (pid %d) ended before it held the lease (%v):\n%s", p.pid(), p.err, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("fhirlake compact (pid %d) did not take the lease within 5 minutes:\n%s", p.pid(), lastLines(p.out.String(), 20))
	return nil
}

// TestIntegrationCompactLease: two `fhirlake compact` processes for one tenant on
// S3. While the first holds acme's lease, a second run of both tenants says who
// holds acme, exits non-zero and still publishes globex; the first publishes acme.
// Then a run holding the lease is SIGKILLed: a run with --wait-lease waits until
// the dead run's lease expires (compact.lease_ttl), takes it over and publishes a
// snapshot with every row.
func TestIntegrationCompactLease(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	tenants := []string{"acme", "globex"}
	r := newRun(t, st, tenants, bucket, compactSettings)
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", strings.Join(tenants, ","), "--patients", "15", "--seed", "16",
		"--updates", "0.3", "--deletes", "0.1", "--malformed", "0", "--unroutable", "0")
	s.produce(t, -1)
	r.consumeAll(t, st)
	acme, globex := r.tenantStore(t, st, "acme"), r.tenantStore(t, st, "globex")

	// The first run holds acme's lease; it is stopped (SIGSTOP) so that it still
	// holds it when the second run looks, whatever the machine's speed. The lease
	// lasts 2m (the default), far longer than the second run needs to look.
	first := r.startCompact(t, nil, "--tenant", "acme")
	held := waitLeaseHolder(t, acme, first)
	if err := first.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	out, code := r.compact(t)
	if err := first.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if code == 0 {
		t.Errorf("a second compactor for acme exited 0:\n%s", out)
	}
	for _, want := range []string{
		fmt.Sprintf("tenant acme: another compactor is working on this tenant: host %s, pid %d", host, first.pid()),
		"since " + held.Acquired.Format(time.RFC3339), "--wait-lease",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the second run does not say %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^globex\s+published`).MatchString(out) || !regexp.MustCompile(`(?m)^acme\s+skipped: lease held by`).MatchString(out) {
		t.Errorf("the second run did not publish globex and skip acme:\n%s", out)
	}
	if code := first.exitCode(t); code != 0 {
		t.Fatalf("the first run exited %d:\n%s", code, first.out.String())
	}
	firstSnap := currentSnapshot(t, acme)
	checkMarts(t, firstSnap, "acme", s.expect.state["acme"])
	checkMarts(t, currentSnapshot(t, globex), "globex", s.expect.state["globex"])
	if l := readLeaseOf(t, acme); l != nil {
		t.Errorf("acme's lease after the first run: %+v, want it released", l)
	}

	// A run killed while it holds the lease; the next waits for it to expire.
	shortTTL := []string{"FHIRLAKE_COMPACT_LEASE_TTL=10s"}
	killed := r.startCompact(t, shortTTL, "--tenant", "acme", "--full-refresh")
	waitLeaseHolder(t, acme, killed)
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-killed.done // killed: its exit status says only that
	dead := readLeaseOf(t, acme)
	if dead == nil || dead.Holder.PID != killed.pid() {
		t.Fatalf("the lease after the kill: %+v; want the killed run's", dead)
	}
	t.Logf("killed pid %d holding acme's lease until %s", killed.pid(), dead.Expires.Format(time.RFC3339Nano))

	next := r.startCompact(t, shortTTL, "--tenant", "acme", "--full-refresh", "--wait-lease", "5m")
	if code := next.exitCode(t); code != 0 {
		t.Fatalf("the run after the kill exited %d:\n%s", code, next.out.String())
	}
	if log := next.out.String(); !strings.Contains(log, "took over an expired compaction lease") || !strings.Contains(log, fmt.Sprintf(`"holder_pid":%d`, killed.pid())) {
		t.Errorf("the run after the kill does not say it took over pid %d's lease:\n%s", killed.pid(), lastLines(log, 20))
	}
	snap := currentSnapshot(t, acme)
	if snap.m.SnapshotID == firstSnap.m.SnapshotID || !snap.m.FullRefresh {
		t.Fatalf("after the kill: snapshot %s (full %v), want a new full refresh", snap.m.SnapshotID, snap.m.FullRefresh)
	}
	if snap.m.Created.Before(dead.Expires) {
		t.Errorf("the snapshot was planned at %s, before the killed run's lease expired at %s", snap.m.Created, dead.Expires)
	}
	checkMarts(t, snap, "acme", s.expect.state["acme"])
	if l := readLeaseOf(t, acme); l != nil {
		t.Errorf("acme's lease after the run: %+v, want it released", l)
	}
}
