package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procWatch samples a process's memory every 100 ms until stopped, and
// its CPU time and the machine's when a timeline is wanted.
type procWatch struct {
	pid      int
	timeline bool
	stop     chan struct{}
	stopOnce sync.Once // Stop may be called again, by a deferred cleanup
	done     chan struct{}

	mu      sync.Mutex
	peakRSS int64 // max VmRSS seen, bytes
	hwm     int64 // last VmHWM read (the kernel's own peak), bytes
	cpu     []cpuSample
}

// cpuSample is the process's CPU time at one moment.
type cpuSample struct {
	at   time.Time
	cpu  time.Duration
	busy time.Duration // the whole machine's busy time (all processes)
}

// machineBusy reads the machine's busy CPU time from /proc/stat.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / userHZ
}

// userHZ is the unit of the CPU times in /proc (clock ticks) on Linux.
const userHZ = 100

func watchProc(pid int, timeline bool) *procWatch {
	w := &procWatch{pid: pid, timeline: timeline, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *procWatch) sample() {
	rss, hwm, err := memStatus(w.pid)
	if err != nil {
		return
	}
	var cs *cpuSample
	if w.timeline {
		if cpu, err := cpuTime(w.pid); err == nil {
			cs = &cpuSample{time.Now(), cpu, machineBusy()}
		}
	}
	w.mu.Lock()
	w.peakRSS = max(w.peakRSS, rss)
	w.hwm = max(w.hwm, hwm)
	if cs != nil {
		w.cpu = append(w.cpu, *cs)
	}
	w.mu.Unlock()
}

// Timeline returns, for each step since start, the cores the process used
// and those the whole machine used, as text.
func (w *procWatch) Timeline(start time.Time, step time.Duration) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	last := cpuSample{at: start}
	for _, s := range w.cpu {
		if s.at.Sub(last.at) < step {
			continue
		}
		if last.busy != 0 {
			d := s.at.Sub(last.at).Seconds()
			fmt.Fprintf(&b, " %.1fs:%.2f/%.2f", s.at.Sub(start).Seconds(), (s.cpu-last.cpu).Seconds()/d, (s.busy-last.busy).Seconds()/d)
		}
		last = s
	}
	return b.String()
}

// Stop takes a last sample and returns the peak resident set size: the
// kernel's high-water mark when it is known, else the largest sample.
func (w *procWatch) Stop() int64 {
	w.stopOnce.Do(func() {
		w.sample()
		close(w.stop)
	})
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.hwm, w.peakRSS)
}

// memStatus reads VmRSS and VmHWM from /proc/<pid>/status, in bytes.
func memStatus(pid int) (rss, hwm int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			*dst = kb << 10
		}
	}
	return rss, hwm, nil
}

// cpuTime is the user + system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from the closing parenthesis.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() [3]float64 {
	var l [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
