package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The documents whose shell examples TestDocCommands runs. Every ```sh block
// in them runs, in order, in one directory where `fhirlake demo` has left its
// lake, unless the line before its fence says why it cannot:
//
//	<!-- doc-test: skip: needs a Kubernetes cluster -->
var docFiles = []string{
	"README.md",
	"CONTRIBUTING.md",
	"docs/*.md",
	"docs/format/*.md",
	"deploy/local/README.md",
}

// docBlock is one ```sh block of a document.
type docBlock struct {
	file string
	line int // of the opening fence
	text string
	skip string // why it is not run; "" when it is
}

var skipDirective = regexp.MustCompile(`^<!--\s*doc-test:\s*skip:\s*(.+?)\s*-->$`)

// shellBlocks returns the ```sh blocks of one Markdown document.
func shellBlocks(file string, data []byte) []docBlock {
	return fencedBlocks(file, data, "sh")
}

func TestShellBlocks(t *testing.T) {
	doc := "text\n```sh\necho one\n```\n<!-- doc-test: skip: needs a cluster -->\n```sh\nkubectl get pods\n```\n```yaml\na: 1\n```\n"
	got := shellBlocks("x.md", []byte(doc))
	if len(got) != 2 {
		t.Fatalf("got %d blocks, want 2: %+v", len(got), got)
	}
	if got[0].text != "echo one\n" || got[0].skip != "" || got[0].line != 2 {
		t.Errorf("first block: got %+v", got[0])
	}
	if got[1].skip != "needs a cluster" || got[1].text != "kubectl get pods\n" {
		t.Errorf("second block: got %+v", got[1])
	}
}

// TestDocCommands runs every shell example of the README and the docs against
// a demo lake, as a reader who follows them would, so that none of them rots.
func TestDocCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the demo")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []docBlock
	for _, pattern := range docFiles {
		files, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, f)
			blocks = append(blocks, shellBlocks(rel, data)...)
		}
	}
	if len(blocks) == 0 {
		t.Fatal("no shell examples found: the document list is out of date")
	}

	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-tags", "duckdb_arrow", "-o", filepath.Join(bin, "fhirlake"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// `make demo` is `make build` and then this.
	runShell(t, work, "bin/fhirlake demo --quiet --log-level error >demo.out", 3*time.Minute)

	for _, b := range blocks {
		name := b.file + ":" + strconv.Itoa(b.line)
		if b.skip != "" {
			t.Logf("%s: not run: %s", name, b.skip)
			continue
		}
		t.Run(name, func(t *testing.T) {
			out := runShell(t, work, b.text, 3*time.Minute)
			t.Logf("%s\n%s", b.text, out)
		})
	}
}

// runShell runs script with bash -euo pipefail in dir and fails the test on a
// non-zero exit. The script runs in a process group of its own, killed when
// it ends, so a server it starts cannot outlive it.
func runShell(t *testing.T, dir, script string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("%v\n--- script\n%s--- output\n%s", err, script, out.String())
	}
	return out.String()
}

// TestQuickStart checks what the quick start's two commands stand for, which
// TestDocCommands does not run itself: `make demo` builds the binary and runs
// its demo (as TestDocCommands does first), and CI runs `make test`.
func TestQuickStart(t *testing.T) {
	root := filepath.Join("..", "..")
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^demo: build\b[^\n]*\n\t\./\$\(BIN\) demo$`).Match(makefile) {
		t.Error("the Makefile's demo target is no longer `build` then `./$(BIN) demo`: update TestDocCommands and the README")
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^make test$`).Match(ci) {
		t.Error(".ci/run does not run `make test`, the README's test command")
	}
}
