package notification

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Record headers that complete an envelope whose body does not say what
// happened: a bare resource (rest-hook style, Medplum, Google's full
// resource), "{}" on delete, or a Google resource name. Names are matched
// case-insensitively. No other header is read, and no header value is ever
// copied into a notification: channel headers may carry credentials.
const (
	// HeaderInteraction names the interaction: create, update, patch or
	// delete (also Google's CreateResource, UpdateResource, PatchResource,
	// DeleteResource). "x-fhir-interaction", "interaction" and Google's
	// "action" attribute are read the same way.
	HeaderInteraction = "fhir-interaction"
	// HeaderResource names the changed resource as Type/id[/_history/v],
	// needed when the body is "{}". "x-fhir-resource" is read the same way.
	HeaderResource = "fhir-resource"
	// HeaderVersionID is the changed resource's versionId when the body does
	// not carry it. "x-fhir-version-id" and Google's "versionId" attribute
	// are read the same way.
	HeaderVersionID = "fhir-version-id"
	// HeaderMedplumDeleted is Medplum's rest-hook header on a delete: the
	// body is "{}" and this header names Type/id.
	HeaderMedplumDeleted = "x-medplum-deleted-resource"
)

// InteractionHeaders are the headers of an HTTP call that the decoder reads
// when they travel with its body as record headers: what a rest-hook that
// sends a bare resource (Medplum, a FHIR server's custom channel) says
// about the change outside the body. Generic names ("action",
// "interaction") are left out: over HTTP they may mean anything.
var InteractionHeaders = []string{
	HeaderInteraction, "x-fhir-interaction",
	HeaderResource, "x-fhir-resource",
	HeaderVersionID, "x-fhir-version-id",
	HeaderMedplumDeleted,
}

// recordHints are what the record headers say about the change.
type recordHints struct {
	interaction string // create, update, patch, delete; "" when not given
	target      string // Type/id[/_history/v]
	version     string
	err         string // headers that contradict themselves or are unreadable
}

func (h *recordHints) fail(format string, args ...any) {
	if h.err == "" {
		h.err = fmt.Sprintf(format, args...)
	}
}

func (h *recordHints) delete() bool { return h.interaction == "delete" }

func readHeaders(headers []Header) recordHints {
	var h recordHints
	for _, kv := range headers {
		var kind int
		switch strings.ToLower(kv.Key) {
		case HeaderInteraction, "x-fhir-interaction", "interaction", "action":
			kind = 1
		case HeaderResource, "x-fhir-resource":
			kind = 2
		case HeaderVersionID, "x-fhir-version-id", "versionid":
			kind = 3
		case HeaderMedplumDeleted:
			kind = 4
		default:
			continue
		}
		if !utf8.Valid(kv.Value) {
			h.fail("header %s is not valid UTF-8", kv.Key)
			continue
		}
		v := strings.TrimSpace(string(kv.Value))
		switch kind {
		case 1:
			in, ok := interaction(v)
			if !ok {
				h.fail("header %s: unknown interaction %.40q", kv.Key, v)
				continue
			}
			h.setInteraction(kv.Key, in)
		case 2:
			h.setTarget(kv.Key, v)
		case 3:
			if h.version != "" && h.version != v {
				h.fail("headers name versions %.40q and %.40q", h.version, v)
			}
			h.version = v
		case 4:
			h.setInteraction(kv.Key, "delete")
			h.setTarget(kv.Key, v)
		}
	}
	return h
}

func (h *recordHints) setInteraction(key, in string) {
	// create, update and patch all end as an upsert: only a delete
	// conflicts with them.
	if h.interaction != "" && (h.interaction == "delete") != (in == "delete") {
		h.fail("header %s says %s but another header says %s", key, in, h.interaction)
		return
	}
	if h.interaction == "" || in == "delete" {
		h.interaction = in
	}
}

func (h *recordHints) setTarget(key, v string) {
	if h.target != "" && h.target != v {
		h.fail("header %s names %.80q but another header names %.80q", key, v, h.target)
		return
	}
	h.target = v
}

// interaction normalises an interaction name: create, update, patch or
// delete, in FHIR's words or Google's (DeleteResource,
// ConditionalUpdateResource, …).
func interaction(v string) (string, bool) {
	v = strings.ToLower(v)
	v = strings.TrimPrefix(v, "conditional")
	v = strings.TrimSuffix(v, "resource")
	v = strings.Trim(v, "-_ ")
	switch v {
	case "create", "update", "patch", "delete":
		return v, true
	}
	return "", false
}
