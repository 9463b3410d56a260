package tools

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/opencontainers/go-digest"
)

// root is the repository root.
var root = filepath.Join("..", "..")

func readDockerfile(t *testing.T) []byte {
	t.Helper()
	dt, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// TestDockerfileLint runs BuildKit's own checks (what `docker build --check` reports):
// parse errors, undefined variables and arguments, casing, JSON-form entrypoints, …
func TestDockerfileLint(t *testing.T) {
	dt := readDockerfile(t)
	var err error
	ctx := context.Background()
	src := llb.Scratch()
	sm := llb.NewSourceMap(&src, "deploy/Dockerfile", "Dockerfile", dt)
	if sm.Definition, err = src.Marshal(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{SourceMap: sm, MetaResolver: offlineImages{}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != nil {
		t.Errorf("deploy/Dockerfile does not convert: %s", res.Error.Message)
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		t.Errorf("deploy/Dockerfile:%d: %s: %s (%s)", line, w.RuleName, w.Detail, w.URL)
	}
}

// offlineImages answers every base image with an empty linux/amd64 configuration, so that
// the lint never contacts a registry.
type offlineImages struct{}

func (offlineImages) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	return ref, digest.FromString(ref), []byte(`{"architecture":"amd64","os":"linux","config":{}}`), nil
}

// TestDockerfileRecipe checks what the image must be: a cgo build with the duckdb_arrow
// tag through deploy/image/build-fhirlake, the dbt virtualenv with httpfs through
// deploy/image/install-dbt, and a runtime stage that runs as a non-root user.
func TestDockerfileRecipe(t *testing.T) {
	dt := readDockerfile(t)
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		warnings = append(warnings, rule+": "+msg)
	}})
	stages, _, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("lint: %v", warnings)
	}
	if len(stages) != 3 {
		t.Fatalf("stages: got %d, want build, dbt and the runtime", len(stages))
	}
	byName := map[string]instructions.Stage{}
	for _, s := range stages {
		byName[s.Name] = s
	}
	run := func(s instructions.Stage) string {
		var b strings.Builder
		for _, c := range s.Commands {
			if r, ok := c.(*instructions.RunCommand); ok {
				b.WriteString(strings.Join(r.CmdLine, " ") + "\n")
			}
		}
		return b.String()
	}
	build, ok := byName["build"]
	if !ok || !strings.HasPrefix(build.BaseName, "golang:") {
		t.Fatalf("no golang build stage named build: %+v", build.BaseName)
	}
	if !strings.Contains(run(build), "deploy/image/build-fhirlake") || !strings.Contains(run(build), "version") {
		t.Errorf("the build stage must build with deploy/image/build-fhirlake and run `fhirlake version`:\n%s", run(build))
	}
	env := map[string]string{}
	for _, c := range build.Commands {
		if e, ok := c.(*instructions.EnvCommand); ok {
			for _, kv := range e.Env {
				env[kv.Key] = kv.Value
			}
		}
	}
	if env["CGO_ENABLED"] != "1" {
		t.Errorf("the build stage must set CGO_ENABLED=1, has %q", env["CGO_ENABLED"])
	}
	script, err := os.ReadFile(filepath.Join(root, "deploy", "image", "build-fhirlake"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-tags duckdb_arrow", "CGO_ENABLED=1", "-X main.version=", "-X main.commit=", "-X main.buildDate=", "./cmd/fhirlake"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("deploy/image/build-fhirlake lacks %q", want)
		}
	}
	dbt, ok := byName["dbt"]
	if !ok || !strings.Contains(run(dbt), "install-dbt /opt/dbt-venv /opt/duckdb/extensions") {
		t.Errorf("no dbt stage installing the virtualenv and httpfs with deploy/image/install-dbt")
	}
	req, _ := os.ReadFile(filepath.Join(root, "dbt", "requirements.txt"))
	for _, ext := range []string{"httpfs", "avro", "iceberg"} {
		if !regexp.MustCompile(`(?m)^duckdb-extension-` + ext + `==`).Match(req) {
			t.Errorf("dbt/requirements.txt does not pin duckdb-extension-%s", ext)
		}
	}

	final := stages[len(stages)-1]
	if final.Name != "" {
		t.Errorf("the runtime stage is the last one and unnamed, got %q", final.Name)
	}
	if build.BaseName[len("golang:"):] == "" || !strings.Contains(final.BaseName, "slim") {
		t.Errorf("runtime base %q: want a slim Debian matching the dbt stage", final.BaseName)
	}
	if final.BaseName != dbt.BaseName {
		t.Errorf("runtime base %q differs from the dbt stage's %q: the virtualenv's interpreter would not be there", final.BaseName, dbt.BaseName)
	}
	var user string
	var entrypoint []string
	copied := map[string]bool{}
	finalEnv := map[string]string{}
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entrypoint = c.CmdLine
		case *instructions.CopyCommand:
			for _, s := range c.SourcePaths {
				copied[c.From+":"+s] = true
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				finalEnv[kv.Key] = kv.Value
			}
		}
	}
	if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Errorf("the image must run as a non-root user, USER is %q", user)
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user) {
		t.Errorf("USER %q: give a numeric uid so that runAsNonRoot can verify it", user)
	}
	if len(entrypoint) != 1 || entrypoint[0] != "/usr/local/bin/fhirlake" {
		t.Errorf("ENTRYPOINT %v, want [/usr/local/bin/fhirlake]", entrypoint)
	}
	for _, want := range []string{"dbt:/opt/dbt-venv", "dbt:/opt/duckdb", "build:/out/fhirlake", ":dbt/"} {
		if !copied[want] {
			t.Errorf("the runtime stage does not COPY %s (has %v)", want, copied)
		}
	}
	if finalEnv["FHIRLAKE_DBT"] != "/opt/dbt-venv/bin/dbt" || finalEnv["FHIRLAKE_DUCKDB_EXTENSION_DIR"] != "/opt/duckdb/extensions" {
		t.Errorf("FHIRLAKE_DBT / FHIRLAKE_DUCKDB_EXTENSION_DIR must point into the image: %v", finalEnv)
	}
	// The query server's extensions, where install-dbt copies them (the serve section's
	// defaults): without the last two it reads the snapshot's files, not its tables.
	for name, want := range map[string]string{
		"FHIRLAKE_HTTPFS_EXTENSION":  "/opt/duckdb/httpfs.duckdb_extension",
		"FHIRLAKE_ICEBERG_EXTENSION": "/opt/duckdb/iceberg.duckdb_extension",
		"FHIRLAKE_AVRO_EXTENSION":    "/opt/duckdb/avro.duckdb_extension",
	} {
		if finalEnv[name] != want {
			t.Errorf("the runtime stage sets %s=%q, want %q", name, finalEnv[name], want)
		}
	}
	// Every local COPY source exists and is not excluded from the build context.
	ignore, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stages {
		for _, c := range s.Commands {
			cp, ok := c.(*instructions.CopyCommand)
			if !ok || cp.From != "" {
				continue
			}
			for _, src := range cp.SourcePaths {
				if src == "." {
					continue
				}
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
				for _, line := range strings.Split(string(ignore), "\n") {
					line = strings.TrimSpace(line)
					if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "**") &&
						(strings.TrimSuffix(src, "/") == line || strings.HasPrefix(src, line+"/")) {
						t.Errorf("COPY %s: excluded by deploy/Dockerfile.dockerignore (%s)", src, line)
					}
				}
			}
		}
	}
}

// TestDockerignoreKeepsSources: the build context that deploy/Dockerfile.dockerignore
// leaves holds every file `go build ./cmd/fhirlake` reads (each package's non-test Go
// files, go.mod and go.sum) and the embedded dbt project and views.
func TestDockerignoreKeepsSources(t *testing.T) {
	f, err := os.Open(filepath.Join(root, "deploy", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-tags", "duckdb_arrow", "-deps",
		"-f", `{{if not .Standard}}{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .CgoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{"\n"}}{{end}}{{end}}{{end}}`,
		"./cmd/fhirlake")
	cmd.Dir = abs
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		dir, err := filepath.Rel(abs, fields[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range fields[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(dir, name)))
		}
	}
	if len(files) < 20 {
		t.Fatalf("go list found only %v", files)
	}
	for _, file := range files {
		if excluded, err := pm.MatchesOrParentMatches(file); err != nil || excluded {
			t.Errorf("%s is left out of the build context by deploy/Dockerfile.dockerignore (%v)", file, err)
		}
	}
}
