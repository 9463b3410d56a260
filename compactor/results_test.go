package compactor

import (
	"errors"
	"strings"
	"testing"
)

func TestReadRunResults(t *testing.T) {
	r, err := ReadRunResults("testdata/run_results_failed.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Metadata.DBTVersion, "1.12.0"; got != want {
		t.Errorf("dbt version: got %q, want %q", got, want)
	}
	if got, want := r.Count("model"), 4; got != want {
		t.Errorf("models: got %d, want %d", got, want)
	}
	if got, want := r.Count("test"), 4; got != want {
		t.Errorf("tests: got %d, want %d", got, want)
	}
	if got, want := r.FailedTests(), 1; got != want {
		t.Errorf("failed tests: got %d, want %d (a warning passes, a skip is not a failure of its own)", got, want)
	}
	var names []string
	for _, n := range r.Failed() {
		names = append(names, n.Kind()+" "+n.Name()+" "+n.Status)
	}
	want := []string{
		"model patients error",
		"test accepted_values_observations_status__registered__preliminary__final__amended__corrected__cancelled__entered_in_error__unknown fail",
		"model encounter_summary skipped",
		"test unique_encounter_summary_encounter_id skipped",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("failed nodes:\ngot  %q\nwant %q", names, want)
	}
}

func TestBuildErrorNamesFailures(t *testing.T) {
	r, err := ReadRunResults("testdata/run_results_failed.json")
	if err != nil {
		t.Fatal(err)
	}
	msg := (&BuildError{Failed: r.Failed()}).Error()
	for _, want := range []string{
		"dbt build: 2 failed, 2 skipped:",
		"model patients: error (Runtime Error in model patients (models/marts/patients.sql) Binder Error: Referenced column \"gender\" not found)",
		"test accepted_values_observations_status__registered__preliminary__final__amended__corrected__cancelled__entered_in_error__unknown: fail (1 failing rows)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "encounter_summary") {
		t.Errorf("message lists skipped nodes, want only their count:\n%s", msg)
	}
	cause := errors.New("exit status 2")
	if got := (&BuildError{Err: cause, Output: "Compilation Error"}).Error(); got != "dbt build: exit status 2\nCompilation Error" {
		t.Errorf("no results: got %q", got)
	}
}
