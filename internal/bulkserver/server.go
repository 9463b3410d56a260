// Package bulkserver is a FHIR Bulk Data server for tests: $export at system,
// Patient and Group level with _type and _since, a status URL that answers
// 202 a set number of times, NDJSON files served with Range support, and
// SMART Backend Services (a token endpoint that verifies private_key_jwt
// assertions) or a static bearer token. Faults are injected per endpoint:
// statuses with Retry-After, connections cut mid-file, ranges ignored,
// tokens that stop being accepted, a manifest rewritten.
package bulkserver

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Options configure a Server.
type Options struct {
	// SMART clients: when ClientID is set, requests need a token from the
	// token endpoint, obtained with an assertion signed by the key whose
	// public half is PublicKey and whose kid is KeyID.
	ClientID  string
	KeyID     string
	PublicKey crypto.PublicKey
	// Token, when set (and ClientID is not), is the one bearer token accepted.
	Token string
	// TokenUses refuses a SMART token after this many requests (0: never),
	// as a token that expired.
	TokenUses int
	// Polls is the number of 202 answers of a status URL before its manifest.
	Polls int
	// RetryAfter is sent with every 202 of a status URL.
	RetryAfter string
	// FileLines splits a type's resources into files of this many lines.
	// Default: all in one.
	FileLines int
}

// Resource is one resource the server holds.
type Resource struct {
	Type, ID string
	Version  int
	Updated  time.Time
	// Patient is the id of the patient whose compartment holds it ("" for
	// none; a Patient is in its own).
	Patient string
	Deleted bool
	// Body is the JSON as served, meta.versionId and meta.lastUpdated set.
	Body []byte
}

// Request is a request the server received.
type Request struct {
	Method, Path, Query, Range, Authorization string
}

// Server is a running test Bulk Data server. Its methods are safe for
// concurrent use.
type Server struct {
	URL string

	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	resources map[string]*Resource // by Type/id
	groups    map[string][]string  // group id → patient ids
	jobs      map[string]*job
	faults    map[string][]Fault // by endpoint, consumed in order
	cuts      map[int][]int      // file index → bytes sent before cutting, per request
	noRange   bool
	rewrite   func([]byte) []byte
	errLines  [][]byte
	tokens    map[string]int // token → uses left (-1: unlimited)
	jtis      map[string]bool
	requests  []Request
	tokensOut int
	clock     time.Time
}

type job struct {
	polls    int
	manifest []byte
	files    [][]byte
}

// Fault is an answer given instead of the real one.
type Fault struct {
	Status     int
	RetryAfter string
	Body       string
}

// Endpoints for faults.
const (
	KickOff = "kick-off"
	Status  = "status"
	File    = "file"
	Token   = "token"
)

// New starts a server; Close stops it.
func New(o Options) *Server {
	s := &Server{opts: o, resources: map[string]*Resource{}, groups: map[string][]string{}, jobs: map[string]*job{},
		faults: map[string][]Fault{}, cuts: map[int][]int{}, tokens: map[string]int{}, jtis: map[string]bool{},
		clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// Tick advances the server's clock, which stamps lastUpdated and
// transactionTime, by a second and returns it.
func (s *Server) Tick() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = s.clock.Add(time.Second)
	return s.clock
}

// Put creates or updates a resource: a new version stamped with the
// clock's next second. fields are added to its JSON.
func (s *Server) Put(typ, id, patient string, fields map[string]any) Resource {
	at := s.Tick()
	s.mu.Lock()
	defer s.mu.Unlock()
	key := typ + "/" + id
	r := s.resources[key]
	if r == nil {
		r = &Resource{Type: typ, ID: id, Patient: patient}
		s.resources[key] = r
	}
	r.Version++
	r.Updated = at
	r.Deleted = false
	doc := map[string]any{"resourceType": typ, "id": id, "meta": map[string]any{"versionId": strconv.Itoa(r.Version), "lastUpdated": at.Format(time.RFC3339)}}
	for k, v := range fields {
		doc[k] = v
	}
	r.Body, _ = json.Marshal(doc)
	return *r
}

// Delete deletes a resource, at the clock's next second.
func (s *Server) Delete(typ, id string) {
	at := s.Tick()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.resources[typ+"/"+id]; r != nil {
		r.Version++
		r.Updated = at
		r.Deleted = true
	}
}

// Group sets a Group's members.
func (s *Server) Group(id string, patients ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = patients
}

// Resources returns the resources not deleted, by Type/id.
func (s *Server) Resources() map[string]Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Resource{}
	for k, r := range s.resources {
		if !r.Deleted {
			out[k] = *r
		}
	}
	return out
}

// Fail makes the next requests to endpoint get faults, in order.
func (s *Server) Fail(endpoint string, f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[endpoint] = append(s.faults[endpoint], f...)
}

// Cut makes the next requests of file n (0-based, in manifest order) send
// the given numbers of bytes of what they would send and then break the
// connection, one number per request.
func (s *Server) Cut(n int, bytes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cuts[n] = append(s.cuts[n], bytes...)
}

// IgnoreRange makes file downloads answer every request with the whole file.
func (s *Server) IgnoreRange() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRange = true
}

// RewriteManifest passes every manifest through f before it is sent.
func (s *Server) RewriteManifest(f func([]byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rewrite = f
}

// ErrorOutcomes makes the manifests of later kick-offs list an error file
// holding these lines (OperationOutcomes, or anything).
func (s *Server) ErrorOutcomes(lines ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		s.errLines = append(s.errLines, []byte(l))
	}
}

// Requests returns the requests received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// TokensIssued counts the tokens the token endpoint gave out.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokensOut
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Range: r.Header.Get("Range"), Authorization: r.Header.Get("Authorization")})
	s.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/.well-known/smart-configuration":
		writeJSON(w, 200, map[string]any{"token_endpoint": s.TokenURL(), "grant_types_supported": []string{"client_credentials"},
			"token_endpoint_auth_methods_supported": []string{"private_key_jwt"}, "token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"}})
	case p == "/token":
		if !s.fault(w, Token) {
			s.token(w, r)
		}
	case p == "/$export", p == "/Patient/$export", strings.HasPrefix(p, "/Group/") && strings.HasSuffix(p, "/$export"):
		if s.authorized(w, r) && !s.fault(w, KickOff) {
			s.kickOff(w, r)
		}
	case strings.HasPrefix(p, "/status/"):
		if s.authorized(w, r) && !s.fault(w, Status) {
			s.status(w, strings.TrimPrefix(p, "/status/"))
		}
	case strings.HasPrefix(p, "/files/"):
		if s.authorized(w, r) && !s.fault(w, File) {
			s.file(w, r, strings.TrimPrefix(p, "/files/"))
		}
	default:
		outcome(w, 404, "not-found", "no such endpoint: "+p)
	}
}

// fault answers the next fault of endpoint, if any.
func (s *Server) fault(w http.ResponseWriter, endpoint string) bool {
	s.mu.Lock()
	fs := s.faults[endpoint]
	if len(fs) == 0 {
		s.mu.Unlock()
		return false
	}
	f := fs[0]
	s.faults[endpoint] = fs[1:]
	s.mu.Unlock()
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Body != "" {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
		return true
	}
	outcome(w, f.Status, "transient", fmt.Sprintf("injected %d", f.Status))
	return true
}

// authorized checks the bearer token, when the server wants one.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.ClientID == "" && s.opts.Token == "" {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !ok:
	case s.opts.ClientID == "":
		if tok == s.opts.Token {
			return true
		}
	default:
		left, known := s.tokens[tok]
		if known && left != 0 {
			if left > 0 {
				s.tokens[tok] = left - 1
			}
			return true
		}
	}
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	outcome(w, 401, "login", "the access token is missing, unknown or expired")
	return false
}

// token is the SMART Backend Services token endpoint.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	tokenError := func(code, desc string) {
		writeJSON(w, 400, map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		tokenError("invalid_request", err.Error())
		return
	}
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		tokenError("unsupported_grant_type", "want client_credentials")
		return
	case r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		tokenError("invalid_client", "want a jwt-bearer client assertion")
		return
	case r.PostForm.Get("scope") == "":
		tokenError("invalid_scope", "no scope")
		return
	}
	var kid string
	tok, err := jwt.ParseWithClaims(r.PostForm.Get("client_assertion"), &jwt.RegisteredClaims{}, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		return s.opts.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS384", "ES384"}), jwt.WithAudience(s.TokenURL()), jwt.WithIssuer(s.opts.ClientID),
		jwt.WithSubject(s.opts.ClientID), jwt.WithExpirationRequired())
	if err != nil {
		tokenError("invalid_client", err.Error())
		return
	}
	claims := tok.Claims.(*jwt.RegisteredClaims)
	if kid != s.opts.KeyID {
		tokenError("invalid_client", "unknown kid "+kid)
		return
	}
	if claims.ExpiresAt.After(time.Now().Add(5*time.Minute + time.Minute)) {
		tokenError("invalid_client", "assertion valid for more than five minutes")
		return
	}
	s.mu.Lock()
	if claims.ID == "" || s.jtis[claims.ID] {
		s.mu.Unlock()
		tokenError("invalid_client", "jti missing or reused")
		return
	}
	s.jtis[claims.ID] = true
	access := randomID()
	s.tokens[access] = -1
	if s.opts.TokenUses > 0 {
		s.tokens[access] = s.opts.TokenUses
	}
	s.tokensOut++
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{"access_token": access, "token_type": "bearer", "expires_in": 300, "scope": r.PostForm.Get("scope")})
}

// kickOff starts a job: the files are made now, as of the clock.
func (s *Server) kickOff(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Prefer") != "respond-async" {
		outcome(w, 400, "invalid", "Prefer: respond-async is required")
		return
	}
	q := r.URL.Query()
	var types []string
	if t := q.Get("_type"); t != "" {
		types = strings.Split(t, ",")
	}
	for _, t := range types {
		if t != "Patient" && t != "Observation" && t != "Encounter" && t != "Condition" && t != "Group" {
			outcome(w, 400, "not-supported", "Resource type "+t+" is not supported")
			return
		}
	}
	var since time.Time
	if v := q.Get("_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			outcome(w, 400, "invalid", "_since: "+err.Error())
			return
		}
		since = t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inScope := func(*Resource) bool { return true }
	switch p := r.URL.Path; {
	case p == "/Patient/$export":
		inScope = func(res *Resource) bool { return res.Patient != "" || res.Type == "Patient" }
	case strings.HasPrefix(p, "/Group/"):
		gid := strings.TrimSuffix(strings.TrimPrefix(p, "/Group/"), "/$export")
		members, ok := s.groups[gid]
		if !ok {
			outcome(w, 404, "not-found", "Group/"+gid+" is not known")
			return
		}
		inScope = func(res *Resource) bool {
			return slices.Contains(members, res.Patient) || res.Type == "Patient" && slices.Contains(members, res.ID)
		}
	}
	byType := map[string][][]byte{}
	var deleted [][]byte
	for _, res := range s.resources {
		if !inScope(res) || (len(types) > 0 && !slices.Contains(types, res.Type)) || !res.Updated.After(since) {
			continue
		}
		if res.Deleted {
			if !since.IsZero() {
				b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
					map[string]any{"request": map[string]any{"method": "DELETE", "url": res.Type + "/" + res.ID}}}})
				deleted = append(deleted, b)
			}
			continue
		}
		byType[res.Type] = append(byType[res.Type], res.Body)
	}
	id := randomID()
	j := &job{}
	type output struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	}
	var outs, dels []output
	errs := []output{}
	addFile := func(typ string, lines [][]byte, to *[]output) {
		n := len(j.files)
		j.files = append(j.files, append(bytes.Join(lines, []byte("\n")), '\n'))
		*to = append(*to, output{Type: typ, URL: fmt.Sprintf("%s/files/%s/%d", s.URL, id, n), Count: len(lines)})
	}
	typeNames := make([]string, 0, len(byType))
	for t := range byType {
		typeNames = append(typeNames, t)
	}
	slices.Sort(typeNames)
	for _, t := range typeNames {
		lines := byType[t]
		slices.SortFunc(lines, bytes.Compare)
		per := s.opts.FileLines
		if per <= 0 {
			per = len(lines)
		}
		for len(lines) > 0 {
			n := min(per, len(lines))
			addFile(t, lines[:n], &outs)
			lines = lines[n:]
		}
	}
	if len(deleted) > 0 {
		addFile("Bundle", deleted, &dels)
	}
	if len(s.errLines) > 0 {
		addFile("OperationOutcome", s.errLines, &errs)
	}
	m := map[string]any{"transactionTime": s.clock.Format(time.RFC3339Nano), "request": s.URL + r.URL.RequestURI(),
		"requiresAccessToken": s.opts.ClientID != "" || s.opts.Token != "", "output": outs, "error": errs}
	if len(dels) > 0 {
		m["deleted"] = dels
	}
	j.manifest, _ = json.Marshal(m)
	s.jobs[id] = j
	w.Header().Set("Content-Location", s.URL+"/status/"+id)
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) status(w http.ResponseWriter, id string) {
	s.mu.Lock()
	j := s.jobs[id]
	if j == nil {
		s.mu.Unlock()
		outcome(w, 404, "not-found", "no job "+id)
		return
	}
	if j.polls < s.opts.Polls {
		j.polls++
		pct := 100 * j.polls / (s.opts.Polls + 1)
		s.mu.Unlock()
		if s.opts.RetryAfter != "" {
			w.Header().Set("Retry-After", s.opts.RetryAfter)
		}
		w.Header().Set("X-Progress", fmt.Sprintf("%d%% done", pct))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	m := j.manifest
	if s.rewrite != nil {
		m = s.rewrite(m)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(m)
}

// file serves a job's file with http.ServeContent (Range and If-Range), or
// cuts it as Cut said.
func (s *Server) file(w http.ResponseWriter, r *http.Request, rest string) {
	id, ns, _ := strings.Cut(rest, "/")
	n, err := strconv.Atoi(ns)
	s.mu.Lock()
	j := s.jobs[id]
	if j == nil || err != nil || n < 0 || n >= len(j.files) {
		s.mu.Unlock()
		outcome(w, 404, "not-found", "no file "+rest)
		return
	}
	body := j.files[n]
	cut := -1
	if c := s.cuts[n]; len(c) > 0 {
		cut, s.cuts[n] = c[0], c[1:]
	}
	if s.noRange {
		r.Header.Del("Range")
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	w.Header().Set("ETag", `"`+id+"-"+ns+`"`)
	if cut < 0 {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	}
	// Answer as ServeContent would, but break the connection after cut bytes.
	cw := &cutWriter{ResponseWriter: w, left: cut}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(body))
}

// cutWriter passes on at most left bytes of the body, then hijacks and
// closes the connection.
type cutWriter struct {
	http.ResponseWriter
	left int
	done bool
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.done {
		return 0, http.ErrHandlerTimeout
	}
	if len(p) <= c.left {
		c.left -= len(p)
		return c.ResponseWriter.Write(p)
	}
	_, _ = c.ResponseWriter.Write(p[:c.left])
	c.done = true
	c.ResponseWriter.(http.Flusher).Flush()
	if conn, _, err := http.NewResponseController(c.ResponseWriter).Hijack(); err == nil {
		conn.Close()
	}
	return 0, http.ErrHandlerTimeout
}

func outcome(w http.ResponseWriter, status int, code, diagnostics string) {
	writeJSON(w, status, map[string]any{"resourceType": "OperationOutcome", "issue": []any{
		map[string]any{"severity": "error", "code": code, "diagnostics": diagnostics}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
