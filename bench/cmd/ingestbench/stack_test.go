package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeStack writes a stack script whose `status` reports the given states
// and that records every other command in a log.
func fakeStack(t *testing.T, kafka, s3, sts string) (script, log string) {
	t.Helper()
	dir := t.TempDir()
	script, log = filepath.Join(dir, "stack"), filepath.Join(dir, "log")
	body := `#!/bin/sh
case "$1" in
status) printf 'SERVICE STATE    PID      ADDRESS\nkafka  ` + kafka + ` 1 127.0.0.1:19092\ns3     ` + s3 + ` 2 127.0.0.1:17070\nsts    ` + sts + ` 3 127.0.0.1:17080\n'; [ "` + kafka + s3 + sts + `" = runningrunningrunning ];;
*) echo "$@" >>` + log + `;;
esac
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, log
}

func commands(t *testing.T, log string) string {
	data, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", "; ")
}

func TestStackLeftAsFound(t *testing.T) {
	for _, c := range []struct {
		kafka, s3, sts string
		want           string
	}{
		{"running", "running", "running", ""},
		{"running", "running", "stopped", ""},
		{"stopped", "stopped", "stopped", "up; down"},
		{"stopped", "stopped", "running", "up; stop kafka s3"},
		{"running", "stopped", "stopped", "up; stop s3"},
	} {
		script, log := fakeStack(t, c.kafka, c.s3, c.sts)
		s := &stack{script: script}
		if err := s.ensure(10 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		s.restore()
		if got := commands(t, log); got != c.want {
			t.Errorf("kafka %s, s3 %s, sts %s: commands %q, want %q", c.kafka, c.s3, c.sts, got, c.want)
		}
	}
}
