package notification

import (
	"strings"
)

// Envelopes of servers that do not send FHIR subscription notifications.
// Their shapes come from the vendors' documentation; every one becomes a
// notification of type event-notification with one event.

// decodeBareResource reads a resource sent as is: a rest-hook style
// channel (Medplum), Google's full-resource payload, or any producer that
// writes the changed resource itself. Without headers it is an upsert;
// a delete interaction header makes it a delete.
func decodeBareResource(doc *document, raw []byte, h recordHints) (*Notification, error) {
	if h.err != "" {
		return nil, decodeErr(ClassInvalid, "%s", h.err)
	}
	typ, id := doc.head.typ, doc.head.id
	if id != "" && !isFHIRID(id) {
		return nil, decodeErr(ClassInvalid, "%s id %q is not a FHIR id", typ, id)
	}
	version := doc.head.versionID
	if h.target != "" {
		tt, tid, tv := splitRef(h.target)
		if tt == "" {
			return nil, decodeErr(ClassInvalid, "a header names %.80q, not Type/id", h.target)
		}
		if tt != typ || id != "" && tid != id {
			return nil, decodeErr(ClassInvalid, "a header names %s/%s but the body holds %s/%s", tt, tid, typ, id)
		}
		id = tid
		if version == "" {
			version = tv
		}
	}
	if version == "" && isFHIRID(h.version) {
		version = h.version
	}
	if id == "" {
		return nil, decodeErr(ClassInvalid, "%s resource has no id", typ)
	}
	n := &Notification{Format: FormatResource, Type: "event-notification"}
	ev := Event{Operation: OpUpsert, ResourceType: typ, ID: id, VersionID: version,
		LastUpdated: parseInstant(doc.head.lastUpdated), Resource: raw}
	switch {
	case h.delete():
		ev.Operation, ev.Resource = OpDelete, nil
	case doc.members == doc.headKeys: // a stub: see resourceHead.isStub
		ev.Resource = nil
		ev.Fetch = &FetchRef{ResourceType: typ, ID: id, VersionID: fetchVersion(version)}
	default:
		n.addTags(doc.head.tags)
	}
	n.Events = []Event{ev}
	n.finish()
	return n, nil
}

// fetchVersion is v when it can name a version in a vread URL, else "".
func fetchVersion(v string) string {
	if !isFHIRID(v) {
		return ""
	}
	return v
}

// decodeEmptyObject reads "{}": Medplum's body on a delete, with the
// resource named in a header.
func decodeEmptyObject(h recordHints) (*Notification, error) {
	if h.err != "" {
		return nil, decodeErr(ClassInvalid, "%s", h.err)
	}
	if h.target == "" {
		if h.interaction != "" {
			return nil, decodeErr(ClassInvalid, "empty body with a %s interaction header but no header naming the resource", h.interaction)
		}
		return nil, decodeErr(ClassNotNotification, "empty JSON object")
	}
	typ, id, version := splitRef(h.target)
	if typ == "" {
		return nil, decodeErr(ClassInvalid, "a header names %.80q, not Type/id", h.target)
	}
	if version == "" && isFHIRID(h.version) {
		version = h.version
	}
	ev := Event{Operation: OpDelete, ResourceType: typ, ID: id, VersionID: version}
	if !h.delete() {
		// A body-less create or update: the resource must be read.
		ev.Operation = OpUpsert
		ev.Fetch = &FetchRef{ResourceType: typ, ID: id, VersionID: version}
	}
	return &Notification{Format: FormatResource, Type: "event-notification", Events: []Event{ev}}, nil
}

// hapiPayload is the "payload" of a HAPI/Smile message-channel event
// (ResourceModifiedJsonMessage): the resource travels as a JSON string.
type hapiPayload struct {
	operationType string
	resource      []byte // the payload, unescaped; nil when absent
	payloadID     string
	version       string
	partitionName string // first of partitionId.partitionNames
	partitionID   string // first of partitionId.partitionIds
	err           string
}

// partition is the partition name, else its numeric id.
func (p *hapiPayload) partition() string {
	if p.partitionName != "" {
		return p.partitionName
	}
	return p.partitionID
}

func (p *hapiPayload) fail(msg string) {
	if p.err == "" {
		p.err = msg
	}
}

func (s *jsonScanner) hapiPayload(p *hapiPayload) error {
	str := func(name string, dst *string) error {
		v, ok, err := s.optString()
		if !ok {
			p.fail("payload." + name + " is not a string")
		}
		*dst = v
		return err
	}
	return s.object(func(key []byte) error {
		switch string(key) {
		case "operationType":
			return str("operationType", &p.operationType)
		case "payloadId":
			return str("payloadId", &p.payloadID)
		case "payloadVersion":
			switch c := s.peek(); {
			case c == '-' || c >= '0' && c <= '9':
				v, err := s.number()
				p.version = string(v)
				return err
			}
			return str("payloadVersion", &p.version)
		case "payload":
			switch s.peek() {
			case '"':
				v, err := s.stringBytes()
				p.resource = v
				return err
			case '{':
				v, err := s.value()
				p.resource = v
				return err
			case 'n':
				return s.literal("null")
			}
			p.fail("payload.payload is neither a string nor an object")
			return s.skip()
		case "partitionId":
			if s.peek() != '{' {
				return s.skip()
			}
			return s.object(func(key []byte) error {
				switch string(key) {
				case "partitionNames":
					return s.firstOf(&p.partitionName, '"')
				case "partitionIds":
					return s.firstOf(&p.partitionID, '0')
				}
				return s.skip()
			})
		}
		return s.skip()
	})
}

// firstOf keeps the first string (kind '"') or number (kind '0') of an
// array in dst; nulls and other values are skipped.
func (s *jsonScanner) firstOf(dst *string, kind byte) error {
	if s.peek() != '[' {
		return s.skip()
	}
	return s.array(func() error {
		switch c := s.peek(); {
		case c == '"' && kind == '"':
			v, err := s.str()
			if *dst == "" {
				*dst = v
			}
			return err
		case (c == '-' || c >= '0' && c <= '9') && kind == '0':
			v, err := s.number()
			if *dst == "" {
				*dst = string(v)
			}
			return err
		}
		return s.skip()
	})
}

// decodeHAPI reads a HAPI/Smile message-channel event:
// {"headers":{…},"payload":{"operationType","payload","payloadId",…}}.
// The channel headers are skipped unread.
func decodeHAPI(doc *document) (*Notification, error) {
	p := doc.hapi
	if p.operationType == "" && p.payloadID == "" {
		return nil, decodeErr(ClassNotNotification, "no resourceType, and payload is not a HAPI message (no operationType or payloadId)")
	}
	if p.err != "" {
		return nil, decodeErr(ClassInvalid, "HAPI message: %s", p.err)
	}
	op, ok := hapiOperation(p.operationType)
	if !ok {
		return nil, decodeErr(ClassInvalid, "HAPI message: unknown operationType %.40q", p.operationType)
	}
	n := &Notification{Format: FormatHAPI, Type: "event-notification", PartitionID: p.partition()}
	base, typ, id, version := parseRef(p.payloadID)
	if p.payloadID != "" && typ == "" {
		return nil, decodeErr(ClassInvalid, "HAPI message: payloadId %.80q is not Type/id", p.payloadID)
	}
	if isHTTPURL(base) {
		n.addBaseURL(base)
	} else {
		base = ""
	}
	if version == "" && isFHIRID(p.version) {
		version = p.version
	}
	var head resourceHead
	if len(p.resource) > 0 {
		if err := readEmbedded(p.resource, &head); err != "" {
			return nil, decodeErr(ClassInvalid, "HAPI message: payload %s", err)
		}
		if typ != "" && (head.typ != typ || head.id != "" && head.id != id) {
			return nil, decodeErr(ClassInvalid, "HAPI message: payload holds %s/%s but payloadId names %s/%s", head.typ, head.id, typ, id)
		}
		if typ == "" {
			typ, id = head.typ, head.id
		}
	}
	if typ == "" || id == "" {
		return nil, decodeErr(ClassInvalid, "HAPI message names no resource (no payloadId, no resource id)")
	}
	ev := Event{Operation: op, ResourceType: typ, ID: id, VersionID: version}
	switch {
	case op == OpDelete:
	case head.raw != nil && !head.isStub():
		ev.Resource = head.raw
		if head.versionID != "" {
			ev.VersionID = head.versionID
		}
		ev.LastUpdated = parseInstant(head.lastUpdated)
		n.addTags(head.tags)
	default:
		// No payload, or a stub: HAPI leaves the resource out of large
		// messages and of payload-less subscriptions; read it.
		ev.Fetch = &FetchRef{ResourceType: typ, ID: id, VersionID: version, BaseURL: base}
	}
	n.Events = []Event{ev}
	n.finish()
	return n, nil
}

func hapiOperation(s string) (Operation, bool) {
	switch strings.ToUpper(s) {
	case "CREATE", "UPDATE", "MANUALLY_TRIGGERED", "TRANSACTION":
		return OpUpsert, true
	case "DELETE":
		return OpDelete, true
	}
	return "", false
}

// readEmbedded reads a resource held as a separate JSON document (HAPI's
// payload string) and reports what is wrong with it, "" when nothing.
func readEmbedded(raw []byte, head *resourceHead) string {
	s := newScanner(raw)
	switch s.peek() {
	case '{':
	case '<':
		return "is XML, not JSON"
	default:
		return "is not a JSON object"
	}
	if err := s.resource(head); err != nil {
		return "is not valid JSON: " + err.Error()
	}
	if err := s.end(); err != nil {
		return "is not valid JSON: " + err.Error()
	}
	switch {
	case head.err != "":
		return "resource: " + head.err
	case !isResourceType(head.typ):
		return "resourceType " + quote(head.typ) + " is not a FHIR resource type"
	case head.id != "" && !isFHIRID(head.id):
		return "id " + quote(head.id) + " is not a FHIR id"
	}
	return ""
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + s + `"`
}

// decodeIBM reads an IBM FHIR Server / LinuxForHealth notification:
// {"lastUpdated","location","operationType","resourceId","tenantId",
// "datasourceId","resource"}. The server leaves the resource out, or trims
// it to resourceType, id and meta, when it is too large: both are id-only.
func decodeIBM(doc *document) (*Notification, error) {
	if doc.fieldErr != "" {
		return nil, decodeErr(ClassInvalid, "IBM FHIR notification: %s", doc.fieldErr)
	}
	var op Operation
	switch strings.ToLower(doc.operationType) {
	case "create", "update", "patch":
		op = OpUpsert
	case "delete":
		op = OpDelete
	default:
		return nil, decodeErr(ClassInvalid, "IBM FHIR notification: unknown operationType %.40q", doc.operationType)
	}
	id := doc.resourceID
	if id == "" {
		return nil, decodeErr(ClassInvalid, "IBM FHIR notification without resourceId")
	}
	if !isFHIRID(id) {
		return nil, decodeErr(ClassInvalid, "IBM FHIR notification: resourceId %s is not a FHIR id", quote(id))
	}
	_, typ, lid, version := parseRef(doc.location)
	if doc.location != "" && (typ == "" || lid != id) {
		return nil, decodeErr(ClassInvalid, "IBM FHIR notification: location %.80q is not Type/%s/_history/version", doc.location, id)
	}
	res := &doc.resource
	if res.raw != nil {
		switch {
		case res.err != "":
			return nil, decodeErr(ClassInvalid, "IBM FHIR notification: resource: %s", res.err)
		case !isResourceType(res.typ):
			return nil, decodeErr(ClassInvalid, "IBM FHIR notification: resourceType %s is not a FHIR resource type", quote(res.typ))
		case typ != "" && res.typ != typ || res.id != "" && res.id != id:
			return nil, decodeErr(ClassInvalid, "IBM FHIR notification: resource is %s/%s but the event names %s/%s", res.typ, res.id, typ, id)
		}
		typ = res.typ
		if version == "" {
			version = res.versionID
		}
	} else if res.err != "" {
		return nil, decodeErr(ClassInvalid, "IBM FHIR notification: %s", res.err)
	}
	if typ == "" {
		return nil, decodeErr(ClassInvalid, "IBM FHIR notification names no resource type (no location, no resource)")
	}
	n := &Notification{Format: FormatIBM, Type: "event-notification", TenantID: doc.tenantID}
	ev := Event{Operation: op, ResourceType: typ, ID: id, VersionID: version, LastUpdated: parseInstant(doc.lastUp)}
	if ev.LastUpdated.IsZero() {
		ev.LastUpdated = parseInstant(res.lastUpdated)
	}
	switch {
	case op == OpDelete:
	case res.raw != nil && !res.isStub() && res.id != "":
		ev.Resource, ev.Parsed = res.raw, res.parsed
		n.addTags(res.tags)
	default:
		ev.Fetch = &FetchRef{ResourceType: typ, ID: id, VersionID: fetchVersion(version)}
	}
	n.Events = []Event{ev}
	n.finish()
	return n, nil
}

// azurePrefix starts the event types of Azure Health Data Services FHIR
// events: FhirResourceCreated, FhirResourceUpdated, FhirResourceDeleted.
const azurePrefix = "Microsoft.HealthcareApis.Fhir"

func (d *document) azure() bool {
	return strings.HasPrefix(d.eventType, azurePrefix) || strings.HasPrefix(d.bundleType, azurePrefix)
}

// decodeAzure reads an Azure Health Data Services FHIR event, in the Event
// Grid schema ("eventType") or the CloudEvents schema ("type"). It names
// the resource and its version only: id-only.
func decodeAzure(doc *document) (*Notification, error) {
	kind := doc.eventType
	if kind == "" {
		kind = doc.bundleType
	}
	if doc.data == nil {
		return nil, decodeErr(ClassInvalid, "Azure FHIR event without data")
	}
	var typ, account, id, version string
	var bad problems
	s := newScanner(doc.data)
	str := func(name string, dst *string) error {
		v, ok, err := s.optString()
		if !ok {
			bad.add("data.%s is not a string", name)
		}
		*dst = v
		return err
	}
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "resourceType":
			return str("resourceType", &typ)
		case "resourceFhirAccount":
			return str("resourceFhirAccount", &account)
		case "resourceFhirId":
			return str("resourceFhirId", &id)
		case "resourceVersionId":
			if c := s.peek(); c == '-' || c >= '0' && c <= '9' {
				v, err := s.number()
				version = string(v)
				return err
			}
			return str("resourceVersionId", &version)
		}
		return s.skip()
	})
	if err != nil {
		return nil, malformed(err)
	}
	switch {
	case bad.first != "":
		return nil, decodeErr(ClassInvalid, "Azure FHIR event: %s", bad.first)
	case !isResourceType(typ):
		return nil, decodeErr(ClassInvalid, "Azure FHIR event: resourceType %s is not a FHIR resource type", quote(typ))
	case !isFHIRID(id):
		return nil, decodeErr(ClassInvalid, "Azure FHIR event: resourceFhirId %s is not a FHIR id", quote(id))
	case version != "" && !isFHIRID(version):
		return nil, decodeErr(ClassInvalid, "Azure FHIR event: resourceVersionId %s is not a FHIR id", quote(version))
	}
	n := &Notification{Format: FormatAzure, Type: "event-notification"}
	base := ""
	if isHostName(account) {
		base = "https://" + account
		n.addBaseURL(base)
	}
	ev := Event{ResourceType: typ, ID: id, VersionID: version}
	switch strings.TrimPrefix(kind, azurePrefix) {
	case "ResourceCreated", "ResourceUpdated":
		ev.Operation = OpUpsert
		ev.Fetch = &FetchRef{ResourceType: typ, ID: id, VersionID: version, BaseURL: base}
	case "ResourceDeleted":
		ev.Operation = OpDelete
	default:
		return nil, decodeErr(ClassInvalid, "Azure FHIR event: unknown event type %.80q", kind)
	}
	n.Events = []Event{ev}
	return n, nil
}

// isHostName reports whether s is a DNS host name (no scheme, port, path
// or user info).
func isHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// googleAPI is the Cloud Healthcare API endpoint that a Google FHIR store's
// base URL is derived from.
const googleAPI = "https://healthcare.googleapis.com/v1/"

// decodeGoogleName reads a Google Cloud Healthcare Pub/Sub notification
// whose data is the resource name,
// projects/P/locations/L/datasets/D/fhirStores/S/fhir/Type/id[/_history/v],
// with the action (CreateResource, UpdateResource, PatchResource,
// DeleteResource) in the "action" header. It is id-only.
func decodeGoogleName(value []byte, h recordHints) (*Notification, error) {
	name := string(value)
	parts := strings.Split(name, "/")
	if len(parts) != 11 && len(parts) != 13 || parts[0] != "projects" || parts[2] != "locations" ||
		parts[4] != "datasets" || parts[6] != "fhirStores" || parts[8] != "fhir" {
		return nil, decodeErr(ClassMalformed, "neither JSON nor a Google Cloud Healthcare FHIR resource name")
	}
	for _, i := range []int{1, 3, 5, 7} {
		if !isFHIRID(strings.ReplaceAll(parts[i], "_", "-")) {
			return nil, decodeErr(ClassMalformed, "neither JSON nor a Google Cloud Healthcare FHIR resource name")
		}
	}
	typ, id, version := splitRef(strings.Join(parts[9:], "/"))
	if typ == "" {
		return nil, decodeErr(ClassInvalid, "Google resource name %.120q does not end in Type/id", name)
	}
	if h.err != "" {
		return nil, decodeErr(ClassInvalid, "%s", h.err)
	}
	if version == "" && isFHIRID(h.version) {
		version = h.version
	}
	base := googleAPI + strings.Join(parts[:9], "/")
	n := &Notification{Format: FormatGoogle, Type: "event-notification", BaseURLs: []string{base}}
	ev := Event{Operation: OpDelete, ResourceType: typ, ID: id, VersionID: version}
	if !h.delete() {
		ev.Operation = OpUpsert
		ev.Fetch = &FetchRef{ResourceType: typ, ID: id, VersionID: version, BaseURL: base}
	}
	n.Events = []Event{ev}
	return n, nil
}
