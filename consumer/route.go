package consumer

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Router resolves the tenant of a record: the tenant header first, then the
// topic map. A record that names an unknown tenant, or whose sources
// disagree, or that has no tenant at all, is not routable: there is no
// default tenant.
type Router struct {
	header  string
	topics  map[string]string
	tenants map[string]bool
}

// NewRouter returns a router over the configured tenants.
func NewRouter(header string, topics map[string]string, tenants []string) *Router {
	r := &Router{header: header, topics: topics, tenants: map[string]bool{}}
	for _, t := range tenants {
		r.tenants[t] = true
	}
	return r
}

// RouteError explains why a record has no tenant.
type RouteError struct {
	Class  string // unknown_tenant, conflicting_tenants, no_tenant
	Reason string
	// Claimed is the tenant the record named, if any.
	Claimed string
}

func (e *RouteError) Error() string { return e.Class + ": " + e.Reason }

// Resolve returns the record's tenant.
func (r *Router) Resolve(rec *kgo.Record) (string, error) {
	var fromHeader, fromTopic string
	headerSeen := false
	if r.header != "" {
		for _, h := range rec.Headers {
			if h.Key != r.header {
				continue
			}
			if headerSeen && string(h.Value) != fromHeader {
				return "", &RouteError{Class: "conflicting_tenants", Reason: fmt.Sprintf("header %s appears twice with %q and %q", r.header, fromHeader, h.Value)}
			}
			headerSeen = true
			fromHeader = string(h.Value)
		}
	}
	fromTopic = r.topics[rec.Topic]
	switch {
	case headerSeen && fromTopic != "" && fromHeader != fromTopic:
		return "", &RouteError{Class: "conflicting_tenants", Claimed: fromHeader,
			Reason: fmt.Sprintf("header %s says %q but topic %s belongs to %q", r.header, fromHeader, rec.Topic, fromTopic)}
	case headerSeen:
		if fromHeader == "" {
			return "", &RouteError{Class: "no_tenant", Reason: fmt.Sprintf("header %s is empty", r.header)}
		}
		if !r.tenants[fromHeader] {
			return "", &RouteError{Class: "unknown_tenant", Claimed: fromHeader, Reason: fmt.Sprintf("tenant %q is not configured", fromHeader)}
		}
		return fromHeader, nil
	case fromTopic != "":
		if !r.tenants[fromTopic] {
			return "", &RouteError{Class: "unknown_tenant", Claimed: fromTopic, Reason: fmt.Sprintf("topic map names tenant %q, which is not configured", fromTopic)}
		}
		return fromTopic, nil
	}
	return "", &RouteError{Class: "no_tenant", Reason: fmt.Sprintf("no %s header and topic %s is not mapped to a tenant", r.header, rec.Topic)}
}
