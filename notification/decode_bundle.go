package notification

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"
)

// statusEvent is one notification event, whatever the envelope.
type statusEvent struct {
	focus   string
	context []string
}

// decodeBundle decodes a subscription-notification or history Bundle (or a
// message Bundle around one).
func decodeBundle(doc *document, wrapped bool) (*Notification, error) {
	if doc.tooMany {
		return nil, decodeErr(ClassOversized, "Bundle has more than %d entries", MaxEntries)
	}
	switch doc.bundleType {
	case "message":
		if wrapped {
			return nil, decodeErr(ClassInvalid, "message Bundle nested in a message Bundle")
		}
		for i := range doc.entries {
			if e := &doc.entries[i]; e.res.typ == "Bundle" && e.res.raw != nil {
				return decodeObject(e.res.raw, recordHints{}, true, doc.dec)
			}
		}
		return nil, decodeErr(ClassInvalid, "message Bundle holds no notification Bundle")
	case "subscription-notification", "history":
	default:
		return nil, decodeErr(ClassNotNotification, "Bundle.type %q is not subscription-notification or history", doc.bundleType)
	}
	if doc.entryErr != "" {
		return nil, decodeErr(ClassInvalid, "%s", doc.entryErr)
	}
	if len(doc.entries) == 0 || doc.entries[0].res.raw == nil {
		return nil, decodeErr(ClassInvalid, "Bundle has no status entry")
	}
	st := &doc.entries[0]
	if st.err != "" || st.res.err != "" {
		return nil, decodeErr(ClassInvalid, "status entry: %s", st.err+st.res.err)
	}
	n := doc.dec.notification()
	n.Wrapped = wrapped
	var events []statusEvent
	var err error
	switch {
	case st.res.typ == "SubscriptionStatus":
		n.Format = FormatR4BHistory
		if doc.bundleType == "subscription-notification" {
			n.Format = FormatR5
		}
		events, err = decodeStatus(st.res.raw, n, st.res.typ, doc.dec)
	case st.res.typ == "AidboxSubscriptionStatus":
		n.Format = FormatAidbox
		events, err = decodeStatus(st.res.raw, n, st.res.typ, doc.dec)
	case st.res.typ == "Parameters" && doc.bundleType == "history":
		n.Format = FormatR4Backport
		events, err = decodeParameters(st.res.raw, n, doc.dec)
	default:
		return nil, decodeErr(ClassInvalid, "first entry is %q, want SubscriptionStatus or Parameters", st.res.typ)
	}
	if err != nil {
		return nil, err
	}
	rest := doc.entries[1:]
	n.addBase(n.Subscription)
	for i := range rest {
		n.addBase(rest[i].fullURL)
	}
	switch n.Type {
	case "handshake", "heartbeat", "query-status":
		n.finish()
		return n, nil
	case "event-notification", "query-event":
	case "":
		return nil, decodeErr(ClassInvalid, "status has no type")
	default:
		return nil, decodeErr(ClassInvalid, "unknown notification type %q", n.Type)
	}
	n.Declared = len(events)
	if n.Type == "event-notification" && len(events) == 0 && len(rest) == 0 {
		// An event notification exists to report events; one that lists
		// none and carries nothing is broken, not "empty" (payload mode
		// empty still lists its events, without focus).
		return nil, decodeErr(ClassInvalid, "event-notification lists no events and carries no entries")
	}
	err = resolveEvents(rest, events, n)
	doc.dec.keepStatusEvents(events)
	if err != nil {
		return nil, err
	}
	n.finish()
	return n, nil
}

// decodeStatusOnly reads a bare status resource, as a $status operation
// returns it: a control message without changes.
func decodeStatusOnly(resourceType string, raw []byte) (*Notification, error) {
	n := &Notification{Format: FormatR4BHistory}
	var err error
	switch resourceType {
	case "Parameters":
		n.Format = FormatR4Backport
		_, err = decodeParameters(raw, n, nil)
	case "AidboxSubscriptionStatus":
		n.Format = FormatAidbox
		_, err = decodeStatus(raw, n, resourceType, nil)
	default:
		_, err = decodeStatus(raw, n, resourceType, nil)
	}
	if err != nil {
		return nil, err
	}
	if n.Subscription == "" && n.Status == "" {
		return nil, decodeErr(ClassNotNotification, "%s is not a subscription status", resourceType)
	}
	n.Type = "status"
	n.addBase(n.Subscription)
	n.finish()
	return n, nil
}

// problems keeps the first semantic problem found while a status is read.
type problems struct {
	first     string
	oversized bool // a list is longer than MaxEntries
}

func (p *problems) add(format string, args ...any) {
	if p.first == "" {
		p.first = fmt.Sprintf(format, args...)
	}
}

// decodeStatus reads a SubscriptionStatus (or Aidbox's
// AidboxSubscriptionStatus, which has the same members plus
// topic-destination).
func decodeStatus(raw []byte, n *Notification, name string, dec *Decoder) ([]statusEvent, error) {
	s := newScanner(raw)
	events := dec.statusEvents()
	var bad problems
	var seen seenKeys
	var destination string
	once := func(bit uint, key string) {
		if !seen.first(bit) {
			bad.add("key %q appears twice", key)
		}
	}
	str := func(name string, dst *string) error {
		v, ok, err := s.optString()
		if !ok {
			bad.add("%s is not a string", name)
		}
		*dst = v
		return err
	}
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "type":
			once(0, "type")
			return str("type", &n.Type)
		case "status":
			once(1, "status")
			return str("status", &n.Status)
		case "topic":
			once(2, "topic")
			return str("topic", &n.Topic)
		case "subscription":
			once(3, "subscription")
			return s.reference(&bad, "subscription", &n.Subscription)
		case "topic-destination":
			return s.reference(&bad, "topic-destination", &destination)
		case "eventsSinceSubscriptionStart":
			once(4, "eventsSinceSubscriptionStart")
			return s.counter(&bad, "eventsSinceSubscriptionStart", -1)
		case "notificationEvent":
			once(5, "notificationEvent")
			if s.peek() != '[' {
				bad.add("notificationEvent is not an array")
				return s.skip()
			}
			return s.array(func() error {
				i := len(events)
				if i >= MaxEntries {
					bad.add("more than %d notification events", MaxEntries)
					bad.oversized = true
					return s.skip()
				}
				if s.peek() != '{' {
					bad.add("notificationEvent[%d] is not an object", i)
					return s.skip()
				}
				var ev statusEvent
				err := s.object(func(key []byte) error {
					switch string(key) {
					case "eventNumber":
						return s.counter(&bad, "notificationEvent[%d].eventNumber", i)
					case "focus":
						return s.reference(&bad, "notificationEvent.focus", &ev.focus)
					case "additionalContext":
						if s.peek() != '[' {
							return s.skip()
						}
						return s.array(func() error {
							var ref string
							err := s.reference(&bad, "notificationEvent.additionalContext", &ref)
							if ref != "" {
								ev.context = append(ev.context, ref)
							}
							return err
						})
					}
					return s.skip()
				})
				events = append(events, ev)
				return err
			})
		}
		return s.skip()
	})
	if err != nil {
		return nil, malformed(err)
	}
	if bad.first != "" {
		class := ClassInvalid
		if bad.oversized {
			class = ClassOversized
		}
		return nil, decodeErr(class, "%s: %s", name, bad.first)
	}
	if n.Subscription == "" {
		n.Subscription = destination
	}
	return events, nil
}

// reference reads a Reference and keeps its reference string.
func (s *jsonScanner) reference(bad *problems, name string, dst *string) error {
	switch s.peek() {
	case 'n':
		return s.literal("null")
	case '{':
	default:
		bad.add("%s is not a Reference", name)
		return s.skip()
	}
	return s.object(func(key []byte) error {
		if string(key) != "reference" {
			return s.skip()
		}
		v, ok, err := s.optString()
		if !ok {
			bad.add("%s.reference is not a string", name)
		}
		*dst = v
		return err
	})
}

// counter reads an event counter written as a JSON string or number; it
// must be a 64-bit integer. The name is formatted with index (when it is not -1) only if the
// counter is wrong: a name per event was a tenth of the hot path's
// allocations.
func (s *jsonScanner) counter(bad *problems, name string, index int) error {
	var text string
	switch c := s.peek(); {
	case c == 'n':
		return s.literal("null")
	case c == '"':
		v, err := s.str()
		if err != nil {
			return err
		}
		text = v
	case c == '-' || c >= '0' && c <= '9':
		v, err := s.number()
		if err != nil {
			return err
		}
		text = unsafe.String(unsafe.SliceData(v), len(v))
	default:
		bad.add("%s is not a number", counterName(name, index))
		return s.skip()
	}
	if _, err := strconv.ParseInt(text, 10, 64); err != nil {
		bad.add("%s: %s is not a 64-bit integer", counterName(name, index), text)
	}
	return nil
}

func counterName(name string, index int) string {
	if index < 0 {
		return name
	}
	return fmt.Sprintf(name, index)
}

// param is one Parameters.parameter, reduced to the value types a
// subscription status uses.
type param struct {
	name  string
	text  string // valueString, valueCode, valueCanonical, valueUri, valueUrl, valueId
	num   string // valueUnsignedInt, valueInteger, valueInteger64, valuePositiveInt
	ref   string // valueReference.reference
	parts []param
}

// decodeParameters reads the R4 backport status: a Parameters resource.
func decodeParameters(raw []byte, n *Notification, dec *Decoder) ([]statusEvent, error) {
	s := newScanner(raw)
	var bad problems
	params := dec.params()
	err := s.object(func(key []byte) error {
		if string(key) != "parameter" {
			return s.skip()
		}
		return s.params(&bad, &params, 0)
	})
	dec.keepParams(params)
	if err != nil {
		return nil, malformed(err)
	}
	if bad.first != "" {
		class := ClassInvalid
		if bad.oversized {
			class = ClassOversized
		}
		return nil, decodeErr(class, "Parameters status: %s", bad.first)
	}
	events := dec.statusEvents()
	for _, prm := range params {
		switch prm.name {
		case "type":
			n.Type = prm.text
		case "status":
			n.Status = prm.text
		case "topic":
			n.Topic = prm.text
		case "subscription":
			n.Subscription = prm.ref
		case "events-since-subscription-start":
			if v := prm.counterText(); v != "" {
				if _, err := strconv.ParseInt(v, 10, 64); err != nil {
					return nil, decodeErr(ClassInvalid, "events-since-subscription-start %q is not an integer", v)
				}
			}
		case "notification-event":
			if len(events) >= MaxEntries {
				return nil, decodeErr(ClassOversized, "more than %d notification events", MaxEntries)
			}
			var ev statusEvent
			for _, part := range prm.parts {
				switch part.name {
				case "focus":
					ev.focus = part.ref
				case "additional-context":
					if part.ref != "" {
						ev.context = append(ev.context, part.ref)
					}
				case "event-number":
					if v := part.counterText(); v != "" {
						if _, err := strconv.ParseInt(v, 10, 64); err != nil {
							return nil, decodeErr(ClassInvalid, "event-number %q is not an integer", v)
						}
					}
				}
			}
			events = append(events, ev)
		}
	}
	return events, nil
}

func (p *param) counterText() string {
	if p.num != "" {
		return p.num
	}
	return p.text
}

// params reads a parameter (or part) array. Parts nest one level in a
// status; deeper ones are read but not interpreted.
func (s *jsonScanner) params(bad *problems, dst *[]param, level int) error {
	if s.peek() != '[' {
		bad.add("parameter is not an array")
		return s.skip()
	}
	return s.array(func() error {
		if len(*dst) >= MaxEntries {
			bad.add("more than %d parameters", MaxEntries)
			bad.oversized = true
			return s.skip()
		}
		if s.peek() != '{' {
			bad.add("parameter holds a non-object")
			return s.skip()
		}
		// The parameter is read in place, in its slot of dst: nothing in
		// the object appends to dst (parts go to the slot's own list, whose
		// memory a Decoder's reused slot keeps).
		if len(*dst) < cap(*dst) {
			*dst = (*dst)[:len(*dst)+1]
		} else {
			*dst = append(*dst, param{})
		}
		p := &(*dst)[len(*dst)-1]
		*p = param{parts: p.parts[:0]}
		return s.object(func(key []byte) error {
			switch string(key) {
			case "name":
				return s.paramString(bad, key, &p.name)
			case "valueString", "valueCode", "valueCanonical", "valueUri", "valueUrl", "valueId":
				return s.paramString(bad, key, &p.text)
			case "valueUnsignedInt", "valueInteger", "valueInteger64", "valuePositiveInt":
				switch c := s.peek(); {
				case c == '"':
					return s.paramString(bad, key, &p.num)
				case c == '-' || c >= '0' && c <= '9':
					v, err := s.number()
					p.num = unsafe.String(unsafe.SliceData(v), len(v)) // shares the value's memory, as str does
					return err
				}
				bad.add("%s is not a number", key)
				return s.skip()
			case "valueReference":
				return s.reference(bad, "valueReference", &p.ref)
			case "part":
				if level > 0 {
					return s.skip()
				}
				return s.params(bad, &p.parts, level+1)
			}
			return s.skip()
		})
	})
}

// paramString reads a string member; name is the member's key, which
// is only valid during the call.
func (s *jsonScanner) paramString(bad *problems, name []byte, dst *string) error {
	v, ok, err := s.optString()
	if !ok {
		bad.add("%s is not a string", name)
	}
	*dst = v
	return err
}

// resolveEvents turns the status's events plus the Bundle's entries into
// changes. A focus is matched to an entry by full URL, else by Type/id.
// Entries named only as additional context, or fetched with GET, are
// context and not stored as changes.
//
// Id-only or missing? A focus whose entry is present without a resource is
// id-only (the R5 and R4B shape). A focus without any entry is id-only when
// no entry of the Bundle carries a resource (the backport IG's id-only
// shape lists no entries at all); when other entries do carry resources,
// the notification is full-resource and the focus is missing from it:
// invalid.
func resolveEvents(entries []entry, events []statusEvent, n *Notification) error {
	used := make([]bool, len(entries))
	var context map[refID]bool
	for _, ev := range events {
		for _, c := range ev.context {
			if k, ok := refKey(c); ok {
				if context == nil {
					context = map[refID]bool{}
				}
				context[k] = true
			}
		}
	}
	carriesResources := false
	for i := range entries {
		if entries[i].res.raw != nil {
			carriesResources = true
			break
		}
	}
	idx := entryIndex{entries: entries}
	var fetched map[refID]bool
	for i, ev := range events {
		if ev.focus == "" {
			n.Empty++
			continue
		}
		j := idx.find(ev.focus)
		if j < 0 {
			if carriesResources {
				return decodeErr(ClassInvalid, "event %d: focus %s is missing from a notification whose entries carry resources", i, ev.focus)
			}
			e, err := idOnlyEvent(ev.focus, nil)
			if err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			k := refID{e.ResourceType, e.ID, e.VersionID}
			if fetched[k] {
				continue // two events for one resource: one change
			}
			if fetched == nil {
				fetched = map[refID]bool{}
			}
			fetched[k] = true
			n.Events = append(n.Events, e)
			continue
		}
		if used[j] {
			continue // two events for one entry: one change
		}
		used[j] = true
		e, err := entryEvent(&entries[j], ev.focus)
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		n.Events = append(n.Events, e)
		n.addTags(entries[j].res.tags)
	}
	for j := range entries {
		if used[j] {
			continue
		}
		e := &entries[j]
		k, _ := refKey(e.fullURL)
		if context[k] || e.method == "" || strings.EqualFold(e.method, "GET") {
			n.Context++
			continue
		}
		ev, err := entryEvent(e, e.fullURL)
		if err != nil {
			return fmt.Errorf("entry %d: %w", j+1, err)
		}
		n.Events = append(n.Events, ev)
		n.addTags(e.res.tags)
	}
	return nil
}

// entryIndex finds the entry of a focus. Events usually list their foci in
// entry order, so the entry after the last match is tried first; a map is
// built only for large Bundles whose order differs.
type entryIndex struct {
	entries []entry
	next    int
	byURL   map[string]int
	byKey   map[refID]int
}

func (x *entryIndex) find(focus string) int {
	if x.next < len(x.entries) && x.entries[x.next].fullURL == focus {
		x.next++
		return x.next - 1
	}
	key, keyOK := refKey(focus)
	if len(x.entries) > 32 {
		if x.byURL == nil {
			x.byURL = make(map[string]int, len(x.entries))
			x.byKey = make(map[refID]int, len(x.entries))
			for j := len(x.entries) - 1; j >= 0; j-- {
				e := &x.entries[j]
				x.byURL[e.fullURL] = j
				if k, ok := refKey(e.url); ok {
					x.byKey[k] = j
				}
				if k, ok := refKey(e.fullURL); ok {
					x.byKey[k] = j
				}
			}
		}
		if j, ok := x.byURL[focus]; ok {
			return x.hit(j)
		}
		if j, ok := x.byKey[key]; ok && keyOK {
			return x.hit(j)
		}
		return -1
	}
	for j := range x.entries {
		if x.entries[j].fullURL == focus {
			return x.hit(j)
		}
	}
	if !keyOK {
		return -1
	}
	for j := range x.entries {
		if k, ok := refKey(x.entries[j].fullURL); ok && k == key {
			return x.hit(j)
		}
		if k, ok := refKey(x.entries[j].url); ok && k == key {
			return x.hit(j)
		}
	}
	return -1
}

func (x *entryIndex) hit(j int) int {
	x.next = j + 1
	return j
}

// entryEvent turns an entry into a change: an upsert of its resource, a
// delete, or an id-only upsert to fetch.
func entryEvent(e *entry, focus string) (Event, error) {
	if e.err != "" {
		return Event{}, decodeErr(ClassInvalid, "entry %s: %s", focus, e.err)
	}
	if e.res.err != "" {
		return Event{}, decodeErr(ClassInvalid, "entry %s: %s", focus, e.res.err)
	}
	method := strings.ToUpper(e.method)
	if e.res.raw == nil {
		if method != "DELETE" {
			return idOnlyEvent(focus, e)
		}
		typ, id, version := splitRef(focus)
		if typ == "" {
			typ, id, version = splitRef(e.url)
		}
		if typ == "" {
			typ, id, version = splitRef(e.fullURL)
		}
		if typ == "" {
			return Event{}, decodeErr(ClassInvalid, "delete entry names no Type/id (fullUrl %q)", e.fullURL)
		}
		ev := Event{Operation: OpDelete, ResourceType: typ, ID: id, VersionID: version}
		if ev.VersionID == "" {
			ev.VersionID = etagVersion(e.etag)
		}
		if ev.VersionID == "" {
			_, _, ev.VersionID = splitRef(e.location)
		}
		ev.LastUpdated = parseInstant(e.lastModified)
		return ev, nil
	}
	h := &e.res
	if !isResourceType(h.typ) {
		return Event{}, decodeErr(ClassInvalid, "entry %s: resourceType %q is not a FHIR resource type", focus, h.typ)
	}
	if h.id == "" {
		return Event{}, decodeErr(ClassInvalid, "entry %s: %s resource has no id", focus, h.typ)
	}
	if !isFHIRID(h.id) {
		return Event{}, decodeErr(ClassInvalid, "entry %s: id %q is not a FHIR id", focus, h.id)
	}
	if t, id, _ := splitRef(focus); t != "" && (t != h.typ || id != h.id) {
		return Event{}, decodeErr(ClassInvalid, "entry %s holds %s/%s", focus, h.typ, h.id)
	}
	ev := Event{Operation: OpUpsert, ResourceType: h.typ, ID: h.id, Resource: h.raw, Parsed: h.parsed,
		VersionID: h.versionID, LastUpdated: parseInstant(h.lastUpdated)}
	if method == "DELETE" {
		ev.Operation = OpDelete
	}
	if ev.VersionID == "" {
		ev.VersionID = etagVersion(e.etag)
	}
	if ev.LastUpdated.IsZero() {
		ev.LastUpdated = parseInstant(e.lastModified)
	}
	return ev, nil
}

// idOnlyEvent is an upsert whose resource must be fetched: ref names it
// (the focus or, without one, the entry's fullUrl or request URL).
func idOnlyEvent(ref string, e *entry) (Event, error) {
	base, typ, id, version := parseRef(ref)
	if typ == "" && e != nil {
		base, typ, id, version = parseRef(e.fullURL)
		if typ == "" {
			base, typ, id, version = parseRef(e.url)
		}
	}
	if typ == "" {
		return Event{}, decodeErr(ClassInvalid, "id-only event names no Type/id (reference %q)", ref)
	}
	if !isHTTPURL(base) && e != nil {
		if b, t, _, _ := parseRef(e.fullURL); t != "" {
			base = b
		}
	}
	if !isHTTPURL(base) {
		base = ""
	}
	ev := Event{Operation: OpUpsert, ResourceType: typ, ID: id, VersionID: version}
	if e != nil {
		if ev.VersionID == "" {
			ev.VersionID = etagVersion(e.etag)
		}
		if ev.VersionID == "" {
			_, _, ev.VersionID = splitRef(e.location)
		}
		ev.LastUpdated = parseInstant(e.lastModified)
	}
	ev.Fetch = &FetchRef{ResourceType: typ, ID: id, VersionID: ev.VersionID, BaseURL: base}
	return ev, nil
}
