package notification

import (
	"bytes"
	"strings"

	"fhirlake/flatten"
)

// Decoder decodes records as DecodeRecord does and, on the way, parses
// each resource it finds with flatten's parser instead of only scanning
// it: the tree gives the decoder the resource's type, id and meta, and is
// handed on in Event.Parsed, so views evaluate it without tokenizing the
// resource's bytes again. It is the consumer's hot path; DecodeRecord,
// which builds no tree, stays the choice of callers that only check or
// route a record.
//
// A Decoder reuses its memory: the notification it returns, and the
// Parsed trees of its events, are valid until the Decoder's next call. It is not safe for concurrent use.
type Decoder struct {
	trees  []*flatten.Resource
	used   int
	doc    document
	note   Notification
	events []statusEvent
	prms   []param
}

// Decoder's retention between calls: a record of many entries, or a huge
// resource, grows the trees, and the Decoder keeps at most this many
// trees, each at most this large, for the next record: 8 MiB at worst per
// Decoder (one per partition worker), outside the memory budget. A
// notification holds two or three resources of a few kilobytes each.
const (
	keptTrees     = 32
	keptTreeBytes = 256 << 10
)

// DecodeRecord is DecodeRecord, with each event's Parsed set when its
// resource came in the record (a Bundle entry, an envelope's resource
// member).
func (d *Decoder) DecodeRecord(value []byte, headers []Header) (*Notification, error) {
	for i, t := range d.trees[:d.used] {
		if t.Retained() > keptTreeBytes {
			d.trees[i] = nil
		}
	}
	if len(d.trees) > keptTrees {
		clear(d.trees[keptTrees:])
		d.trees = d.trees[:keptTrees]
	}
	d.used = 0
	return decodeRecord(value, headers, d)
}

// tree returns the next free tree.
func (d *Decoder) tree() *flatten.Resource {
	if d.used == len(d.trees) {
		d.trees = append(d.trees, nil)
	}
	t := d.trees[d.used]
	if t == nil {
		t = &flatten.Resource{}
		d.trees[d.used] = t
	}
	d.used++
	return t
}

// parsedResource is resource with a Decoder: the object at the scanner's
// position is parsed into a tree once, and the header read from the tree.
// The object's syntax is checked by the parser, so a syntax error is still
// a syntax error of the record.
func (s *jsonScanner) parsedResource(h *resourceHead) error {
	start := s.pos
	t := s.dec.tree()
	end, err := t.ParseEmbedded(s.data, start, MaxNesting-s.depth)
	if err != nil {
		s.pos = end
		return s.fail("%v", err)
	}
	s.pos = end
	h.raw, h.parsed = s.data[start:end], t
	readHead(t, h)
	return nil
}

// envelopeResource reports whether the object obj starts with holds a
// resource the decoder reads as part of the envelope (a status, a Bundle
// inside a message Bundle) and no view does: naming its resourceType
// first, as servers write it. Such a resource is scanned, not parsed into
// a tree: a Parameters status is a third of a backport notification. The
// answer changes the work only, never the result.
func envelopeResource(obj []byte) bool {
	i := 1
	ws := func() {
		for i < len(obj) && (obj[i] == ' ' || obj[i] == '\n' || obj[i] == '\t' || obj[i] == '\r') {
			i++
		}
	}
	ws()
	const key = `"resourceType"`
	if !bytes.HasPrefix(obj[i:], []byte(key)) {
		return false
	}
	i += len(key)
	ws()
	if i >= len(obj) || obj[i] != ':' {
		return false
	}
	i++
	ws()
	if i >= len(obj) || obj[i] != '"' {
		return false
	}
	name, _, ok := bytes.Cut(obj[i+1:min(len(obj), i+32)], []byte{'"'})
	if !ok {
		return false
	}
	switch string(name) {
	case "SubscriptionStatus", "Parameters", "AidboxSubscriptionStatus", "Bundle":
		return true
	}
	return false
}

// readHead reads resourceType, id and meta from a parsed resource, with
// the same judgements as the scanner's resource and meta.
func readHead(t *flatten.Resource, h *resourceHead) {
	root := t.Root()
	var seen seenKeys
	for i := range t.Len(root) {
		key, v := t.Member(root, i)
		switch key {
		case "resourceType":
			if !seen.first(0) {
				h.setErr(`key "resourceType" appears twice`)
			}
			h.typ = treeString(t, v, h, "resourceType")
		case "id":
			if !seen.first(1) {
				h.setErr(`key "id" appears twice`)
			}
			h.id = treeString(t, v, h, "id")
		case "meta":
			if !seen.first(2) {
				h.setErr(`key "meta" appears twice`)
			}
			readMeta(t, v, h)
		default:
			h.others++
		}
	}
}

func readMeta(t *flatten.Resource, meta flatten.Node, h *resourceHead) {
	if !t.IsObject(meta) {
		h.setErr("meta is not an object")
		return
	}
	var seen seenKeys
	for i := range t.Len(meta) {
		key, v := t.Member(meta, i)
		switch key {
		case "versionId":
			if !seen.first(0) {
				h.setErr(`key "meta.versionId" appears twice`)
			}
			h.versionID = treeString(t, v, h, "meta.versionId")
		case "lastUpdated":
			if !seen.first(1) {
				h.setErr(`key "meta.lastUpdated" appears twice`)
			}
			h.lastUpdated = treeString(t, v, h, "meta.lastUpdated")
		case "tag":
			if !seen.first(2) {
				h.setErr(`key "meta.tag" appears twice`)
			}
			readTags(t, v, h)
		}
	}
}

func readTags(t *flatten.Resource, tags flatten.Node, h *resourceHead) {
	if !t.IsArray(tags) {
		h.setErr("meta.tag is not an array")
		return
	}
	for i := range t.Len(tags) {
		c := t.Element(tags, i)
		if !t.IsObject(c) {
			h.setErr("meta.tag holds something other than a Coding")
			continue
		}
		var tag Tag
		for k := range t.Len(c) {
			switch key, v := t.Member(c, k); key {
			case "system":
				tag.System = treeString(t, v, h, "meta.tag.system")
			case "code":
				tag.Code = treeString(t, v, h, "meta.tag.code")
			}
		}
		if tag.System != "" || tag.Code != "" {
			h.tags = append(h.tags, tag)
		}
	}
}

// treeString is optString on a tree: a string's text, "" for null, and an
// error noted for anything else. Text with escapes lives in the tree,
// which the Decoder reuses, so it is cloned: the decoder's strings share
// the record's memory, or own theirs.
func treeString(t *flatten.Resource, v flatten.Node, h *resourceHead, name string) string {
	switch {
	case t.IsString(v):
		s, escaped := t.Text(v)
		if escaped {
			s = strings.Clone(s)
		}
		return s
	case t.IsNull(v):
		return ""
	}
	h.setErr(name + " is not a string")
	return ""
}

// The Decoder's scratch: the top-level document, the notification it
// returns, a status's events and parameters, each reused from record to
// record with the memory it grew to (within keptScratch). A nil Decoder
// (DecodeRecord) hands out fresh ones.
const keptScratch = 1024

func (d *Decoder) document() *document {
	if d == nil {
		return &document{}
	}
	doc := &d.doc
	entries := doc.entries[:0]
	if cap(entries) > keptScratch {
		entries = nil
	}
	*doc = document{dec: d, entries: entries}
	return doc
}

func (d *Decoder) notification() *Notification {
	if d == nil {
		return &Notification{}
	}
	n := &d.note
	*n = Notification{Events: trim(n.Events), BaseURLs: trim(n.BaseURLs), Tags: trim(n.Tags)}
	return n
}

func (d *Decoder) statusEvents() []statusEvent {
	if d == nil {
		return nil
	}
	return trim(d.events)
}

func (d *Decoder) keepStatusEvents(events []statusEvent) {
	if d != nil {
		d.events = events
	}
}

func (d *Decoder) params() []param {
	if d == nil {
		return nil
	}
	return trim(d.prms)
}

func (d *Decoder) keepParams(params []param) {
	if d != nil {
		d.prms = params
	}
}

// trim empties s, keeping its memory unless it grew past keptScratch.
func trim[T any](s []T) []T {
	if cap(s) > keptScratch {
		return nil
	}
	return s[:0]
}
