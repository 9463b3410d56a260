package lake

import (
	"strings"
	"testing"
	"time"
)

func validLease() *Lease {
	at := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	return &Lease{
		Version: LeaseVersion, Tenant: "acme",
		Holder:   Holder{Host: "compactor-0", PID: 42, RunID: "0123456789abcdef"},
		Acquired: at, Renewed: at.Add(time.Minute), Expires: at.Add(3 * time.Minute),
	}
}

func TestLeaseValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(l *Lease)
		err    string
	}{
		{"valid", func(l *Lease) {}, ""},
		{"never renewed", func(l *Lease) { l.Renewed = l.Acquired }, ""},
		{"no version", func(l *Lease) { l.Version = 0 }, "version 0"},
		{"a newer version", func(l *Lease) { l.Version = LeaseVersion + 1 }, "version 2"},
		{"no run id", func(l *Lease) { l.Holder.RunID = "" }, "run id"},
		{"never acquired", func(l *Lease) { l.Acquired = time.Time{} }, "out of order"},
		{"renewed before acquired", func(l *Lease) { l.Renewed = l.Acquired.Add(-time.Second) }, "out of order"},
		{"expires when renewed", func(l *Lease) { l.Expires = l.Renewed }, "out of order"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := validLease()
			tc.change(l)
			_, encErr := l.Encode()
			for _, err := range []error{l.Validate(), encErr} {
				switch {
				case tc.err == "" && err != nil:
					t.Errorf("got %v, want a valid lease", err)
				case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
					t.Errorf("got %v, want an error with %q", err, tc.err)
				}
			}
		})
	}
}

func TestLeaseRoundTrip(t *testing.T) {
	l := validLease()
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"holder"`, `"host": "compactor-0"`, `"pid": 42`, `"run_id"`, `"acquired"`, `"renewed"`, `"expires"`, `"version": 1`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("encoded lease lacks %s:\n%s", field, b)
		}
	}
	got, err := DecodeLease(b)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *l {
		t.Errorf("round trip: got %+v, want %+v", got, l)
	}
	if _, err := DecodeLease([]byte(`{"version": 1, "holder": {"host": "h"}, "unknown": true}`)); err == nil || !strings.Contains(err.Error(), "run id") {
		t.Errorf("a lease without a run id decoded: %v", err)
	}
	if _, err := DecodeLease([]byte("not json")); err == nil || !strings.Contains(err.Error(), LeaseKey) {
		t.Errorf("garbage decoded: %v", err)
	}
}

func TestLeaseExpired(t *testing.T) {
	l := validLease()
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{l.Renewed, false},
		{l.Expires.Add(-time.Nanosecond), false},
		{l.Expires, true},
		{l.Expires.Add(time.Hour), true},
	} {
		if got := l.Expired(tc.at); got != tc.want {
			t.Errorf("Expired(%s) = %v, want %v (expires %s)", tc.at, got, tc.want, l.Expires)
		}
	}
	if a, b := NewRunID(), NewRunID(); a == b || len(a) != 16 {
		t.Errorf("run ids %q and %q: want two different 16-digit ids", a, b)
	}
}
