package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is a consumer under test, run as a process of its own so that its
// memory and CPU time are its own.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	log    string
	start  time.Time
}

func startProc(name, logPath string, env []string, argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{}), log: logPath}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// alive reports an error once the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		if p.err == nil {
			return fmt.Errorf("%s exited early (exit status 0); last lines of %s:\n%s", p.name, p.log, tail(p.log, 20))
		}
		return fmt.Errorf("%s exited early (%w); last lines of %s:\n%s", p.name, p.err, p.log, tail(p.log, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits; after timeout it kills the process.
func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	// Signal and Kill fail only when the process has exited since, and
	// then exited is closed.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, timeout)
	}
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// fhirlakeConfig writes a configuration for one consumer run: its own
// topic, group and key prefix in every tenant's bucket; flush limits are
// left at their defaults, and memory.limit is memoryLimit unless "" or "0".
func fhirlakeConfig(path string, brokers []string, topic, dlq, group, prefix, metrics, workDir, memoryLimit string, tenants []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  brokers: [%q]\n  topics: [%q]\n  group: %q\n  dead_letter_topic: %q\n  partitions: 6\n",
		strings.Join(brokers, ","), topic, group, dlq)
	if memoryLimit != "" && memoryLimit != "0" {
		fmt.Fprintf(&b, "memory:\n  limit: %s\n", memoryLimit)
	}
	fmt.Fprintf(&b, "metrics:\n  listen: %q\nwork_dir: %q\ntenants:\n", metrics, workDir)
	for _, t := range tenants {
		fmt.Fprintf(&b, "  - name: %s\n    store:\n      type: s3\n      bucket: %s\n      prefix: %s\n      endpoint: %s\n      region: %s\n      path_style: true\n      access_key_env: %s\n      secret_key_env: %s\n",
			t, tenantBucket(t), prefix, os.Getenv("FHIRLAKE_S3_ENDPOINT"), envOr("FHIRLAKE_S3_REGION", "us-east-1"),
			tenantEnv(t, "ACCESS_KEY"), tenantEnv(t, "SECRET_KEY"))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// recordsRead follows a counter of records received on a consumer's
// metrics endpoint and stores when it first reached want.
func recordsRead(ctx context.Context, addr, counter string, want int, at *atomic.Int64) {
	cl := &http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		if m, err := scrape(cl, addr); err == nil && m[counter] >= float64(want) {
			at.Store(time.Now().UnixNano())
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scrape reads a Prometheus text endpoint into name → value (summed over
// label sets) and name{labels} → value.
func scrape(cl *http.Client, addr string) (map[string]float64, error) {
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body) // drained for reuse of the connection; the status is the error
		return nil, errors.New(resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		name := series
		if j := strings.IndexByte(series, '{'); j >= 0 {
			name = series[:j]
			m[series] += v
		}
		m[name] += v
	}
	return m, sc.Err()
}

func logPath(dir, name string) string { return filepath.Join(dir, name+".log") }
