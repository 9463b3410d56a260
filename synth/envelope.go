package synth

// Notification envelopes, shaped after the published examples of FHIR R5 and
// of the Subscriptions R5 Backport IG (R4 and R4B flavours).

type notificationType uint8

const (
	notifyEvent notificationType = iota
	notifyHandshake
	notifyHeartbeat
)

func (n notificationType) code() string {
	switch n {
	case notifyHandshake:
		return "handshake"
	case notifyHeartbeat:
		return "heartbeat"
	}
	return "event-notification"
}

// action is one queued event: a version of a resource, or its deletion.
type action struct {
	r       *resource
	version int
	delete  bool
}

// event is an action that has been given its place in the tenant's
// subscription: an event number and the instant it happened.
type event struct {
	action
	number int64
	at     int64
}

// envelope is everything needed to write one notification Bundle.
type envelope struct {
	format  Format
	typ     notificationType
	tenant  *tenant
	bundle  string // Bundle.id
	status  string // id of the status resource
	at      int64  // Bundle.timestamp
	since   int64  // events since subscription start
	numeric bool   // R5 only: counters as JSON numbers instead of strings
	events  []event
	entries []byte // the event entries, each starting with ','
}

// appendEntry appends the Bundle entry of e, preceded by a comma.
func appendEntry(b []byte, f Format, t *tenant, e *event) []byte {
	x := e.r
	b = append(b, `,{"fullUrl":"`...)
	b = appendResourceURL(b, t, x)
	b = append(b, '"')
	method, status := "PUT", "200"
	switch {
	case e.delete:
		method, status = "DELETE", "204"
	case e.version == 1:
		status = "201"
		// The backport examples create with POST to the type; the R5
		// examples with PUT to the instance. Real servers do both.
		if f != FormatR5 {
			method = "POST"
		}
	}
	if !e.delete {
		b = append(b, `,"resource":`...)
		b = appendResource(b, x)
	}
	b = append(b, `,"request":{"method":"`...)
	b = append(b, method...)
	b = append(b, `","url":"`...)
	b = append(b, x.typeName()...)
	if method != "POST" {
		b = append(b, '/')
		b = append(b, x.id...)
	}
	b = append(b, `"},"response":{"status":"`...)
	b = append(b, status...)
	b = append(b, `","etag":"W/\"`...)
	b = appendPadded(b, e.version, 1)
	b = append(b, `\"","lastModified":`...)
	b = appendInstant(b, e.at)
	return append(b, `}}`...)
}

// appendResourceURL appends <base>/<Type>/<id>.
func appendResourceURL(b []byte, t *tenant, x *resource) []byte {
	b = append(b, t.base...)
	b = append(b, '/')
	b = append(b, x.typeName()...)
	b = append(b, '/')
	return append(b, x.id...)
}

// appendFocus appends the focus reference of e as a JSON string: the
// resource's absolute URL, versioned for a delete so that the tombstone
// carries its own versionId.
func appendFocus(b []byte, t *tenant, e *event) []byte {
	b = append(b, '"')
	b = appendResourceURL(b, t, e.r)
	if e.delete {
		b = append(b, "/_history/"...)
		b = appendPadded(b, e.version, 1)
	}
	return append(b, '"')
}

// appendEnvelope appends the whole notification Bundle.
func appendEnvelope(b []byte, n *envelope) []byte {
	b = append(b, `{"resourceType":"Bundle","id":`...)
	b = appendString(b, n.bundle)
	switch n.format {
	case FormatR4Backport:
		b = append(b, `,"meta":{"profile":["`+profileR4Notification+`"]},"type":"history"`...)
	case FormatR4BHistory:
		b = append(b, `,"meta":{"profile":["`+profileR4BNotification+`"]},"type":"history"`...)
	default:
		b = append(b, `,"type":"subscription-notification"`...)
	}
	b = append(b, `,"timestamp":`...)
	b = appendInstant(b, n.at)
	b = append(b, `,"entry":[`...)
	b = appendStatusEntry(b, n)
	b = append(b, n.entries...)
	return append(b, `]}`...)
}

func appendStatusEntry(b []byte, n *envelope) []byte {
	b = append(b, `{"fullUrl":"urn:uuid:`...)
	b = append(b, n.status...)
	b = append(b, `","resource":`...)
	switch n.format {
	case FormatR4Backport:
		b = appendParametersStatus(b, n)
	default:
		b = appendSubscriptionStatus(b, n)
	}
	if n.format != FormatR5 {
		// History bundles need request and response on every entry.
		b = append(b, `,"request":{"method":"GET","url":`...)
		b = appendString(b, n.tenant.statusURL)
		b = append(b, `},"response":{"status":"200"}`...)
	}
	return append(b, '}')
}

func statusCode(n *envelope) string {
	if n.typ == notifyHandshake {
		return "requested"
	}
	return "active"
}

// appendParametersStatus writes the R4 backport status, a Parameters
// resource with counters as valueString.
func appendParametersStatus(b []byte, n *envelope) []byte {
	b = append(b, `{"resourceType":"Parameters","id":`...)
	b = appendString(b, n.status)
	b = append(b, `,"meta":{"profile":["`+profileR4Status+`"]},"parameter":[{"name":"subscription","valueReference":{"reference":`...)
	b = appendString(b, n.tenant.subRef)
	b = append(b, `}},{"name":"topic","valueCanonical":"`+topicURL+`"},{"name":"status","valueCode":"`...)
	b = append(b, statusCode(n)...)
	b = append(b, `"},{"name":"type","valueCode":"`...)
	b = append(b, n.typ.code()...)
	b = append(b, `"},{"name":"events-since-subscription-start","valueString":`...)
	b = appendIntString(b, n.since)
	b = append(b, '}')
	for i := range n.events {
		e := &n.events[i]
		b = append(b, `,{"name":"notification-event","part":[{"name":"event-number","valueString":`...)
		b = appendIntString(b, e.number)
		b = append(b, `},{"name":"timestamp","valueInstant":`...)
		b = appendInstant(b, e.at)
		b = append(b, `},{"name":"focus","valueReference":{"reference":`...)
		b = appendFocus(b, n.tenant, e)
		b = append(b, `}}]}`...)
	}
	return append(b, `]}`...)
}

// appendSubscriptionStatus writes the R4B and R5 status. R4B counters are
// strings; R5 counters are integer64, which JSON carries as strings, but
// servers also send plain numbers, so both appear.
func appendSubscriptionStatus(b []byte, n *envelope) []byte {
	counter := func(b []byte, v int64) []byte {
		if n.numeric && n.format == FormatR5 {
			return appendPadded(b, int(v), 1)
		}
		return appendIntString(b, v)
	}
	b = append(b, `{"resourceType":"SubscriptionStatus","id":`...)
	b = appendString(b, n.status)
	b = append(b, `,"status":"`...)
	b = append(b, statusCode(n)...)
	b = append(b, `","type":"`...)
	b = append(b, n.typ.code()...)
	b = append(b, `","eventsSinceSubscriptionStart":`...)
	b = counter(b, n.since)
	if len(n.events) > 0 {
		b = append(b, `,"notificationEvent":[`...)
		for i := range n.events {
			e := &n.events[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"eventNumber":`...)
			b = counter(b, e.number)
			b = append(b, `,"timestamp":`...)
			b = appendInstant(b, e.at)
			b = append(b, `,"focus":{"reference":`...)
			b = appendFocus(b, n.tenant, e)
			b = append(b, `}}`...)
		}
		b = append(b, ']')
	}
	b = append(b, `,"subscription":{"reference":`...)
	b = appendString(b, n.tenant.subRef)
	return append(b, `},"topic":"`+topicURL+`"}`...)
}
