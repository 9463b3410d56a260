package main

import (
	"errors"
	"fmt"
	"testing"

	"fhirlake/compactor"
	"fhirlake/lake"
)

// TestWithoutHeld: the daemon reports tenants skipped for a held lease apart from
// failed ones.
func TestWithoutHeld(t *testing.T) {
	held := fmt.Errorf("tenant acme: %w", &compactor.LeaseHeldError{Lease: lake.Lease{Holder: lake.Holder{Host: "h", PID: 1, RunID: "r"}}})
	failed := errors.New("tenant globex: dbt build: 1 test failed")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"none", nil, ""},
		{"only held", held, ""},
		{"only held, joined", errors.Join(held), ""},
		{"a failure", failed, failed.Error()},
		{"both", errors.Join(held, failed), failed.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withoutHeld(tc.err)
			if (got == nil) != (tc.want == "") || (got != nil && got.Error() != tc.want) {
				t.Errorf("got %v, want %q", got, tc.want)
			}
		})
	}
}
