package synth

import (
	"fmt"
	"slices"
	"strconv"
)

// Kind says what a consumer is expected to do with a record.
type Kind uint8

const (
	// KindEvent is an event notification for a known tenant: its entries
	// become rows (upserts) and tombstones (deletes).
	KindEvent Kind = iota + 1
	// KindControl is a handshake or heartbeat: no rows, only counted.
	KindControl
	// KindMalformed is a record no decoder should accept: a dead letter.
	KindMalformed
	// KindUnroutable is a valid notification for a tenant that is not
	// configured: quarantined, never written to any tenant's lake.
	KindUnroutable
)

func (k Kind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindControl:
		return "control"
	case KindMalformed:
		return "malformed"
	case KindUnroutable:
		return "unroutable"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one Kafka record of the synthetic stream. Key and Value are
// freshly allocated for each record and belong to the caller; header values
// are shared between records and must not be modified.
type Record struct {
	// Key is "<ResourceType>/<id>" of the first event's focus for event and
	// unroutable notifications, so that the versions of a resource share a
	// partition when each notification carries one event; the tenant's
	// subscription id for control and malformed records.
	Key   []byte
	Value []byte
	// Headers are the tenant header (absent on one unroutable record) and a
	// content-type header.
	Headers []Header
	// Tenant is the value of the tenant header, "" when there is none.
	Tenant string
	Kind   Kind
	// Format is the envelope, "" for malformed records that have none.
	Format Format
	// Variant names the shape within the kind: "event-notification",
	// "handshake", "heartbeat", "truncated-json", "no-status-entry",
	// "not-json", "empty", "json-array", "unknown-tenant",
	// "no-tenant-header".
	Variant string
}

// Counts summarise the records yielded so far.
type Counts struct {
	// Events is the number of KindEvent records (notifications, not entries).
	Events int `json:"events"`
	// Resources is the number of distinct resources created in them.
	Resources int `json:"resources"`
	// Upserts and Deletes count their entries: every version of every
	// resource, and every deletion.
	Upserts int `json:"upserts"`
	Deletes int `json:"deletes"`
	// Controls, Malformed and Unroutable count records of those kinds.
	Controls   int `json:"controls"`
	Malformed  int `json:"malformed"`
	Unroutable int `json:"unroutable"`
}

// Records is the number of records the counts describe.
func (c Counts) Records() int { return c.Events + c.Controls + c.Malformed + c.Unroutable }

// tenant is a tenant's FHIR server and its subscription.
type tenant struct {
	name      string
	hash      uint64
	base      string // https://fhir.<name>.example.org/fhir
	subID     string
	subRef    string
	statusURL string
	mrnSystem string
	header    []byte
	events    int64 // events since subscription start

	carry   []action // events not yet in a notification
	pending []action // later versions of the previous patient
}

func newTenant(name string) *tenant {
	t := &tenant{
		name:   name,
		hash:   hashString(name),
		base:   "https://fhir." + name + ".example.org/fhir",
		subID:  "fhirlake-" + name,
		header: []byte(name),
	}
	t.subRef = t.base + "/Subscription/" + t.subID
	t.statusURL = t.subRef + "/$status"
	t.mrnSystem = "https://" + name + ".example.org/identifiers/mrn"
	return t
}

// special is a control, malformed or unroutable record, placed before the
// pos-th event notification.
type special struct {
	pos     int
	kind    Kind
	typ     notificationType // controls
	tenant  int
	variant int // malformed shape, or unroutable ordinal
}

// notification is a queued event notification: flat[start:end].
type notification struct {
	t          *tenant
	start, end int
}

// Generator yields a deterministic stream of Kafka records. It is not safe
// for concurrent use.
type Generator struct {
	opts    Options
	seed    uint64
	tenants []*tenant
	planner planner
	r       rng
	clock   int64  // Unix ms of the latest event
	seq     uint64 // notifications written, for Bundle ids
	ctype   map[Format][]byte

	total, yielded      int
	mainTotal, mainDone int // event notifications: planned, yielded
	resources           int // planned resources
	specials            []special
	nextSpecial         int

	patient, cursor int // next (patient, tenant) to generate
	flushed         bool
	queue           []notification
	flat            []action
	qi              int

	items   []item
	shuffle []*resource
	events  []event
	entries []byte
	buf     []byte

	counts Counts
}

// New validates opts, fills its defaults and plans the stream. Planning
// walks every patient once without building resources, so that Total is
// exact from the start.
func New(opts Options) (*Generator, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("synth options: %w", err)
	}
	o := opts.withDefaults()
	g := &Generator{
		opts:    o,
		seed:    uint64(o.Seed),
		planner: newPlanner(o),
		clock:   clockStart,
		r:       rng{s: mix64(uint64(o.Seed) ^ mix64(nsStream))},
		ctype: map[Format][]byte{
			FormatR4Backport: []byte("application/fhir+json; fhirVersion=4.0"),
			FormatR4BHistory: []byte("application/fhir+json; fhirVersion=4.3"),
			FormatR5:         []byte("application/fhir+json; fhirVersion=5.0"),
		},
	}
	for _, name := range o.Tenants {
		g.tenants = append(g.tenants, newTenant(name))
	}
	entries := make([]int, len(g.tenants))
	for p := range o.Patients {
		for i, t := range g.tenants {
			g.items = g.planner.plan(g.items, t.hash, p)
			g.resources += len(g.items)
			for _, it := range g.items {
				entries[i] += it.entries()
			}
		}
	}
	k := o.ResourcesPerNotification
	for _, n := range entries {
		g.mainTotal += (n + k - 1) / k
	}
	g.planSpecials()
	g.total = g.mainTotal + len(g.specials)
	return g, nil
}

// malformedShapes are the variants of malformed records, in the order they
// first appear.
var malformedShapes = [...]string{"truncated-json", "no-status-entry", "not-json", "empty", "json-array"}

func (g *Generator) planSpecials() {
	o := &g.opts
	handshakes := min(o.Controls, len(g.tenants))
	for i := range handshakes {
		g.specials = append(g.specials, special{kind: KindControl, typ: notifyHandshake, tenant: i})
	}
	var rest []special
	for range o.Controls - handshakes {
		rest = append(rest, special{kind: KindControl, typ: notifyHeartbeat})
	}
	for range o.Malformed {
		rest = append(rest, special{kind: KindMalformed})
	}
	for range o.Unroutable {
		rest = append(rest, special{kind: KindUnroutable})
	}
	for i := len(rest) - 1; i > 0; i-- {
		j := g.r.intn(i + 1)
		rest[i], rest[j] = rest[j], rest[i]
	}
	pos := make([]int, len(rest))
	for i := range pos {
		pos[i] = g.r.intn(g.mainTotal + 1)
	}
	slices.Sort(pos)
	malformed, unroutable := 0, 0
	for i := range rest {
		s := &rest[i]
		s.pos = pos[i]
		s.tenant = g.r.intn(len(g.tenants))
		switch s.kind {
		case KindMalformed:
			s.variant = malformed % len(malformedShapes)
			malformed++
		case KindUnroutable:
			s.variant = unroutable
			unroutable++
		}
	}
	g.specials = append(g.specials, rest...)
}

// Total is the number of records Next yields in all.
func (g *Generator) Total() int { return g.total }

// Counts returns the counts of the records yielded so far.
func (g *Generator) Counts() Counts { return g.counts }

// Options returns the options in use, defaults filled in.
func (g *Generator) Options() Options {
	o := g.opts
	o.Tenants = slices.Clone(o.Tenants)
	o.Formats = slices.Clone(o.Formats)
	return o
}

// Next returns the next record, or false when the stream is exhausted.
// Memory stays proportional to a few patients per tenant, whatever the size
// of the stream.
func (g *Generator) Next() (Record, bool) {
	for g.yielded < g.total {
		if g.nextSpecial < len(g.specials) && g.specials[g.nextSpecial].pos <= g.mainDone {
			return g.takeSpecial(), true
		}
		if g.qi < len(g.queue) {
			n := g.queue[g.qi]
			g.qi++
			g.mainDone++
			g.yielded++
			return g.eventRecord(n), true
		}
		g.queue, g.flat, g.qi = g.queue[:0], g.flat[:0], 0
		if !g.fill() {
			if g.nextSpecial < len(g.specials) {
				return g.takeSpecial(), true
			}
			break
		}
	}
	return Record{}, false
}

func (g *Generator) takeSpecial() Record {
	s := &g.specials[g.nextSpecial]
	g.nextSpecial++
	g.yielded++
	switch s.kind {
	case KindControl:
		return g.controlRecord(s)
	case KindMalformed:
		return g.malformedRecord(s)
	default:
		return g.unroutableRecord(s)
	}
}

// fill generates the next patient of the next tenant, or at the very end
// flushes what every tenant still holds. It reports false when nothing is
// left.
func (g *Generator) fill() bool {
	if g.patient < g.opts.Patients {
		g.generate(g.tenants[g.cursor], g.patient)
		if g.cursor++; g.cursor == len(g.tenants) {
			g.cursor = 0
			g.patient++
		}
		return true
	}
	if g.flushed {
		return false
	}
	g.flushed = true
	for _, t := range g.tenants {
		t.carry = append(t.carry, t.pending...)
		t.pending = nil
		g.drain(t, true)
	}
	return true
}

// generate builds one patient and queues its events. A tenant's stream
// carries the creation of patient p's resources, then the later versions
// and deletions of patient p-1's resources in a seeded order that keeps each
// resource's own versions ascending.
func (g *Generator) generate(t *tenant, patient int) {
	g.items = g.planner.plan(g.items, t.hash, patient)
	res := buildPatient(&g.r, g.seed, t, patient, g.items)
	for i := range res {
		t.carry = append(t.carry, action{r: &res[i], version: 1})
	}
	t.carry = append(t.carry, t.pending...)
	t.pending = t.pending[:0]

	g.shuffle = g.shuffle[:0]
	for i := range res {
		x := &res[i]
		for range x.updates {
			g.shuffle = append(g.shuffle, x)
		}
		if x.deleted {
			g.shuffle = append(g.shuffle, x)
		}
	}
	for i := len(g.shuffle) - 1; i > 0; i-- {
		j := g.r.intn(i + 1)
		g.shuffle[i], g.shuffle[j] = g.shuffle[j], g.shuffle[i]
	}
	// The k-th appearance of a resource is its k-th later event, whatever
	// the shuffle did.
	for _, x := range g.shuffle {
		x.scheduled++
		t.pending = append(t.pending, action{r: x, version: x.scheduled, delete: x.scheduled > 1+x.updates})
	}
	g.drain(t, false)
}

// drain moves full notifications from the tenant's carry to the queue, and
// the last partial one when final.
func (g *Generator) drain(t *tenant, final bool) {
	k := g.opts.ResourcesPerNotification
	off := 0
	for len(t.carry)-off >= k || final && off < len(t.carry) {
		end := min(off+k, len(t.carry))
		g.queue = append(g.queue, notification{t: t, start: len(g.flat), end: len(g.flat) + end - off})
		g.flat = append(g.flat, t.carry[off:end]...)
		off = end
	}
	n := copy(t.carry, t.carry[off:])
	clear(t.carry[n:])
	t.carry = t.carry[:n]
}

func (g *Generator) pickFormat() Format {
	return g.opts.Formats[g.r.intn(len(g.opts.Formats))]
}

// tick advances the clock by 1 ms to 2 s: a busy server.
func (g *Generator) tick() int64 {
	g.clock += int64(g.r.between(1, 2000))
	return g.clock
}

// newEnvelope starts a notification of the tenant's subscription.
func (g *Generator) newEnvelope(t *tenant, f Format, typ notificationType) envelope {
	g.seq++
	return envelope{
		format:  f,
		typ:     typ,
		tenant:  t,
		bundle:  deriveUUID(g.seed, nsBundle, g.seq, 0, 0),
		status:  deriveUUID(g.seed, nsStatus, g.seq, 0, 0),
		numeric: g.r.intn(2) == 0,
	}
}

// encodeEvents writes an event notification of acts into g.buf. Each event
// takes the tenant's next event number and a later instant, which becomes
// the resource's meta.lastUpdated.
func (g *Generator) encodeEvents(t *tenant, f Format, acts []action) {
	env := g.newEnvelope(t, f, notifyEvent)
	g.events, g.entries = g.events[:0], g.entries[:0]
	for _, a := range acts {
		at := g.tick()
		t.events++
		a.r.version, a.r.lastUpdated = a.version, at
		e := event{action: a, number: t.events, at: at}
		g.events = append(g.events, e)
		g.entries = appendEntry(g.entries, f, t, &e)
	}
	env.events, env.entries = g.events, g.entries
	env.since, env.at = t.events, g.clock
	g.buf = appendEnvelope(g.buf[:0], &env)
}

func (g *Generator) eventRecord(n notification) Record {
	acts := g.flat[n.start:n.end]
	f := g.pickFormat()
	g.encodeEvents(n.t, f, acts)
	g.counts.Events++
	for _, a := range acts {
		switch {
		case a.delete:
			g.counts.Deletes++
		case a.version == 1:
			g.counts.Resources++
			g.counts.Upserts++
		default:
			g.counts.Upserts++
		}
	}
	first := acts[0].r
	return g.record(first.typeName()+"/"+first.id, n.t, KindEvent, f, "event-notification")
}

func (g *Generator) controlRecord(s *special) Record {
	t := g.tenants[s.tenant]
	f := g.pickFormat()
	env := g.newEnvelope(t, f, s.typ)
	env.since, env.at = t.events, g.tick()
	g.buf = appendEnvelope(g.buf[:0], &env)
	g.counts.Controls++
	return g.record(t.subID, t, KindControl, f, s.typ.code())
}

// strayPatient is a new Patient that belongs to no expected state: the
// content of unroutable and malformed records.
func (g *Generator) strayPatient(t *tenant, n int) *resource {
	x := &resource{
		typ:       typePatient,
		id:        deriveUUID(g.seed, nsStray, t.hash, uint64(n), 0),
		scheduled: 1,
	}
	fillContent(&g.r, x, t)
	return x
}

func (g *Generator) malformedRecord(s *special) Record {
	t := g.tenants[s.tenant]
	g.counts.Malformed++
	shape := malformedShapes[s.variant]
	var f Format
	switch shape {
	case "truncated-json":
		// A complete notification cut in half, as a producer that crashed
		// mid-write would leave it. It does not consume an event number.
		f = g.pickFormat()
		shadow := *t
		g.encodeEvents(&shadow, f, []action{{r: g.strayPatient(t, g.counts.Malformed), version: 1}})
		g.buf = g.buf[:len(g.buf)/2]
	case "no-status-entry":
		// A Bundle of the right type whose first entry is the resource: no
		// Parameters or SubscriptionStatus.
		f = g.pickFormat()
		e := event{action: action{r: g.strayPatient(t, g.counts.Malformed), version: 1}, number: 1, at: g.tick()}
		e.r.version, e.r.lastUpdated = 1, e.at
		g.buf = append(g.buf[:0], `{"resourceType":"Bundle","id":`...)
		g.seq++
		g.buf = appendString(g.buf, deriveUUID(g.seed, nsBundle, g.seq, 0, 0))
		if f == FormatR5 {
			g.buf = append(g.buf, `,"type":"subscription-notification"`...)
		} else {
			g.buf = append(g.buf, `,"type":"history"`...)
		}
		g.buf = append(g.buf, `,"timestamp":`...)
		g.buf = appendInstant(g.buf, e.at)
		g.buf = append(g.buf, `,"entry":[`...)
		g.entries = appendEntry(g.entries[:0], f, t, &e)
		g.buf = append(g.buf, g.entries[1:]...) // without the leading comma
		g.buf = append(g.buf, `]}`...)
	case "not-json":
		// The server was configured for XML.
		g.buf = append(g.buf[:0], `<?xml version="1.0" encoding="UTF-8"?><Bundle xmlns="http://hl7.org/fhir"><type value="history"/></Bundle>`...)
		r := g.record(t.subID, t, KindMalformed, "", shape)
		r.Headers[1].Value = []byte("application/fhir+xml; fhirVersion=4.0")
		return r
	case "empty":
		g.buf = g.buf[:0]
	case "json-array":
		g.buf = append(g.buf[:0], `[{"resourceType":"Bundle","type":"history","entry":[]}]`...)
	}
	return g.record(t.subID, t, KindMalformed, f, shape)
}

func (g *Generator) unroutableRecord(s *special) Record {
	t := newTenant(g.unknownTenant(s.variant))
	f := g.pickFormat()
	x := g.strayPatient(t, 0)
	g.encodeEvents(t, f, []action{{r: x, version: 1}})
	g.counts.Unroutable++
	r := g.record("Patient/"+x.id, t, KindUnroutable, f, "unknown-tenant")
	if s.variant == g.opts.Unroutable-1 && g.opts.Unroutable >= 2 {
		r.Headers = r.Headers[1:]
		r.Tenant = ""
		r.Variant = "no-tenant-header"
	}
	return r
}

// unknownTenant names the n-th unroutable tenant, "unknown-<n+1>", made
// distinct from every configured tenant.
func (g *Generator) unknownTenant(n int) string {
	name := "unknown-" + strconv.Itoa(n+1)
	for slices.Contains(g.opts.Tenants, name) {
		name += "x"
	}
	return name
}

// record copies g.buf into a new record.
func (g *Generator) record(key string, t *tenant, kind Kind, f Format, variant string) Record {
	// append, unlike make, skips zeroing memory that is overwritten at once.
	value := append([]byte(nil), g.buf...)
	if value == nil {
		value = []byte{}
	}
	ct := g.ctype[f]
	if ct == nil {
		ct = g.ctype[FormatR4Backport]
	}
	return Record{
		Key:     []byte(key),
		Value:   value,
		Headers: []Header{{Key: g.opts.TenantHeader, Value: t.header}, {Key: "content-type", Value: ct}},
		Tenant:  t.name,
		Kind:    kind,
		Format:  f,
		Variant: variant,
	}
}
