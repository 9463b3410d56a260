package notification

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"fhirlake/flatten"
)

// Format names the envelope a notification arrived in.
type Format string

const (
	FormatR5         Format = "r5"          // Bundle.type subscription-notification, SubscriptionStatus first
	FormatR4BHistory Format = "r4b-history" // Bundle.type history, SubscriptionStatus first
	FormatR4Backport Format = "r4-backport" // Bundle.type history, Parameters status first
	FormatAidbox     Format = "aidbox"      // Bundle.type history, AidboxSubscriptionStatus first
	FormatHAPI       Format = "hapi"        // HAPI/Smile message channel: {"headers":…,"payload":{"operationType",…}}
	FormatIBM        Format = "ibm"         // IBM/LinuxForHealth FHIR: {"operationType","resourceId","tenantId",…}
	FormatAzure      Format = "azure"       // Azure Health Data Services event (Event Grid or CloudEvents schema)
	FormatGoogle     Format = "google"      // Google Cloud Healthcare Pub/Sub: the resource name, action in headers
	FormatResource   Format = "resource"    // a bare resource (rest-hook style, Medplum), interaction in headers
	FormatRestHook   Format = "rest-hook"   // fhirlake receive's envelope of a classic rest-hook PUT or DELETE
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
	// query-status or query-event; "status" for a bare status resource.
	// Envelopes without a status (HAPI, IBM, Azure, Google, a bare
	// resource) are event-notification.
	Type         string
	Status       string
	Subscription string
	Topic        string
	// Events are the changes to store, in bundle order. An event whose
	// Fetch is set carries no resource yet: see Event.Fetch.
	Events []Event
	// Declared is the number of notification events the status lists.
	Declared int
	// Empty counts events without a focus (payload mode "empty").
	Empty int
	// Context counts additional-context entries, which are not changes.
	Context int

	// Routing hints: what the payload says about where it came from. The
	// decoder resolves no tenant; the router decides whether to trust them.

	// TenantID is the tenant an IBM/LinuxForHealth event names (tenantId).
	TenantID string
	// PartitionID is the HAPI/Smile request partition of a message-channel
	// event: its first partition name, else its first partition id in
	// decimal.
	PartitionID string
	// BaseURLs are the distinct http(s) FHIR base URLs the notification
	// names, first seen first: the part before "/<Type>/<id>" of the
	// subscription reference and of each entry's fullUrl (of a HAPI
	// payloadId; the Azure account; the Google FHIR store).
	BaseURLs []string
	// Tags are the distinct meta.tag codings of the changed resources that
	// the notification carries (not of fetched ones), in order of
	// appearance.
	Tags []Tag
}

// Tag is a meta.tag coding.
type Tag struct {
	System string
	Code   string
}

// Control reports whether the notification carries no changes by design
// (handshake, heartbeat, query-status, or an event notification in payload
// mode "empty").
func (n *Notification) Control() bool { return len(n.Events) == 0 }

// NeedsFetch reports whether some event is id-only and must be read from
// the tenant's FHIR server before it can be stored (see Fetcher.Resolve).
func (n *Notification) NeedsFetch() bool {
	for i := range n.Events {
		if n.Events[i].Fetch != nil {
			return true
		}
	}
	return false
}

// Event is one changed resource.
type Event struct {
	Operation    Operation
	ResourceType string
	ID           string
	VersionID    string
	// LastUpdated is meta.lastUpdated, or the entry's response.lastModified;
	// zero when neither is known.
	LastUpdated time.Time
	// Resource is the resource JSON as received; nil for a delete without a
	// resource and for an id-only event. It may alias the record value:
	// the value must not be modified while the event is in use.
	Resource json.RawMessage
	// Parsed is Resource already parsed, when the event was decoded by a
	// Decoder: views evaluate it without tokenizing the resource again. It
	// belongs to the Decoder and is valid until its next call; nil when the
	// resource was not parsed (DecodeRecord, a HAPI payload string, a bare
	// resource record, a fetched resource).
	Parsed *flatten.Resource
	// Fetch is set on an id-only event (Operation upsert, Resource nil):
	// the notification named the resource without carrying it, and it must
	// be read from the tenant's FHIR server (Fetcher.Fetch, then
	// Event.ApplyFetch) before it can be stored. nil otherwise.
	Fetch *FetchRef
}

// FetchRef names a resource to read from a FHIR server.
type FetchRef struct {
	ResourceType string
	ID           string
	// VersionID is the version to read with vread; "" reads the current
	// version.
	VersionID string
	// BaseURL is the base the notification named (focus or fullUrl) when it
	// was absolute; a hint only: reads always go to the tenant's configured
	// base URL.
	BaseURL string
}

// DecodeError is a record that cannot be decoded. Class is a short stable
// label used in dead-letter headers and metrics.
type DecodeError struct {
	Class  string
	Reason string
}

func (e *DecodeError) Error() string { return e.Class + ": " + e.Reason }

// maxReason bounds a DecodeError's reason, which quotes the input and
// travels in dead-letter headers and logs.
const maxReason = 512

func decodeErr(class, format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	if len(reason) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut] + "…"
	}
	return &DecodeError{Class: class, Reason: reason}
}

// Error classes of DecodeError.
const (
	ClassMalformed       = "malformed"        // not JSON, invalid UTF-8, truncated, too deep
	ClassOversized       = "oversized"        // larger than MaxRecordBytes, or more than MaxEntries entries or events
	ClassNotNotification = "not_notification" // JSON, but not a notification shape
	ClassInvalid         = "invalid"          // a notification that breaks the spec or contradicts itself
	// ClassIDOnly is an id-only event of a tenant that has no FHIR server
	// configured to read it from: a FetchError class, since the decoder
	// returns id-only events with a FetchRef.
	ClassIDOnly = "id_only"
)

// Limits on what a record may hold. Beyond them a record is dead-lettered
// rather than allowed to exhaust memory or the stack.
const (
	// MaxRecordBytes bounds a record value; a larger one is oversized. It
	// is sixteen times Kafka's default message limit (1 MiB), so a topic
	// configured for large full-resource notifications still fits, while
	// one record cannot take an unbounded share of the memory budget.
	MaxRecordBytes = 16 << 20
	// MaxNesting bounds how deeply a notification may nest JSON; deeper
	// input is rejected while it is read, so hostile input cannot exhaust
	// the stack. FHIR resources rarely exceed 20 levels.
	MaxNesting = 256
	// MaxEntries bounds the entries of a Bundle and the events of a status.
	// A minimal entry is a few bytes but costs a few hundred in memory, so
	// without it a 16 MiB record could take gigabytes.
	MaxEntries = 50_000
	// MaxIDLength bounds a resource id. FHIR says 64, but some servers
	// accept longer client-assigned ids, and the lake has no reason to
	// refuse them.
	MaxIDLength = 256
)

// utf8BOM is accepted (and ignored) before a JSON record: some Windows
// tooling writes it, and RFC 8259 allows a parser to ignore it.
const utf8BOM = "\xef\xbb\xbf"

// Decode turns one Kafka record value into a notification, for callers that
// have no record headers. It is DecodeRecord(value, nil).
func Decode(value []byte) (*Notification, error) { return DecodeRecord(value, nil) }

// Header is one record header: a Kafka record header, an HTTP header of a
// rest-hook. The decoder reads only the names listed with HeaderInteraction.
type Header struct {
	Key   string
	Value []byte
}

// DecodeRecord turns one Kafka record into a notification. The shape is
// detected from the value alone; headers only complete envelopes that put
// the interaction outside the body (a bare resource or "{}" on delete, a
// Google resource name): see HeaderInteraction, HeaderResource,
// HeaderVersionID and HeaderMedplumDeleted. Header values are never copied
// into the result. Every failure is a *DecodeError naming its class and
// reason.
//
// The notification's strings and resources share value's memory rather
// than copy it, so value must not be modified while they are in use, and a
// string kept beyond the record (a map key, a metric label) should be
// cloned, or it keeps the whole fetch response it points into alive.
func DecodeRecord(value []byte, headers []Header) (*Notification, error) {
	return decodeRecord(value, headers, nil)
}

// decodeRecord is DecodeRecord; with dec, resources are parsed into dec's
// trees as they are found (Decoder.DecodeRecord).
func decodeRecord(value []byte, headers []Header, dec *Decoder) (*Notification, error) {
	if len(value) > MaxRecordBytes {
		return nil, decodeErr(ClassOversized, "record value is %d bytes, more than %d", len(value), MaxRecordBytes)
	}
	value = bytes.TrimPrefix(value, []byte(utf8BOM))
	value = bytes.TrimSpace(value)
	if len(value) == 0 {
		return nil, decodeErr(ClassMalformed, "empty record value")
	}
	if !utf8.Valid(value) {
		return nil, decodeErr(ClassMalformed, "record value is not valid UTF-8")
	}
	switch c := value[0]; {
	case c == '{':
		return decodeObject(value, readHeaders(headers), false, dec)
	case c == '<':
		return nil, decodeErr(ClassMalformed, "XML, not JSON: only FHIR JSON is accepted")
	case c == 'p' && bytes.HasPrefix(value, []byte("projects/")):
		return decodeGoogleName(value, readHeaders(headers))
	}
	s := newScanner(value)
	if err := s.skip(); err != nil {
		return nil, malformed(err)
	}
	if err := s.end(); err != nil {
		return nil, malformed(err)
	}
	var kind string
	switch value[0] {
	case '[':
		kind = "an array"
	case '"':
		kind = "a string"
	case 'n':
		kind = "null"
	case 't', 'f':
		kind = "a boolean"
	default:
		kind = "a number"
	}
	return nil, decodeErr(ClassNotNotification, "JSON %s, not an object", kind)
}

func malformed(err error) error {
	return decodeErr(ClassMalformed, "%v", err)
}

// decodeObject decodes a JSON object record (or a Bundle nested in a message
// Bundle when wrapped) by its shape.
func decodeObject(value []byte, h recordHints, wrapped bool, dec *Decoder) (*Notification, error) {
	doc, err := scanDocument(value, dec)
	if err != nil {
		return nil, err
	}
	if doc.dup != "" {
		return nil, decodeErr(ClassInvalid, "key %q appears twice", doc.dup)
	}
	switch rt := doc.head.typ; {
	case rt == "Bundle":
		return decodeBundle(doc, wrapped)
	case wrapped:
		return nil, decodeErr(ClassInvalid, "message Bundle entry holds %s, not a Bundle", rt)
	case rt == "SubscriptionStatus" || rt == "Parameters" || rt == "AidboxSubscriptionStatus":
		return decodeStatusOnly(rt, value)
	case rt != "":
		if doc.head.err != "" {
			return nil, decodeErr(ClassInvalid, "%s", doc.head.err)
		}
		if !isResourceType(rt) {
			return nil, decodeErr(ClassNotNotification, "resourceType %q is not a FHIR resource type", rt)
		}
		return decodeBareResource(doc, value, h)
	case doc.head.err != "":
		return nil, decodeErr(ClassNotNotification, "%s", doc.head.err)
	case doc.restHook != nil:
		return decodeRestHook(doc)
	case doc.hapi != nil:
		return decodeHAPI(doc)
	case doc.ibm:
		return decodeIBM(doc)
	case doc.azure():
		return decodeAzure(doc)
	case doc.members == 0:
		return decodeEmptyObject(h)
	}
	return nil, decodeErr(ClassNotNotification, "no resourceType: not a FHIR resource")
}

// IsDecodeError reports whether err is a *DecodeError and returns it.
func IsDecodeError(err error) (*DecodeError, bool) {
	var de *DecodeError
	ok := errors.As(err, &de)
	return de, ok
}
