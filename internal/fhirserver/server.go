// Package fhirserver is a small FHIR server for tests: read
// (GET /Type/id) and vread (GET /Type/id/_history/v) of Synthea NDJSON
// data and of resources added by the test, with an optional bearer token,
// injected failures and latency, and request counts.
package fhirserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	// DataDir holds <Type>.ndjson files (Synthea's bulk export), read the
	// first time a type is asked for. Their resources are version "1"
	// unless their meta says otherwise. Empty: only added resources.
	DataDir string
	// Token, when set, must arrive as "Authorization: Bearer <Token>";
	// any other request gets 401.
	Token string
	// BasePath is the path the server answers under, e.g. "/fhir"; URL
	// includes it. Paths given to and reported by the server's methods are
	// relative to it ("/Patient/p1"). Default: none.
	BasePath string
}

// Server is a running test FHIR server. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the FHIR base URL, e.g. http://127.0.0.1:40123.
	URL string

	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	loaded    map[string]bool        // types read from DataDir
	resources map[string]*history    // by Type/id
	raw       map[string]rawResponse // exact paths answered as given
	failures  []failure              // injected, consumed in order
	latency   time.Duration          // added to every request
	requests  []Request              // in arrival order
	counts    map[string]int         // by path
	statuses  map[int]int            // responses by status
	inFlight  int                    // requests being served
	maxFlight int                    // most requests served at once
	redirects map[string]string      // path → Location
}

type history struct {
	versions []version // oldest first
	deleted  bool
}

type version struct {
	id   string
	body []byte
}

type rawResponse struct {
	status int
	body   []byte
}

type failure struct {
	status int
	header http.Header
	left   int
}

// New starts a server; Close stops it.
func New(opts Options) *Server {
	s := &Server{
		opts:      opts,
		loaded:    map[string]bool{},
		resources: map[string]*history{},
		raw:       map[string]rawResponse{},
		counts:    map[string]int{},
		statuses:  map[int]int{},
		redirects: map[string]string{},
	}
	s.opts.BasePath = "/" + strings.Trim(opts.BasePath, "/")
	if s.opts.BasePath == "/" {
		s.opts.BasePath = ""
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + s.opts.BasePath
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns a client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Add stores a resource as the next version of its Type/id: its
// meta.versionId when it has one, else the previous version plus one.
// It returns the version stored.
func (s *Server) Add(resource []byte) (string, error) {
	var h struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(resource, &h); err != nil {
		return "", fmt.Errorf("add resource: %w", err)
	}
	if h.ResourceType == "" || h.ID == "" {
		return "", errors.New("add resource: no resourceType or id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load(h.ResourceType)
	key := h.ResourceType + "/" + h.ID
	hist := s.resources[key]
	if hist == nil {
		hist = &history{}
		s.resources[key] = hist
	}
	v := h.Meta.VersionID
	if v == "" {
		v = strconv.Itoa(len(hist.versions) + 1)
	}
	hist.versions = append(hist.versions, version{id: v, body: slices.Clone(resource)})
	hist.deleted = false
	return v, nil
}

// Delete marks Type/id deleted: a read answers 410 Gone, a vread of an
// earlier version still answers.
func (s *Server) Delete(typ, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load(typ)
	key := typ + "/" + id
	if h := s.resources[key]; h != nil {
		h.deleted = true
		return
	}
	s.resources[key] = &history{deleted: true}
}

// Respond makes the server answer GET path (e.g. "/Patient/p1") with status
// and body as given, whatever it holds: a way to serve a wrong resource.
func (s *Server) Respond(path string, status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw[path] = rawResponse{status: status, body: slices.Clone(body)}
}

// Redirect makes the server answer GET path with a 307 to location, which
// is sent as given (an absolute URL, or a path from the server's root).
func (s *Server) Redirect(path, location string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirects[path] = location
}

// FailNext answers the next n requests with status (and header, e.g.
// Retry-After) instead of serving them. Calls queue up.
func (s *Server) FailNext(n, status int, header http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, failure{status: status, header: header, left: n})
}

// SetLatency delays every later request by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Requests returns the number of requests received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// Count returns the number of requests for path.
func (s *Server) Count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

// Request is a request the server received.
type Request struct {
	Path   string // relative to BasePath
	Header http.Header
}

// Log returns the requests received, in arrival order.
func (s *Server) Log() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Paths returns the requested paths in arrival order.
func (s *Server) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.Path
	}
	return out
}

// Statuses returns how many responses had each status.
func (s *Server) Statuses() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int, len(s.statuses))
	for k, v := range s.statuses {
		out[k] = v
	}
	return out
}

// MaxInFlight returns the most requests that were being served at once.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxFlight
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, s.opts.BasePath)
	if !ok || path != "" && path[0] != '/' {
		outcome(w, http.StatusNotFound, "outside the FHIR base")
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, Request{Path: path, Header: r.Header.Clone()})
	s.counts[path]++
	s.inFlight++
	s.maxFlight = max(s.maxFlight, s.inFlight)
	latency := s.latency
	var fail *failure
	if len(s.failures) > 0 {
		f := s.failures[0]
		fail = &f
		if s.failures[0].left--; s.failures[0].left <= 0 {
			s.failures = s.failures[1:]
		}
	}
	s.mu.Unlock()
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.statuses[status]++
		s.mu.Unlock()
	}()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			status = 499
			return
		}
	}
	if fail != nil {
		for k, vs := range fail.header {
			w.Header()[k] = vs
		}
		status = fail.status
		outcome(w, status, "injected failure")
		return
	}
	if s.opts.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", "Bearer")
		outcome(w, status, "missing or wrong bearer token")
		return
	}
	if r.Method != http.MethodGet {
		status = http.StatusMethodNotAllowed
		outcome(w, status, "only GET is served")
		return
	}
	status = s.read(w, path)
}

// read answers a read or vread and returns the status sent.
func (s *Server) read(w http.ResponseWriter, path string) int {
	s.mu.Lock()
	if loc, ok := s.redirects[path]; ok {
		s.mu.Unlock()
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return http.StatusTemporaryRedirect
	}
	if raw, ok := s.raw[path]; ok {
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(raw.status)
		_, _ = w.Write(raw.body)
		return raw.status
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 2 && (len(parts) != 4 || parts[2] != "_history") || !validType(parts[0]) {
		s.mu.Unlock()
		outcome(w, http.StatusBadRequest, "only read and vread are served")
		return http.StatusBadRequest
	}
	s.load(parts[0])
	h := s.resources[parts[0]+"/"+parts[1]]
	var body []byte
	status := http.StatusOK
	switch {
	case h == nil:
		status = http.StatusNotFound
	case len(parts) == 2 && h.deleted:
		status = http.StatusGone
	case len(parts) == 2:
		body = h.versions[len(h.versions)-1].body
	default:
		status = http.StatusNotFound
		for _, v := range h.versions {
			if v.id == parts[3] {
				body, status = v.body, http.StatusOK
			}
		}
	}
	s.mu.Unlock()
	if status != http.StatusOK {
		outcome(w, status, "not found")
		return status
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	_, _ = w.Write(body)
	return status
}

// load reads DataDir/<typ>.ndjson once. The caller holds mu.
func (s *Server) load(typ string) {
	if s.opts.DataDir == "" || s.loaded[typ] || !validType(typ) {
		return
	}
	s.loaded[typ] = true
	f, err := os.Open(filepath.Join(s.opts.DataDir, typ+".ndjson"))
	if err != nil {
		return // no such type: every read of it is a 404
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		var h struct {
			ID   string `json:"id"`
			Meta struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
		}
		if len(line) == 0 || json.Unmarshal(line, &h) != nil || h.ID == "" {
			continue
		}
		v := h.Meta.VersionID
		if v == "" {
			v = "1"
		}
		key := typ + "/" + h.ID
		if s.resources[key] == nil {
			s.resources[key] = &history{versions: []version{{id: v, body: slices.Clone(line)}}}
		}
	}
}

// validType keeps request paths from naming files outside DataDir.
func validType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func outcome(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":%q}]}`, text)
}
