package notification

import "fhirlake/flatten"

// resourceHead is what the decoder reads of a resource; the rest stays raw
// bytes, never unmarshalled.
type resourceHead struct {
	raw []byte // the resource JSON; nil when absent or null
	// parsed is raw parsed, when the scanner has a Decoder.
	parsed      *flatten.Resource
	typ, id     string
	versionID   string
	lastUpdated string
	tags        []Tag
	// others counts members besides resourceType, id and meta: 0 means a
	// stub (see isStub).
	others int
	// err says why the resource is unusable ("" when it is fine); it is
	// reported only if the resource is used.
	err string
}

// isStub reports whether a resource holds nothing but resourceType, id and
// meta. Servers send such stubs when they trim a large resource (IBM) or
// only name it; storing one as an upsert would overwrite the real resource
// in the lake with an empty one, so outside a Bundle a stub is id-only and
// is read from the server instead. (A resource that truly has no other
// element reads back the same.)
func (h *resourceHead) isStub() bool { return h.others == 0 }

func (h *resourceHead) setErr(msg string) {
	if h.err == "" {
		h.err = msg
	}
}

// entry is one Bundle entry as the decoder needs it.
type entry struct {
	fullURL      string
	method, url  string // request
	location     string // response
	etag         string
	lastModified string
	res          resourceHead
	err          string
}

// document is what the decoder reads of a top-level object: a resource's
// header, a Bundle's type and entries, and the members of the vendor
// envelopes it recognises. Everything else is validated and skipped.
type document struct {
	// dec parses the resources found, when set (Decoder.DecodeRecord).
	dec     *Decoder
	head    resourceHead
	members int
	// headKeys counts the members resourceType, id and meta, so that
	// members-headKeys is what a bare resource holds besides its header.
	headKeys int
	// dup is the first interpreted key that appears twice: parsers
	// disagree on which occurrence wins, so such a record is refused.
	dup string

	bundleType string
	entries    []entry
	entryErr   string
	tooMany    bool

	// HAPI message channel: "payload" is an object.
	hapi *hapiPayload
	// IBM/LinuxForHealth: a top-level "operationType".
	ibm                                                   bool
	operationType, resourceID, tenantID, location, lastUp string
	resource                                              resourceHead
	// fhirlake receive's rest-hook envelope: "fhirRestHook" (with "resource").
	restHook *restHookHead
	// Azure: "eventType" (Event Grid) or "type" (CloudEvents) and "data".
	eventType string
	data      []byte
	// fieldErr is the first envelope member of the wrong JSON type.
	fieldErr string
}

func (d *document) setFieldErr(msg string) {
	if d.fieldErr == "" {
		d.fieldErr = msg
	}
}

// seenKeys detects interpreted keys that appear twice in one object.
type seenKeys uint32

func (k *seenKeys) first(bit uint) bool {
	if *k&(1<<bit) != 0 {
		return false
	}
	*k |= 1 << bit
	return true
}

// scanDocument reads a top-level object in one pass. A syntax error
// anywhere is a malformed-class DecodeError; what the members mean is left
// in the document for the caller to judge.
func scanDocument(value []byte, dec *Decoder) (*document, error) {
	s := newScanner(value)
	s.dec = dec
	d := dec.document()
	var deferred []byte // entries seen before resourceType
	var seen seenKeys
	dup := func(bit uint, key string) {
		if !seen.first(bit) && d.dup == "" {
			d.dup = key
		}
	}
	err := s.object(func(key []byte) error {
		d.members++
		switch string(key) {
		case "resourceType":
			dup(0, "resourceType")
			d.headKeys++
			return s.headMember(&d.head, "resourceType")
		case "id":
			dup(1, "id")
			d.headKeys++
			return s.headMember(&d.head, "id")
		case "meta":
			dup(2, "meta")
			d.headKeys++
			return s.headMember(&d.head, "meta")
		case "type":
			dup(3, "type")
			v, ok, err := s.optString()
			if ok {
				d.bundleType = v
			}
			return err
		case "entry":
			dup(4, "entry")
			if d.head.typ == "Bundle" {
				return s.entries(d)
			}
			v, err := s.value()
			deferred = v
			return err
		case "payload":
			dup(5, "payload")
			if s.peek() == '{' {
				d.hapi = &hapiPayload{}
				return s.hapiPayload(d.hapi)
			}
			return s.skip()
		case "operationType":
			dup(6, "operationType")
			v, ok, err := s.optString()
			if !ok {
				d.setFieldErr("operationType is not a string")
			}
			d.ibm, d.operationType = true, v
			return err
		case "resourceId":
			dup(7, "resourceId")
			return s.envelopeString(d, "resourceId", &d.resourceID)
		case "tenantId":
			dup(8, "tenantId")
			return s.envelopeString(d, "tenantId", &d.tenantID)
		case "location":
			dup(9, "location")
			return s.envelopeString(d, "location", &d.location)
		case "lastUpdated":
			dup(10, "lastUpdated")
			return s.envelopeString(d, "lastUpdated", &d.lastUp)
		case "resource":
			dup(11, "resource")
			return s.resource(&d.resource)
		case "eventType":
			dup(12, "eventType")
			return s.envelopeString(d, "eventType", &d.eventType)
		case RestHookKey:
			dup(14, RestHookKey)
			d.restHook = &restHookHead{}
			return s.restHookHead(d.restHook)
		case "data":
			dup(13, "data")
			if s.peek() == '{' {
				v, err := s.value()
				d.data = v
				return err
			}
			return s.skip()
		}
		return s.skip()
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, malformed(err)
	}
	if deferred != nil && d.head.typ == "Bundle" {
		s := newScanner(deferred)
		s.dec = dec
		if err := s.entries(d); err != nil {
			return nil, malformed(err)
		}
	}
	return d, nil
}

// envelopeString reads a string member of a vendor envelope.
func (s *jsonScanner) envelopeString(d *document, name string, dst *string) error {
	v, ok, err := s.optString()
	if !ok {
		d.setFieldErr(name + " is not a string")
	}
	*dst = v
	return err
}

// headMember reads resourceType, id or meta into h.
func (s *jsonScanner) headMember(h *resourceHead, key string) error {
	switch key {
	case "resourceType":
		v, ok, err := s.optString()
		if !ok {
			h.setErr("resourceType is not a string")
		}
		h.typ = v
		return err
	case "id":
		v, ok, err := s.optString()
		if !ok {
			h.setErr("id is not a string")
		}
		h.id = v
		return err
	default:
		return s.meta(h)
	}
}

// resource reads a resource value into h: its header, and its bytes.
func (s *jsonScanner) resource(h *resourceHead) error {
	switch s.peek() {
	case 'n':
		return s.literal("null")
	case '{':
	default:
		h.setErr("resource is not a JSON object")
		return s.skip()
	}
	if s.dec != nil && !envelopeResource(s.data[s.pos:]) {
		return s.parsedResource(h)
	}
	start := s.pos
	var seen seenKeys
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "resourceType":
			if !seen.first(0) {
				h.setErr(`key "resourceType" appears twice`)
			}
			return s.headMember(h, "resourceType")
		case "id":
			if !seen.first(1) {
				h.setErr(`key "id" appears twice`)
			}
			return s.headMember(h, "id")
		case "meta":
			if !seen.first(2) {
				h.setErr(`key "meta" appears twice`)
			}
			return s.meta(h)
		}
		h.others++
		return s.skip()
	})
	h.raw = s.data[start:s.pos]
	return err
}

func (s *jsonScanner) meta(h *resourceHead) error {
	if s.peek() != '{' {
		h.setErr("meta is not an object")
		return s.skip()
	}
	var seen seenKeys
	return s.object(func(key []byte) error {
		switch string(key) {
		case "versionId":
			if !seen.first(0) {
				h.setErr(`key "meta.versionId" appears twice`)
			}
			return s.headString(h, "meta.versionId", &h.versionID)
		case "lastUpdated":
			if !seen.first(1) {
				h.setErr(`key "meta.lastUpdated" appears twice`)
			}
			return s.headString(h, "meta.lastUpdated", &h.lastUpdated)
		case "tag":
			if !seen.first(2) {
				h.setErr(`key "meta.tag" appears twice`)
			}
			return s.tags(h)
		}
		return s.skip()
	})
}

func (s *jsonScanner) headString(h *resourceHead, name string, dst *string) error {
	v, ok, err := s.optString()
	if !ok {
		h.setErr(name + " is not a string")
	}
	*dst = v
	return err
}

func (s *jsonScanner) tags(h *resourceHead) error {
	if s.peek() != '[' {
		h.setErr("meta.tag is not an array")
		return s.skip()
	}
	return s.array(func() error {
		if s.peek() != '{' {
			h.setErr("meta.tag holds something other than a Coding")
			return s.skip()
		}
		var t Tag
		err := s.object(func(key []byte) error {
			switch string(key) {
			case "system":
				return s.headString(h, "meta.tag.system", &t.System)
			case "code":
				return s.headString(h, "meta.tag.code", &t.Code)
			}
			return s.skip()
		})
		if t.System != "" || t.Code != "" {
			h.tags = append(h.tags, t)
		}
		return err
	})
}

// entries reads a Bundle's entry array into d.entries, entry by entry.
func (s *jsonScanner) entries(d *document) error {
	if s.peek() != '[' {
		d.entryErr = "Bundle.entry is not an array"
		return s.skip()
	}
	return s.array(func() error {
		if len(d.entries) >= MaxEntries {
			d.tooMany = true
			return s.skip()
		}
		d.entries = append(d.entries, entry{})
		return s.entry(&d.entries[len(d.entries)-1])
	})
}

func (s *jsonScanner) entry(e *entry) error {
	if s.peek() != '{' {
		e.err = "entry is not an object"
		return s.skip()
	}
	var seen seenKeys
	return s.object(func(key []byte) error {
		switch string(key) {
		case "fullUrl":
			if !seen.first(0) {
				e.setErr(`key "fullUrl" appears twice`)
			}
			return s.entryString(e, "fullUrl", &e.fullURL)
		case "resource":
			if !seen.first(1) {
				e.setErr(`key "resource" appears twice`)
			}
			return s.resource(&e.res)
		case "request":
			if !seen.first(2) {
				e.setErr(`key "request" appears twice`)
			}
			return s.entryObject(e, "request", func(key []byte) error {
				switch string(key) {
				case "method":
					return s.entryString(e, "request.method", &e.method)
				case "url":
					return s.entryString(e, "request.url", &e.url)
				}
				return s.skip()
			})
		case "response":
			if !seen.first(3) {
				e.setErr(`key "response" appears twice`)
			}
			return s.entryObject(e, "response", func(key []byte) error {
				switch string(key) {
				case "location":
					return s.entryString(e, "response.location", &e.location)
				case "etag":
					return s.entryString(e, "response.etag", &e.etag)
				case "lastModified":
					return s.entryString(e, "response.lastModified", &e.lastModified)
				}
				return s.skip()
			})
		}
		return s.skip()
	})
}

func (e *entry) setErr(msg string) {
	if e.err == "" {
		e.err = msg
	}
}

func (s *jsonScanner) entryString(e *entry, name string, dst *string) error {
	v, ok, err := s.optString()
	if !ok {
		e.setErr(name + " is not a string")
	}
	*dst = v
	return err
}

func (s *jsonScanner) entryObject(e *entry, name string, member func(key []byte) error) error {
	switch s.peek() {
	case '{':
		return s.object(member)
	case 'n':
		return s.literal("null")
	}
	e.setErr(name + " is not an object")
	return s.skip()
}
