package consumer

import (
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// The memory budget (Options.MaxBufferedBytes) limits what the consumer
// holds: polled records not yet decoded (Consumer.buffered) and the Arrow
// memory of filling buffers and of sealed batches not yet encoded
// (countingAllocator). Over budget the poll loop pauses fetching and asks
// the partitions holding the most to flush (a memory event); it resumes
// once flushes have brought memory back under 80% of the budget.

// countingAllocator is Arrow's Go allocator with a count of the bytes its
// live buffers hold: the builders of filling buffers, and the records of
// sealed batches until their files are encoded. That count, plus the bytes
// of polled records not yet decoded, is what the memory budget limits.
type countingAllocator struct {
	memory.Allocator
	n atomic.Int64
}

func newCountingAllocator() *countingAllocator {
	return &countingAllocator{Allocator: memory.NewGoAllocator()}
}

func (a *countingAllocator) Allocate(size int) []byte {
	a.n.Add(int64(size))
	return a.Allocator.Allocate(size)
}

func (a *countingAllocator) Reallocate(size int, b []byte) []byte {
	a.n.Add(int64(size - len(b)))
	return a.Allocator.Reallocate(size, b)
}

func (a *countingAllocator) Free(b []byte) {
	a.n.Add(-int64(len(b)))
	a.Allocator.Free(b)
}

// InUse is the bytes held by live buffers.
func (a *countingAllocator) InUse() int64 { return a.n.Load() }

// FetchMaxBytes is the fetch size used for a memory budget: a
// thirty-second of it, between 1 MiB and 8 MiB. Besides the budget, the
// client holds one fetch response per broker, compressed as it arrived and
// then decompressed (JSON notifications compress three to five times), so
// a small fetch keeps that outside share small; on a local network a fetch
// takes milliseconds, so throughput does not suffer.
func FetchMaxBytes(budget int64) int64 {
	return min(max(budget/32, 1<<20), 8<<20)
}

// FetchPartitionShare divides a fetch between partitions: one partition
// may fill at most an eighth of it. A broker fills a fetch partition by
// partition, so with no share one partition filled whole fetches while the
// others waited, and a memory event found one partition's buffer full and
// the rest empty. Filled evenly, the partitions flush together and share
// their files (docs/benchmarks.md).
const FetchPartitionShare = 8

// releaseSealed takes n record bytes of sealed batches, whose records were
// just released, off Consumer.sealed and wakes the poll loop.
func (c *Consumer) releaseSealed(n int64) {
	c.sealed.Add(-n)
	select {
	case c.freed <- struct{}{}:
	default:
	}
}

// release returns the bytes of n polled records, decoded or dropped, to
// the budget.
func (c *Consumer) release(n int64) {
	if n == 0 {
		return
	}
	c.buffered.Add(-n)
}

// InUse returns the bytes counted against the memory budget now: polled
// records not yet decoded, and the Arrow memory of filling and sealed
// buffers.
func (c *Consumer) InUse() int64 { return c.buffered.Load() + c.mem.InUse() }

// backpressure pauses fetching of every assigned partition while the
// buffers hold more than the memory budget, and resumes once flushes have
// brought them under 80% of it, so that fetching does not pause and resume
// on every flush. It returns whether fetching is paused.
func (c *Consumer) backpressure(paused bool) bool {
	buffered := c.InUse()
	switch {
	case buffered >= c.opts.MaxBufferedBytes:
		// Also pauses partitions assigned since the last pause.
		n := countPartitions(c.cl.PauseFetchPartitions(c.assignedPartitions()))
		c.m.paused.Set(float64(n))
		c.flushLargest()
		if !paused {
			c.log.Warn("memory budget reached; fetching paused", "buffered_bytes", buffered, "budget", c.opts.MaxBufferedBytes, "partitions", n)
		}
		return true
	case paused && buffered < c.opts.MaxBufferedBytes*8/10:
		c.cl.ResumeFetchPartitions(c.cl.PauseFetchPartitions(nil))
		c.m.paused.Set(0)
		c.log.Info("fetching resumed", "buffered_bytes", buffered)
		return false
	}
	return paused
}

// flushLargest is a memory event: it asks the partitions memoryFlush
// chooses to flush, as one group, until flushes in progress cover the
// budget: in practice every partition holding rows, unless an earlier
// group is still being encoded. The group writes one view file per tenant
// and view whatever its partitions, so flushing all of them costs fewer
// files than flushing a few more often (docs/benchmarks.md).
func (c *Consumer) flushLargest() {
	// Signals are sent under the lock (see Consumer.mu).
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forming != nil && c.forming.forming() {
		// The last group's members are still sealing; their bytes are not
		// in sealed yet. Another group now would split the event in two.
		return
	}
	now := time.Now()
	ws := make([]*worker, 0, len(c.workers))
	peers := make([]peer, 0, len(c.workers))
	for _, w := range c.workers {
		ws = append(ws, w)
		peers = append(peers, w.peer(now))
	}
	// The group holds a member's place until every signal is sent, so
	// that it cannot start with the first joiner alone.
	var g *flushGroup
	memoryFlush(c.opts.MaxBufferedBytes-c.sealed.Load(), peers, func(i int) bool {
		if g == nil {
			g = newFlushGroup(c, reasonMemory)
			c.forming = g
			g.expect()
		}
		return g.signal(ws[i])
	})
	if g != nil {
		g.leave()
	}
}

// pollSize is how many records the next poll may take: as many as fit in
// what is left of the memory budget at the average record size seen so
// far (4 KiB before any), at least one, at most 10000; zero when the
// budget is exhausted.
func (c *Consumer) pollSize() int {
	left := c.opts.MaxBufferedBytes - c.InUse()
	if left <= 0 {
		return 0
	}
	avg := c.avgRecord.Load()
	if avg <= 0 {
		avg = 4 << 10
	}
	return int(min(max(left/avg, 1), 10_000))
}

// observeRecordSize keeps a moving average of record sizes.
func (c *Consumer) observeRecordSize(bytes int64, n int) {
	if n == 0 {
		return
	}
	avg := c.avgRecord.Load()
	cur := max(bytes/int64(n), 1)
	if avg == 0 {
		c.avgRecord.Store(cur)
		return
	}
	c.avgRecord.Store((avg*7 + cur) / 8)
}
