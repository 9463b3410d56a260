package flatten

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedDir locates the shared test material (conformance suite, sample
// data) that lives next to the repository, or skips the test.
func sharedDir(t testing.TB, sub string) string {
	t.Helper()
	if p := findShared(sub); p != "" {
		return p
	}
	t.Skipf("shared test material %s not found (looked for ../shared next to the repository and $FHIRLAKE_SHARED)", sub)
	return ""
}

// findShared returns the path of sub inside the shared test material, or
// "" when there is none.
func findShared(sub string) string {
	var candidates []string
	if env := os.Getenv("FHIRLAKE_SHARED"); env != "" {
		candidates = append(candidates, env)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			candidates = append(candidates, filepath.Join(dir, "shared"), filepath.Join(dir, "..", "shared"))
			if parent := filepath.Dir(dir); parent == dir {
				break
			}
		}
	}
	for _, c := range candidates {
		p := filepath.Join(c, sub)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
