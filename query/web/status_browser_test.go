package web

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"fhirlake/query"
)

// chromium finds a headless-capable Chromium: $FHIRLAKE_CHROMIUM, else
// chromium or chromium-browser on PATH (Debian's package;
// deploy/local/install-chromium installs it). Without one the test is
// skipped, except in CI and under `make test`
// (FHIRLAKE_REQUIRE_CHROMIUM=1), where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FHIRLAKE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed: run deploy/local/install-chromium (Debian's chromium package) or set FHIRLAKE_CHROMIUM"
	if os.Getenv("CI") != "" || os.Getenv("FHIRLAKE_REQUIRE_CHROMIUM") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestStatusPageInChromium loads the status page in headless Chromium: its
// script must render the tenants and the selected tenant's per-view
// freshness, and the screenshot must be a real, non-blank page.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	checked := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, Options{AdminKeys: admins, Completeness: fixedCompleteness(checked, checked.Add(-90*time.Second), checked.Add(-time.Hour))}, query.Options{})
	// The key is handed over in the fragment, which the browser keeps to
	// itself; the page sends it as a bearer token.
	url := f.srv.URL + "/?tenant=acme#key=" + adminKey

	dom := string(runChromium(t, bin, "--virtual-time-budget=15000", "--dump-dom", url))
	for _, want := range []string{
		`data-ready="true"`,
		`data-tenant="acme"`, `data-tenant="globex"`,
		`data-view="patient"`,
		"consumer lag: unknown",
		"no batch snapshot yet",
		"lake complete through 2026-03-01 11:58:30Z (Kafka read 2026-03-01 12:00:00Z)",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %s", want)
		}
	}
	// The patient view's freshness was filled in by the script: its newest
	// ingest time is that of the lake's last change.
	row := regexp.MustCompile(`(?s)<tr data-view="patient">.*?</tr>`).FindString(dom)
	if !strings.Contains(row, "2026-01-01 00:01:02Z") {
		t.Errorf("patient row: got %q, want the newest ingest time 2026-01-01 00:01:02Z", row)
	}

	// Each tenant's row says through when its lake is complete.
	globex := regexp.MustCompile(`(?s)<tr data-tenant="globex".*?</tr>`).FindString(dom)
	if !strings.Contains(globex, `<td class="complete-through">2026-03-01 11:00:00Z</td>`) {
		t.Errorf("globex row: got %q, want complete through 2026-03-01 11:00:00Z", globex)
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, "--virtual-time-budget=15000", "--screenshot="+shot, "--window-size=1280,900", url)
	file, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer file.Close()
	img, err := png.Decode(file)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Fatalf("screenshot is %dx%d, want 1280x900", b.Dx(), b.Dy())
	}
	// A blank page has one colour; the rendered one has a dark header, text
	// and table lines.
	var sum, sumSq float64
	colours := map[uint32]bool{}
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			sum += l
			sumSq += l * l
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
			n++
		}
	}
	mean := sum / float64(n)
	variance := sumSq/float64(n) - mean*mean
	if variance < 100 || len(colours) < 8 {
		t.Fatalf("screenshot looks blank: luminance variance %.1f, %d colours", variance, len(colours))
	}
	// A tenant's key shows its own views and no other tenant; no key shows
	// nothing but the prompt for one.
	dom = string(runChromium(t, bin, "--virtual-time-budget=15000", "--dump-dom", f.srv.URL+"/?tenant=globex#key="+acmeKey))
	for _, want := range []string{`data-ready="true"`, "key of tenant acme", `data-view="patient"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("page with acme's key lacks %s", want)
		}
	}
	if strings.Contains(dom, `data-tenant=`) || strings.Contains(dom, "globex</") {
		t.Errorf("page with acme's key shows other tenants")
	}
	dom = string(runChromium(t, bin, "--virtual-time-budget=15000", "--dump-dom", f.srv.URL+"/"))
	if !strings.Contains(dom, `data-ready="true"`) || !strings.Contains(dom, "Paste an API key") || strings.Contains(dom, `data-view=`) {
		t.Errorf("page without a key: want the prompt for one and no views")
	}
	if dir := os.Getenv("FHIRLAKE_SCREENSHOT_DIR"); dir != "" {
		data, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status.png"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
