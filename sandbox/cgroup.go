package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Limits bound one confined process.
type Limits struct {
	// Memory is the most it may use, in bytes; beyond it the kernel kills
	// it (cgroup) or its allocations fail (RLIMIT_AS). 0: no bound.
	Memory int64
	// CPUWeight is its share of the processors against its siblings, 1–10000
	// as cgroup v2's cpu.weight (100: an equal share). 0: 100.
	CPUWeight int
}

// Cgroups places processes in cgroups of their own under a parent made for
// the caller, in the caller's own cgroup: v2 (memory.max, cpu.weight) when
// the unified hierarchy has the memory controller, else v1
// (memory.limit_in_bytes, cpu.shares). Without a writable hierarchy it
// falls back to RLIMIT_AS and nice.
type Cgroups struct {
	memory string // parent for memory, "" if none
	cpu    string // parent for the CPU weight, "" if none
	v2     bool
}

// Mechanism says how Limit bounds memory: "cgroup2", "cgroup1" or
// "rlimit".
func (c *Cgroups) Mechanism() string {
	switch {
	case c.memory == "":
		return "rlimit"
	case c.v2:
		return "cgroup2"
	default:
		return "cgroup1"
	}
}

// NewCgroups makes the parent cgroups, named prefix-<pid>, under the
// caller's own, first removing the empty ones that a process of the same
// prefix, now gone, left behind. Errors only say why it falls back; the
// returned Cgroups always works.
func NewCgroups(prefix string) (*Cgroups, error) {
	c := &Cgroups{}
	name := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	own, err := ownCgroups()
	if err != nil {
		return c, err
	}
	if p, ok := own[""]; ok {
		dir := filepath.Join("/sys/fs/cgroup", p, name)
		SweepStale(filepath.Dir(dir), prefix, false)
		if hasController("/sys/fs/cgroup", p, "memory") && os.Mkdir(dir, 0o755) == nil {
			// A v2 parent hands its controllers down only when asked.
			_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0o644)
			c.memory, c.v2 = dir, true
			if hasController("/sys/fs/cgroup", filepath.Join(p, name), "cpu") {
				c.cpu = dir
			}
			return c, nil
		}
	}
	var errs []error
	for _, ctl := range []string{"memory", "cpu"} {
		p, ok := own[ctl]
		if !ok {
			continue
		}
		dir := filepath.Join("/sys/fs/cgroup", ctl, p, name)
		SweepStale(filepath.Dir(dir), prefix, false)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			errs = append(errs, err)
			continue
		}
		if ctl == "memory" {
			c.memory = dir
		} else {
			c.cpu = dir
		}
	}
	return c, errors.Join(errs...)
}

// SweepStale removes the directories prefix-<pid> under parent whose
// process no longer runs (killed before it could clean up), with the empty
// directories in them (everything in them with all, never for a cgroup);
// a cgroup with a process left stays.
func SweepStale(parent, prefix string, all bool) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		pid, err := strconv.Atoi(rest)
		if !ok || err != nil || !e.IsDir() || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if all {
			_ = os.RemoveAll(dir)
			continue
		}
		if subs, err := os.ReadDir(dir); err == nil {
			for _, sub := range subs {
				if sub.IsDir() {
					_ = os.Remove(filepath.Join(dir, sub.Name()))
				}
			}
		}
		_ = os.Remove(dir)
	}
}

// ownCgroups reads /proc/self/cgroup: controller → path ("" for v2).
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			out[ctl] = parts[2]
		}
	}
	return out, sc.Err()
}

func hasController(root, p, ctl string) bool {
	b, err := os.ReadFile(filepath.Join(root, p, "cgroup.controllers"))
	return err == nil && slicesContains(strings.Fields(string(b)), ctl)
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Limit bounds the process pid, named name among its siblings, and returns
// what releases its cgroups once it has exited. The process should not
// have started its work yet: a cgroup bounds only what is charged after
// it joins.
func (c *Cgroups) Limit(pid int, name string, l Limits) (release func(), err error) {
	var dirs []string
	release = func() {
		for _, d := range dirs {
			_ = os.Remove(d) // fails only while a process remains in it
		}
	}
	join := func(parent string, files map[string]string) error {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		dirs = append(dirs, dir)
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", f, err)
			}
		}
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
	weight := l.CPUWeight
	if weight <= 0 {
		weight = 100
	}
	switch {
	case c.memory == "" && l.Memory > 0:
		// Go and DuckDB reserve far more address space than they touch:
		// the limit is on address space, so it must be generous.
		lim := unix.Rlimit{Cur: uint64(l.Memory), Max: uint64(l.Memory)}
		if err := unix.Prlimit(pid, unix.RLIMIT_AS, &lim, nil); err != nil {
			return release, fmt.Errorf("sandbox: rlimit: %w", err)
		}
	case c.v2:
		files := map[string]string{"memory.swap.max": "0"}
		if l.Memory > 0 {
			files["memory.max"] = strconv.FormatInt(l.Memory, 10)
		}
		if c.cpu != "" {
			files["cpu.weight"] = strconv.Itoa(weight)
		}
		if err := join(c.memory, files); err != nil {
			return release, fmt.Errorf("sandbox: cgroup: %w", err)
		}
		return release, nil
	case c.memory != "":
		files := map[string]string{}
		if l.Memory > 0 {
			files["memory.limit_in_bytes"] = strconv.FormatInt(l.Memory, 10)
		}
		if err := join(c.memory, files); err != nil {
			return release, fmt.Errorf("sandbox: cgroup: %w", err)
		}
	}
	if c.cpu != "" && !c.v2 {
		// cpu.shares is v1's weight: 1024 is v2's 100.
		if err := join(c.cpu, map[string]string{"cpu.shares": strconv.Itoa(max(2, weight*1024/100))}); err != nil {
			return release, fmt.Errorf("sandbox: cgroup: %w", err)
		}
		return release, nil
	}
	if c.cpu == "" && weight < 100 {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, pid, 10); err != nil {
			return release, fmt.Errorf("sandbox: nice: %w", err)
		}
	}
	return release, nil
}

// Close removes the parent cgroups, which must be empty by then.
func (c *Cgroups) Close() error {
	var errs []error
	for _, d := range []string{c.memory, c.cpu} {
		if d != "" {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// LimitSelf bounds the calling process's address space by l.Memory
// (RLIMIT_AS), for a process that has no cgroup of its own.
func LimitSelf(l Limits) error {
	if l.Memory <= 0 {
		return nil
	}
	lim := unix.Rlimit{Cur: uint64(l.Memory), Max: uint64(l.Memory)}
	if err := unix.Setrlimit(unix.RLIMIT_AS, &lim); err != nil {
		return fmt.Errorf("sandbox: rlimit: %w", err)
	}
	return nil
}
