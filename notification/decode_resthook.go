package notification

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// A classic rest-hook (a FHIR R4 Subscription with channel.type rest-hook
// and no topic) calls PUT {endpoint}/{type}/{id} with the resource, and
// DELETE {endpoint}/{type}/{id} with no body. Half of what happened is in
// the request line, so `fhirlake receive` writes each call to Kafka as one
// self-describing record, the rest-hook envelope:
//
//	{"fhirRestHook":{"method":"PUT","resourceType":"Patient","id":"p1",
//	                 "versionId":"3","received":"2026-01-02T03:04:05.678Z"},
//	 "resource":{"resourceType":"Patient","id":"p1",…}}
//
// method is PUT, POST or DELETE; versionId is optional (the If-Match or
// ETag the server sent, when the resource's meta carries none); received
// is when the receiver accepted the call, and dates a delete, which
// carries no lastUpdated of its own. "resource" is present for PUT and
// POST only. docs/format/notifications.md describes it for other
// producers.

// RestHookKey is the member that marks a rest-hook envelope.
const RestHookKey = "fhirRestHook"

// RestHookCall is what the receiver knows of one classic rest-hook call.
type RestHookCall struct {
	Method       string
	ResourceType string
	ID           string
	VersionID    string
	Received     time.Time
	// Resource is the request body; nil for a DELETE.
	Resource json.RawMessage
}

// restHookHead is the fhirRestHook member of an envelope.
type restHookHead struct {
	Method       string `json:"method"`
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	VersionID    string `json:"versionId,omitempty"`
	Received     string `json:"received,omitempty"`
	err          string
}

// RestHookEnvelope returns the record value of a call: the envelope
// above, with the resource as sent (it must be a JSON value; DecodeRecord
// judges it).
func RestHookEnvelope(c RestHookCall) ([]byte, error) {
	head := restHookHead{Method: c.Method, ResourceType: c.ResourceType, ID: c.ID, VersionID: c.VersionID}
	if !c.Received.IsZero() {
		head.Received = c.Received.UTC().Format(time.RFC3339Nano)
	}
	h, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(h) + len(c.Resource) + 32)
	b.WriteString(`{"` + RestHookKey + `":`)
	b.Write(h)
	if c.Resource != nil {
		b.WriteString(`,"resource":`)
		b.Write(bytes.TrimSpace(c.Resource))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (h *restHookHead) fail(msg string) {
	if h.err == "" {
		h.err = msg
	}
}

// restHookHead reads the fhirRestHook object.
func (s *jsonScanner) restHookHead(h *restHookHead) error {
	if s.peek() != '{' {
		h.fail(RestHookKey + " is not an object")
		return s.skip()
	}
	var seen seenKeys
	return s.object(func(key []byte) error {
		var dst *string
		var bit uint
		switch string(key) {
		case "method":
			dst, bit = &h.Method, 0
		case "resourceType":
			dst, bit = &h.ResourceType, 1
		case "id":
			dst, bit = &h.ID, 2
		case "versionId":
			dst, bit = &h.VersionID, 3
		case "received":
			dst, bit = &h.Received, 4
		default:
			return s.skip()
		}
		if !seen.first(bit) {
			h.fail(RestHookKey + "." + string(key) + " appears twice")
		}
		v, ok, err := s.optString()
		if !ok {
			h.fail(RestHookKey + "." + string(key) + " is not a string")
		}
		*dst = v
		return err
	})
}

// decodeRestHook reads a rest-hook envelope into one event.
func decodeRestHook(doc *document) (*Notification, error) {
	h := doc.restHook
	if h.err != "" {
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: %s", h.err)
	}
	var op Operation
	switch strings.ToUpper(h.Method) {
	case "PUT", "POST":
		op = OpUpsert
	case "DELETE":
		op = OpDelete
	default:
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: method %s is not PUT, POST or DELETE", quote(h.Method))
	}
	if !isResourceType(h.ResourceType) {
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: resourceType %s is not a FHIR resource type", quote(h.ResourceType))
	}
	if !isFHIRID(h.ID) {
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: id %s is not a FHIR id", quote(h.ID))
	}
	if h.VersionID != "" && !isFHIRID(h.VersionID) {
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: versionId %s is not a FHIR id", quote(h.VersionID))
	}
	received := parseInstant(h.Received)
	if h.Received != "" && received.IsZero() {
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: received %s is not an instant", quote(h.Received))
	}
	ev := Event{Operation: op, ResourceType: h.ResourceType, ID: h.ID, VersionID: h.VersionID, LastUpdated: received}
	n := &Notification{Format: FormatRestHook, Type: "event-notification"}
	res := &doc.resource
	switch {
	case res.err != "":
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: resource: %s", res.err)
	case op == OpDelete:
		if res.raw != nil {
			return nil, decodeErr(ClassInvalid, "rest-hook envelope: a DELETE carries no resource")
		}
	case res.raw == nil:
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: %s without a resource", strings.ToUpper(h.Method))
	case res.typ != h.ResourceType || res.id != h.ID:
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: the call names %s/%s but the resource is %s/%s", h.ResourceType, h.ID, quote(res.typ), quote(res.id))
	case res.versionID != "" && h.VersionID != "" && res.versionID != h.VersionID:
		return nil, decodeErr(ClassInvalid, "rest-hook envelope: the call names version %s but the resource's meta %s", quote(h.VersionID), quote(res.versionID))
	default:
		if res.versionID != "" {
			ev.VersionID = res.versionID
		}
		if t := parseInstant(res.lastUpdated); !t.IsZero() {
			ev.LastUpdated = t
		}
		if res.isStub() {
			ev.Fetch = &FetchRef{ResourceType: h.ResourceType, ID: h.ID, VersionID: fetchVersion(ev.VersionID)}
		} else {
			ev.Resource, ev.Parsed = res.raw, res.parsed
			n.addTags(res.tags)
		}
	}
	n.Events = []Event{ev}
	n.finish()
	return n, nil
}
