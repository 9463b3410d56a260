package tools

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// githubSlug is the anchor GitHub gives a Markdown heading.
func githubSlug(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	s = regexp.MustCompile(`[^\p{L}\p{N} _-]`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

// TestRunbookLinks: every alert has a severity, a summary and a runbook link to a
// heading that exists in docs/operations.md.
func TestRunbookLinks(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} (.+)$`).FindAllStringSubmatch(string(doc), -1) {
		anchors[githubSlug(m[1])] = true
	}
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "prometheus", "*.yml"))
	if len(files) == 0 {
		t.Fatal("no rule files in deploy/prometheus")
	}
	alerts := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rules struct {
			Groups []struct {
				Rules []struct {
					Alert       string
					Labels      map[string]string
					Annotations map[string]string
				}
			}
		}
		if err := yaml.Unmarshal(b, &rules); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				alerts++
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
					t.Errorf("%s: needs a severity label and a summary", r.Alert)
				}
				url := r.Annotations["runbook_url"]
				page, anchor, ok := strings.Cut(url, "#")
				if !ok || page != "docs/operations.md" || !anchors[anchor] {
					t.Errorf("%s: runbook_url %q does not point at a heading of docs/operations.md", r.Alert, url)
				}
			}
		}
	}
	if alerts < 5 {
		t.Errorf("only %d alerts", alerts)
	}
}

// TestDashboard: the Grafana dashboard is valid JSON with unique panel ids, every
// panel queries Prometheus through the dashboard's data source variable, and the panels
// cover what operators watch.
func TestDashboard(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "grafana", "*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards in deploy/grafana")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID        string
			Title      string
			Templating struct {
				List []struct{ Name, Type string }
			}
			Panels []struct {
				ID         int
				Type       string
				Title      string
				Datasource struct{ UID string }
				Targets    []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid and title required", f)
		}
		hasDS := false
		for _, v := range d.Templating.List {
			hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource")
		}
		if !hasDS {
			t.Errorf("%s: no datasource variable", f)
		}
		ids := map[int]bool{}
		var all strings.Builder
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", f, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
				t.Errorf("%s: panel %q needs targets on ${datasource}", f, p.Title)
			}
			for _, q := range p.Targets {
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("%s: panel %q has an empty query", f, p.Title)
				}
				all.WriteString(q.Expr + "\n")
			}
		}
		// What the dashboard is for: lag, throughput, freshness per tenant, flush
		// latency, file sizes, dead letters, store errors, compaction status.
		for _, want := range []string{"fhirlake_consumer_lag_records", "fhirlake_consumer_records_total",
			"fhirlake_consumer_freshness_seconds", "fhirlake_consumer_flush_duration_seconds_bucket",
			"fhirlake_sink_file_size_bytes_bucket", "fhirlake_consumer_dead_letters_total",
			"fhirlake_sink_store_errors_total", "fhirlake_compactor_halted",
			"fhirlake_compactor_last_success_timestamp_seconds", "fhirlake_query_requests_total"} {
			if !strings.Contains(all.String(), want) {
				t.Errorf("%s: no panel shows %s", f, want)
			}
		}
	}
}
