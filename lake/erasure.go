package lake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// An erasure record (docs/format/erasure.md): the resources erased for one patient of
// a tenant and the positions up to which their changes stay erased, so that a replay
// of the topic never brings them back while a change after the erasure passes.
//
//	_erasure/<patient-sha256>.json

// ErasurePrefix holds a tenant's erasure records.
const ErasurePrefix = "_erasure/"

// ErasureVersion is the format this package writes, and the newest it reads.
const ErasureVersion = 1

// ErasureKey is the record of the patient whose id has this SHA-256 (PatientHash).
func ErasureKey(patientHash string) string { return ErasurePrefix + patientHash + ".json" }

// Erasure is one patient's erasure record. Identifiers are kept only as SHA-256
// digests: the record erases a patient without naming them, and a reader that knows
// a resource can still tell whether it was erased.
type Erasure struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	// Patient is PatientHash of the patient's id.
	Patient string `json:"patient_sha256"`
	// Requested is when the first erasure of this patient began, Updated when the
	// latest began (a second request for the same patient widens the record).
	Requested time.Time `json:"requested"`
	Updated   time.Time `json:"updated"`
	// Completed is when the latest erasure finished removing the rows from the
	// lake; zero while one is under way or after it stopped midway. Readers apply
	// a record whether or not it is complete.
	Completed time.Time `json:"completed,omitzero"`
	// Keys are ResourceKeyHash of every resource erased, sorted.
	Keys []string `json:"keys"`
	// Positions are where the erasure ends on each partition: a change of an erased
	// resource stored from an offset below Before is erased.
	Positions []Position `json:"positions"`
}

// Position is the first offset of a topic's partition after an erasure.
type Position struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Before    int64  `json:"before"`
}

// PatientHash is the lowercase hex SHA-256 of a patient's id, as erasure records and
// the audit trail keep it.
func PatientHash(id string) string { return sha256Hex(id) }

// ResourceKeyHash is the lowercase hex SHA-256 of "<type>/<id>", as an erasure record
// keeps a resource; DuckDB's sha256(resource_type || '/' || id) is the same.
func ResourceKeyHash(resourceType, id string) string { return sha256Hex(resourceType + "/" + id) }

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// validHash accepts 64 lowercase hex digits.
func validHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Validate checks what every reader relies on: a readable version, digests that are
// digests, positions with a topic and no negative offsets.
func (e *Erasure) Validate() error {
	switch {
	case e.Version < 1 || e.Version > ErasureVersion:
		return fmt.Errorf("version %d: this build reads version 1 to %d", e.Version, ErasureVersion)
	case !validHash(e.Patient):
		return errors.New("patient_sha256 is not a SHA-256 in hex")
	}
	for _, k := range e.Keys {
		if !validHash(k) {
			return fmt.Errorf("key %q is not a SHA-256 in hex", k)
		}
	}
	for _, p := range e.Positions {
		if p.Topic == "" || p.Partition < 0 || p.Before < 0 {
			return fmt.Errorf("position %+v: want a topic, a partition and an offset, none negative", p)
		}
	}
	return nil
}

// Merge widens e by another erasure of the same patient: the union of the keys, and
// on every partition the later position.
func (e *Erasure) Merge(keys []string, positions []Position) {
	set := map[string]bool{}
	for _, k := range e.Keys {
		set[k] = true
	}
	for _, k := range keys {
		set[k] = true
	}
	e.Keys = e.Keys[:0]
	for k := range set {
		e.Keys = append(e.Keys, k)
	}
	sort.Strings(e.Keys)
	type tp struct {
		topic string
		part  int32
	}
	at := map[tp]int64{}
	for _, p := range slices.Concat(e.Positions, positions) {
		k := tp{p.Topic, p.Partition}
		if b, ok := at[k]; !ok || p.Before > b {
			at[k] = p.Before
		}
	}
	e.Positions = e.Positions[:0]
	for k, b := range at {
		e.Positions = append(e.Positions, Position{Topic: k.topic, Partition: k.part, Before: b})
	}
	sort.Slice(e.Positions, func(i, j int) bool {
		a, b := e.Positions[i], e.Positions[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
}

// Encode returns the record as stored: indented JSON and a newline.
func (e *Erasure) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("encode erasure: %w", err)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeErasure reads and validates a record.
func DecodeErasure(b []byte) (*Erasure, error) {
	e := &Erasure{}
	if err := json.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("read erasure: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("read erasure: %w", err)
	}
	return e, nil
}

// ParseErasureKey reports whether key is an erasure record's.
func ParseErasureKey(key string) bool {
	name, ok := strings.CutPrefix(key, ErasurePrefix)
	hash, ok2 := strings.CutSuffix(name, ".json")
	return ok && ok2 && validHash(hash)
}

// Erasures answers whether a change is erased, over every erasure record of a
// tenant: the replay rule of docs/format/erasure.md. The zero value and nil erase
// nothing.
type Erasures struct {
	records []*Erasure
	// byKey and byPatient index the records by resource and by patient.
	byKey, byPatient map[string][]*Erasure
}

// NewErasures indexes a tenant's records.
func NewErasures(records []*Erasure) *Erasures {
	s := &Erasures{records: records, byKey: map[string][]*Erasure{}, byPatient: map[string][]*Erasure{}}
	for _, e := range records {
		for _, k := range e.Keys {
			s.byKey[k] = append(s.byKey[k], e)
		}
		s.byPatient[e.Patient] = append(s.byPatient[e.Patient], e)
	}
	return s
}

// Len is how many records there are.
func (s *Erasures) Len() int {
	if s == nil {
		return 0
	}
	return len(s.records)
}

// Erased reports whether a change of resourceType/id stored from topic, partition
// and offset is erased: some record's position on that partition is after the
// offset, and the record erased the resource or the resource (resource, its JSON;
// nil for a delete) is in the erased patient's compartment. A change after every
// position, or on a partition no record names, is not.
func (s *Erasures) Erased(resourceType, id, topic string, partition int32, offset int64, resource []byte) bool {
	if s.Len() == 0 {
		return false
	}
	for _, e := range s.byKey[ResourceKeyHash(resourceType, id)] {
		if e.covers(topic, partition, offset) {
			return true
		}
	}
	if resourceType == "Patient" {
		for _, e := range s.byPatient[PatientHash(id)] {
			if e.covers(topic, partition, offset) {
				return true
			}
		}
	}
	if resource == nil || !InPatientCompartmentType(resourceType) || !s.anyCovers(topic, partition, offset) {
		return false
	}
	refs, err := PatientRefs(resourceType, resource)
	if err != nil {
		return false // a resource that does not parse names no patient
	}
	for _, p := range refs {
		for _, e := range s.byPatient[PatientHash(p)] {
			if e.covers(topic, partition, offset) {
				return true
			}
		}
	}
	return false
}

func (s *Erasures) anyCovers(topic string, partition int32, offset int64) bool {
	for _, e := range s.records {
		if e.covers(topic, partition, offset) {
			return true
		}
	}
	return false
}

// covers reports whether the record's position on the partition is after offset.
func (e *Erasure) covers(topic string, partition int32, offset int64) bool {
	for _, p := range e.Positions {
		if p.Topic == topic && p.Partition == partition {
			return offset < p.Before
		}
	}
	return false
}
