package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// stack drives deploy/local/stack: the benchmark brings up what is down
// and, at the end, stops exactly what it started.
type stack struct {
	script  string
	started []string // services this run started, to stop again
	all     bool     // the whole stack was down: `down` restores it
}

// serviceStates parses `stack status`: service → running | starting | stopped.
func (s *stack) serviceStates() (map[string]string, error) {
	out, err := exec.Command(s.script, "status").Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("%s status: %w", s.script, err)
	}
	states := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] == "SERVICE" {
			continue
		}
		states[f[0]] = f[1]
	}
	if len(states) == 0 {
		return nil, fmt.Errorf("%s status printed no services", s.script)
	}
	return states, nil
}

// ensure makes sure Kafka and S3 are up. A stack that is only partly
// down is usually a failure test restarting a service: wait for it first
// rather than race it.
func (s *stack) ensure(partialWait time.Duration) error {
	states, err := s.serviceStates()
	if err != nil {
		return err
	}
	down := stoppedOf(states)
	if len(down) > 0 && len(down) < len(needed) {
		logf("stack: down: %s; waiting up to %s for it to come back", strings.Join(down, ", "), partialWait)
		deadline := time.Now().Add(partialWait)
		for len(down) > 0 && time.Now().Before(deadline) {
			time.Sleep(min(2*time.Second, partialWait))
			if states, err = s.serviceStates(); err != nil {
				return err
			}
			down = stoppedOf(states)
		}
	}
	if len(down) == 0 && allRunning(states) {
		logf("stack: already running; it is left running")
		return nil
	}
	s.all = len(down) == len(needed) && noneRunning(states)
	s.started = down
	if len(down) > 0 {
		logf("stack: starting what is down (%s); it is stopped again at the end", strings.Join(down, ", "))
	} else {
		logf("stack: waiting until every service is ready")
	}
	cmd := exec.Command(s.script, "up")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s up: %w", s.script, err)
	}
	return nil
}

// restore stops what ensure started.
func (s *stack) restore() {
	if len(s.started) == 0 {
		return
	}
	args := append([]string{"stop"}, s.started...)
	if s.all {
		args = []string{"down"}
	}
	logf("stack: %s %s (restoring the state found)", s.script, strings.Join(args, " "))
	cmd := exec.Command(s.script, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		logf("stack: %v", err)
	}
	s.started = nil
}

// exportEnv sets the variables printed by `stack env` in this process,
// so that the consumers started from here inherit them.
func (s *stack) exportEnv() error {
	out, err := exec.Command(s.script, "env").Output()
	if err != nil {
		return fmt.Errorf("%s env: %w", s.script, err)
	}
	for k, v := range parseEnv(out) {
		os.Setenv(k, v)
	}
	return nil
}

// parseEnv reads `export NAME=value` lines, ignoring comments.
func parseEnv(out []byte) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	return env
}

// needed are the services the benchmark uses; the stack's others (STS, the
// Iceberg catalog, PostgreSQL, HAPI) may be up or down either way.
var needed = []string{"kafka", "s3"}

func stoppedOf(states map[string]string) []string {
	var out []string
	for _, svc := range needed {
		if st, ok := states[svc]; ok && st == "stopped" {
			out = append(out, svc)
		}
	}
	return out
}

// allRunning reports whether every service the benchmark needs is running.
func allRunning(states map[string]string) bool {
	for _, svc := range needed {
		if states[svc] != "running" {
			return false
		}
	}
	return true
}

// noneRunning reports whether no service of the stack is running or starting,
// so that `down` at the end restores what was found.
func noneRunning(states map[string]string) bool {
	for _, st := range states {
		if st != "stopped" {
			return false
		}
	}
	return true
}
