package query

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrQueueFull is returned by Pool.Acquire when as many of the tenant's
// requests as PoolOptions.MaxQueued already wait for one of its
// connections: the caller should try again later.
var ErrQueueFull = errors.New("too many queries of this tenant are waiting")

// Queue admits one tenant's requests: at most running at once, and at most
// queued more waiting, in order of arrival; beyond that, Enter refuses at
// once (ErrQueueFull). A request waits only as long as its context allows.
type Queue struct {
	slots  chan struct{} // one token per running request
	queued int           // 0: no bound

	mu      sync.Mutex
	waiting int
}

// NewQueue returns a queue of at most running requests at once and queued
// more waiting (0: no bound on waiting).
func NewQueue(running, queued int) *Queue {
	return &Queue{slots: make(chan struct{}, max(running, 1)), queued: queued}
}

// Enter waits for a slot; leave must be called once the request is done
// with the tenant's session.
func (q *Queue) Enter(ctx context.Context) (leave func(), err error) {
	leave = sync.OnceFunc(func() { <-q.slots })
	// A send into a full buffered channel that has waiting senders never
	// overtakes them: a slot that frees goes to the longest waiting one.
	select {
	case q.slots <- struct{}{}:
		return leave, nil
	default:
	}
	q.mu.Lock()
	if q.queued > 0 && q.waiting >= q.queued {
		q.mu.Unlock()
		return nil, ErrQueueFull
	}
	q.waiting++
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
	}()
	select {
	case q.slots <- struct{}{}:
		return leave, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a connection: %w", context.Cause(ctx))
	}
}

// lock is a mutex whose waiters can give up when their context ends, so
// that a request waiting for another one to open the tenant's session stays
// within its deadline. The zero value is unlocked.
type lock struct {
	once sync.Once
	ch   chan struct{}
}

func (l *lock) c() chan struct{} {
	l.once.Do(func() { l.ch = make(chan struct{}, 1) })
	return l.ch
}

// Lock waits for the lock.
func (l *lock) Lock() { l.c() <- struct{}{} }

// LockContext waits for the lock until ctx ends.
func (l *lock) LockContext(ctx context.Context) error {
	select {
	case l.c() <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// TryLock takes the lock if it is free.
func (l *lock) TryLock() bool {
	select {
	case l.c() <- struct{}{}:
		return true
	default:
		return false
	}
}

// Unlock releases the lock, which must be held.
func (l *lock) Unlock() {
	select {
	case <-l.c():
	default:
		panic("query: unlock of an unlocked lock")
	}
}
