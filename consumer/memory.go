package consumer

import (
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

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
