package compactor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// RunResults is what the compactor reads of dbt's target/run_results.json.
type RunResults struct {
	Metadata struct {
		DBTVersion string `json:"dbt_version"`
	} `json:"metadata"`
	Elapsed float64      `json:"elapsed_time"`
	Results []NodeResult `json:"results"`
	// Parse is how dbt loaded the project (its log file): whole, or reusing the parse
	// it kept (parsecache.go).
	Parse ParseInfo `json:"-"`
}

// ParseInfo says how dbt loaded the project.
type ParseInfo struct {
	// Whole is set when dbt parsed the whole project, and Reason says why (no parse
	// kept, other vars, another dbt).
	Whole  bool
	Reason string
	// Files counts the files dbt parsed again beside the parse it kept.
	Files int
}

func (p ParseInfo) String() string {
	if p.Whole {
		return "whole: " + p.Reason
	}
	return fmt.Sprintf("kept, %d files again", p.Files)
}

// readParseInfo reads how dbt loaded the project from its log file, written as JSON
// lines (--log-format-file json): dbt's events UnableToPartialParse and
// PartialParsingEnabled.
func readParseInfo(path string) ParseInfo {
	var p ParseInfo
	f, err := os.Open(path)
	if err != nil {
		return p
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"UnableToPartialParse"`)) && !bytes.Contains(line, []byte(`"PartialParsingEnabled"`)) {
			continue
		}
		var ev struct {
			Data struct {
				Reason                  string
				Added, Changed, Deleted int
			}
			Info struct{ Name string }
		}
		if json.Unmarshal(line, &ev) != nil {
			continue
		}
		switch ev.Info.Name {
		case "UnableToPartialParse":
			p.Whole, p.Reason = true, strings.TrimSuffix(ev.Data.Reason, " Starting full parse.")
		case "PartialParsingEnabled":
			p.Files = ev.Data.Added + ev.Data.Changed + ev.Data.Deleted
		}
	}
	return p
}

// NodeResult is the outcome of one model, test or seed.
type NodeResult struct {
	// UniqueID such as model.fhirlake.patients or test.fhirlake.unique_patients_patient_id.<hash>.
	UniqueID string  `json:"unique_id"`
	Status   string  `json:"status"`
	Message  *string `json:"message"`
	// Failures is the number of rows a failing test returned.
	Failures *int64  `json:"failures"`
	Seconds  float64 `json:"execution_time"`
}

// Kind is the node's resource type: model, test, seed, snapshot, operation.
func (n NodeResult) Kind() string {
	kind, _, _ := strings.Cut(n.UniqueID, ".")
	return kind
}

// Name is the node's name without its package and, for a test, without the hash dbt
// appends to long test names.
func (n NodeResult) Name() string {
	parts := strings.Split(n.UniqueID, ".")
	if len(parts) < 3 {
		return n.UniqueID
	}
	return parts[2]
}

// OK reports whether the node passed: a model or seed built, a test passed or only
// warned.
func (n NodeResult) OK() bool {
	switch n.Status {
	case "success", "pass", "warn":
		return true
	}
	return false
}

func (n NodeResult) String() string {
	s := n.Kind() + " " + n.Name() + ": " + n.Status
	switch {
	case n.Kind() == "test" && n.Failures != nil && *n.Failures > 0:
		s += fmt.Sprintf(" (%d failing rows)", *n.Failures)
	case n.Message != nil && *n.Message != "" && n.Status != "skipped":
		msg := strings.Join(strings.Fields(*n.Message), " ")
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		s += " (" + msg + ")"
	}
	return s
}

// Failed returns the nodes that did not pass, failures and errors before the nodes
// skipped because of them, each group by id.
func (r *RunResults) Failed() []NodeResult {
	var out []NodeResult
	for _, n := range r.Results {
		if !n.OK() {
			out = append(out, n)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		si, sj := out[i].Status == "skipped", out[j].Status == "skipped"
		if si != sj {
			return sj
		}
		return out[i].UniqueID < out[j].UniqueID
	})
	return out
}

// Count returns how many nodes of the kind ran.
func (r *RunResults) Count(kind string) int {
	n := 0
	for _, x := range r.Results {
		if x.Kind() == kind {
			n++
		}
	}
	return n
}

// FailedTests counts the tests that failed or errored.
func (r *RunResults) FailedTests() int {
	n := 0
	for _, x := range r.Results {
		if x.Kind() == "test" && !x.OK() && x.Status != "skipped" {
			n++
		}
	}
	return n
}

// ReadRunResults parses a run_results.json.
func ReadRunResults(path string) (*RunResults, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &RunResults{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// BuildError is a dbt run that did not pass: the failing nodes by name, or, when dbt
// stopped before running any (a project that does not parse, a missing executable),
// the end of its output.
type BuildError struct {
	Failed []NodeResult
	// Output is the tail of dbt's output, for a run that left no results.
	Output string
	Err    error
}

func (e *BuildError) Error() string {
	if len(e.Failed) == 0 {
		msg := "dbt build"
		if e.Err != nil {
			msg += ": " + e.Err.Error()
		}
		if e.Output != "" {
			msg += "\n" + e.Output
		}
		return msg
	}
	var b strings.Builder
	failed, skipped := 0, 0
	for _, n := range e.Failed {
		if n.Status == "skipped" {
			skipped++
		} else {
			failed++
		}
	}
	fmt.Fprintf(&b, "dbt build: %d failed", failed)
	if skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", skipped)
	}
	b.WriteString(":")
	shown := 0
	for _, n := range e.Failed {
		if n.Status == "skipped" {
			continue
		}
		if shown == 20 {
			b.WriteString("; …")
			break
		}
		if shown > 0 {
			b.WriteString(";")
		}
		b.WriteString(" " + n.String())
		shown++
	}
	return b.String()
}

func (e *BuildError) Unwrap() error { return e.Err }

// Slowest names the n nodes that took longest, slowest first, with their seconds:
// where a run's time went.
func (r *RunResults) Slowest(n int) string {
	nodes := append([]NodeResult(nil), r.Results...)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Seconds > nodes[j].Seconds })
	var out []string
	for i := 0; i < n && i < len(nodes); i++ {
		out = append(out, fmt.Sprintf("%s %.1fs", nodes[i].UniqueID, nodes[i].Seconds))
	}
	return strings.Join(out, ", ")
}
