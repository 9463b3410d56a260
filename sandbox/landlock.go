// Package sandbox confines a process on Linux: Landlock limits the files it
// may open, a cgroup (v2 memory.max or v1 memory.limit_in_bytes) or
// RLIMIT_AS bounds its memory, and a cgroup's CPU weight (or nice) bounds
// its share of the processors.
package sandbox

import (
	"fmt"
	"os"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// Paths is what a confined process may still open once Restrict returns.
type Paths struct {
	// ReadOnly are directories (and their trees) and files it may read.
	ReadOnly []string
	// ReadWrite are directories it may read, write, create in and remove
	// from.
	ReadWrite []string
}

// runtimeReadOnly are what DuckDB and Go read at run time whatever the
// tenant: the processor count and memory of /proc and /sys, time zones,
// the system's certificates and resolver (for an S3 tenant's requests),
// and the shared libraries the dynamic loader opens for a DuckDB extension
// (httpfs needs libpthread and libc at LOAD). Missing ones are skipped.
var runtimeReadOnly = []string{
	"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache",
	"/proc/self", "/proc/meminfo", "/proc/stat", "/proc/cpuinfo", "/sys/devices/system/cpu", "/sys/fs/cgroup",
	"/usr/share/zoneinfo", "/etc/localtime",
	"/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/usr/share/ca-certificates",
	"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
}

// Restrict confines the calling process, every thread of it and whatever
// it starts, for good: from then on it may open only p's paths and the
// runtime's (runtimeReadOnly, /dev/null, /dev/urandom). It fails on a
// kernel without Landlock rather than run unconfined.
func Restrict(p Paths) error {
	var rules []landlock.Rule
	for _, d := range p.ReadOnly {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		if fi.IsDir() {
			rules = append(rules, landlock.RODirs(d))
		} else {
			rules = append(rules, landlock.ROFiles(d))
		}
	}
	for _, d := range p.ReadWrite {
		rules = append(rules, landlock.RWDirs(d))
	}
	for _, d := range runtimeReadOnly {
		fi, err := os.Stat(d)
		switch {
		case err != nil:
			continue
		case fi.IsDir():
			rules = append(rules, landlock.RODirs(d))
		default:
			rules = append(rules, landlock.ROFiles(d))
		}
	}
	rules = append(rules, landlock.RWFiles("/dev/null").IgnoreIfMissing(), landlock.ROFiles("/dev/urandom").IgnoreIfMissing())
	// V5 is the newest file-system access that needs no opt-in; the
	// network stays open (an S3 tenant reads over it).
	if err := landlock.V5.RestrictPaths(rules...); err != nil {
		return fmt.Errorf("sandbox: landlock: %w", err)
	}
	return nil
}

// LandlockABI is the kernel's Landlock ABI version, 0 without Landlock.
func LandlockABI() int {
	const createRulesetVersion = 1 // LANDLOCK_CREATE_RULESET_VERSION
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, createRulesetVersion)
	if errno != 0 {
		return 0
	}
	return int(v)
}
