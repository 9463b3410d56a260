package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// pass runs the measured work once over its input and says how much it did.
type pass func() (work, error)

// work is what one or more passes did.
type work struct {
	resources int
	rows      int
	bytes     int64
}

func (w *work) add(o work) {
	w.resources += o.resources
	w.rows += o.rows
	w.bytes += o.bytes
}

// result is one line of the table.
type result struct {
	name string
	work
	wall time.Duration
	cpu  time.Duration
}

func (r result) perWall() float64 { return float64(r.resources) / r.wall.Seconds() }

// perCPU is resources per CPU-second: the rate of one core.
func (r result) perCPU() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.resources) / r.cpu.Seconds()
}

// mbPerCPU is megabytes (10^6) of input per CPU-second.
func (r result) mbPerCPU() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.bytes) / 1e6 / r.cpu.Seconds()
}

// measure runs p once to warm up, then repeatedly until minTime has passed
// (at least once), and reports wall-clock and CPU time. Garbage left by
// earlier measurements is collected first so that it is not charged here.
func measure(name string, minTime time.Duration, p pass) (result, error) {
	if _, err := p(); err != nil {
		return result{}, fmt.Errorf("%s: %w", name, err)
	}
	runtime.GC()
	res := result{name: name}
	start, cpu0 := time.Now(), cpuTime()
	for {
		w, err := p()
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", name, err)
		}
		res.add(w)
		if time.Since(start) >= minTime {
			break
		}
	}
	res.wall = time.Since(start)
	res.cpu = cpuTime() - cpu0
	return res, nil
}

// printTable writes the results as an aligned text table.
func printTable(w io.Writer, title string, rs []result) {
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tresources\trows\tresources/s\tresources/CPU-s\tMB/CPU-s\t")
	fmt.Fprintln(tw, strings.Repeat("-", 24)+"\t---------\t----\t-----------\t---------------\t--------\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\t\n",
			r.name, r.resources, r.rows, human(r.perWall()), human(r.perCPU()), r.mbPerCPU())
	}
	tw.Flush()
}

// human prints a rate with thousands as k.
func human(x float64) string {
	switch {
	case x >= 10_000:
		return fmt.Sprintf("%.0fk", x/1000)
	case x >= 1000:
		return fmt.Sprintf("%.1fk", x/1000)
	}
	return fmt.Sprintf("%.0f", x)
}
