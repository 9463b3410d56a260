package synth

import (
	"errors"
	"fmt"
	"math"
)

// Format names a notification envelope. The values match the format names
// the consumer reports for what it decoded.
type Format string

const (
	// FormatR4Backport is the Subscriptions R5 Backport IG on FHIR R4:
	// Bundle.type "history" whose first entry is a Parameters status.
	FormatR4Backport Format = "r4-backport"
	// FormatR4BHistory is the Backport IG on FHIR R4B: Bundle.type "history"
	// whose first entry is a SubscriptionStatus.
	FormatR4BHistory Format = "r4b-history"
	// FormatR5 is FHIR R5: Bundle.type "subscription-notification" whose
	// first entry is a SubscriptionStatus.
	FormatR5 Format = "r5"
)

func (f Format) valid() bool {
	switch f {
	case FormatR4Backport, FormatR4BHistory, FormatR5:
		return true
	}
	return false
}

// DefaultTenantHeader is the Kafka header that names the tenant.
const DefaultTenantHeader = "fhir-tenant"

// MaxResourcesPerNotification bounds Options.ResourcesPerNotification; larger
// bundles are possible on real servers but add nothing to a test.
const MaxResourcesPerNotification = 1000

// Options describe a synthetic stream. The zero value of every field except
// Tenants is usable; New fills the documented defaults.
type Options struct {
	// Tenants are the tenant names: lowercase letters, digits and inner
	// hyphens, at most 63 characters (a DNS label, because each tenant's FHIR
	// base URL is https://fhir.<tenant>.example.org/fhir). At least one.
	Tenants []string
	// Patients is the number of patients per tenant. Each patient brings
	// about 18 resources (1–4 encounters with vitals and labs, conditions and
	// medication requests).
	Patients int
	// Seed selects the data. The same Options yield a byte-identical stream.
	Seed int64
	// UpdateRatio is the share of resources, in [0, 1], that receive one or
	// two later versions.
	UpdateRatio float64
	// DeleteRatio is the share of deletable resources (Observation,
	// Condition, MedicationRequest), in [0, 1], that are deleted after their
	// last version. Patients and Encounters are never deleted, because other
	// resources reference them.
	DeleteRatio float64
	// Formats are the envelopes to draw from, one seeded choice per
	// notification. Default: FormatR4Backport and FormatR5.
	Formats []Format
	// ResourcesPerNotification is the number of events per event
	// notification (the last one of a tenant may hold fewer). Default 1.
	ResourcesPerNotification int
	// Controls is the number of control notifications. The first one per
	// tenant is a handshake at the start of the stream; the rest are
	// heartbeats spread over the stream.
	Controls int
	// Malformed is the number of records that no decoder should accept
	// (truncated JSON, XML, a Bundle without a status entry, an empty value,
	// a JSON array). They carry a valid tenant header.
	Malformed int
	// Unroutable is the number of valid event notifications whose tenant is
	// not in Tenants: the header names "unknown-<n>", and when Unroutable is
	// at least 2 the last one carries no tenant header at all. Their base
	// URLs name the same unknown tenant, so no resolution rule can route them.
	Unroutable int
	// TenantHeader is the Kafka header key that carries the tenant name.
	// Default DefaultTenantHeader.
	TenantHeader string
}

// DefaultOptions is a small two-tenant stream with every kind of record,
// suitable for a demo.
func DefaultOptions() Options {
	return Options{
		Tenants:                  []string{"acme", "globex"},
		Patients:                 100,
		Seed:                     1,
		UpdateRatio:              0.2,
		DeleteRatio:              0.05,
		Formats:                  []Format{FormatR4Backport, FormatR5, FormatR4BHistory},
		ResourcesPerNotification: 1,
		Controls:                 6,
		Malformed:                5,
		Unroutable:               2,
		TenantHeader:             DefaultTenantHeader,
	}
}

// withDefaults returns a copy with the documented defaults filled in.
func (o Options) withDefaults() Options {
	if len(o.Formats) == 0 {
		o.Formats = []Format{FormatR4Backport, FormatR5}
	}
	if o.ResourcesPerNotification == 0 {
		o.ResourcesPerNotification = 1
	}
	if o.TenantHeader == "" {
		o.TenantHeader = DefaultTenantHeader
	}
	o.Tenants = append([]string(nil), o.Tenants...)
	o.Formats = append([]Format(nil), o.Formats...)
	return o
}

// Validate reports every problem with the options, after defaults.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if len(o.Tenants) == 0 {
		errs = append(errs, errors.New("no tenants"))
	}
	seen := make(map[string]bool, len(o.Tenants))
	for _, t := range o.Tenants {
		if !validTenant(t) {
			errs = append(errs, fmt.Errorf("tenant %q: want a DNS label (a-z, 0-9, inner '-', at most 63 characters)", t))
		}
		if seen[t] {
			errs = append(errs, fmt.Errorf("tenant %q listed twice", t))
		}
		seen[t] = true
	}
	if o.Patients < 0 {
		errs = append(errs, fmt.Errorf("patients %d is negative", o.Patients))
	}
	if !validRatio(o.UpdateRatio) {
		errs = append(errs, fmt.Errorf("update ratio %v is not in [0, 1]", o.UpdateRatio))
	}
	if !validRatio(o.DeleteRatio) {
		errs = append(errs, fmt.Errorf("delete ratio %v is not in [0, 1]", o.DeleteRatio))
	}
	for _, f := range o.Formats {
		if !f.valid() {
			errs = append(errs, fmt.Errorf("unknown format %q", f))
		}
	}
	if o.ResourcesPerNotification < 1 || o.ResourcesPerNotification > MaxResourcesPerNotification {
		errs = append(errs, fmt.Errorf("resources per notification %d is not in [1, %d]", o.ResourcesPerNotification, MaxResourcesPerNotification))
	}
	if o.Controls < 0 {
		errs = append(errs, fmt.Errorf("controls %d is negative", o.Controls))
	}
	if o.Malformed < 0 {
		errs = append(errs, fmt.Errorf("malformed %d is negative", o.Malformed))
	}
	if o.Unroutable < 0 {
		errs = append(errs, fmt.Errorf("unroutable %d is negative", o.Unroutable))
	}
	if !validHeaderKey(o.TenantHeader) {
		errs = append(errs, fmt.Errorf("tenant header %q: want printable ASCII without spaces", o.TenantHeader))
	}
	return errors.Join(errs...)
}

func validRatio(r float64) bool { return !math.IsNaN(r) && r >= 0 && r <= 1 }

func validTenant(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func validHeaderKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
