package bulkexport

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Level is where an export is asked for.
type Level string

// The three levels of the Bulk Data specification.
const (
	// System exports every resource of the server: [base]/$export.
	System Level = "system"
	// Patient exports every patient's compartment: [base]/Patient/$export.
	Patient Level = "patient"
	// Group exports the compartments of a group's members:
	// [base]/Group/<id>/$export.
	Group Level = "group"
)

// Request is an export to ask a server for.
type Request struct {
	// Base is the FHIR base URL, e.g. https://fhir.example.org/r4.
	Base string
	// Level defaults to System.
	Level Level
	// Group is the Group's id, for Level Group.
	Group string
	// Types, when set, is _type: only these resource types.
	Types []string
	// Since, when set, is _since: only resources changed after it.
	Since time.Time
}

var (
	typeName = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)
	fhirID   = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// Validate checks the base URL, the level and its group, and the types.
func (r Request) Validate() error {
	u, err := url.Parse(r.Base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server %q: not an http or https URL", r.Base)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("server %q: a FHIR base URL has no query or fragment", r.Base)
	}
	switch r.Level {
	case "", System, Patient:
		if r.Group != "" {
			return errors.New("a group id goes with the group level only")
		}
	case Group:
		if !fhirID.MatchString(r.Group) {
			return fmt.Errorf("group id %q: not a FHIR id (letters, digits, - and ., at most 64)", r.Group)
		}
	default:
		return fmt.Errorf("level %q: want system, patient or group", r.Level)
	}
	for _, t := range r.Types {
		if !typeName.MatchString(t) {
			return fmt.Errorf("type %q: not a resource type", t)
		}
	}
	return nil
}

// Source identifies the request apart from _since: the kick-off URL without
// it. Exports of one source follow each other with --since-last.
func (r Request) Source() string {
	r.Since = time.Time{}
	return r.KickOff()
}

// KickOff is the kick-off URL. Validate it first.
func (r Request) KickOff() string {
	base := strings.TrimRight(r.Base, "/")
	var path string
	switch r.Level {
	case Patient:
		path = "/Patient/$export"
	case Group:
		path = "/Group/" + r.Group + "/$export"
	default:
		path = "/$export"
	}
	q := url.Values{}
	if len(r.Types) > 0 {
		q.Set("_type", strings.Join(r.Types, ","))
	}
	if !r.Since.IsZero() {
		q.Set("_since", r.Since.UTC().Format(time.RFC3339Nano))
	}
	if len(q) == 0 {
		return base + path
	}
	return base + path + "?" + q.Encode()
}
