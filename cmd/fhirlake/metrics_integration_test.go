//go:build integration

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"fhirlake/config"
)

// TestIntegrationMetricsExist: every metric that the Grafana dashboard
// (deploy/grafana), the alert rules and their tests (deploy/prometheus) name is
// exported by a running `fhirlake consume`, `fhirlake compact` (scraped in
// --schedule mode, and pushed to a Pushgateway by a single run) or
// `fhirlake serve`, with the labels they select on. The run provokes every
// series the files use: records, control messages and dead letters, flushes
// and files, a tenant whose store refuses its key (store and flush errors in
// the consumer, refresh errors in the query server), queries, compactions.
func TestIntegrationMetricsExist(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	refs := deploymentMetricRefs(t)

	// acme and globex write to their own buckets; initech's store is umbrella's
	// bucket, which initech's key may not touch.
	bucketOf := func(tn string) string {
		if tn == "initech" {
			return bucket("umbrella")
		}
		return bucket(tn)
	}
	serveAddr := freeAddr(t)
	keys := map[string]string{"acme": "metrics-acme-key", "globex": "metrics-globex-key", "initech": "metrics-initech-key"}
	r := newRun(t, st, []string{"acme", "globex", "initech"}, bucketOf, "")
	broken := r.id + ".broken"
	extra := fmt.Sprintf("kafka:\n  topics: [%q, %q]\nshutdown_timeout: 3s\n", r.topic, broken) +
		"compact:\n  consistency_delay: 0s\n  relationship_severity: warn\n  speed_retention: 0s\n  timeout: 20m\n" +
		fmt.Sprintf("serve:\n  listen: %q\n  refresh_interval: 250ms\n  api_keys:\n", serveAddr)
	for tn, k := range keys {
		extra += fmt.Sprintf("    - {tenant: %s, key_sha256: %s}\n", tn, config.HashAPIKey(k))
	}
	base, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := mergeYAML(string(base), extra)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	adm := r.admin(t, st)
	ctx := context.Background()
	if _, err := adm.CreateTopics(ctx, 2, 1, nil, r.topic, r.dlq); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, broken); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := adm.DeleteTopics(context.Background(), r.topic, broken, r.dlq); err != nil {
			t.Logf("delete topics of the run: %v", err)
		}
	})

	// Notifications for acme and globex with control messages, malformed and
	// unroutable records; a few for initech on a topic of its own, so that its
	// refused flushes hold back only that partition.
	s := r.generate(t, st, "--tenants", "acme,globex", "--patients", "12", "--seed", "31",
		"--updates", "0.2", "--deletes", "0.1", "--controls", "3", "--malformed", "2", "--unroutable", "2")
	s.produce(t, -1)
	for i := range 3 {
		id := fmt.Sprintf("refused-%d", i)
		rec := &kgo.Record{Topic: broken, Partition: 0, Key: []byte("Patient/" + id),
			Value: []byte(fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"versionId":"1","lastUpdated":"%s"},"gender":"other","birthDate":"1970-01-01"}`, id, time.Now().UTC().Format(time.RFC3339))),
			Headers: []kgo.RecordHeader{{Key: "fhir-tenant", Value: []byte("initech")}, {Key: "fhir-interaction", Value: []byte("create")},
				{Key: "fhir-resource", Value: []byte("Patient/" + id)}, {Key: "content-type", Value: []byte("application/fhir+json")}}}
		if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	consumerAddr := r.startMember(t, "metrics").metrics
	r.startServe(t, serveAddr)
	api := &serveClient{t: t, base: "http://" + serveAddr}
	api.waitHealthy(60 * time.Second)
	r.waitLag(t, adm, 3*time.Minute)

	// The compactor: globex on a schedule (every minute), serving its metrics;
	// acme in a single run that pushes them to a Pushgateway.
	compactorAddr := freeAddr(t)
	daemonLog := filepath.Join(r.dir, "compact-daemon.log")
	daemon := r.cmd(context.Background(), "compact", "--tenant", "globex", "--schedule", "* * * * *")
	daemon.Env = append(daemon.Env, "FHIRLAKE_METRICS_LISTEN="+compactorAddr)
	logf, err := os.Create(daemonLog)
	if err != nil {
		t.Fatal(err)
	}
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The daemon runs until killed, so its exit status says only that.
		_ = daemon.Process.Kill()
		_ = daemon.Wait()
		logf.Close()
		if t.Failed() {
			logTail(t, daemonLog, 30)
		}
	})
	gw := newPushgateway(t)
	if out, code := r.compact(t, "--tenant", "acme", "--push-gateway", gw.URL()); code != 0 {
		t.Fatalf("compact --push-gateway: exit %d\n%s", code, out)
	}

	// Queries: answered, refused, and one on initech's unreadable store.
	api.scalar("acme", keys["acme"], "SELECT count(*) AS n FROM patient")
	api.scalar("globex", keys["globex"], "SELECT count(*) AS n FROM resources")
	api.status("acme", "no-such-key")
	api.status("initech", keys["initech"])

	// Wait until every process exports what the files use (the consumer's lag
	// appears after its first 10 s tick, the daemon's series after its first run).
	var exported map[string]*family
	deadline := time.Now().Add(3 * time.Minute)
	var missing []string
	for {
		exported = map[string]*family{}
		for _, src := range []struct{ what, addr string }{{"consume", consumerAddr}, {"serve", serveAddr}, {"compact --schedule", compactorAddr}} {
			fams, err := scrapeFamilies(src.addr)
			if err != nil {
				t.Logf("scrape %s: %v", src.what, err)
			}
			addFamilies(exported, src.what, fams)
		}
		addFamilies(exported, "compact --push-gateway", gw.families())
		missing = missingRefs(refs, exported)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if len(missing) > 0 {
		t.Errorf("the deployment files use metrics that fhirlake does not export:\n  %s", strings.Join(missing, "\n  "))
		var names []string
		for n, f := range exported {
			names = append(names, n+" "+f.from)
		}
		sort.Strings(names)
		t.Logf("exported:\n  %s", strings.Join(names, "\n  "))
		if m, err := scrapeAddr(consumerAddr); err == nil {
			var lines []string
			for k, v := range m {
				if strings.HasPrefix(k, "fhirlake_") {
					lines = append(lines, fmt.Sprintf("%s %v", k, v))
				}
			}
			sort.Strings(lines)
			t.Logf("consumer:\n  %s", strings.Join(lines, "\n  "))
		}
	}
	var used []string
	for n := range refs {
		used = append(used, n)
	}
	sort.Strings(used)
	t.Logf("%d metrics used by deploy/grafana and deploy/prometheus, all exported: %s", len(used), strings.Join(used, " "))
}

// ------------------------------------------------------------ exported --

// family is one exported metric family: its type, labels and where it came from.
type family struct {
	typ    dto.MetricType
	labels map[string]bool
	from   string
}

func scrapeFamilies(addr string) (map[string]*dto.MetricFamily, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// addFamilies indexes fams under every name a query can use: a histogram's
// _bucket, _sum and _count series, a summary's _sum and _count.
func addFamilies(into map[string]*family, from string, fams map[string]*dto.MetricFamily) {
	for name, f := range fams {
		if len(f.GetMetric()) == 0 {
			continue
		}
		fam := &family{typ: f.GetType(), labels: map[string]bool{}, from: from}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				fam.labels[l.GetName()] = true
			}
		}
		names := []string{name}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names = append(names, name+"_sum", name+"_count")
			b := &family{typ: fam.typ, labels: map[string]bool{"le": true}, from: from}
			for l := range fam.labels {
				b.labels[l] = true
			}
			into[name+"_bucket"] = b
		case dto.MetricType_SUMMARY:
			names = append(names, name+"_sum", name+"_count")
		}
		for _, n := range names {
			if prev, ok := into[n]; ok {
				for l := range prev.labels {
					fam.labels[l] = true
				}
				fam.from = prev.from + ", " + from
			}
			into[n] = fam
		}
	}
}

// pushgateway stands in for a Prometheus Pushgateway: it keeps the families of
// the last push.
type pushgateway struct {
	srv  *httptest.Server
	mu   sync.Mutex
	fams map[string]*dto.MetricFamily
}

func newPushgateway(t *testing.T) *pushgateway {
	p := &pushgateway{fams: map[string]*dto.MetricFamily{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, "/metrics/job/fhirlake_compactor") || (req.Method != http.MethodPut && req.Method != http.MethodPost) {
			http.Error(w, "unexpected "+req.Method+" "+req.URL.Path, http.StatusBadRequest)
			return
		}
		dec := expfmt.NewDecoder(req.Body, expfmt.ResponseFormat(req.Header))
		p.mu.Lock()
		defer p.mu.Unlock()
		for {
			f := &dto.MetricFamily{}
			if err := dec.Decode(f); err != nil {
				if !errors.Is(err, io.EOF) {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				break
			}
			p.fams[f.GetName()] = f
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pushgateway) URL() string { return p.srv.URL }

func (p *pushgateway) families() map[string]*dto.MetricFamily {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]*dto.MetricFamily, len(p.fams))
	for k, v := range p.fams {
		out[k] = v
	}
	return out
}

// ------------------------------------------------------------------ used --

// metricRef is one use of a metric: where, and the labels it selects on.
type metricRef struct {
	where  []string
	labels map[string]bool
}

// Labels that Prometheus adds to every scraped series (target labels), which
// the alert tests' synthetic series carry.
var targetLabels = map[string]bool{"instance": true, "job": true, "namespace": true, "pod": true, "container": true, "service": true, "endpoint": true}

// deploymentMetricRefs reads every PromQL expression of the dashboard and the
// alert rules, and every series of the rules' tests, from the repository.
func deploymentMetricRefs(t *testing.T) map[string]*metricRef {
	t.Helper()
	repo := filepath.Join("..", "..")
	refs := map[string]*metricRef{}
	add := func(where, expr string) {
		for name, labels := range promqlMetrics(expr) {
			r := refs[name]
			if r == nil {
				r = &metricRef{labels: map[string]bool{}}
				refs[name] = r
			}
			r.where = append(r.where, where)
			for l := range labels {
				r.labels[l] = true
			}
		}
	}
	dashboards, _ := filepath.Glob(filepath.Join(repo, "deploy", "grafana", "*.json"))
	rules, _ := filepath.Glob(filepath.Join(repo, "deploy", "prometheus", "*.yml"))
	tests, _ := filepath.Glob(filepath.Join(repo, "deploy", "prometheus", "tests", "*.yml"))
	if len(dashboards) == 0 || len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("dashboards %v, rules %v, rule tests %v: want some of each", dashboards, rules, tests)
	}
	for _, f := range dashboards {
		var v any
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &v)
		}
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walkJSON(v, "", func(key, s string) {
			if key == "expr" || key == "definition" {
				add(filepath.Base(f), s)
			}
		})
	}
	for _, f := range rules {
		var doc struct {
			Groups []struct {
				Rules []struct{ Alert, Record, Expr string }
			}
		}
		readYAML(t, f, &doc)
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				add(filepath.Base(f)+" "+r.Alert+r.Record, r.Expr)
			}
		}
	}
	for _, f := range tests {
		var doc struct {
			Tests []struct {
				Name        string
				InputSeries []struct{ Series string } `yaml:"input_series"`
				PromQL      []struct{ Expr string }   `yaml:"promql_expr_test"`
			}
		}
		readYAML(t, f, &doc)
		for _, tc := range doc.Tests {
			for _, s := range tc.InputSeries {
				add(filepath.Base(f)+" ("+tc.Name+")", s.Series)
			}
			for _, e := range tc.PromQL {
				add(filepath.Base(f)+" ("+tc.Name+")", e.Expr)
			}
		}
	}
	if len(refs) < 20 {
		t.Fatalf("found only %d metric names in the deployment files; the extraction is broken", len(refs))
	}
	return refs
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err == nil {
		err = yaml.Unmarshal(b, v)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func walkJSON(v any, key string, f func(key, s string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			walkJSON(c, k, f)
		}
	case []any:
		for _, c := range v {
			walkJSON(c, key, f)
		}
	case string:
		f(key, v)
	}
}

var (
	reLabelValues = regexp.MustCompile(`label_values\(\s*([^,()]*?)\s*,\s*[a-zA-Z_]\w*\s*\)`)
	reString      = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	reGrafanaVar  = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	reSelector    = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	reMatcher     = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	reBraces      = regexp.MustCompile(`\{[^}]*\}`)
	reGrouping    = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reRange       = regexp.MustCompile(`\[[^\]]*\]`)
	reOffset      = regexp.MustCompile(`\boffset\s+-?\w+`)
	reIdent       = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlWords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "atan2": true, "group_left": true, "group_right": true, "on": true, "ignoring": true, "by": true, "without": true, "offset": true, "inf": true, "nan": true, "Inf": true, "NaN": true}
)

// promqlMetrics returns the metric names an expression (or a series
// notation, or a Grafana label_values query) reads, each with the label names
// its selectors match on.
func promqlMetrics(expr string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	expr = reLabelValues.ReplaceAllString(expr, "$1")
	expr = reGrafanaVar.ReplaceAllString(expr, "x")
	expr = reString.ReplaceAllString(expr, `""`)
	for _, m := range reSelector.FindAllStringSubmatch(expr, -1) {
		labels := map[string]bool{}
		for _, part := range strings.Split(m[2], ",") {
			if mm := reMatcher.FindStringSubmatch(part); mm != nil && mm[1] != "__name__" {
				labels[mm[1]] = true
			}
		}
		out[m[1]] = labels
	}
	expr = reBraces.ReplaceAllString(expr, " ")
	expr = reGrouping.ReplaceAllString(expr, " ")
	expr = reRange.ReplaceAllString(expr, " ")
	expr = reOffset.ReplaceAllString(expr, " ")
	for _, loc := range reIdent.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9' || expr[loc[0]-1] == '.') {
			continue // the unit of a number or duration: 1e3, 26h
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if promqlWords[name] {
			continue
		}
		if _, ok := out[name]; !ok {
			out[name] = map[string]bool{}
		}
	}
	return out
}

// missingRefs lists every used metric that is not exported, or whose selected
// labels the exported family does not have.
func missingRefs(refs map[string]*metricRef, exported map[string]*family) []string {
	var missing []string
	for name, r := range refs {
		f, ok := exported[name]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (used in %s)", name, strings.Join(uniq(r.where), "; ")))
			continue
		}
		for l := range r.labels {
			if !f.labels[l] && !targetLabels[l] {
				missing = append(missing, fmt.Sprintf("%s{%s} (label not exported by %s; used in %s)", name, l, f.from, strings.Join(uniq(r.where), "; ")))
			}
		}
	}
	sort.Strings(missing)
	return missing
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// TestIntegrationMetricNameExtraction: the names and selected labels read from
// PromQL, series notations and Grafana queries; an unknown name or label is
// reported.
func TestIntegrationMetricNameExtraction(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (topic) (max by (topic, partition) (fhirlake_consumer_lag_records)) - sum by (topic) (max by (topic, partition) (fhirlake_consumer_lag_records offset 15m)) > 0`: "fhirlake_consumer_lag_records{}",
		`histogram_quantile(0.95, sum by (le, tenant) (rate(fhirlake_sink_upload_duration_seconds_bucket{tenant=~"$tenant"}[$__rate_interval])))`:                                "fhirlake_sink_upload_duration_seconds_bucket{tenant}",
		`time() - max by (tenant) (fhirlake_compactor_last_success_timestamp_seconds) > 26 * 3600`:                                                                               "fhirlake_compactor_last_success_timestamp_seconds{}",
		`sum(rate(a_total{class="x,y", b!~"}"}[5m])) / on () group_left sum(rate(b_total[1h:5m])) > bool 1e3 and absent(c)`:                                                      "a_total{b,class} b_total{} c{}",
		`label_values(fhirlake_sink_rows_written_total, tenant)`:                                                                                                                 "fhirlake_sink_rows_written_total{}",
		`fhirlake_consumer_lag_records{topic="t",partition="0",instance="a"}`:                                                                                                    "fhirlake_consumer_lag_records{instance,partition,topic}",
	} {
		var got []string
		for name, labels := range promqlMetrics(expr) {
			var ls []string
			for l := range labels {
				ls = append(ls, l)
			}
			sort.Strings(ls)
			got = append(got, name+"{"+strings.Join(ls, ",")+"}")
		}
		sort.Strings(got)
		if strings.Join(got, " ") != want {
			t.Errorf("%s\n got %s\nwant %s", expr, strings.Join(got, " "), want)
		}
	}
	exported := map[string]*family{"fhirlake_x_total": {labels: map[string]bool{"tenant": true}, from: "consume"}}
	refs := map[string]*metricRef{
		"fhirlake_x_total":       {where: []string{"a.json"}, labels: map[string]bool{"tenant": true, "instance": true, "tenat": true}},
		"fhirlake_missing_total": {where: []string{"b.yml"}, labels: map[string]bool{}},
	}
	got := missingRefs(refs, exported)
	if len(got) != 2 || !strings.HasPrefix(got[0], "fhirlake_missing_total (used in b.yml)") || !strings.HasPrefix(got[1], "fhirlake_x_total{tenat}") {
		t.Errorf("missing: %q", got)
	}
}
