package consumer

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unsafe"

	"fhirlake/notification"

	"github.com/twmb/franz-go/pkg/kgo"
)

// RouteOptions configure the tenant resolution chain. Every configured
// source is consulted; all answers must agree.
type RouteOptions struct {
	// Header is the Kafka record header naming the tenant.
	Header string
	// Topics maps a topic to the tenant that owns all of it.
	Topics map[string]string
	// PayloadFields trusts an IBM event's tenantId and a HAPI message's
	// partitionId.
	PayloadFields bool
	// BaseURLPattern matches the notification's FHIR base URLs; its named
	// group "tenant" names the tenant. Nil: not consulted.
	BaseURLPattern *regexp.Regexp
	// TagSystem is the meta.tag system whose code names the tenant.
	TagSystem string
}

// Router resolves the tenant of a record. A record that names an unknown
// tenant, or whose sources disagree, or that has no tenant at all, is not
// routable: there is no default tenant.
type Router struct {
	o RouteOptions
	// tenants maps a configured tenant to itself: Resolve returns the
	// configured string, never one that points into a record.
	tenants map[string]string
}

// NewRouter returns a router over the configured tenants.
func NewRouter(o RouteOptions, tenants []string) *Router {
	r := &Router{o: o, tenants: map[string]string{}}
	for _, t := range tenants {
		r.tenants[t] = t
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

// Claimed returns the tenant a record's header names, for dead-letter
// headers of records that fail before routing.
func (r *Router) Claimed(rec *kgo.Record) string {
	for _, h := range rec.Headers {
		if h.Key == r.o.Header {
			return string(h.Value)
		}
	}
	return r.o.Topics[rec.Topic]
}

// answer is one routing source's tenant. Its source is kind and name
// ("header fhir-tenant"), joined only for an error; a header's tenant
// shares the record's memory and is cloned before it leaves Resolve.
type answer struct{ kind, name, tenant string }

func (a answer) source() string { return a.kind + " " + a.name }

// Resolve returns the record's tenant from its header, its topic, and the
// decoded notification's hints (n may be nil).
func (r *Router) Resolve(rec *kgo.Record, n *notification.Notification) (string, error) {
	answers := make([]answer, 0, 4) // on the stack: most records have one or two sources
	if r.o.Header != "" {
		for _, h := range rec.Headers {
			if h.Key == r.o.Header {
				if len(h.Value) == 0 {
					return "", &RouteError{Class: "no_tenant", Reason: fmt.Sprintf("header %s is empty", r.o.Header)}
				}
				answers = append(answers, answer{"header", r.o.Header, unsafe.String(&h.Value[0], len(h.Value))})
			}
		}
	}
	if t, ok := r.o.Topics[rec.Topic]; ok {
		answers = append(answers, answer{"topic", rec.Topic, t})
	}
	if n != nil {
		if r.o.PayloadFields {
			if n.TenantID != "" {
				answers = append(answers, answer{"payload", "tenantId", n.TenantID})
			}
			if n.PartitionID != "" {
				answers = append(answers, answer{"payload", "partitionId", n.PartitionID})
			}
		}
		if r.o.BaseURLPattern != nil {
			group := r.o.BaseURLPattern.SubexpIndex("tenant")
			for _, u := range n.BaseURLs {
				if m := r.o.BaseURLPattern.FindStringSubmatch(u); m != nil && group >= 0 && m[group] != "" {
					answers = append(answers, answer{"base URL", u, m[group]})
				}
			}
		}
		if r.o.TagSystem != "" {
			for _, tag := range n.Tags {
				if tag.System == r.o.TagSystem && tag.Code != "" {
					answers = append(answers, answer{"meta.tag", tag.System, tag.Code})
				}
			}
		}
	}
	if len(answers) == 0 {
		return "", &RouteError{Class: "no_tenant", Reason: fmt.Sprintf("no routing source names a tenant (header %s, topic %s not mapped)", r.o.Header, rec.Topic)}
	}
	tenant := answers[0].tenant
	for _, a := range answers[1:] {
		if a.tenant != tenant {
			return "", &RouteError{Class: "conflicting_tenants", Claimed: strings.Clone(answers[0].tenant), Reason: describe(answers)}
		}
	}
	configured, ok := r.tenants[tenant]
	if !ok {
		return "", &RouteError{Class: "unknown_tenant", Claimed: strings.Clone(tenant), Reason: fmt.Sprintf("tenant %q (from %s) is not configured", tenant, answers[0].source())}
	}
	return configured, nil
}

func describe(answers []answer) string {
	parts := make([]string, len(answers))
	for i, a := range answers {
		parts[i] = fmt.Sprintf("%s says %q", a.source(), a.tenant)
	}
	sort.Strings(parts)
	return "sources disagree: " + strings.Join(parts, ", ")
}
