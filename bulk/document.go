package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"

	"fhirlake/flatten"
	"fhirlake/notification"
)

// doc reads one JSON document: a resource, a Bundle, a subscription
// notification, or a record written by `fhirlake generate --out`. carried
// is true inside a notification, whose resources are KindCarried and are
// not decoded again.
func (r *Reader) doc(ctx context.Context, data []byte, at Location, carried bool, fn func(*Item) error) error {
	if startsAsBundle(data) {
		return r.bundle(ctx, data, at, carried, fn)
	}
	if err := r.res.Parse(data); err != nil {
		if !carried {
			if value, ok := recordValue(data); ok {
				return r.doc(ctx, value, at, false, fn)
			}
			// The vendor envelopes (HAPI, IBM, Azure) have no resourceType.
			if n, derr := notification.Decode(data); derr == nil {
				return r.envelope(ctx, n, at, fn)
			}
		}
		r.bad(at, err)
		return nil
	}
	rt := r.res.ResourceType()
	if rt == "Bundle" {
		return r.bundle(ctx, data, at, carried, fn)
	}
	if !carried && isStatus(rt) {
		if n, err := notification.Decode(data); err == nil {
			if err := r.emitParsed(ctx, KindCarried, data, at, fn); err != nil {
				return err
			}
			return r.events(ctx, n, at, fn)
		}
	}
	kind := KindResource
	if carried {
		kind = KindCarried
	}
	return r.emitParsed(ctx, kind, data, at, fn)
}

// emitParsed yields the resource r.res holds, parsed from data.
func (r *Reader) emitParsed(ctx context.Context, kind Kind, data []byte, at Location, fn func(*Item) error) error {
	r.item = Item{Kind: kind, At: at, Resource: &r.res, Raw: data}
	return r.emit(ctx, fn)
}

// bundle reads every entry of a Bundle of any type. A subscription
// notification is recognised by its first entry, and its changes are those
// notification.Decode finds; a Bundle that Decode refuses is read as any
// other, as is one inside a notification.
func (r *Reader) bundle(ctx context.Context, data []byte, at Location, carried bool, fn func(*Item) error) error {
	if !carried && r.startsNotification(data) {
		if n, err := notification.Decode(data); err == nil {
			if err := r.entries(ctx, data, at, true, fn); err != nil {
				return err
			}
			return r.events(ctx, n, at, fn)
		}
	}
	return r.entries(ctx, data, at, carried, fn)
}

// errStop ends a walk of the entries early; it never leaves the package.
var errStop = errors.New("stop")

// startsNotification reports whether the first entry of the Bundle in data
// holds a subscription status, or the MessageHeader of a message Bundle,
// which may wrap a notification.
func (r *Reader) startsNotification(data []byte) bool {
	first := false
	// errStop ends the walk after the first entry; a Bundle that does not
	// parse that far is no notification, which first already says.
	_ = flatten.BundleEntries(data, func(i int, res []byte) error {
		if i == 0 && r.res.Parse(res) == nil {
			rt := r.res.ResourceType()
			first = isStatus(rt) || rt == "MessageHeader"
		}
		return errStop
	})
	return first
}

// isStatus reports whether a resource type holds a notification's status
// (Parameters in the R4 backport).
func isStatus(resourceType string) bool {
	switch resourceType {
	case "SubscriptionStatus", "AidboxSubscriptionStatus", "Parameters":
		return true
	}
	return false
}

// entries yields the resource of every entry, in order, and the deletes of
// the entries that hold none. A syntax error ends the Bundle; the entries
// before it count.
func (r *Reader) entries(ctx context.Context, data []byte, at Location, carried bool, fn func(*Item) error) error {
	var reqs []entryRequest
	if !carried && !r.SkipDeletes && mayDelete(data) {
		// A Bundle that does not parse has its syntax error reported by
		// BundleEntries below; its DELETE entries are lost with it.
		reqs, _ = r.entryRequests(data)
	}
	entry := at
	entry.Entries = append(slices.Clip(at.Entries), 0)
	next := 0 // the first entry not yet read
	var stop error
	err := flatten.BundleEntries(data, func(i int, res []byte) error {
		if reqs != nil && (i >= len(reqs) || !reqs[i].hasResource) {
			r.bad(at, errMisaligned)
			reqs = nil
		}
		if stop = r.deletes(ctx, reqs[min(next, len(reqs)):min(i, len(reqs))], next, entry, fn); stop != nil {
			return stop
		}
		next = i + 1
		entry.Entries[len(entry.Entries)-1] = i
		stop = r.doc(ctx, res, entry, carried, fn)
		return stop
	})
	if stop != nil {
		return stop
	}
	if err != nil {
		r.bad(at, err)
		return nil
	}
	return r.deletes(ctx, reqs[min(next, len(reqs)):], next, entry, fn)
}

// events yields the changes of a notification.
func (r *Reader) events(ctx context.Context, n *notification.Notification, at Location, fn func(*Item) error) error {
	for i := range n.Events {
		r.item = Item{Kind: KindEvent, At: at, Event: &n.Events[i]}
		if err := r.emit(ctx, fn); err != nil {
			return err
		}
	}
	return nil
}

// envelope yields the resources a vendor notification carries, then its
// changes.
func (r *Reader) envelope(ctx context.Context, n *notification.Notification, at Location, fn func(*Item) error) error {
	for _, ev := range n.Events {
		if ev.Resource == nil {
			continue
		}
		if err := r.res.Parse(ev.Resource); err != nil {
			r.bad(at, err)
			continue
		}
		if err := r.emitParsed(ctx, KindCarried, ev.Resource, at, fn); err != nil {
			return err
		}
	}
	return r.events(ctx, n, at, fn)
}

// startsAsBundle reports whether data's first member is "resourceType":
// "Bundle", as in nearly every Bundle, so that a Bundle is split into its
// entries without being parsed whole first.
func startsAsBundle(data []byte) bool {
	const key, value = `"resourceType"`, `"Bundle"`
	rest := bytes.TrimLeft(data, " \t\r\n")
	if len(rest) == 0 || rest[0] != '{' {
		return false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if !bytes.HasPrefix(rest, []byte(key)) {
		return false
	}
	rest = bytes.TrimLeft(rest[len(key):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return false
	}
	return bytes.HasPrefix(bytes.TrimLeft(rest[1:], " \t\r\n"), []byte(value))
}

// recordValue returns the notification held by a line of
// `fhirlake generate --out` ({"key", "headers", "value"}).
func recordValue(data []byte) ([]byte, bool) {
	var rec struct {
		ResourceType *string `json:"resourceType"`
		Value        *string `json:"value"`
	}
	if json.Unmarshal(data, &rec) != nil || rec.ResourceType != nil || rec.Value == nil {
		return nil, false
	}
	return []byte(*rec.Value), true
}
