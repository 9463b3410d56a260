package compactor

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/sink"
)

// Options configure a Compactor. DefaultOptions documents the defaults.
type Options struct {
	// WorkDir holds each run's directory, <WorkDir>/<tenant>/<snapshot-id>: dbt's
	// database and artifacts and the exported Parquet files, removed after a
	// publication. The last failed run of a tenant is kept for inspection.
	WorkDir string
	// Parallelism is how many tenants run at once. Default: 2.
	Parallelism int
	// Timeout bounds one tenant's run. Default: 2h.
	Timeout time.Duration
	// Overlap, ConsistencyDelay and FullRefresh: see PlanOptions.
	Overlap          time.Duration
	ConsistencyDelay time.Duration
	FullRefresh      bool
	// Expire bounds what is kept after a publication; see ExpireOptions.
	Expire ExpireOptions
	// Vars are extra dbt vars for every run (relationship_severity, …).
	Vars map[string]string
	// Lease makes a run the only one on its tenant; see LeaseOptions.
	Lease LeaseOptions
	// RebaseShare is when a run rewrites the state's base: once the resources changed
	// since the base pass this share of the base's, the next run ranks the whole state
	// again (a rebuild); until then a run ranks only what changed and writes it as the
	// state's delta (docs/format/snapshot.md). Default: 0.1.
	RebaseShare float64
	// DuckDBExtensionDir is DuckDB's extension directory holding httpfs (as dbt's,
	// DBT.ExtensionDir): the compactor's own DuckDB reads an s3:// lake's snapshot
	// files through it where they are (the Iceberg tables' position deletes).
	DuckDBExtensionDir string
}

// DefaultOptions are the defaults of config.Compact.
func DefaultOptions() Options {
	return Options{
		WorkDir:          filepath.Join(".fhirlake", "work", "compact"),
		Parallelism:      2,
		Timeout:          2 * time.Hour,
		Overlap:          time.Hour,
		ConsistencyDelay: time.Minute,
		Expire:           ExpireOptions{SpeedRetention: 7 * 24 * time.Hour, KeepSnapshots: 3, OrphanGrace: 6 * time.Hour},
		Lease:            LeaseOptions{TTL: 2 * time.Minute},
		RebaseShare:      0.1,
	}
}

// Tenant is one tenant's lake as the compactor sees it.
type Tenant struct {
	Name string
	// Store is the tenant's store, reached with its own credentials: listings,
	// uploads, the manifest and expiry go through it.
	Store sink.Store
	// Lake is the same root as dbt reads it: an absolute local directory, or
	// s3://<bucket>[/<prefix>] read through DuckDB's httpfs with S3.
	Lake string
	// S3 is how DuckDB reaches an s3:// Lake: the tenant's endpoint and static key.
	S3 *S3Access
	// Iceberg opens the deployment's catalog for the tenant, with its own file IO:
	// each published snapshot's models become its namespace's batch tables
	// (iceberg.go). Nil: no tables.
	Iceberg *catalog.Options
}

// S3Access is what DuckDB's httpfs needs to read one tenant's bucket.
type S3Access struct {
	// Endpoint such as http://127.0.0.1:17070; empty for AWS itself.
	Endpoint  string
	Region    string
	PathStyle bool
	// CAFile is the PEM bundle httpfs trusts for an https endpoint (the tenant's
	// store.ca_file); empty: the system's.
	CAFile string
	// Credentials are the tenant's own, as its store has them (sink.S3.Credentials):
	// a static key, the default chain's, or its role's temporary ones. dbt asks for
	// them as it opens connections, so a run outlives any one set (see serveCredentials).
	Credentials aws.CredentialsProvider
}

// httpfs are the settings of DuckDB's S3 secret for this access, but the key: the
// endpoint's host and whether it takes TLS, the region, the URL style.
func (a *S3Access) httpfs() (endpoint string, ssl bool, region, style string, err error) {
	endpoint, ssl = "s3.amazonaws.com", true
	if a.Endpoint != "" {
		u, err := url.Parse(a.Endpoint)
		if err != nil || u.Host == "" {
			return "", false, "", "", fmt.Errorf("s3 endpoint %q: want a URL such as https://s3.example.org", a.Endpoint)
		}
		endpoint, ssl = u.Host, u.Scheme != "http"
	}
	region = a.Region
	if region == "" {
		region = "us-east-1"
	}
	style = "vhost"
	if a.PathStyle {
		style = "path"
	}
	return endpoint, ssl, region, style, nil
}

// env is the dbt environment for this access, the credentials offered for scope
// only. It holds no credentials: dbt gets those through BuildRequest.Credentials.
func (a *S3Access) env(scope string) ([]string, error) {
	if a.Credentials == nil {
		return nil, errors.New("the batch layer reads s3:// through DuckDB's httpfs, which needs the tenant's credentials")
	}
	endpoint, ssl, region, style, err := a.httpfs()
	if err != nil {
		return nil, err
	}
	env := []string{
		"FHIRLAKE_DBT_S3_REGION=" + region,
		"FHIRLAKE_DBT_S3_ENDPOINT=" + endpoint,
		"FHIRLAKE_DBT_S3_URL_STYLE=" + style,
		fmt.Sprintf("FHIRLAKE_DBT_S3_USE_SSL=%t", ssl),
		"FHIRLAKE_DBT_S3_SCOPE=" + scope,
	}
	if a.CAFile != "" {
		abs, err := filepath.Abs(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		env = append(env, "FHIRLAKE_DBT_S3_CA_FILE="+abs)
	}
	return env, nil
}

// Result is the outcome of one tenant's run.
type Result struct {
	Tenant string
	// SnapshotID is the snapshot current after the run: the new one, or the previous
	// one when the run failed or had nothing to do.
	SnapshotID string
	// Published is true when the run published a new snapshot.
	Published bool
	// UpToDate is true when there was nothing new to compact.
	UpToDate    bool
	FullRefresh bool
	Reason      string
	SpeedFiles  int
	Watermark   lake.Watermark
	Models      map[string]lake.Model
	// Held is the lease of the compactor that held the tenant when this run gave
	// up waiting for it; the run did nothing.
	Held *lake.Lease
	// Failed are the dbt nodes that did not pass.
	Failed []NodeResult
	// Parse is how dbt loaded the project: whole, or reusing the parse it kept.
	Parse    ParseInfo
	Duration time.Duration
	// Expired counts the keys deleted after the publication; ExpireErr is why some
	// could not be (the publication stands regardless).
	Expired   int
	ExpireErr error
}

// Compactor compacts tenants' lakes.
type Compactor struct {
	opts    Options
	runner  Runner
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
}

// New returns a compactor running dbt through runner, with its metrics registered
// with reg (nil: nowhere).
func New(runner Runner, o Options, reg prometheus.Registerer, log *slog.Logger) (*Compactor, error) {
	d := DefaultOptions()
	if o.WorkDir == "" {
		o.WorkDir = d.WorkDir
	}
	if o.Parallelism <= 0 {
		o.Parallelism = d.Parallelism
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.Expire.KeepSnapshots <= 0 {
		o.Expire.KeepSnapshots = d.Expire.KeepSnapshots
	}
	if o.Lease.TTL <= 0 {
		o.Lease.TTL = d.Lease.TTL
	}
	if o.RebaseShare <= 0 {
		o.RebaseShare = d.RebaseShare
	}
	if o.Overlap < 0 || o.ConsistencyDelay < 0 || o.Expire.SpeedRetention < 0 || o.Expire.OrphanGrace < 0 || o.Lease.Wait < 0 {
		return nil, errors.New("compactor: durations must not be negative")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Compactor{opts: o, runner: runner, metrics: NewMetrics(reg), log: log, now: time.Now}, nil
}

// CompactAll compacts every tenant, Parallelism at a time. A tenant's failure never
// stops the others: the error joins every failed tenant's, each naming its tenant, and
// the results are in the order of tenants (nil for a tenant that never started).
func (c *Compactor) CompactAll(ctx context.Context, tenants []Tenant) ([]*Result, error) {
	results := make([]*Result, len(tenants))
	errs := make([]error, len(tenants))
	sem := make(chan struct{}, c.opts.Parallelism)
	var wg sync.WaitGroup
	for i, t := range tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("tenant %s: %w", t.Name, ctx.Err())
				return
			}
			defer func() { <-sem }()
			results[i], errs[i] = c.Compact(ctx, t)
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// Compact runs one tenant's compaction, in four steps, under the tenant's lease
// (lease.go): plan which speed files are new since the current snapshot; build the
// next snapshot's tables with dbt; publish them, only if every model and test passed,
// tables first and the manifest last; then expire what the new snapshot supersedes.
// On any error the previous snapshot stays current. While another compactor holds
// the lease, the run waits up to Options.Lease.Wait, then returns a *LeaseHeldError
// and does nothing.
func (c *Compactor) Compact(ctx context.Context, t Tenant) (res *Result, err error) {
	start := c.now()
	r := &run{tenant: t, res: &Result{Tenant: t.Name}, log: c.log.With("tenant", t.Name)}
	res = r.res
	defer func() {
		if held := (*LeaseHeldError)(nil); errors.As(err, &held) {
			res.Held = &held.Lease
			err = fmt.Errorf("tenant %s: %w", t.Name, err)
			return
		}
		if r.lease != nil {
			err = r.lease.explain(err)
		}
		res.Duration = c.now().Sub(start)
		c.metrics.duration.WithLabelValues(t.Name).Observe(res.Duration.Seconds())
		if err != nil {
			c.metrics.halted.WithLabelValues(t.Name).Set(1)
			r.log.Error("compaction failed; the previous snapshot stays current", "snapshot", res.SnapshotID, "err", err)
			err = fmt.Errorf("tenant %s: %w", t.Name, err)
			return
		}
		c.metrics.halted.WithLabelValues(t.Name).Set(0)
		c.metrics.lastSuccess.WithLabelValues(t.Name).Set(float64(c.now().Unix()))
	}()
	target, env, err := t.dbtTarget()
	if err != nil {
		return res, err
	}
	if t.S3 != nil {
		// A role that cannot be assumed fails here, with its own error, rather than as
		// the first listing's.
		if _, err := t.S3.Credentials.Retrieve(ctx); err != nil {
			return res, fmt.Errorf("s3 credentials: %w", err)
		}
	}
	if r.lease, err = c.takeLease(ctx, t, r.log); err != nil {
		return res, err
	}
	defer r.lease.release()
	ctx = r.lease.ctx
	if err := c.plan(ctx, r); err != nil {
		return res, err
	}
	if res.UpToDate {
		return res, c.catchUpTables(ctx, r)
	}
	results, err := c.build(ctx, r, target, env)
	if err != nil {
		return res, err
	}
	res.Parse = results.Parse
	m, err := c.publish(ctx, r, results)
	if err != nil {
		return res, err
	}
	if t.Iceberg != nil {
		if err := c.publishTables(ctx, r, m); err != nil {
			// Expiry waits: it could delete what the tables still reference.
			return res, fmt.Errorf("%w: %w", errNoTables, err)
		}
	} else if err := t.Store.Delete(ctx, lake.IcebergKey); err != nil {
		// A pointer left from when the deployment had an iceberg section would keep
		// readers on the snapshot it names (docs/format/iceberg.md, "The pointer").
		return res, fmt.Errorf("remove %s: %w", lake.IcebergKey, err)
	}
	if _, err := r.lease.confirm(ctx); err != nil {
		res.ExpireErr = err
	} else {
		res.Expired, res.ExpireErr = c.expire(ctx, t, m, r.now)
	}
	if res.ExpireErr != nil {
		r.log.Warn("expiry incomplete; it is retried after the next publication", "err", res.ExpireErr)
	}
	c.prepareNextParse(ctx, r, m)
	if err := os.RemoveAll(r.dir); err != nil {
		r.log.Warn("remove run directory", "dir", r.dir, "err", err)
	}
	return res, nil
}

// run is one tenant's compaction as its steps fill it in.
type run struct {
	req    BuildRequest // what dbt was asked to build
	tenant Tenant
	res    *Result
	log    *slog.Logger
	// lease is the tenant's, held while the run lasts.
	lease *lease
	// now is when the run planned; the new snapshot is dated by it.
	now time.Time
	// prev is the current manifest, nil before the first publication; sel what the
	// run reads.
	prev *lake.Manifest
	sel  Selection
	// id is the new snapshot's, dir the run's directory (dbt's database and
	// artifacts, the plan, the exported tables).
	id, dir string
	// erasureFile lists the tenant's erased changes for dbt (erase.go); empty
	// without erasures.
	erasureFile string
	// rebuild makes the run write a new base of every state model even when it could
	// write a delta (an erasure's).
	rebuild bool
	// incremental is whether the run writes the state's delta (stateMode).
	incremental bool
}

// exportDir is where dbt exports the snapshot's tables, one <model>.parquet each.
func (r *run) exportDir() string { return filepath.Join(r.dir, "export") }

// dbtTarget is the dbt profile target that reads the tenant's lake, and the
// environment it needs: "local" for a directory, "tenant" for s3:// (DuckDB's httpfs
// with the tenant's credentials).
func (t Tenant) dbtTarget() (target string, env []string, err error) {
	if t.Store == nil || t.Lake == "" {
		return "", nil, errors.New("tenant has no store or lake location")
	}
	if !strings.HasPrefix(t.Lake, "s3://") {
		return "local", nil, nil
	}
	if t.S3 == nil {
		return "", nil, errors.New("an s3:// lake needs S3 access settings")
	}
	if env, err = t.S3.env(strings.TrimSuffix(t.Lake, "/")); err != nil {
		return "", nil, err
	}
	return "tenant", env, nil
}

// plan reads the current manifest and lists the speed layer, and decides what the
// run reads (Plan). With nothing new to read it marks the result up to date.
func (c *Compactor) plan(ctx context.Context, r *run) error {
	t, res := r.tenant, r.res
	prev, err := sink.ReadManifest(ctx, t.Store)
	if err != nil {
		return err
	}
	if prev != nil {
		res.SnapshotID = prev.SnapshotID
	}
	listing, err := t.Store.List(ctx, lake.SpeedPrefix)
	if err != nil {
		return fmt.Errorf("list speed layer: %w", err)
	}
	now := c.now()
	sel := Plan(listing, prev, now, PlanOptions{
		Overlap: c.opts.Overlap, ConsistencyDelay: c.opts.ConsistencyDelay,
		FullRefresh: c.opts.FullRefresh, Project: c.runner.Project(),
	})
	res.FullRefresh, res.Reason, res.Watermark = sel.FullRefresh, sel.Reason, sel.Watermark
	if sel.UpToDate() {
		res.UpToDate = true
		res.Models = prev.Models
		r.log.Info("batch snapshot is up to date", "snapshot", prev.SnapshotID, "watermark", prev.Watermark.Modified, "deferred", sel.Deferred)
		return nil
	}
	if len(sel.Files) == 0 {
		res.UpToDate = true
		r.log.Info("no speed files to compact yet", "deferred", sel.Deferred)
		return nil
	}
	res.SpeedFiles = len(sel.Files)
	if sel.FullRefresh && prev != nil && !prev.SpeedExpiredBefore.IsZero() {
		return fmt.Errorf("a full refresh would lose the speed files expired before %s (compact.speed_retention); delete %s to rebuild from what is left",
			prev.SpeedExpiredBefore.Format(time.RFC3339), lake.ManifestKey)
	}
	r.now, r.prev, r.sel = now, prev, sel
	return nil
}

// build runs dbt over the planned speed files and the snapshot to build on, in a new
// run directory, with at most Timeout; it fails unless every model and test passed.
func (c *Compactor) build(ctx context.Context, r *run, target string, env []string) (*RunResults, error) {
	t, sel := r.tenant, r.sel
	r.id = lake.NewSnapshotID(r.now)
	dir, err := c.runDir(t.Name)
	if err != nil {
		return nil, err
	}
	r.dir = dir
	r.log.Info("compacting", "snapshot", r.id, "speed_files", len(sel.Files), "datasets", len(sel.Datasets),
		"full_refresh", sel.FullRefresh, "reason", sel.Reason, "previous", r.res.SnapshotID)
	if err := os.MkdirAll(r.exportDir(), 0o755); err != nil {
		return nil, err
	}
	planFile := filepath.Join(dir, "plan.csv")
	if err := writePlan(planFile, sel.Files); err != nil {
		return nil, fmt.Errorf("write plan: %w", err)
	}
	if r.erasureFile, err = writeErasures(ctx, t.Store, dir); err != nil {
		return nil, err
	}
	var why string
	rebuild := r.rebuild
	if m, ok := c.runner.(interface{ MergeOnRead() bool }); ok && !m.MergeOnRead() {
		rebuild = true
	}
	r.incremental, why = stateMode(sel.Previous, c.runner.Project(), rebuild, c.opts.RebaseShare)
	r.log.Info("state", "incremental", r.incremental, "why", why)
	runCtx, cancel := context.WithTimeoutCause(ctx, c.opts.Timeout, fmt.Errorf("run exceeded compact.timeout (%s)", c.opts.Timeout))
	defer cancel()
	req := BuildRequest{Tenant: t.Name, Dir: dir, Vars: c.vars(r, planFile), Target: target, Env: env,
		Datasets: stateDatasets(sel.Datasets, sel.Previous), ParseCache: c.parseCache(t.Name, r.incremental),
		Nodes: dbtNodes(r.incremental)}
	if t.S3 != nil {
		req.Credentials = t.S3.Credentials
	}
	r.req = req
	results, err := c.runner.Build(runCtx, req)
	if err != nil {
		return nil, err
	}
	c.metrics.failedTests.WithLabelValues(t.Name).Set(float64(results.FailedTests()))
	if failed := results.Failed(); len(failed) > 0 {
		r.res.Failed = failed
		return nil, &BuildError{Failed: failed}
	}
	return results, nil
}

// vars are the dbt vars of a run: Options.Vars, then what the run decides
// (dbt_project.yml documents each).
func (c *Compactor) vars(r *run, planFile string) map[string]any {
	root := strings.TrimSuffix(r.tenant.Lake, "/")
	vars := map[string]any{}
	for k, v := range c.opts.Vars {
		vars[k] = v
	}
	for k, v := range map[string]any{
		"lake":             root,
		"plan_file":        planFile,
		"speed_partitions": r.sel.Partitions,
		"previous_state":   map[string]any{},
		"state_mode":       "rebuild",
		"snapshot_id":      r.id,
		"watermark":        r.sel.Watermark.Modified.UTC().Format(time.RFC3339Nano),
		"export_dir":       r.exportDir(),
		"erasure_file":     r.erasureFile,
	} {
		vars[k] = v
	}
	if prev := r.sel.Previous; prev != nil {
		vars["previous_state"] = previousState(root, prev)
	}
	if r.incremental {
		vars["state_mode"] = "incremental"
	}
	return vars
}

// publish uploads the tables dbt exported under the new snapshot's prefix, then its
// manifest: a copy inside the snapshot, and last lake.ManifestKey, which makes it
// current (docs/format/snapshot.md).
func (c *Compactor) publish(ctx context.Context, r *run, results *RunResults) (*lake.Manifest, error) {
	t, sel, prev, res := r.tenant, r.sel, r.prev, r.res
	models, err := exported(ctx, r.exportDir(), r.incremental)
	if err != nil {
		return nil, err
	}
	m := &lake.Manifest{
		Version: lake.ManifestVersion, Tenant: t.Name, SnapshotID: r.id, Created: r.now.UTC(),
		Watermark: sel.Watermark, FullRefresh: sel.FullRefresh, SpeedFiles: len(sel.Files),
		Project: c.runner.Project(), Models: map[string]lake.Model{},
		DBT: lake.RunInfo{Version: results.Metadata.DBTVersion, ElapsedSeconds: results.Elapsed,
			Models: results.Count("model"), Tests: results.Count("test")},
	}
	if sel.Previous != nil {
		m.Previous = sel.Previous.SnapshotID
	}
	if prev != nil {
		m.History = append([]string{prev.SnapshotID}, prev.History...)
		if len(m.History) > maxHistory {
			m.History = m.History[:maxHistory]
		}
		m.SpeedExpiredBefore = prev.SpeedExpiredBefore
	}
	// The tables first; the manifest, which makes them current, last.
	uploads := tableUploads(r.id, models, r.incremental)
	for _, u := range uploads {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := t.Store.Put(ctx, u.key, u.path); err != nil {
			return nil, fmt.Errorf("upload %s: %w", u.key, err)
		}
	}
	m.Models = publishedModels(r.id, models, sel.Previous, r.incremental)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := putManifest(ctx, t.Store, r.dir, lake.SnapshotManifestKey(r.id), m); err != nil {
		return nil, fmt.Errorf("write snapshot manifest: %w", err)
	}
	// Published only under the lease, renewed just before, and within its term.
	expires, err := r.lease.confirm(ctx)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", lake.ManifestKey, err)
	}
	pctx, cancel := context.WithDeadline(ctx, expires)
	defer cancel()
	if err := putManifest(pctx, t.Store, r.dir, lake.ManifestKey, m); err != nil {
		return nil, fmt.Errorf("publish %s: %w", lake.ManifestKey, err)
	}
	res.SnapshotID, res.Published, res.Models = r.id, true, m.Models
	c.metrics.modelRows.DeletePartialMatch(prometheus.Labels{"tenant": t.Name})
	for name, mod := range m.Models {
		c.metrics.modelRows.WithLabelValues(t.Name, name).Set(float64(mod.Rows))
	}
	r.log.Info("published batch snapshot", "snapshot", r.id, "models", len(m.Models), "speed_files", len(sel.Files),
		"watermark", sel.Watermark.Modified, "dbt_seconds", results.Elapsed, "incremental", r.incremental,
		"dbt_parse", results.Parse.String(),
		"slowest", results.Slowest(5))
	return m, nil
}

// maxHistory bounds Manifest.History; snapshots beyond KeepSnapshots are deleted.
const maxHistory = 20

// expire deletes what the new manifest supersedes. A failure leaves the rest for the
// next publication: nothing deleted here is still needed.
func (c *Compactor) expire(ctx context.Context, t Tenant, m *lake.Manifest, now time.Time) (int, error) {
	var listing []sink.Object
	for _, prefix := range []string{lake.SpeedPrefix, lake.BatchPrefix} {
		objs, err := t.Store.List(ctx, prefix)
		if err != nil {
			return 0, err
		}
		listing = append(listing, objs...)
	}
	var kept []*lake.Manifest
	for _, id := range KeptSnapshots(m, c.opts.Expire) {
		km, err := sink.ReadManifestAt(ctx, t.Store, lake.SnapshotManifestKey(id))
		if err != nil {
			// Its references are unknown: nothing is deleted this time.
			return 0, fmt.Errorf("read kept snapshot %s: %w", id, err)
		}
		if km != nil {
			kept = append(kept, km)
		}
	}
	keys := Expired(listing, m, kept, now, c.opts.Expire)
	speedExpired := false
	for _, k := range keys {
		if strings.HasPrefix(k, lake.SpeedPrefix) {
			speedExpired = true
			break
		}
	}
	if speedExpired && m.SpeedExpiredBefore.IsZero() {
		// Record before deleting that the speed layer is no longer complete, so that
		// no later full refresh silently drops what is gone.
		m.SpeedExpiredBefore = m.Watermark.Modified.Add(-c.opts.Expire.SpeedRetention).UTC()
		dir := filepath.Join(c.opts.WorkDir, t.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
		if err := putManifest(ctx, t.Store, dir, lake.ManifestKey, m); err != nil {
			return 0, fmt.Errorf("record expiry in %s: %w", lake.ManifestKey, err)
		}
	}
	var errs []error
	n := 0
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := t.Store.Delete(ctx, k); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 {
		c.log.Info("expired", "tenant", t.Name, "keys", n, "speed_retention", c.opts.Expire.SpeedRetention, "keep_snapshots", c.opts.Expire.KeepSnapshots)
	}
	return n, errors.Join(errs...)
}

// runDir makes the run's directory, removing the tenant's earlier ones: a failed run
// stays for inspection until the next run of its tenant.
func (c *Compactor) runDir(tenant string) (string, error) {
	parent := filepath.Join(c.opts.WorkDir, tenant)
	if entries, err := os.ReadDir(parent); err == nil {
		for _, e := range entries {
			if e.Name() != parseCacheDir {
				os.RemoveAll(filepath.Join(parent, e.Name()))
			}
		}
	}
	dir, err := filepath.Abs(filepath.Join(parent, "run"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("run directory: %w", err)
	}
	return dir, nil
}

// dbtNodes is how many nodes dbt runs at once. A rebuild's state models each rank the
// whole history of their datasets and need the run's DuckDB memory to themselves: two
// at once (int_resources__latest beside int_observation__latest) ran out of a 3 GiB
// limit at 5 M resources, where one at a time each uses DuckDB's threads as well. An
// incremental run's nodes are small, and dbt's own time per node is what two at once
// hide.
func dbtNodes(incremental bool) int {
	if incremental {
		return 2
	}
	return 1
}

// parser is a runner that can parse the project ahead of a run (DBT.Parse).
type parser interface {
	Parse(ctx context.Context, req BuildRequest) (ParseInfo, error)
}

// prepareNextParse, after a rebuild, has dbt parse the project as the incremental run
// after it will, when no parse of that mode is kept: so that this run, already long,
// pays the parse rather than the next, which is to cost what changed. It only logs
// what goes wrong: the next run parses the project itself then.
func (c *Compactor) prepareNextParse(ctx context.Context, r *run, m *lake.Manifest) {
	p, ok := c.runner.(parser)
	if !ok || r.incremental || r.req.ParseCache == "" {
		return
	}
	if next, _ := stateMode(m, c.runner.Project(), false, c.opts.RebaseShare); !next {
		return
	}
	req := r.req
	req.Vars = maps.Clone(r.req.Vars)
	req.Vars["state_mode"] = "incremental"
	req.Datasets = stateDatasets(nil, m)
	req.ParseCache, req.Nodes = c.parseCache(r.tenant.Name, true), dbtNodes(true)
	if _, err := os.Stat(req.ParseCache); err == nil {
		return
	}
	info, err := p.Parse(ctx, req)
	if err != nil {
		r.log.Warn("the next incremental run's parse was not prepared", "err", err)
		return
	}
	r.log.Info("prepared the next incremental run's parse", "dbt_parse", info.String())
}

// parseCacheDir holds, in a tenant's work directory, dbt's parse of the project kept
// between runs (parsecache.go), one per state mode: the two modes enable other models.
const parseCacheDir = "dbt-parse"

func (c *Compactor) parseCache(tenant string, incremental bool) string {
	mode := "rebuild"
	if incremental {
		mode = "incremental"
	}
	return filepath.Join(c.opts.WorkDir, tenant, parseCacheDir, mode+".msgpack")
}

// stateModels are the models of a snapshot that the next run reads back.
func stateModels(m *lake.Manifest) []string {
	var out []string
	for _, name := range m.ModelNames() {
		if _, ok := lake.ParseStateModel(name); ok {
			out = append(out, name)
		}
	}
	return out
}

func writePlan(path string, files []lake.SpeedFile) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	records := make([][]string, 0, 1+len(files))
	records = append(records, []string{"dataset", "date", "file"})
	for _, sf := range files {
		records = append(records, []string{sf.Dataset, sf.Date, sf.Name})
	}
	if err := csv.NewWriter(f).WriteAll(records); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type exportedModel struct {
	path        string
	rows, bytes int64
}

// exported lists the Parquet files dbt exported, one per model (<model>.parquet), and
// counts their rows from the footers, which also checks that each file is whole. A
// rebuild exports the raw dataset's state, an incremental run its delta.
func exported(ctx context.Context, dir string, incremental bool) (map[string]exportedModel, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("exported tables: %w", err)
	}
	out := map[string]exportedModel{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".parquet")
		if !ok || e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		out[name] = exportedModel{path: p, bytes: info.Size()}
	}
	need := []string{lake.StateModel(lake.RawDataset)}
	if incremental {
		need = []string{deltaModel(lake.RawDataset), changedModel}
	}
	for _, name := range need {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("dbt exported no %s to %s: is var export_dir wired to the post-hook?", name, dir)
		}
	}
	paths := make([]string, 0, len(out))
	for _, m := range out {
		paths = append(paths, m.path)
	}
	rows, err := parquetRows(ctx, paths)
	if err != nil {
		return nil, fmt.Errorf("exported tables: %w", err)
	}
	for name, m := range out {
		m.rows = rows[m.path]
		out[name] = m
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
