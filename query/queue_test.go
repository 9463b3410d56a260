package query

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"fhirlake/query/querytest"
)

func TestQueue(t *testing.T) {
	q := NewQueue(1, 1)
	leave, err := q.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	admitted := make(chan func(), 1)
	go func() {
		l, err := q.Enter(context.Background())
		if err != nil {
			t.Error(err)
		}
		admitted <- l
	}()
	for q.waitingNow() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := q.Enter(context.Background()); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("with one running and one waiting: got %v, want ErrQueueFull", err)
	}
	leave()
	leave() // a second call frees nothing more
	second := <-admitted
	// A waiter gives up when its context ends, with the context's cause.
	ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, ErrQueryTimeout)
	defer cancel()
	start := time.Now()
	if _, err := q.Enter(ctx); !errors.Is(err, ErrQueryTimeout) || time.Since(start) > time.Second {
		t.Fatalf("waiting past the deadline: got %v after %s, want ErrQueryTimeout at the deadline", err, time.Since(start))
	}
	second()
	if l, err := q.Enter(context.Background()); err != nil {
		t.Fatalf("after every leave: %v", err)
	} else {
		l()
	}
}

// TestAcquireWaitsForOpeningWithinContext: a request that finds another one
// opening the tenant's session waits for it only until its context ends.
func TestAcquireWaitsForOpeningWithinContext(t *testing.T) {
	root := filepath.Join(t.TempDir(), "acme")
	querytest.WriteRaw(t, root, "acme", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0}})
	p := NewPool([]Lake{{Tenant: "acme", Root: root}}, PoolOptions{Session: Options{Connections: 2}}, nil, nil)
	defer p.Close()
	if n := patients(t, p); n != 1 {
		t.Fatalf("%d patients, want 1", n)
	}
	p.mu.Lock()
	e := p.entries["acme"]
	p.mu.Unlock()
	p.closeEntry(e) // as if never opened …
	e.mu.Lock()     // … and another request opening it
	defer e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, release, err := p.Acquire(ctx, "acme")
		if err == nil {
			release()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the context's deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire waited past its context for the session being opened")
	}
}

func (q *Queue) waitingNow() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}
