package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLimitPlacesAProcessInItsOwnCgroup(t *testing.T) {
	c, err := NewCgroups("fhirlake-sandbox-test")
	if c.Mechanism() == "rlimit" {
		t.Skipf("no writable memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	release, err := c.Limit(cmd.Process.Pid, "w1", Limits{Memory: 300 << 20})
	if err != nil {
		t.Fatal(err)
	}
	file := map[string]string{"cgroup1": "memory.limit_in_bytes", "cgroup2": "memory.max"}[c.Mechanism()]
	b, err := os.ReadFile(filepath.Join(c.memory, "w1", file))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(300<<20) {
		t.Errorf("%s: got %s, want %d", file, got, 300<<20)
	}
	procs, err := os.ReadFile(filepath.Join(c.memory, "w1", "cgroup.procs"))
	if err != nil || strings.TrimSpace(string(procs)) != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("cgroup.procs: got %q, %v, want the child's pid %d", procs, err, cmd.Process.Pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	release()
	if _, err := os.Stat(filepath.Join(c.memory, "w1")); !os.IsNotExist(err) {
		t.Errorf("the child's cgroup remains after release: %v", err)
	}
}

func TestSweepStaleRemovesTheDirectoriesOfGoneProcesses(t *testing.T) {
	dir := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "p-"+strconv.Itoa(gone.Process.Pid))
	live := filepath.Join(dir, "p-"+strconv.Itoa(os.Getpid()))
	other := filepath.Join(dir, "q-1")
	for _, d := range []string{stale, live, other} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	SweepStale(dir, "p", true)
	for d, want := range map[string]bool{stale: false, live: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", d, err == nil, want)
		}
	}
}
