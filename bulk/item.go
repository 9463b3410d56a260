package bulk

import (
	"fmt"
	"strings"

	"fhirlake/flatten"
	"fhirlake/notification"
)

// Kind says what an Item is.
type Kind uint8

const (
	// KindResource is a resource the file holds as such — an NDJSON line, a
	// Bundle entry, the whole file — and so an upsert of itself.
	// Item.Resource and Item.Raw are set.
	KindResource Kind = iota + 1
	// KindEvent is a change the file describes: an event of a subscription
	// notification, or a Bundle entry that deletes a resource. Item.Event is
	// set; Event.Resource holds the resource when the notification carries
	// it, and Event.Fetch is set when it only names it (id-only).
	KindEvent
	// KindCarried is a resource a subscription notification carries: its
	// status, an event's resource, additional context. Item.Resource and
	// Item.Raw are set. It is not a change by itself: the notification's
	// KindEvent items are.
	KindCarried
)

func (k Kind) String() string {
	switch k {
	case KindResource:
		return "resource"
	case KindEvent:
		return "event"
	case KindCarried:
		return "carried"
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Item is what the Reader found at one place of a file. It and everything
// it points to are valid only during the callback: the Reader reuses them.
type Item struct {
	Kind Kind
	At   Location
	// Resource is the parsed resource of a KindResource or KindCarried
	// item, ready for flatten.Batch.Append; Raw is its JSON.
	Resource *flatten.Resource
	Raw      []byte
	// Event is the change of a KindEvent item.
	Event *notification.Event
}

// Location names a place in a file: a line of NDJSON and the index of the
// entry in each enclosing Bundle.
type Location struct {
	File string
	// Line is the line of NDJSON, from 1; 0 when the file is one JSON
	// document.
	Line int
	// Entries are the entry indexes, from 0, in each enclosing Bundle,
	// outermost first. The Reader reuses the slice: Clone a Location to
	// keep it beyond the callback.
	Entries []int
}

// String is "file:line entry i entry j", leaving out what does not apply.
func (l Location) String() string {
	var b strings.Builder
	b.WriteString(l.File)
	if l.Line > 0 {
		fmt.Fprintf(&b, ":%d", l.Line)
	}
	for _, e := range l.Entries {
		fmt.Fprintf(&b, " entry %d", e)
	}
	return b.String()
}

// Clone returns a copy that does not share the Reader's memory.
func (l Location) Clone() Location {
	l.Entries = append([]int(nil), l.Entries...)
	return l
}

// Offset numbers the location within its file for the lake's lineage
// columns and object names: the line of NDJSON, else 1 + the index of the
// outermost entry, else 1. It grows with the position in the file; the
// changes of one line or one top-level entry (a notification's events, a
// nested Bundle's entries) share it, as the events of one Kafka record
// share its offset.
func (l Location) Offset() int64 {
	switch {
	case l.Line > 0:
		return int64(l.Line)
	case len(l.Entries) > 0:
		return int64(l.Entries[0]) + 1
	}
	return 1
}
