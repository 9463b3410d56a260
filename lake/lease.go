package lake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// LeaseKey is the compactor's lease of the tenant: while it exists and has not
// expired, the compactor it names is the only one working on the tenant
// (docs/format/lease.md).
const LeaseKey = "_lease/compactor.json"

// LeaseVersion is the format of the lease this package writes, and the newest it
// reads.
const LeaseVersion = 1

// Lease is the document at LeaseKey. A compactor creates it only where none exists,
// replaces it only if it is still the version it last read (its holder renewing it,
// or a taker replacing an expired one), and deletes it when its run ends.
type Lease struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	Holder  Holder `json:"holder"`
	// Acquired is when the holder took the lease, Renewed when it last renewed it.
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
	// Expires is when the lease lapses unless renewed before: from then on any
	// compactor may take it over.
	Expires time.Time `json:"expires"`
}

// Holder names the compactor run that holds a lease.
type Holder struct {
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// RunID is random per run: two runs on one host and pid (one after the other,
	// or the same tenant twice in one process) are different holders.
	RunID string `json:"run_id"`
}

// NewRunID returns a random run id, 16 hex digits.
func NewRunID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Expired reports whether the lease has lapsed at now.
func (l *Lease) Expired(now time.Time) bool { return !now.Before(l.Expires) }

// Validate checks what a taker relies on: a version this package reads, a holder
// with a run id, and times in order.
func (l *Lease) Validate() error {
	switch {
	case l.Version < 1 || l.Version > LeaseVersion:
		return fmt.Errorf("version %d: this build reads version 1 to %d", l.Version, LeaseVersion)
	case l.Holder.RunID == "":
		return errors.New("no holder run id")
	case l.Acquired.IsZero() || l.Renewed.Before(l.Acquired) || !l.Expires.After(l.Renewed):
		return fmt.Errorf("times out of order: acquired %s, renewed %s, expires %s",
			l.Acquired.Format(time.RFC3339Nano), l.Renewed.Format(time.RFC3339Nano), l.Expires.Format(time.RFC3339Nano))
	}
	return nil
}

// Encode returns the lease as it is stored: indented JSON and a newline.
func (l *Lease) Encode() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", LeaseKey, err)
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", LeaseKey, err)
	}
	return append(b, '\n'), nil
}

// DecodeLease reads and validates the content of a lease.
func DecodeLease(b []byte) (*Lease, error) {
	l := &Lease{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("read %s: %w", LeaseKey, err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", LeaseKey, err)
	}
	return l, nil
}
