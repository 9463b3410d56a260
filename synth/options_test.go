package synth

import (
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	valid := func(edit func(*Options)) Options {
		o := Options{Tenants: []string{"acme", "globex"}, Patients: 2}
		edit(&o)
		return o
	}
	tests := []struct {
		name string
		opts Options
		want string // substring of the error; "" for none
	}{
		{"minimal", valid(func(*Options) {}), ""},
		{"defaults", DefaultOptions(), ""},
		{"zero patients", valid(func(o *Options) { o.Patients = 0 }), ""},
		{"no tenants", valid(func(o *Options) { o.Tenants = nil }), "no tenants"},
		{"empty tenant", valid(func(o *Options) { o.Tenants = []string{""} }), `tenant ""`},
		{"uppercase tenant", valid(func(o *Options) { o.Tenants = []string{"Acme"} }), `tenant "Acme"`},
		{"dotted tenant", valid(func(o *Options) { o.Tenants = []string{"a.b"} }), `tenant "a.b"`},
		{"leading hyphen", valid(func(o *Options) { o.Tenants = []string{"-a"} }), `tenant "-a"`},
		{"long tenant", valid(func(o *Options) { o.Tenants = []string{strings.Repeat("a", 64)} }), "DNS label"},
		{"duplicate tenant", valid(func(o *Options) { o.Tenants = []string{"acme", "acme"} }), "listed twice"},
		{"negative patients", valid(func(o *Options) { o.Patients = -1 }), "patients -1"},
		{"update ratio above one", valid(func(o *Options) { o.UpdateRatio = 1.5 }), "update ratio"},
		{"delete ratio negative", valid(func(o *Options) { o.DeleteRatio = -0.1 }), "delete ratio"},
		{"delete ratio NaN", valid(func(o *Options) { o.DeleteRatio = math.NaN() }), "delete ratio"},
		{"unknown format", valid(func(o *Options) { o.Formats = []Format{"r6"} }), `unknown format "r6"`},
		{"negative per notification", valid(func(o *Options) { o.ResourcesPerNotification = -1 }), "resources per notification"},
		{"huge per notification", valid(func(o *Options) { o.ResourcesPerNotification = MaxResourcesPerNotification + 1 }), "resources per notification"},
		{"negative controls", valid(func(o *Options) { o.Controls = -1 }), "controls -1"},
		{"negative malformed", valid(func(o *Options) { o.Malformed = -1 }), "malformed -1"},
		{"negative unroutable", valid(func(o *Options) { o.Unroutable = -1 }), "unroutable -1"},
		{"header with space", valid(func(o *Options) { o.TenantHeader = "fhir tenant" }), "tenant header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if _, err := New(tt.opts); err != nil {
					t.Fatalf("New: got error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if _, err := New(tt.opts); err == nil {
				t.Fatalf("New: got no error, want one")
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Options{Patients: -1, UpdateRatio: 2}.Validate()
	for _, want := range []string{"no tenants", "patients -1", "update ratio 2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got error %v, want one containing %q", err, want)
		}
	}
}

func TestNewFillsDefaults(t *testing.T) {
	g, err := New(Options{Tenants: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	o := g.Options()
	if got, want := o.ResourcesPerNotification, 1; got != want {
		t.Errorf("got ResourcesPerNotification %d, want %d", got, want)
	}
	if got, want := o.TenantHeader, DefaultTenantHeader; got != want {
		t.Errorf("got TenantHeader %q, want %q", got, want)
	}
	if got, want := len(o.Formats), 2; got != want || o.Formats[0] != FormatR4Backport || o.Formats[1] != FormatR5 {
		t.Errorf("got Formats %v, want [%s %s]", o.Formats, FormatR4Backport, FormatR5)
	}
}

func TestNewCopiesSlices(t *testing.T) {
	tenants := []string{"acme"}
	g, err := New(Options{Tenants: tenants, Patients: 1})
	if err != nil {
		t.Fatal(err)
	}
	tenants[0] = "changed"
	if got := g.Options().Tenants[0]; got != "acme" {
		t.Errorf("got tenant %q after the caller's edit, want %q", got, "acme")
	}
}
