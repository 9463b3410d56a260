package worker

import (
	"context"
	"fmt"
	"sync"

	"fhirlake/query"
)

// queue admits one tenant's requests in the front: at most running at
// once, at most queued more waiting in order of arrival, the rest refused
// with query.ErrQueueFull.
type queue struct {
	slots  chan struct{}
	queued int

	mu      sync.Mutex
	waiting int
}

func newQueue(running, queued int) *queue {
	return &queue{slots: make(chan struct{}, max(running, 1)), queued: queued}
}

func (q *queue) enter(ctx context.Context) (leave func(), err error) {
	leave = sync.OnceFunc(func() { <-q.slots })
	select {
	case q.slots <- struct{}{}:
		return leave, nil
	default:
	}
	q.mu.Lock()
	if q.queued > 0 && q.waiting >= q.queued {
		q.mu.Unlock()
		return nil, query.ErrQueueFull
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
