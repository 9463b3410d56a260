// Package arrowsize gives an Arrow record builder, emptied at every seal, the
// capacity of its previous batch back at the first row of the next, so that a
// batch of the usual size is built without growing its buffers from empty
// (each growth a copy, and garbage for the collector).
package arrowsize

import (
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Last is the size of a builder's previous batch: its rows and the value bytes of
// each top-level variable-width column (zero for the others).
type Last struct {
	rows int
	data []int
}

// Note records the size of what b holds; call it just before b's NewRecordBatch.
func (l *Last) Note(b *array.RecordBuilder) {
	fields := b.Fields()
	if cap(l.data) < len(fields) {
		l.data = make([]int, len(fields))
	}
	l.data = l.data[:len(fields)]
	l.rows = 0
	for i, f := range fields {
		l.rows = max(l.rows, f.Len())
		l.data[i] = 0
		if bb, ok := f.(binaryBuilder); ok {
			l.data[i] = bb.DataLen()
		}
	}
}

// Reserve gives the empty builder b the capacity of the batch last noted. Call it
// at the first row after a seal: a builder that gets no rows holds no memory.
func (l *Last) Reserve(b *array.RecordBuilder) {
	if l.rows == 0 {
		return
	}
	for i, f := range b.Fields() {
		f.Reserve(l.rows)
		if bb, ok := f.(binaryBuilder); ok && i < len(l.data) && l.data[i] > 0 {
			bb.ReserveData(l.data[i])
		}
	}
}

// binaryBuilder is what the string and binary builders share.
type binaryBuilder interface {
	DataLen() int
	ReserveData(int)
}
