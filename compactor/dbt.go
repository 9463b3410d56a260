package compactor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	dbtproject "fhirlake/dbt"
)

// Runner runs the dbt project for one tenant.
type Runner interface {
	// Build runs `dbt build` as req says and returns its results. An error means no
	// results could be read; a run with failing nodes returns them without an error.
	Build(ctx context.Context, req BuildRequest) (*RunResults, error)
	// Project fingerprints the dbt project the runner runs.
	Project() string
}

// BuildRequest is one tenant's run.
type BuildRequest struct {
	Tenant string
	// Dir is the run's own directory: dbt's target and logs, the DuckDB database, the
	// plan and the exported Parquet files go there.
	Dir string
	// Vars are the dbt vars (dbt_project.yml documents each).
	Vars map[string]any
	// Target is the profile target: "local" or "tenant" (S3 through httpfs).
	Target string
	// Env is added to the environment of dbt: the tenant's S3 settings.
	Env []string
	// Datasets are the view datasets to keep state for: those without a model in the
	// project get generated ones (models.go). A project of one's own (DBT.ProjectDir)
	// must model them itself.
	Datasets []string
	// Credentials are the tenant's S3 credentials, handed to dbt as it asks for
	// them (credentials.go); nil for a local lake.
	Credentials aws.CredentialsProvider
	// Nodes is how many nodes dbt runs at once (its threads), sharing the run's
	// DuckDB and its memory limit. Default: 2.
	Nodes int
	// ParseCache is the file dbt's parse of the built-in project is kept in between
	// runs (parsecache.go), for runs whose Dir has the same path every time; empty:
	// dbt parses the whole project.
	ParseCache string
}

// DBT runs the dbt executable.
type DBT struct {
	// Path of the dbt executable.
	Path string
	// ProjectDir is the dbt project; empty runs the project built into the binary
	// (package dbt), written into each run's directory.
	ProjectDir string
	// Threads is the DuckDB threads of a run.
	Threads int
	// MemoryLimit bounds a run's DuckDB, e.g. "4GB".
	MemoryLimit string
	// ExtensionDir is DuckDB's extension directory, holding httpfs for S3 lakes.
	ExtensionDir string
	// StopGrace is how long dbt has to exit after SIGTERM when the run is cancelled,
	// before it is killed. Default: 10s.
	StopGrace time.Duration

	project string
}

// NewDBT checks the executable and the project, and fingerprints the project.
func NewDBT(d DBT) (*DBT, error) {
	if d.Path == "" {
		return nil, ErrNoDBT
	}
	if _, err := exec.LookPath(d.Path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoDBT, err)
	}
	var fsys fs.FS = dbtproject.Project
	if d.ProjectDir != "" {
		fsys = os.DirFS(d.ProjectDir)
	}
	sum, err := fingerprint(fsys)
	if err != nil {
		return nil, fmt.Errorf("dbt project: %w", err)
	}
	d.project = sum
	if d.StopGrace == 0 {
		d.StopGrace = 10 * time.Second
	}
	if d.Threads == 0 {
		d.Threads = 2
	}
	if d.MemoryLimit == "" {
		d.MemoryLimit = "4GB"
	}
	return &d, nil
}

// ErrNoDBT is returned when no dbt executable can be found.
var ErrNoDBT = errors.New("dbt not found (install it with `deploy/local/stack install`, or set FHIRLAKE_DBT or compact.dbt)")

// MergeOnRead reports whether the project's runs may write a state's delta beside its
// base: the built-in project's, whose delta models the run generates
// (writeDeltaModels); a project of one's own is rebuilt every run.
func (d *DBT) MergeOnRead() bool { return d.ProjectDir == "" }

// Project fingerprints the project: a hash of its models, macros, tests and settings.
func (d *DBT) Project() string { return d.project }

// fingerprint hashes the files a dbt run depends on.
func fingerprint(fsys fs.FS) (string, error) {
	h := sha256.New()
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			switch p {
			case "target", "logs", "dbt_packages":
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case p == "dbt_project.yml", p == "profiles.yml",
			strings.HasSuffix(p, ".sql") || strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".csv") || strings.HasSuffix(p, ".py"):
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", errors.New("no dbt files")
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// writeProject copies the embedded project into dir.
func writeProject(dir string) error {
	return fs.WalkDir(dbtproject.Project, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if e.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(dbtproject.Project, p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

// Build runs `dbt build` in req.Dir and reads target/run_results.json.
func (d *DBT) Build(ctx context.Context, req BuildRequest) (*RunResults, error) {
	target, runErr, err := d.invoke(ctx, req, "build")
	if err != nil {
		return nil, err
	}
	res, err := ReadRunResults(filepath.Join(target, "run_results.json"))
	if err != nil {
		be := &BuildError{Output: tail(filepath.Join(req.Dir, "dbt.out"), 40), Err: runErr}
		if runErr == nil {
			be.Err = err
		}
		return nil, be
	}
	res.Parse = readParseInfo(filepath.Join(req.Dir, "logs", "dbt.log"))
	if runErr != nil && len(res.Failed()) == 0 {
		// dbt failed outside any node (an on-run hook, a connection that would not
		// open): that is a failed run too.
		return nil, &BuildError{Output: tail(filepath.Join(req.Dir, "dbt.out"), 40), Err: runErr}
	}
	return res, nil
}

// Parse runs `dbt parse` in req.Dir as Build would run `dbt build` for req, and keeps
// the parse at req.ParseCache: a rebuild prepares the parse of the incremental run
// after it. Without a cache (a project of one's own) it does nothing.
func (d *DBT) Parse(ctx context.Context, req BuildRequest) (ParseInfo, error) {
	if d.ProjectDir != "" || req.ParseCache == "" {
		return ParseInfo{}, nil
	}
	_, runErr, err := d.invoke(ctx, req, "parse")
	if err == nil && runErr != nil {
		err = fmt.Errorf("dbt parse: %w\n%s", runErr, tail(filepath.Join(req.Dir, "dbt.out"), 20))
	}
	return readParseInfo(filepath.Join(req.Dir, "logs", "dbt.log")), err
}

// invoke runs dbt's command verb (build, parse) for req in req.Dir: the built-in
// project written there with the models req needs generated, dbt's kept parse
// restored and saved again. It returns dbt's target directory and how dbt exited
// (runErr), or err when dbt could not run to its end.
func (d *DBT) invoke(ctx context.Context, req BuildRequest, verb string) (target string, runErr, err error) {
	if req.Target == "tenant" && d.ExtensionDir == "" {
		return "", nil, errors.New("an s3:// lake is read through DuckDB's httpfs, which must be installed in compact.duckdb_extension_dir (or $FHIRLAKE_DUCKDB_EXTENSION_DIR): DuckDB never downloads it")
	}
	project := d.ProjectDir
	if project == "" {
		project = filepath.Join(req.Dir, "project")
		if err := os.RemoveAll(project); err != nil {
			return "", nil, err
		}
		if err := writeProject(project); err != nil {
			return "", nil, fmt.Errorf("write dbt project: %w", err)
		}
		if err := writeStateModels(project, req.Datasets); err != nil {
			return "", nil, fmt.Errorf("generate state models: %w", err)
		}
		if err := writeDeltaModels(project, req.Datasets); err != nil {
			return "", nil, fmt.Errorf("generate delta models: %w", err)
		}
		if err := writeMartModels(project, req.Vars["state_mode"] == "incremental"); err != nil {
			return "", nil, fmt.Errorf("generate mart models: %w", err)
		}
	}
	project, err = filepath.Abs(project)
	if err != nil {
		return "", nil, err
	}
	target = filepath.Join(req.Dir, "target")
	cache := req.ParseCache
	if d.ProjectDir != "" {
		cache = "" // a project of one's own reads every var from the command line
	}
	vars, parse := req.Vars, "--no-partial-parse"
	if cache != "" {
		if vars, err = splitVars(req.Vars, req.Dir); err != nil {
			return "", nil, err
		}
		if err := restoreParse(cache, target); err != nil {
			return "", nil, fmt.Errorf("restore dbt's parse: %w", err)
		}
		parse = "--partial-parse"
	}
	varsJSON, err := json.Marshal(vars)
	if err != nil {
		return "", nil, fmt.Errorf("dbt vars: %w", err)
	}
	args := []string{verb,
		"--project-dir", project, "--profiles-dir", project,
		"--target", req.Target,
		"--target-path", target, "--log-path", filepath.Join(req.Dir, "logs"),
		"--vars", string(varsJSON),
		parse, "--log-format-file", "json", "--no-use-colors",
	}
	// Each invocation's own log: the parse it reports is its own.
	if err := os.RemoveAll(filepath.Join(req.Dir, "logs")); err != nil {
		return "", nil, err
	}
	out, err := os.Create(filepath.Join(req.Dir, "dbt.out"))
	if err != nil {
		return "", nil, err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, d.Path, args...)
	cmd.Dir = project
	cmd.Env = append(d.baseEnv(req.Dir, req.Nodes), req.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(cmd.Env, "PYTHONPATH="+filepath.Join(project, "plugins"), "PYTHONDONTWRITEBYTECODE=1")
	// dbt runs in a process group of its own, stopped with it when the run is
	// cancelled and killed with this process if it dies (see proc_*.go).
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return terminate(cmd) }
	cmd.WaitDelay = d.StopGrace
	runErr = d.run(ctx, cmd, req.Credentials)
	if ctx.Err() != nil {
		return "", nil, fmt.Errorf("dbt %s: %w", verb, context.Cause(ctx))
	}
	if cache != "" {
		// A run whose nodes failed parsed the project all the same. A parse that
		// cannot be kept costs the next run a whole parse, nothing else.
		_ = saveParse(target, cache)
	}
	return target, runErr, nil
}

// run runs cmd, answering its requests for credentials while it runs.
func (d *DBT) run(ctx context.Context, cmd *exec.Cmd, creds aws.CredentialsProvider) error {
	if creds == nil {
		return cmd.Run()
	}
	pipes, err := attachCredentials(cmd)
	if err != nil {
		return fmt.Errorf("credentials pipes: %w", err)
	}
	defer pipes.close()
	err = cmd.Start()
	pipes.started()
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- pipes.serve(ctx, creds) }()
	err = cmd.Wait()
	pipes.close()
	if serr := <-served; serr != nil && err == nil {
		err = fmt.Errorf("answer dbt's requests for credentials: %w", serr)
	}
	return err
}

// baseEnv is the whole environment of a dbt run besides the tenant's: what Python and
// dbt need, and nothing else, so that no other tenant's key is ever within reach.
func (d *DBT) baseEnv(dir string, nodes int) []string {
	if nodes < 1 {
		nodes = 2
	}
	env := []string{
		"FHIRLAKE_DBT_DATABASE=" + filepath.Join(dir, "batch.duckdb"),
		"FHIRLAKE_DBT_DUCKDB_THREADS=" + strconv.Itoa(d.Threads),
		"FHIRLAKE_DBT_THREADS=" + strconv.Itoa(nodes),
		"FHIRLAKE_DBT_MEMORY_LIMIT=" + d.MemoryLimit,
		"DO_NOT_TRACK=1",
		"DBT_SEND_ANONYMOUS_USAGE_STATS=false",
		"TMPDIR=" + dir,
		"HOME=" + dir,
	}
	if d.ExtensionDir != "" {
		env = append(env, "FHIRLAKE_DUCKDB_EXTENSION_DIR="+d.ExtensionDir)
	}
	for _, k := range []string{"PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > 64<<10 {
		// If it fails, the offset stays at the start and the whole file is
		// read, whose last lines are the same.
		_, _ = f.Seek(-64<<10, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FindDBT locates the dbt executable: $FHIRLAKE_DBT, else .cache/dbt-venv/bin/dbt in
// the working directory or one of its parents (where `deploy/local/stack install` puts
// it), else dbt on PATH. It returns "" when there is none.
func FindDBT() string {
	if p := os.Getenv("FHIRLAKE_DBT"); p != "" {
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			p := filepath.Join(dir, ".cache", "dbt-venv", "bin", "dbt")
			if info, err := os.Stat(p); err == nil && !info.IsDir() {
				return p
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if p, err := exec.LookPath("dbt"); err == nil {
		return p
	}
	return ""
}
