package notification

import (
	"strings"
	"time"
)

// refID is a resource reference reduced to Type/id (and a version when one
// matters).
type refID struct {
	typ, id, version string
}

// refKey reduces a reference or URL to Type/id, dropping the base URL and
// any _history suffix; ok is false when it has no such shape.
func refKey(ref string) (refID, bool) {
	t, id, _ := splitRef(ref)
	return refID{typ: t, id: id}, t != ""
}

// splitRef parses [base/]Type/id[/_history/version].
func splitRef(ref string) (typ, id, version string) {
	_, typ, id, version = parseRef(ref)
	return typ, id, version
}

// parseRef parses [base/]Type/id[/_history/version] without allocating.
// typ is "" when ref has no such shape or its id or version is not a FHIR
// id (which also keeps path tricks such as ".." out of fetch URLs).
func parseRef(ref string) (base, typ, id, version string) {
	if i := strings.IndexAny(ref, "?#"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimSuffix(ref, "/")
	// Up to four segments from the end: [Type, id, "_history", version].
	var seg [4]string
	n := 0
	rest := ref
	for n < 4 {
		i := strings.LastIndexByte(rest, '/')
		seg[n] = rest[i+1:]
		n++
		if i < 0 {
			rest = ""
			break
		}
		rest = rest[:i]
	}
	// seg[0] is the last segment.
	switch {
	case n == 4 && seg[1] == "_history":
		typ, id, version = seg[3], seg[2], seg[0]
		base = rest
	case n >= 2:
		typ, id = seg[1], seg[0]
		if k := len(ref) - len(id) - len(typ) - 2; k > 0 {
			base = ref[:k]
		}
	default:
		return "", "", "", ""
	}
	if !isResourceType(typ) || !isFHIRID(id) || version != "" && !isFHIRID(version) {
		return "", "", "", ""
	}
	return base, typ, id, version
}

func isResourceType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// isFHIRID reports whether s is a FHIR id: letters, digits, '-' and '.',
// at most MaxIDLength characters.
func isFHIRID(s string) bool {
	if s == "" || len(s) > MaxIDLength || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idChars[s[i]] {
			return false
		}
	}
	return true
}

// idChars marks the bytes a FHIR id may hold: [A-Za-z0-9\-.].
var idChars = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
	}
	return t
}()

// isHTTPURL reports whether s is an absolute http(s) URL with a host.
func isHTTPURL(s string) bool {
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(s, "http://")
	}
	return ok && rest != "" && rest[0] != '/'
}

// etagVersion reads W/"3" as version 3; "" when it is not a FHIR id.
func etagVersion(etag string) string {
	etag = strings.TrimPrefix(etag, "W/")
	v := strings.Trim(etag, `"`)
	if !isFHIRID(v) {
		return ""
	}
	return v
}

// parseInstant reads a FHIR instant; anything else is the zero time.
func parseInstant(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// addBase records the base URL of an absolute reference as a routing hint.
func (n *Notification) addBase(ref string) {
	base, typ, _, _ := parseRef(ref)
	if typ == "" || !isHTTPURL(base) {
		return
	}
	n.addBaseURL(base)
}

func (n *Notification) addBaseURL(base string) {
	if k := len(n.BaseURLs); k > 0 && n.BaseURLs[k-1] == base {
		return // the common case: every entry on the same server
	}
	n.BaseURLs = append(n.BaseURLs, base)
}

// addTags records meta.tag codings as routing hints.
func (n *Notification) addTags(tags []Tag) {
	for _, t := range tags {
		if k := len(n.Tags); k > 0 && n.Tags[k-1] == t {
			continue
		}
		n.Tags = append(n.Tags, t)
	}
}

// finish removes duplicate hints, keeping the first occurrence of each.
func (n *Notification) finish() {
	n.BaseURLs = distinct(n.BaseURLs)
	n.Tags = distinct(n.Tags)
}

func distinct[T comparable](in []T) []T {
	if len(in) < 2 {
		return in
	}
	out := in[:0]
	if len(in) <= 16 {
	next:
		for _, v := range in {
			for _, w := range out {
				if v == w {
					continue next
				}
			}
			out = append(out, v)
		}
		return out
	}
	seen := make(map[T]bool, len(in))
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
