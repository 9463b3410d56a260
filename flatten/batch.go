package flatten

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Column types map to Arrow as follows:
//
//	boolean                                      bool
//	integer, positiveInt, unsignedInt, integer64 int64
//	decimal                                      decimal128(38, 18) + utf8 "<name>_text"
//	date                                         date32
//	dateTime, instant                            timestamp[us, UTC]
//	time                                         time64[us]
//	anything else (string, code, id, uri, …)     utf8
//
// A collection column is a list of its type.
//
// A decimal column is two Arrow fields: the typed value, and its exact text
// as written in the resource in "<name>_text". FHIR decimals have
// arbitrary precision and range (the specification's own examples hold
// 1E-245 and -1E+245) and their written precision is significant (1.0 is
// not 1.00), which no fixed-scale type keeps. decimal128(38, 18) rather
// than a float gives exact sums of money and measurements, sorts and
// compares in DuckDB and Parquet without a cast, and holds every ordinary
// clinical or financial value; a value with more than 20 integer digits is
// null there, and one with more than 18 fractional digits is rounded, but
// the text field always has it exactly, so nothing is lost and no resource
// fails for a legal number.
//
// Partial dates and dateTimes ("2020", "2020-03", "2020-03-01" for a
// dateTime) are stored as their first instant, and dateTimes without a
// zone are read as UTC, so every valid FHIR value has a place.

// arrowKind is the storage class of a column.
type arrowKind uint8

const (
	akString arrowKind = iota
	akBool
	akInt
	akDecimal
	akDate
	akTimestamp
	akTime
)

func kindOfType(fhirType string) arrowKind {
	switch fhirType {
	case "boolean":
		return akBool
	case "integer", "positiveInt", "unsignedInt", "integer64":
		return akInt
	case "decimal":
		return akDecimal
	case "date":
		return akDate
	case "dateTime", "instant":
		return akTimestamp
	case "time":
		return akTime
	}
	return akString
}

func (k arrowKind) dataType() arrow.DataType {
	switch k {
	case akBool:
		return arrow.FixedWidthTypes.Boolean
	case akInt:
		return arrow.PrimitiveTypes.Int64
	case akDecimal:
		return &arrow.Decimal128Type{Precision: 38, Scale: decimalScale}
	case akDate:
		return arrow.FixedWidthTypes.Date32
	case akTimestamp:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case akTime:
		return arrow.FixedWidthTypes.Time64us
	}
	return arrow.BinaryTypes.String
}

// textSuffix names the exact-text companion field of a decimal column.
const textSuffix = "_text"

// buildSchema derives the Arrow schema of a view. Each field carries the
// declared FHIR type in its metadata under "fhir.type"; the text companion
// of a decimal column also names its column under "fhirlake.text_of".
func buildSchema(v *View) (*arrow.Schema, error) {
	names := make(map[string]bool, len(v.cols))
	for _, c := range v.cols {
		names[c.name] = true
	}
	var fields []arrow.Field
	for _, c := range v.cols {
		k := kindOfType(c.fhirType)
		c.field = len(fields)
		fields = append(fields, arrow.Field{
			Name:     c.name,
			Type:     listIf(c.collection, k.dataType()),
			Nullable: true,
			Metadata: arrow.NewMetadata([]string{"fhir.type"}, []string{c.fhirType}),
		})
		if k != akDecimal {
			continue
		}
		text := c.name + textSuffix
		if names[text] {
			return nil, fmt.Errorf("column %s clashes with the exact text of decimal column %s", text, c.name)
		}
		fields = append(fields, arrow.Field{
			Name:     text,
			Type:     listIf(c.collection, arrow.BinaryTypes.String),
			Nullable: true,
			Metadata: arrow.NewMetadata([]string{"fhir.type", "fhirlake.text_of"}, []string{c.fhirType, c.name}),
		})
	}
	return arrow.NewSchema(fields, nil), nil
}

func listIf(list bool, dt arrow.DataType) arrow.DataType {
	if list {
		return arrow.ListOf(dt)
	}
	return dt
}

// cell is one converted value waiting to be appended to a builder. For a
// collection, a header cell with n set is followed by n element cells.
type cell struct {
	null bool
	// decNull marks a decimal that does not fit decimal128(38, 18); its
	// text is still stored.
	decNull bool
	n       int32
	i       int64
	dec     decimal128.Num
	s       string
}

// Batch accumulates the rows of one view as Arrow arrays. Append parsed
// resources, then take the rows with NewRecordBatch. A Batch is not safe
// for concurrent use; use one per goroutine (the View can be shared).
type Batch struct {
	view  *View
	w     *walker
	bld   *array.RecordBuilder
	kinds []arrowKind
	cells []cell
	rows  int // rows of the resource being appended
	total int
	bytes int
}

// NewBatch returns an empty batch of the view's rows.
func (v *View) NewBatch(mem memory.Allocator) *Batch {
	return v.newBatch(mem, newEvaluator(v.slots, v.shared))
}

// newBatch returns an empty batch that evaluates with ev.
func (v *View) newBatch(mem memory.Allocator, ev *evaluator) *Batch {
	b := &Batch{
		view:  v,
		bld:   array.NewRecordBuilder(mem, v.schema),
		kinds: make([]arrowKind, len(v.cols)),
	}
	for i, c := range v.cols {
		b.kinds[i] = kindOfType(c.fhirType)
	}
	b.w = newWalker(v, ev, b.stage)
	return b
}

// View returns the view the batch evaluates.
func (b *Batch) View() *View { return b.view }

// Append evaluates the view over r and appends its rows, returning how
// many it added. A resource of another type adds none. On error nothing
// of r is appended, so the caller can dead-letter r and go on.
func (b *Batch) Append(r *Resource) (int, error) {
	b.cells = b.cells[:0]
	b.rows = 0
	if err := b.w.run(r); err != nil {
		return 0, viewError(b.view, r, err)
	}
	b.commit()
	b.total += b.rows
	return b.rows, nil
}

func viewError(v *View, r *Resource, err error) error {
	return fmt.Errorf("view %s: %s/%s: %w", v.name, r.typ, r.ID(), err)
}

// Rows returns the number of rows appended since the last NewRecordBatch.
func (b *Batch) Rows() int { return b.total }

// ApproxBytes estimates the memory held by the appended rows: value bytes
// plus eight bytes of offsets or fixed-width data per value.
func (b *Batch) ApproxBytes() int { return b.bytes }

// NewRecordBatch returns the appended rows as a record batch and empties
// the batch. The caller releases the record.
func (b *Batch) NewRecordBatch() arrow.RecordBatch {
	b.total, b.bytes = 0, 0
	return b.bld.NewRecordBatch()
}

// Reset drops the appended rows.
func (b *Batch) Reset() {
	b.NewRecordBatch().Release()
}

// Release frees the batch's builders.
func (b *Batch) Release() { b.bld.Release() }

// stage converts the current row into cells.
func (b *Batch) stage() error {
	w := b.w
	for i, c := range b.view.cols {
		vals := w.vals[i]
		if c.collection {
			b.cells = append(b.cells, cell{n: int32(len(vals)), null: vals == nil})
			for _, it := range vals {
				cl, err := b.convert(b.kinds[i], it)
				if err != nil {
					return fmt.Errorf("column %s: %w", c.name, err)
				}
				b.cells = append(b.cells, cl)
			}
			continue
		}
		if len(vals) == 0 {
			b.cells = append(b.cells, cell{null: true})
			continue
		}
		cl, err := b.convert(b.kinds[i], vals[0])
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
		b.cells = append(b.cells, cl)
	}
	b.rows++
	return nil
}

// convert turns one value into a cell of the given kind.
func (b *Batch) convert(k arrowKind, it item) (cell, error) {
	ev := b.w.ev
	v, ok := ev.scalar(it)
	if !ok {
		return cell{null: true}, nil
	}
	switch k {
	case akString:
		if v.kind == vNode {
			return cell{s: string(ev.res.appendJSON(nil, v.node))}, nil
		}
		return cell{s: ev.text(v)}, nil
	case akBool:
		if v.kind == vBool {
			return cell{i: boolInt(v.b)}, nil
		}
	case akInt:
		switch v.kind {
		case vInt:
			return cell{i: v.i}, nil
		case vStr, vDec:
			if n, err := strconv.ParseInt(v.s, 10, 64); err == nil {
				return cell{i: n}, nil
			}
		}
	case akDecimal:
		switch v.kind {
		case vInt:
			return cell{dec: decimal128.FromI64(v.i).Mul(decimal128.FromU64(pow10(decimalScale))), s: ev.text(v)}, nil
		case vDec, vStr:
			if v.kind == vStr && !validDec(v.s) {
				break
			}
			n, ok := decimal128Of(v.s)
			return cell{dec: n, decNull: !ok, s: v.s}, nil
		}
	case akDate, akTimestamp:
		if v.kind == vStr {
			if d, ok := parseDateTime(v.s); ok {
				if k == akDate {
					return cell{i: d.epochDays()}, nil
				}
				return cell{i: d.epochMicros()}, nil
			}
		}
	case akTime:
		if v.kind == vStr {
			if d, ok := parseTime(v.s); ok {
				return cell{i: d.dayMicros()}, nil
			}
		}
	}
	return cell{}, fmt.Errorf("cannot store %s %s as %s", kindName(v), shorten(ev.text(v)), b.kindLabel(k))
}

func (b *Batch) kindLabel(k arrowKind) string { return k.dataType().String() }

func shorten(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(strings.ToValidUTF8(s, "?"))
}

// commit appends the staged cells of the current resource to the builders.
func (b *Batch) commit() {
	cells := b.cells
	for r := 0; r < b.rows; r++ {
		for i, c := range b.view.cols {
			k := b.kinds[i]
			fb := b.bld.Field(c.field)
			var tb array.Builder // text companion of a decimal column
			if k == akDecimal {
				tb = b.bld.Field(c.field + 1)
			}
			if !c.collection {
				b.appendCell(fb, tb, k, cells[0])
				cells = cells[1:]
				continue
			}
			h := cells[0]
			cells = cells[1:]
			lb := fb.(*array.ListBuilder)
			var tlb *array.ListBuilder
			if tb != nil {
				tlb = tb.(*array.ListBuilder)
			}
			if h.null {
				lb.AppendNull()
				if tlb != nil {
					tlb.AppendNull()
				}
				b.bytes++
				continue
			}
			lb.Append(true)
			var tvb array.Builder
			if tlb != nil {
				tlb.Append(true)
				tvb = tlb.ValueBuilder()
			}
			for _, el := range cells[:h.n] {
				b.appendCell(lb.ValueBuilder(), tvb, k, el)
			}
			cells = cells[h.n:]
			b.bytes += 4
		}
	}
}

// appendCell appends one value; tb is the text builder of a decimal.
func (b *Batch) appendCell(fb, tb array.Builder, k arrowKind, c cell) {
	if c.null {
		fb.AppendNull()
		if tb != nil {
			tb.AppendNull()
		}
		b.bytes++
		return
	}
	switch k {
	case akString:
		fb.(*array.StringBuilder).Append(c.s)
		b.bytes += len(c.s) + 4
		return
	case akBool:
		fb.(*array.BooleanBuilder).Append(c.i == 1)
	case akInt:
		fb.(*array.Int64Builder).Append(c.i)
	case akDecimal:
		if c.decNull {
			fb.AppendNull()
		} else {
			fb.(*array.Decimal128Builder).Append(c.dec)
		}
		tb.(*array.StringBuilder).Append(c.s)
		b.bytes += 12 + len(c.s)
	case akDate:
		fb.(*array.Date32Builder).Append(arrow.Date32(c.i))
	case akTimestamp:
		fb.(*array.TimestampBuilder).Append(arrow.Timestamp(c.i))
	case akTime:
		fb.(*array.Time64Builder).Append(arrow.Time64(c.i))
	}
	b.bytes += 8
}
