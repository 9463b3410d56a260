package synth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// This file is an independent reader of notifications: it walks the JSON as
// maps, knowing nothing of the generator's types, so that a change to the
// writer cannot silently change what the tests accept.

type checkedEvent struct {
	number       int64
	timestamp    string
	focus        string
	resourceType string
	id           string
	version      string
	lastUpdated  string
	deleted      bool
	method       string
	resource     map[string]any
}

type checked struct {
	format       Format
	typ          string // event-notification, handshake, heartbeat
	status       string // active, requested
	subscription string
	since        int64
	sinceNumeric bool
	events       []checkedEvent
}

var focusPattern = regexp.MustCompile(`^(https://fhir\.([a-z0-9-]+)\.example\.org/fhir)/([A-Za-z]+)/([0-9a-f-]{36})(/_history/([0-9]+))?$`)

// decode parses a notification into a tree of maps; numbers stay json.Number
// so that string and numeric counters can be told apart.
func decode(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not json: %w", err)
	}
	if d.More() {
		return nil, errors.New("trailing data")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level is %T, want an object", v)
	}
	return m, nil
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func obj(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	return o
}

func arr(m map[string]any, key string) []any {
	a, _ := m[key].([]any)
	return a
}

// counter reads an event counter that may be a string or a number.
func counter(v any) (n int64, numeric bool, err error) {
	switch x := v.(type) {
	case string:
		_, err = fmt.Sscan(x, &n)
		return n, false, err
	case json.Number:
		n, err = x.Int64()
		return n, true, err
	}
	return 0, false, fmt.Errorf("counter %v has type %T", v, v)
}

// check reads one notification as a consumer would and verifies its
// envelope. It returns an error for anything a consumer must reject.
func check(value []byte) (*checked, error) {
	b, err := decode(value)
	if err != nil {
		return nil, err
	}
	if got := str(b, "resourceType"); got != "Bundle" {
		return nil, fmt.Errorf("resourceType %q, want Bundle", got)
	}
	if str(b, "id") == "" || str(b, "timestamp") == "" {
		return nil, errors.New("bundle without id or timestamp")
	}
	entries := arr(b, "entry")
	if len(entries) == 0 {
		return nil, errors.New("bundle without entries")
	}
	first, _ := entries[0].(map[string]any)
	status := obj(first, "resource")
	if status == nil {
		return nil, errors.New("first entry has no resource")
	}
	if !strings.HasPrefix(str(first, "fullUrl"), "urn:uuid:") || str(first, "fullUrl") != "urn:uuid:"+str(status, "id") {
		return nil, fmt.Errorf("status entry fullUrl %q does not name the status id %q", str(first, "fullUrl"), str(status, "id"))
	}
	c := &checked{}
	var notes []any // notification events, in the shape of the format
	switch bt, st := str(b, "type"), str(status, "resourceType"); {
	case bt == "history" && st == "Parameters":
		c.format = FormatR4Backport
		for _, p := range arr(status, "parameter") {
			pm, _ := p.(map[string]any)
			switch str(pm, "name") {
			case "subscription":
				c.subscription = str(obj(pm, "valueReference"), "reference")
			case "type":
				c.typ = str(pm, "valueCode")
			case "status":
				c.status = str(pm, "valueCode")
			case "events-since-subscription-start":
				if _, ok := pm["valueString"].(string); !ok {
					return nil, errors.New("events-since-subscription-start is not a valueString")
				}
				c.since, _, err = counter(pm["valueString"])
				if err != nil {
					return nil, err
				}
			case "notification-event":
				ev := map[string]any{}
				for _, part := range arr(pm, "part") {
					pp, _ := part.(map[string]any)
					switch str(pp, "name") {
					case "event-number":
						ev["eventNumber"] = pp["valueString"]
					case "timestamp":
						ev["timestamp"] = pp["valueInstant"]
					case "focus":
						ev["focus"] = pp["valueReference"]
					}
				}
				notes = append(notes, ev)
			}
		}
	case (bt == "history" || bt == "subscription-notification") && st == "SubscriptionStatus":
		c.format = FormatR4BHistory
		if bt == "subscription-notification" {
			c.format = FormatR5
		}
		c.subscription = str(obj(status, "subscription"), "reference")
		c.typ, c.status = str(status, "type"), str(status, "status")
		c.since, c.sinceNumeric, err = counter(status["eventsSinceSubscriptionStart"])
		if err != nil {
			return nil, err
		}
		if c.sinceNumeric && c.format != FormatR5 {
			return nil, errors.New("numeric counter outside R5")
		}
		notes = arr(status, "notificationEvent")
	default:
		return nil, fmt.Errorf("bundle type %q with first entry %q is not a notification", bt, st)
	}
	if bt := str(b, "type"); bt == "history" {
		for i, e := range entries {
			em, _ := e.(map[string]any)
			if obj(em, "request") == nil || obj(em, "response") == nil {
				return nil, fmt.Errorf("history entry %d without request or response", i)
			}
		}
	}
	if c.subscription == "" || c.typ == "" || c.status == "" {
		return nil, fmt.Errorf("status without subscription, type or status: %+v", c)
	}
	switch c.typ {
	case "handshake", "heartbeat":
		if len(notes) != 0 || len(entries) != 1 {
			return nil, fmt.Errorf("%s with %d events and %d entries", c.typ, len(notes), len(entries))
		}
		return c, nil
	case "event-notification":
	default:
		return nil, fmt.Errorf("unexpected notification type %q", c.typ)
	}
	if len(notes) == 0 || len(notes) != len(entries)-1 {
		return nil, fmt.Errorf("%d events for %d resource entries", len(notes), len(entries)-1)
	}
	for i, n := range notes {
		nm, _ := n.(map[string]any)
		var ev checkedEvent
		ev.number, _, err = counter(nm["eventNumber"])
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		ev.timestamp, _ = nm["timestamp"].(string)
		focus, _ := nm["focus"].(map[string]any)
		ev.focus = str(focus, "reference")
		fm := focusPattern.FindStringSubmatch(ev.focus)
		if fm == nil {
			return nil, fmt.Errorf("event %d: focus %q is not <base>/<Type>/<id>[/_history/<v>]", i, ev.focus)
		}
		if !strings.HasPrefix(c.subscription, fm[1]+"/Subscription/") {
			return nil, fmt.Errorf("event %d: focus base %s differs from subscription %s", i, fm[1], c.subscription)
		}
		ev.resourceType, ev.id = fm[3], fm[4]
		entry, _ := entries[i+1].(map[string]any)
		if got, want := str(entry, "fullUrl"), fm[1]+"/"+fm[3]+"/"+fm[4]; got != want {
			return nil, fmt.Errorf("event %d: entry fullUrl %q, want %q", i, got, want)
		}
		req, resp := obj(entry, "request"), obj(entry, "response")
		ev.method = str(req, "method")
		res, hasResource := entry["resource"]
		switch ev.method {
		case "DELETE":
			if hasResource {
				return nil, fmt.Errorf("event %d: delete entry carries a resource", i)
			}
			if fm[6] == "" {
				return nil, fmt.Errorf("event %d: delete focus %q has no version", i, ev.focus)
			}
			if got, want := str(req, "url"), fm[3]+"/"+fm[4]; got != want {
				return nil, fmt.Errorf("event %d: delete url %q, want %q", i, got, want)
			}
			if got, want := str(resp, "etag"), `W/"`+fm[6]+`"`; got != want {
				return nil, fmt.Errorf("event %d: delete etag %q, want %q", i, got, want)
			}
			ev.deleted, ev.version, ev.lastUpdated = true, fm[6], str(resp, "lastModified")
		case "POST", "PUT":
			rm, _ := res.(map[string]any)
			if rm == nil {
				return nil, fmt.Errorf("event %d: %s entry without a resource", i, ev.method)
			}
			if str(rm, "resourceType") != ev.resourceType || str(rm, "id") != ev.id {
				return nil, fmt.Errorf("event %d: entry holds %s/%s, focus names %s/%s", i, str(rm, "resourceType"), str(rm, "id"), ev.resourceType, ev.id)
			}
			if fm[6] != "" {
				return nil, fmt.Errorf("event %d: upsert focus %q is versioned", i, ev.focus)
			}
			meta := obj(rm, "meta")
			ev.version, ev.lastUpdated, ev.resource = str(meta, "versionId"), str(meta, "lastUpdated"), rm
			if ev.version == "" || ev.lastUpdated == "" {
				return nil, fmt.Errorf("event %d: resource without meta.versionId or meta.lastUpdated", i)
			}
			wantURL := ev.resourceType + "/" + ev.id
			if ev.method == "POST" {
				wantURL = ev.resourceType
				if ev.version != "1" {
					return nil, fmt.Errorf("event %d: POST of version %s", i, ev.version)
				}
			}
			if got := str(req, "url"); got != wantURL {
				return nil, fmt.Errorf("event %d: request url %q, want %q", i, got, wantURL)
			}
			if got := str(resp, "etag"); got != `W/"`+ev.version+`"` {
				return nil, fmt.Errorf("event %d: etag %q for version %s", i, got, ev.version)
			}
		default:
			return nil, fmt.Errorf("event %d: request method %q", i, ev.method)
		}
		if i > 0 && ev.number != c.events[i-1].number+1 {
			return nil, fmt.Errorf("event %d: number %d after %d", i, ev.number, c.events[i-1].number)
		}
		c.events = append(c.events, ev)
	}
	if last := c.events[len(c.events)-1].number; c.since != last {
		return nil, fmt.Errorf("events since subscription start %d, last event number %d", c.since, last)
	}
	return c, nil
}
