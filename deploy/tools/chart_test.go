package tools

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The chart tests need helm and the fhirlake binary: deploy/check installs helm into
// .cache/tools/bin and builds bin/fhirlake, and passes both here.
func tools(t *testing.T) (helm, fhirlake string) {
	t.Helper()
	helm, fhirlake = os.Getenv("FHIRLAKE_HELM"), os.Getenv("FHIRLAKE_BIN")
	if helm == "" || fhirlake == "" {
		if os.Getenv("FHIRLAKE_REQUIRE_TOOLS") == "1" {
			t.Fatal("FHIRLAKE_HELM and FHIRLAKE_BIN must name helm and the fhirlake binary")
		}
		t.Skip("FHIRLAKE_HELM and FHIRLAKE_BIN are not set: run deploy/check")
	}
	return helm, fhirlake
}

var chartDir = filepath.Join(root, "deploy", "helm", "fhirlake")

const kubeVersion = "1.30.0"

type manifest map[string]any

func (m manifest) kind() string { return str(m, "kind") }
func (m manifest) name() string { return str(m, "metadata", "name") }

// get walks maps by key and lists by index ("0").
func get(v any, path ...string) any {
	for _, p := range path {
		switch c := v.(type) {
		case map[string]any:
			v = c[p]
		case manifest:
			v = c[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func num(v any, path ...string) int {
	n, _ := get(v, path...).(int)
	return n
}

// render runs helm template with a values file (and --set flags) and returns the
// manifests, or the error output.
func render(t *testing.T, helm string, args ...string) ([]manifest, string, error) {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", "fl", chartDir, "--kube-version", kubeVersion}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, errb.String(), err
	}
	var ms []manifest
	dec := yaml.NewDecoder(&out)
	for {
		var m manifest
		if err := dec.Decode(&m); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("helm template output: %v", err)
		}
		if m != nil {
			ms = append(ms, m)
		}
	}
	return ms, "", nil
}

func find(ms []manifest, kind, suffix string) manifest {
	for _, m := range ms {
		if m.kind() == kind && strings.HasSuffix(m.name(), suffix) {
			return m
		}
	}
	return nil
}

func valuesFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chartDir, err)
	}
	return files
}

// TestChartLint: helm lint --strict with every CI values file.
func TestChartLint(t *testing.T) {
	helm, _ := tools(t)
	for _, f := range valuesFiles(t) {
		out, err := exec.Command(helm, "lint", "--strict", "--kube-version", kubeVersion, chartDir, "-f", f).CombinedOutput()
		if err != nil {
			t.Errorf("helm lint -f %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
}

// TestChartRenders: every CI values file renders manifests that hold together and a
// configuration that fhirlake itself accepts.
func TestChartRenders(t *testing.T) {
	helm, fhirlake := tools(t)
	for _, f := range valuesFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ms, errOut, err := render(t, helm, "-f", f)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, errOut)
			}
			checkManifests(t, fhirlake, ms)
		})
	}
}

// workload is a Deployment, or the pod template of a CronJob.
func podSpec(m manifest) any {
	if m.kind() == "CronJob" {
		return get(m, "spec", "jobTemplate", "spec", "template", "spec")
	}
	return get(m, "spec", "template", "spec")
}

func checkManifests(t *testing.T, fhirlake string, ms []manifest) {
	cm := find(ms, "ConfigMap", "fhirlake")
	if cm == nil {
		t.Fatal("no ConfigMap")
	}
	raw := str(cm, "data", "fhirlake.yaml")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("ConfigMap fhirlake.yaml: %v", err)
	}

	// The configuration names the environment variables holding each tenant's secrets;
	// every workload must set each of them from a Secret.
	envNames := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)_env: (\S+)$`).FindAllStringSubmatch(raw, -1) {
		envNames[m[1]] = true
	}
	var workloads []manifest
	for _, m := range ms {
		if m.kind() == "Deployment" || m.kind() == "CronJob" {
			workloads = append(workloads, m)
		}
	}
	if len(workloads) == 0 {
		t.Fatal("no workloads")
	}
	for _, w := range workloads {
		spec := podSpec(w)
		c := get(spec, "containers", "0")
		set := map[string]bool{}
		for _, e := range asList(get(c, "env")) {
			if name := str(e, "name"); name != "" {
				set[name] = true
				if envNames[name] && str(e, "valueFrom", "secretKeyRef", "name") == "" {
					t.Errorf("%s: %s is not taken from a Secret", w.name(), name)
				}
			}
		}
		for name := range envNames {
			if !set[name] {
				t.Errorf("%s %s: the configuration names %s, which the pod does not set", w.kind(), w.name(), name)
			}
		}
		if str(c, "env", "0", "name") != "FHIRLAKE_CONFIG" || str(c, "env", "0", "value") != "/etc/fhirlake/fhirlake.yaml" {
			t.Errorf("%s: FHIRLAKE_CONFIG must point at the mounted ConfigMap", w.name())
		}
		// Non-root, read-only root file system, work_dir on a volume of its own.
		if get(spec, "securityContext", "runAsNonRoot") != true || num(spec, "securityContext", "runAsUser") == 0 {
			t.Errorf("%s: pods must run as a non-root user", w.name())
		}
		if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
			t.Errorf("%s: read-only root file system without privilege escalation required", w.name())
		}
		mounted := map[string]string{}
		for _, vm := range asList(get(c, "volumeMounts")) {
			mounted[str(vm, "mountPath")] = str(vm, "name")
		}
		volumes := map[string]any{}
		for _, v := range asList(get(spec, "volumes")) {
			volumes[str(v, "name")] = v
		}
		workDir, _ := cfg["work_dir"].(string)
		if vol := mounted[workDir]; vol == "" || get(volumes[vol], "emptyDir") == nil {
			t.Errorf("%s: work_dir %s is not an emptyDir volume", w.name(), workDir)
		}
		if mounted["/etc/fhirlake"] != "config" || mounted["/tmp"] == "" {
			t.Errorf("%s: mounts %v lack the configuration or /tmp", w.name(), mounted)
		}
	}

	checkKafkaSecurity(t, ms, cfg, workloads)

	partitions := num(cfg, "kafka", "partitions")
	if consumer := find(ms, "Deployment", "-consumer"); consumer != nil {
		if get(consumer, "spec", "replicas") != nil && num(consumer, "spec", "replicas") > partitions {
			t.Errorf("consumer replicas %d > %d partitions", num(consumer, "spec", "replicas"), partitions)
		}
		grace := num(consumer, "spec", "template", "spec", "terminationGracePeriodSeconds")
		maxAge, err1 := time.ParseDuration(str(cfg, "flush", "max_age"))
		shutdown, err2 := time.ParseDuration(str(cfg, "shutdown_timeout"))
		if err1 != nil || err2 != nil {
			t.Fatalf("flush.max_age / shutdown_timeout: %v %v", err1, err2)
		}
		if time.Duration(grace)*time.Second <= maxAge+shutdown {
			t.Errorf("consumer terminationGracePeriodSeconds %d ≤ flush.max_age %s + shutdown_timeout %s", grace, maxAge, shutdown)
		}
		_, port, _ := net.SplitHostPort(str(cfg, "metrics", "listen"))
		c := get(consumer, "spec", "template", "spec", "containers", "0")
		if fmt.Sprint(get(c, "ports", "0", "containerPort")) != port {
			t.Errorf("consumer metrics port %v, configuration listens on %s", get(c, "ports", "0", "containerPort"), port)
		}
		if str(c, "livenessProbe", "httpGet", "path") != "/healthz" || str(c, "readinessProbe", "httpGet", "path") != "/readyz" {
			t.Errorf("consumer probes must be /healthz (liveness) and /readyz (readiness)")
		}
		if find(ms, "PodDisruptionBudget", "-consumer") == nil {
			t.Errorf("no PodDisruptionBudget for the consumer")
		}
		if so := find(ms, "ScaledObject", "-consumer"); so != nil {
			if get(consumer, "spec", "replicas") != nil {
				t.Errorf("with a ScaledObject the Deployment must leave replicas to it")
			}
			if max := num(so, "spec", "maxReplicaCount"); max > partitions || max < 1 {
				t.Errorf("ScaledObject maxReplicaCount %d, partitions %d", max, partitions)
			}
			for _, tr := range asList(get(so, "spec", "triggers")) {
				if str(tr, "type") != "kafka" || str(tr, "metadata", "consumerGroup") != str(cfg, "kafka", "group") {
					t.Errorf("ScaledObject trigger %v: want kafka lag of group %s", tr, str(cfg, "kafka", "group"))
				}
			}
		}
	}
	if cj := find(ms, "CronJob", "-compactor"); cj != nil {
		if str(cj, "spec", "concurrencyPolicy") != "Forbid" {
			t.Errorf("compactor CronJob: concurrencyPolicy %q, want Forbid", str(cj, "spec", "concurrencyPolicy"))
		}
		if args := fmt.Sprint(get(podSpec(cj), "containers", "0", "args")); !strings.Contains(args, "compact") || strings.Contains(args, "--schedule") {
			t.Errorf("compactor CronJob args %s: want a single `compact` run", args)
		}
		if str(cj, "spec", "schedule") != str(cfg, "compact", "schedule") {
			t.Errorf("CronJob schedule %q differs from compact.schedule %q", str(cj, "spec", "schedule"), str(cfg, "compact", "schedule"))
		}
	}
	if d := find(ms, "Deployment", "-compactor"); d != nil {
		if num(d, "spec", "replicas") != 1 || str(d, "spec", "strategy", "type") != "Recreate" {
			t.Errorf("compactor daemon: one replica, Recreate")
		}
		if args := fmt.Sprint(get(d, "spec", "template", "spec", "containers", "0", "args")); !strings.Contains(args, "--daemon") {
			t.Errorf("compactor daemon args %s: want compact --daemon (on compact.schedule)", args)
		}
	}
	if q := find(ms, "Deployment", "-query"); q != nil {
		svc := find(ms, "Service", "-query")
		_, port, _ := net.SplitHostPort(str(cfg, "serve", "listen"))
		if svc == nil || fmt.Sprint(get(svc, "spec", "ports", "0", "port")) != port {
			t.Errorf("query Service port must be serve.listen's %s", port)
		}
		c := get(q, "spec", "template", "spec", "containers", "0")
		certFile, clientCA := str(cfg, "serve", "tls", "cert_file"), str(cfg, "serve", "tls", "client_ca_file")
		for _, probe := range []string{"livenessProbe", "readinessProbe"} {
			switch {
			case clientCA != "":
				// A kubelet probe presents no client certificate.
				if str(c, probe, "tcpSocket", "port") != "http" || get(c, probe, "httpGet") != nil {
					t.Errorf("query %s: with client certificates required, want a tcpSocket probe of port http", probe)
				}
			case str(c, probe, "httpGet", "path") != "/healthz":
				t.Errorf("query %s must be /healthz", probe)
			case (certFile != "") != (str(c, probe, "httpGet", "scheme") == "HTTPS"):
				t.Errorf("query %s: scheme %q, serve.tls.cert_file %q", probe, str(c, probe, "httpGet", "scheme"), certFile)
			}
		}
		// Every file serve.tls names is on a Secret volume of the query pod.
		mounts := map[string]string{}
		for _, vm := range asList(get(c, "volumeMounts")) {
			mounts[str(vm, "mountPath")] = str(vm, "name")
		}
		secrets := map[string]bool{}
		for _, v := range asList(get(q, "spec", "template", "spec", "volumes")) {
			secrets[str(v, "name")] = str(v, "secret", "secretName") != ""
		}
		for _, key := range []string{"cert_file", "key_file", "client_ca_file"} {
			if f := str(cfg, "serve", "tls", key); f != "" && !secrets[mounts[filepath.Dir(f)]] {
				t.Errorf("serve.tls.%s %s is not on a Secret volume of the query pod (mounts %v)", key, f, mounts)
			}
		}
		if sm := find(ms, "ServiceMonitor", "-query"); sm != nil && (certFile != "") != (str(sm, "spec", "endpoints", "0", "scheme") == "https") {
			t.Errorf("query ServiceMonitor: scheme %q, serve.tls.cert_file %q", str(sm, "spec", "endpoints", "0", "scheme"), certFile)
		}
	}
	checkRegister(t, ms, cfg)
	// A ServiceMonitor selects a Service that has the port it scrapes.
	for _, sm := range ms {
		if sm.kind() != "ServiceMonitor" {
			continue
		}
		component := str(sm, "spec", "selector", "matchLabels", "app.kubernetes.io/component")
		port := str(sm, "spec", "endpoints", "0", "port")
		found := false
		for _, s := range ms {
			if s.kind() == "Service" && str(s, "spec", "selector", "app.kubernetes.io/component") == component {
				for _, p := range asList(get(s, "spec", "ports")) {
					found = found || str(p, "name") == port
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s scrapes port %q of component %s, which no Service has", sm.name(), port, component)
		}
	}

	// fhirlake accepts the configuration as each workload loads it: with every named
	// secret set, and the workload's own FHIRLAKE_* overrides.
	dir := t.TempDir()
	raw = checkCAFiles(t, raw, workloads, dir)
	file := filepath.Join(dir, "fhirlake.yaml")
	if err := os.WriteFile(file, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, w := range workloads {
		cmd := exec.Command(fhirlake, "config", "validate", file)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		for name := range envNames {
			cmd.Env = append(cmd.Env, name+"=set-by-the-chart-test")
		}
		for _, e := range asList(get(podSpec(w), "containers", "0", "env")) {
			if name, v := str(e, "name"), str(e, "value"); strings.HasPrefix(name, "FHIRLAKE_") && name != "FHIRLAKE_CONFIG" && v != "" {
				cmd.Env = append(cmd.Env, name+"="+v)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: fhirlake config validate refuses the rendered configuration: %v\n%s\n--- configuration ---\n%s", w.kind(), w.name(), err, out, raw)
		} else if w.kind() == "ConfigMap" || strings.HasSuffix(w.name(), "-consumer") {
			t.Logf("%s", out)
		}
	}
}

// checkRegister: a configuration with an iceberg section has one register Deployment
// running `fhirlake register` until stopped, replaced rather than rolled, and a catalog
// the pods can share (no SQLite file); without the section there is none.
func checkRegister(t *testing.T, ms []manifest, cfg map[string]any) {
	t.Helper()
	d := find(ms, "Deployment", "-register")
	if cfg["iceberg"] == nil {
		if d != nil {
			t.Errorf("register Deployment rendered, but the configuration has no iceberg section")
		}
		return
	}
	if d == nil {
		t.Fatalf("the configuration has an iceberg section, but no register Deployment is rendered")
	}
	spec := podSpec(d)
	if args := fmt.Sprint(get(spec, "containers", "0", "args")); !strings.HasPrefix(args, "[register") || strings.Contains(args, "--once") {
		t.Errorf("register args %s: want `register`, a pass every iceberg.interval until SIGTERM", args)
	}
	if n := num(d, "spec", "replicas"); n != 1 {
		t.Errorf("register replicas %d: one registrar is enough, more only waste commits", n)
	}
	if str(d, "spec", "strategy", "type") != "Recreate" {
		t.Errorf("register strategy %q: want Recreate (never two registrars during a rollout)", str(d, "spec", "strategy", "type"))
	}
	if num(spec, "terminationGracePeriodSeconds") < 10 {
		t.Errorf("register terminationGracePeriodSeconds %d: a pass needs time to stop", num(spec, "terminationGracePeriodSeconds"))
	}
	if str(spec, "serviceAccountName") == "" || get(spec, "automountServiceAccountToken") != false {
		t.Errorf("register: the chart's service account, without the Kubernetes API token")
	}
	uri := str(cfg, "iceberg", "uri")
	switch str(cfg, "iceberg", "catalog") {
	case "sql":
		if uri != "" && !strings.HasPrefix(uri, "postgres://") && !strings.HasPrefix(uri, "postgresql://") {
			t.Errorf("iceberg.uri %q: a sql catalog in the chart must be PostgreSQL (pods share no file)", uri)
		}
	case "rest":
	default:
		t.Errorf("iceberg.catalog %q", str(cfg, "iceberg", "catalog"))
	}
	if (uri == "") == (str(cfg, "iceberg", "uri_env") == "") {
		t.Errorf("iceberg: want uri or uri_env, one of them; got %q and %q", uri, str(cfg, "iceberg", "uri_env"))
	}
}

// TestChartIcebergREST: a REST catalog with its bearer token from a Secret renders, and
// the register pod reads the token from it.
func TestChartIcebergREST(t *testing.T) {
	helm, fhirlake := tools(t)
	ms, errOut, err := render(t, helm, "-f", filepath.Join(chartDir, "ci", "iceberg-values.yaml"),
		"--set", "iceberg.catalog=rest", "--set", "iceberg.uriSecret.name=", "--set", "iceberg.uri=https://catalog.example.org/iceberg",
		"--set", "iceberg.tokenSecret.name=fhirlake-iceberg-token")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, errOut)
	}
	checkManifests(t, fhirlake, ms)
	raw := str(find(ms, "ConfigMap", "fhirlake"), "data", "fhirlake.yaml")
	if !strings.Contains(raw, "token_env: FHIRLAKE_CATALOG_TOKEN") || !strings.Contains(raw, "uri: https://catalog.example.org/iceberg") {
		t.Errorf("iceberg section lacks the REST catalog's uri or token_env:\n%s", raw)
	}
	found := false
	for _, e := range asList(get(podSpec(find(ms, "Deployment", "-register")), "containers", "0", "env")) {
		found = found || (str(e, "name") == "FHIRLAKE_CATALOG_TOKEN" && str(e, "valueFrom", "secretKeyRef", "name") == "fhirlake-iceberg-token")
	}
	if !found {
		t.Errorf("register pod: FHIRLAKE_CATALOG_TOKEN is not taken from Secret fhirlake-iceberg-token")
	}
}

// checkKafkaSecurity: every file the configuration's kafka section names
// (CA bundle, client certificate, token) is on a volume each workload
// mounts, and KEDA reads the lag with the same TLS and SASL: each trigger
// names a TriggerAuthentication that is rendered, whose Secrets are the
// ones the pods use.
func checkKafkaSecurity(t *testing.T, ms []manifest, cfg map[string]any, workloads []manifest) {
	t.Helper()
	var files []string
	for _, k := range []string{"ca_file", "cert_file", "key_file"} {
		if f := str(cfg, "kafka", "tls", k); f != "" {
			files = append(files, f)
		}
	}
	if f := str(cfg, "kafka", "sasl", "token_file"); f != "" {
		files = append(files, f)
	}
	for _, w := range workloads {
		spec := podSpec(w)
		volumes := map[string]any{}
		for _, v := range asList(get(spec, "volumes")) {
			volumes[str(v, "name")] = v
		}
		for _, f := range files {
			found := false
			for _, vm := range asList(get(spec, "containers", "0", "volumeMounts")) {
				if strings.HasPrefix(f, str(vm, "mountPath")+"/") && volumes[str(vm, "name")] != nil {
					found = true
				}
			}
			if !found {
				t.Errorf("%s %s: the configuration reads %s, on no volume the pod mounts", w.kind(), w.name(), f)
			}
		}
	}
	so := find(ms, "ScaledObject", "-consumer")
	tls, _ := get(cfg, "kafka", "tls", "enabled").(bool)
	mechanism := str(cfg, "kafka", "sasl", "mechanism")
	if so == nil || (!tls && mechanism == "") {
		return
	}
	podSecrets := map[string]bool{}
	for _, w := range workloads {
		for _, e := range asList(get(podSpec(w), "containers", "0", "env")) {
			if n := str(e, "valueFrom", "secretKeyRef", "name"); n != "" {
				podSecrets[n] = true
			}
		}
		for _, v := range asList(get(podSpec(w), "volumes")) {
			if n := str(v, "secret", "secretName"); n != "" {
				podSecrets[n] = true
			}
		}
	}
	for _, tr := range asList(get(so, "spec", "triggers")) {
		if tls && str(tr, "metadata", "tls") != "enable" {
			t.Errorf("ScaledObject trigger: kafka.tls is enabled, the trigger's tls is %q", str(tr, "metadata", "tls"))
		}
		if mechanism != "" && str(tr, "metadata", "sasl") == "" {
			t.Errorf("ScaledObject trigger: kafka.sasl.mechanism %s, the trigger has no sasl", mechanism)
		}
		ta := find(ms, "TriggerAuthentication", str(tr, "authenticationRef", "name"))
		if ta == nil {
			if mechanism != "" {
				t.Errorf("ScaledObject trigger: authenticationRef %q names no rendered TriggerAuthentication", str(tr, "authenticationRef", "name"))
			}
			continue
		}
		for _, ref := range asList(get(ta, "spec", "secretTargetRef")) {
			if !podSecrets[str(ref, "name")] {
				t.Errorf("TriggerAuthentication %s: parameter %s from Secret %s, which the pods do not use", ta.name(), str(ref, "parameter"), str(ref, "name"))
			}
		}
	}
}

// checkCAFiles checks that every tenant's ca_file is in a directory mounted read-only in
// every workload, and returns raw with each pointing at a PEM bundle in dir instead, for
// fhirlake config validate to read here.
func checkCAFiles(t *testing.T, raw string, workloads []manifest, dir string) string {
	t.Helper()
	files := regexp.MustCompile(`(?m)^\s+ca_file: (\S+)$`).FindAllStringSubmatch(raw, -1)
	if len(files) == 0 {
		return raw
	}
	for _, w := range workloads {
		mounted := map[string]bool{}
		for _, m := range asList(get(podSpec(w), "containers", "0", "volumeMounts")) {
			if get(m, "readOnly") == true {
				mounted[str(m, "mountPath")] = true
			}
		}
		for _, f := range files {
			if !mounted[filepath.Dir(f[1])] {
				t.Errorf("%s %s: ca_file %s is not in a read-only mounted directory", w.kind(), w.name(), f[1])
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chart test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(local, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw = strings.ReplaceAll(raw, "ca_file: "+f[1]+"\n", "ca_file: "+local+"\n")
	}
	return raw
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestChartRefuses: values that would break the consumer group or its shutdown fail the
// render with a message naming the value.
func TestChartRefuses(t *testing.T) {
	helm, _ := tools(t)
	base := filepath.Join(chartDir, "ci", "static-keys-values.yaml")
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"more replicas than partitions": {[]string{"--set", "kafka.partitions=4", "--set", "consumer.replicas=5"}, "consumer.replicas (5) exceeds kafka.partitions (4)"},
		"KEDA beyond the partitions":    {[]string{"--set", "kafka.partitions=4", "--set", "consumer.autoscaling.enabled=true", "--set", "consumer.autoscaling.maxReplicas=8"}, "consumer.autoscaling.maxReplicas (8) exceeds kafka.partitions (4)"},
		"grace period too short":        {[]string{"--set", "consumer.terminationGracePeriodSeconds=30"}, "must be longer than flush.maxAgeSeconds + shutdownTimeoutSeconds (35)"},
		"no tenants":                    {[]string{"--set", "tenants=null"}, "tenants: at least one tenant is required"},
		"bad tenant name":               {[]string{"--set", "tenants[0].name=Acme_Corp", "--set", "tenants[0].bucket=b"}, "must be lowercase letters, digits and dashes"},
		"unknown compactor mode":        {[]string{"--set", "compactor.mode=sometimes"}, "compactor.mode"},
		"unknown SASL mechanism":        {[]string{"--set", "kafka.sasl.mechanism=SCRAM-SHA-512"}, `kafka.sasl.mechanism: "SCRAM-SHA-512" is not one of`},
		"SCRAM without its Secret":      {[]string{"--set", "kafka.sasl.mechanism=scram-sha-512"}, "kafka.sasl.secretName: the Secret holding the user and password is required"},
		"client certificate, no key":    {[]string{"--set", "kafka.tls.enabled=true", "--set", "kafka.tls.secretName=s", "--set", "kafka.tls.certKey=tls.crt"}, "kafka.tls: set both certKey and keyKey"},
		"MSK IAM without TLS":           {[]string{"--set", "kafka.sasl.mechanism=aws-msk-iam"}, "aws-msk-iam needs kafka.tls.enabled"},
		"KEDA and a token file":         {[]string{"--set", "kafka.sasl.mechanism=oauthbearer", "--set", "kafka.sasl.oauth.serviceAccountTokenAudience=kafka", "--set", "consumer.autoscaling.enabled=true"}, "KEDA cannot use the pods' service-account token"},
		"client CA without TLS":         {[]string{"--set", "query.tls.clientCA.secretName=clients"}, "query.tls.clientCA.secretName: client certificates need TLS"},
		"iceberg without a URL":         {[]string{"--set", "iceberg.enabled=true"}, "iceberg: give the catalog's URL as iceberg.uri or"},
		"iceberg URL twice":             {[]string{"--set", "iceberg.enabled=true", "--set", "iceberg.uri=postgres://c/iceberg", "--set", "iceberg.uriSecret.name=s"}, "iceberg: give the catalog's URL as iceberg.uri or"},
		"iceberg on SQLite":             {[]string{"--set", "iceberg.enabled=true", "--set", "iceberg.uri=/var/lib/fhirlake/catalog.db"}, "a sql catalog on a SQLite file cannot work in the chart"},
		"unknown iceberg catalog":       {[]string{"--set", "iceberg.enabled=true", "--set", "iceberg.catalog=hive", "--set", "iceberg.uri=thrift://m:9083"}, `iceberg.catalog: "hive" is not sql`},
		"REST catalog, not HTTP":        {[]string{"--set", "iceberg.enabled=true", "--set", "iceberg.catalog=rest", "--set", "iceberg.uri=postgres://c/iceberg"}, "a rest catalog's URL is http:// or https://"},
		"token on a sql catalog":        {[]string{"--set", "iceberg.enabled=true", "--set", "iceberg.uri=postgres://c/iceberg", "--set", "iceberg.tokenSecret.name=t"}, "iceberg.tokenSecret: only a rest catalog"},
	} {
		_, errOut, err := render(t, helm, append([]string{"-f", base}, c.args...)...)
		if err == nil || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: got %v %q, want a failure naming %q", name, err, errOut, c.want)
		}
	}
}
