// Package testenv locates the shared test material and the local stack for
// tests, skipping clearly when they are absent.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot is the repository root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Shared returns the shared test-data directory (../shared beside the
// repository, or $FHIRLAKE_SHARED), skipping the test when it is absent.
func Shared(t testing.TB, sub ...string) string {
	t.Helper()
	dir := os.Getenv("FHIRLAKE_SHARED")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared")
	}
	p := filepath.Join(append([]string{dir}, sub...)...)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared test data not found at %s (set FHIRLAKE_SHARED): %v", p, err)
	}
	return p
}
