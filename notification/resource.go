package notification

import (
	"encoding/json"
	"fmt"
)

// ResourceEvent is the upsert of a bare resource, as a bulk export or a
// transaction Bundle holds it: its type, id, versionId and lastUpdated are
// read from the resource itself. The event keeps a copy of raw.
func ResourceEvent(raw []byte) (Event, error) {
	var h struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         *struct {
			VersionID   string `json:"versionId"`
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return Event{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if !isResourceType(h.ResourceType) {
		return Event{}, fmt.Errorf("resourceType %q is not a FHIR resource type", h.ResourceType)
	}
	if h.ID == "" {
		return Event{}, fmt.Errorf("%s without id", h.ResourceType)
	}
	ev := Event{Operation: OpUpsert, ResourceType: h.ResourceType, ID: h.ID, Resource: append(json.RawMessage(nil), raw...)}
	if h.Meta != nil {
		ev.VersionID = h.Meta.VersionID
		ev.LastUpdated = parseInstant(h.Meta.LastUpdated)
	}
	return ev, nil
}

// DeleteEvent is the delete named by the first of refs that names a
// resource (Type/id, Type/id/_history/v or an absolute URL of either), as a
// Bundle's DELETE entry gives it in request.url or fullUrl; ok is false when
// none does.
func DeleteEvent(refs ...string) (ev Event, ok bool) {
	for _, ref := range refs {
		if typ, id, version := splitRef(ref); typ != "" {
			return Event{Operation: OpDelete, ResourceType: typ, ID: id, VersionID: version}, true
		}
	}
	return Event{}, false
}
