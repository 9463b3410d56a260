package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Format names the envelope a notification arrived in.
type Format string

const (
	FormatR5         Format = "r5"          // Bundle.type subscription-notification, SubscriptionStatus first
	FormatR4BHistory Format = "r4b-history" // Bundle.type history, SubscriptionStatus first
	FormatR4Backport Format = "r4-backport" // Bundle.type history, Parameters status first
)

// Operation is what happened to a resource.
type Operation string

const (
	OpUpsert Operation = "upsert"
	OpDelete Operation = "delete"
)

// Notification is one decoded Kafka record.
type Notification struct {
	Format Format
	// Wrapped is true when the notification came inside a message Bundle.
	Wrapped bool
	// Type is the status type: event-notification, handshake, heartbeat,
	// query-status or query-event.
	Type         string
	Status       string
	Subscription string
	Topic        string
	// Events are the changes to store, in bundle order.
	Events []Event
	// Declared is the number of notification events the status lists.
	Declared int
	// Empty counts events without a focus (payload mode "empty").
	Empty int
	// Context counts additional-context entries, which are not changes.
	Context int
}

// Control reports whether the notification carries no changes by design
// (handshake, heartbeat, query-status, or an event notification in payload
// mode "empty").
func (n *Notification) Control() bool { return len(n.Events) == 0 }

// Event is one changed resource.
type Event struct {
	Operation    Operation
	ResourceType string
	ID           string
	VersionID    string
	// LastUpdated is meta.lastUpdated, or the entry's response.lastModified;
	// zero when neither is known.
	LastUpdated time.Time
	// Resource is the resource JSON as received; nil for a delete.
	Resource json.RawMessage
}

// DecodeError is a record that cannot be decoded. Class is a short stable
// label used in dead-letter headers and metrics.
type DecodeError struct {
	Class  string
	Reason string
}

func (e *DecodeError) Error() string { return e.Class + ": " + e.Reason }

func decodeErr(class, format string, args ...any) error {
	return &DecodeError{Class: class, Reason: fmt.Sprintf(format, args...)}
}

// Error classes of DecodeError.
const (
	ClassMalformed       = "malformed"        // not JSON, invalid UTF-8, truncated
	ClassNotNotification = "not_notification" // JSON, but not a notification shape
	ClassInvalid         = "invalid"          // a notification that breaks the spec
	ClassIDOnly          = "id_only"          // focus without resource and no way to fetch it
)

type bundle struct {
	ResourceType string  `json:"resourceType"`
	Type         string  `json:"type"`
	Timestamp    string  `json:"timestamp"`
	Entry        []entry `json:"entry"`
}

type entry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
	Response *struct {
		Status       string `json:"status"`
		Location     string `json:"location"`
		Etag         string `json:"etag"`
		LastModified string `json:"lastModified"`
	} `json:"response"`
}

type reference struct {
	Reference string `json:"reference"`
}

// header is the part of any resource the decoder needs.
type header struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         *struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
}

type subscriptionStatus struct {
	ResourceType       string          `json:"resourceType"`
	Status             string          `json:"status"`
	Type               string          `json:"type"`
	EventsSinceStart   json.RawMessage `json:"eventsSinceSubscriptionStart"`
	Subscription       reference       `json:"subscription"`
	Topic              string          `json:"topic"`
	NotificationEvents []struct {
		EventNumber       json.RawMessage `json:"eventNumber"`
		Focus             *reference      `json:"focus"`
		AdditionalContext []reference     `json:"additionalContext"`
	} `json:"notificationEvent"`
}

type parameters struct {
	Parameter []parameter `json:"parameter"`
}

type parameter struct {
	Name           string          `json:"name"`
	ValueString    *string         `json:"valueString"`
	ValueCode      *string         `json:"valueCode"`
	ValueCanonical *string         `json:"valueCanonical"`
	ValueUnsigned  json.RawMessage `json:"valueUnsignedInt"`
	ValueInteger64 json.RawMessage `json:"valueInteger64"`
	ValueReference *reference      `json:"valueReference"`
	Part           []parameter     `json:"part"`
}

func (p parameter) text() string {
	for _, s := range []*string{p.ValueString, p.ValueCode, p.ValueCanonical} {
		if s != nil {
			return *s
		}
	}
	return ""
}

// statusEvent is one notification event, whatever the envelope.
type statusEvent struct {
	focus   string
	context []string
}

// MaxNesting bounds how deeply a notification may nest JSON; deeper input is
// rejected before decoding, so hostile input cannot exhaust the stack.
const MaxNesting = 256

// Decode turns one Kafka record value into a notification. Every failure is
// a *DecodeError naming its class and reason.
func Decode(value []byte) (*Notification, error) {
	if len(bytes.TrimSpace(value)) == 0 {
		return nil, decodeErr(ClassMalformed, "empty record value")
	}
	if !utf8.Valid(value) {
		return nil, decodeErr(ClassMalformed, "record value is not valid UTF-8")
	}
	if d := nesting(value); d > MaxNesting {
		return nil, decodeErr(ClassMalformed, "JSON nests deeper than %d levels", MaxNesting)
	}
	var b bundle
	if err := json.Unmarshal(value, &b); err != nil {
		return nil, decodeErr(ClassMalformed, "invalid JSON: %v", err)
	}
	switch b.ResourceType {
	case "SubscriptionStatus", "Parameters":
		return decodeStatusOnly(b.ResourceType, value)
	}
	return decodeBundle(&b, false)
}

func decodeBundle(b *bundle, wrapped bool) (*Notification, error) {
	if b.ResourceType != "Bundle" {
		if b.ResourceType == "" {
			return nil, decodeErr(ClassNotNotification, "no resourceType: not a FHIR resource")
		}
		return nil, decodeErr(ClassNotNotification, "resourceType %q is not a notification Bundle", b.ResourceType)
	}
	if b.Type == "message" {
		if wrapped {
			return nil, decodeErr(ClassInvalid, "message Bundle nested in a message Bundle")
		}
		for _, e := range b.Entry {
			var inner bundle
			if len(e.Resource) == 0 || json.Unmarshal(e.Resource, &inner) != nil || inner.ResourceType != "Bundle" {
				continue
			}
			return decodeBundle(&inner, true)
		}
		return nil, decodeErr(ClassInvalid, "message Bundle holds no notification Bundle")
	}
	if b.Type != "subscription-notification" && b.Type != "history" {
		return nil, decodeErr(ClassNotNotification, "Bundle.type %q is not subscription-notification or history", b.Type)
	}
	if len(b.Entry) == 0 || len(b.Entry[0].Resource) == 0 {
		return nil, decodeErr(ClassInvalid, "Bundle has no status entry")
	}
	n := &Notification{Wrapped: wrapped}
	var h header
	if err := json.Unmarshal(b.Entry[0].Resource, &h); err != nil {
		return nil, decodeErr(ClassInvalid, "status entry: %v", err)
	}
	var events []statusEvent
	var err error
	switch {
	case h.ResourceType == "SubscriptionStatus":
		n.Format = FormatR4BHistory
		if b.Type == "subscription-notification" {
			n.Format = FormatR5
		}
		events, err = decodeStatus(b.Entry[0].Resource, n)
	case h.ResourceType == "Parameters" && b.Type == "history":
		n.Format = FormatR4Backport
		events, err = decodeParameters(b.Entry[0].Resource, n)
	default:
		return nil, decodeErr(ClassInvalid, "first entry is %q, want SubscriptionStatus or Parameters", h.ResourceType)
	}
	if err != nil {
		return nil, err
	}
	switch n.Type {
	case "handshake", "heartbeat", "query-status":
		return n, nil
	case "event-notification", "query-event":
	case "":
		return nil, decodeErr(ClassInvalid, "status has no type")
	default:
		return nil, decodeErr(ClassInvalid, "unknown notification type %q", n.Type)
	}
	n.Declared = len(events)
	if err := resolveEvents(b, events, n); err != nil {
		return nil, err
	}
	return n, nil
}

// decodeStatusOnly reads a bare status resource, as a $status operation
// returns it: a control message without changes.
func decodeStatusOnly(resourceType string, raw json.RawMessage) (*Notification, error) {
	n := &Notification{Format: FormatR4BHistory}
	var err error
	if resourceType == "Parameters" {
		n.Format = FormatR4Backport
		_, err = decodeParameters(raw, n)
	} else {
		_, err = decodeStatus(raw, n)
	}
	if err != nil {
		return nil, err
	}
	if n.Subscription == "" && n.Status == "" {
		return nil, decodeErr(ClassNotNotification, "%s is not a subscription status", resourceType)
	}
	n.Type = "status"
	return n, nil
}

func decodeStatus(raw json.RawMessage, n *Notification) ([]statusEvent, error) {
	var s subscriptionStatus
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, decodeErr(ClassInvalid, "SubscriptionStatus: %v", err)
	}
	n.Type, n.Status, n.Subscription, n.Topic = s.Type, s.Status, s.Subscription.Reference, s.Topic
	if _, err := counter(s.EventsSinceStart); err != nil {
		return nil, decodeErr(ClassInvalid, "eventsSinceSubscriptionStart: %v", err)
	}
	events := make([]statusEvent, 0, len(s.NotificationEvents))
	for i, e := range s.NotificationEvents {
		if _, err := counter(e.EventNumber); err != nil {
			return nil, decodeErr(ClassInvalid, "notificationEvent[%d].eventNumber: %v", i, err)
		}
		var ev statusEvent
		if e.Focus != nil {
			ev.focus = e.Focus.Reference
		}
		for _, c := range e.AdditionalContext {
			ev.context = append(ev.context, c.Reference)
		}
		events = append(events, ev)
	}
	return events, nil
}

func decodeParameters(raw json.RawMessage, n *Notification) ([]statusEvent, error) {
	var p parameters
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, decodeErr(ClassInvalid, "Parameters status: %v", err)
	}
	var events []statusEvent
	for _, prm := range p.Parameter {
		switch prm.Name {
		case "type":
			n.Type = prm.text()
		case "status":
			n.Status = prm.text()
		case "topic":
			n.Topic = prm.text()
		case "subscription":
			if prm.ValueReference != nil {
				n.Subscription = prm.ValueReference.Reference
			}
		case "events-since-subscription-start":
			if s := prm.text(); s != "" {
				if _, err := strconv.ParseInt(s, 10, 64); err != nil {
					return nil, decodeErr(ClassInvalid, "events-since-subscription-start %q is not an integer", s)
				}
			}
		case "notification-event":
			var ev statusEvent
			for _, part := range prm.Part {
				switch part.Name {
				case "focus":
					if part.ValueReference != nil {
						ev.focus = part.ValueReference.Reference
					}
				case "additional-context":
					if part.ValueReference != nil {
						ev.context = append(ev.context, part.ValueReference.Reference)
					}
				case "event-number":
					if s := part.text(); s != "" {
						if _, err := strconv.ParseInt(s, 10, 64); err != nil {
							return nil, decodeErr(ClassInvalid, "event-number %q is not an integer", s)
						}
					}
				}
			}
			events = append(events, ev)
		}
	}
	return events, nil
}

// counter accepts an event counter written as a JSON string or number.
func counter(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a 64-bit integer", s)
	}
	return n, nil
}

// resolveEvents turns the status's events plus the Bundle's entries into
// changes. A focus is matched to an entry by full URL, else by Type/id.
// Entries named only as additional context, or fetched with GET, are
// context and not stored as changes.
func resolveEvents(b *bundle, events []statusEvent, n *Notification) error {
	entries := b.Entry[1:]
	used := make([]bool, len(entries))
	context := map[string]bool{}
	for _, ev := range events {
		for _, c := range ev.context {
			context[refKey(c)] = true
		}
	}
	for i, ev := range events {
		if ev.focus == "" {
			n.Empty++
			continue
		}
		j := findEntry(entries, ev.focus)
		if j < 0 {
			return decodeErr(ClassIDOnly, "event %d: focus %s has no entry in the Bundle (id-only payload)", i, ev.focus)
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
	}
	for j := range entries {
		if used[j] {
			continue
		}
		e := &entries[j]
		key := refKey(e.FullURL)
		if context[key] || e.Request == nil || strings.EqualFold(e.Request.Method, "GET") {
			n.Context++
			continue
		}
		ev, err := entryEvent(e, e.FullURL)
		if err != nil {
			return fmt.Errorf("entry %d: %w", j+1, err)
		}
		n.Events = append(n.Events, ev)
	}
	return nil
}

func findEntry(entries []entry, focus string) int {
	for j := range entries {
		if entries[j].FullURL == focus {
			return j
		}
	}
	key := refKey(focus)
	if key == "" {
		return -1
	}
	for j := range entries {
		if refKey(entries[j].FullURL) == key {
			return j
		}
		if entries[j].Request != nil && refKey(entries[j].Request.URL) == key {
			return j
		}
	}
	return -1
}

// refKey reduces a reference or URL to "Type/id", dropping the base URL and
// any _history suffix; "" when it has no such shape.
func refKey(ref string) string {
	t, id, _ := splitRef(ref)
	if t == "" {
		return ""
	}
	return t + "/" + id
}

// splitRef parses [base/]Type/id[/_history/version].
func splitRef(ref string) (typ, id, version string) {
	if i := strings.IndexAny(ref, "?#"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(strings.TrimSuffix(ref, "/"), "/")
	if len(parts) >= 4 && parts[len(parts)-2] == "_history" {
		version = parts[len(parts)-1]
		parts = parts[:len(parts)-2]
	}
	if len(parts) < 2 {
		return "", "", ""
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	if !isResourceType(typ) || id == "" {
		return "", "", ""
	}
	return typ, id, version
}

func isResourceType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func entryEvent(e *entry, focus string) (Event, error) {
	method := ""
	if e.Request != nil {
		method = strings.ToUpper(e.Request.Method)
	}
	if len(e.Resource) == 0 || string(e.Resource) == "null" {
		if method != "DELETE" {
			return Event{}, decodeErr(ClassIDOnly, "entry %s has no resource (id-only payload)", focus)
		}
		typ, id, version := splitRef(focus)
		if typ == "" && e.Request != nil {
			typ, id, version = splitRef(e.Request.URL)
		}
		if typ == "" {
			typ, id, version = splitRef(e.FullURL)
		}
		if typ == "" {
			return Event{}, decodeErr(ClassInvalid, "delete entry names no Type/id (fullUrl %q)", e.FullURL)
		}
		ev := Event{Operation: OpDelete, ResourceType: typ, ID: id, VersionID: version}
		if e.Response != nil {
			if ev.VersionID == "" {
				ev.VersionID = etagVersion(e.Response.Etag)
			}
			if ev.VersionID == "" {
				_, _, ev.VersionID = splitRef(e.Response.Location)
			}
			ev.LastUpdated = parseInstant(e.Response.LastModified)
		}
		return ev, nil
	}
	var h header
	if err := json.Unmarshal(e.Resource, &h); err != nil {
		return Event{}, decodeErr(ClassInvalid, "entry %s: resource: %v", focus, err)
	}
	if !isResourceType(h.ResourceType) {
		return Event{}, decodeErr(ClassInvalid, "entry %s: resourceType %q is not a FHIR resource type", focus, h.ResourceType)
	}
	if h.ID == "" {
		return Event{}, decodeErr(ClassInvalid, "entry %s: %s resource has no id", focus, h.ResourceType)
	}
	if t, id, _ := splitRef(focus); t != "" && (t != h.ResourceType || id != h.ID) {
		return Event{}, decodeErr(ClassInvalid, "entry %s holds %s/%s", focus, h.ResourceType, h.ID)
	}
	ev := Event{Operation: OpUpsert, ResourceType: h.ResourceType, ID: h.ID, Resource: e.Resource}
	if method == "DELETE" {
		ev.Operation = OpDelete
	}
	if h.Meta != nil {
		ev.VersionID = h.Meta.VersionID
		ev.LastUpdated = parseInstant(h.Meta.LastUpdated)
	}
	if e.Response != nil {
		if ev.VersionID == "" {
			ev.VersionID = etagVersion(e.Response.Etag)
		}
		if ev.LastUpdated.IsZero() {
			ev.LastUpdated = parseInstant(e.Response.LastModified)
		}
	}
	return ev, nil
}

// etagVersion reads W/"3" as version 3.
func etagVersion(etag string) string {
	etag = strings.TrimPrefix(etag, "W/")
	return strings.Trim(etag, `"`)
}

// parseInstant reads a FHIR instant; anything else is the zero time.
func parseInstant(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// nesting returns the deepest nesting of objects and arrays, ignoring
// brackets inside strings.
func nesting(b []byte) int {
	depth, max := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				max = depth
			}
		case '}', ']':
			depth--
		}
	}
	return max
}

// IsDecodeError reports whether err is a *DecodeError and returns it.
func IsDecodeError(err error) (*DecodeError, bool) {
	var de *DecodeError
	ok := errors.As(err, &de)
	return de, ok
}
