package config

import (
	"strings"
	"testing"
)

func TestIcebergValidate(t *testing.T) {
	ok := DefaultIceberg()
	if err := ok.Validate(); err != nil {
		t.Fatalf("no catalog: %v", err)
	}
	for _, tc := range []struct {
		change func(*Iceberg)
		want   string
	}{
		{func(c *Iceberg) { c.Catalog = "hive"; c.URI = "x" }, `iceberg.catalog: must be sql or rest, got "hive"`},
		{func(c *Iceberg) { c.Catalog = "sql" }, "iceberg.uri: required with catalog sql"},
		{func(c *Iceberg) { c.Catalog = "rest"; c.URI = "localhost:8181" }, "iceberg.uri: a rest catalog's uri is http:// or https://"},
		{func(c *Iceberg) { c.Catalog = "sql"; c.URIEnv = "FHIRLAKE_TEST_UNSET_URI" }, "iceberg.uri_env: FHIRLAKE_TEST_UNSET_URI is not set"},
		{func(c *Iceberg) { c.Catalog = "sql"; c.URI = "c.db"; c.Warehouse = "/abs" }, "iceberg.warehouse: a relative key prefix"},
		{func(c *Iceberg) { c.Catalog = "sql"; c.URI = "c.db"; c.TokenEnv = "T" }, "iceberg.token_env: only a rest catalog"},
		{func(c *Iceberg) { c.Catalog = "sql"; c.URI = "c.db"; c.Interval = 0 }, "iceberg.interval: must be at least 1s"},
	} {
		c := DefaultIceberg()
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", c, err, tc.want)
		}
	}
}

func TestIcebergSectionParses(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte("iceberg:\n  catalog: rest\n  uri: http://127.0.0.1:17100\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Iceberg.Catalog != "rest" || cfg.Iceberg.Warehouse != "_iceberg" || cfg.Iceberg.Interval.Seconds() != 60 {
		t.Fatalf("parsed %+v: want the given catalog over the defaults", cfg.Iceberg)
	}
}
