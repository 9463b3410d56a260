package fhirserver

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"fhirlake/internal/testenv"
)

func get(t *testing.T, s *Server, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	s := New(Options{Token: "secret"})
	defer s.Close()
	if _, err := s.Add([]byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`)); err != nil {
		t.Fatal(err)
	}
	v2, err := s.Add([]byte(`{"resourceType":"Patient","id":"p1","gender":"male"}`))
	if err != nil || v2 != "2" {
		t.Fatalf("add: got version %q, %v, want 2", v2, err)
	}
	s.Delete("Patient", "gone")
	s.FailNext(1, http.StatusServiceUnavailable, http.Header{"Retry-After": {"3"}})
	for _, tc := range []struct {
		name, path, token string
		status            int
		body              string
	}{
		{"injected failure", "/Patient/p1", "secret", 503, "injected"},
		{"no token", "/Patient/p1", "", 401, "token"},
		{"read", "/Patient/p1", "secret", 200, `"male"`},
		{"vread", "/Patient/p1/_history/1", "secret", 200, `"female"`},
		{"vread unknown version", "/Patient/p1/_history/9", "secret", 404, "OperationOutcome"},
		{"unknown", "/Patient/nope", "secret", 404, "OperationOutcome"},
		{"deleted", "/Patient/gone", "secret", 410, "OperationOutcome"},
		{"search", "/Patient", "secret", 400, "OperationOutcome"},
		{"path trick", "/..%2Fetc/passwd", "secret", 400, "OperationOutcome"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, s, tc.path, tc.token)
			if status != tc.status || !strings.Contains(body, tc.body) {
				t.Fatalf("got %d %s, want %d containing %s", status, body, tc.status, tc.body)
			}
		})
	}
	if got, want := s.Count("/Patient/p1"), 3; got != want {
		t.Errorf("count: got %d, want %d", got, want)
	}
	authorized := 0
	for _, r := range s.Log() {
		if r.Header.Get("Authorization") == "Bearer secret" {
			authorized++
		}
	}
	if got, want := authorized, 8; got != want {
		t.Errorf("authorized requests: got %d, want %d", got, want)
	}
}

func TestServerSynthea(t *testing.T) {
	dir := testenv.Shared(t, "data", "synthea-small")
	s := New(Options{DataDir: dir})
	defer s.Close()
	status, body := get(t, s, "/Patient/8ee183e2-b3c0-4151-be94-b945d6aa8c6d", "")
	if status != 200 || !strings.Contains(body, `"resourceType":"Patient"`) {
		t.Fatalf("read: got %d %.80s, want the Synthea patient", status, body)
	}
	if status, _ := get(t, s, "/Patient/8ee183e2-b3c0-4151-be94-b945d6aa8c6d/_history/1", ""); status != 200 {
		t.Fatalf("vread of version 1: got %d, want 200", status)
	}
	if status, _ := get(t, s, "/Nothing/x", ""); status != 404 {
		t.Fatalf("unknown type: got %d, want 404", status)
	}
}
