package lake

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// day is 2026-11-25 in UTC, the next day where it was written: partitions are UTC.
var day = time.Date(2026, 11, 26, 0, 30, 0, 0, time.FixedZone("CET", 3600))

func TestKeyRoundTrip(t *testing.T) {
	many := make([]Range, 40)
	for i := range many {
		many[i] = Range{Partition: int32(39 - i), First: 1_000_000 * int64(i), Last: 1_000_000*int64(i) + 999_999}
	}
	tests := []struct {
		name    string
		dataset string
		topic   string
		ranges  []Range
		key     string
		// want is what ParseSpeedName reads back; nil: the ranges, sorted.
		want *SpeedName
	}{
		{
			name: "one range", dataset: "resources", topic: "fhir.notifications", ranges: []Range{{3, 0, 784}},
			key: "speed/resources/date=2026-11-25/fhir.notifications-3-0-784.parquet",
		},
		{
			name: "a view, a topic with dashes and underscores", dataset: "observation_component", topic: "my_topic-with-dashes",
			ranges: []Range{{0, 5, 5}},
			key:    "speed/observation_component/date=2026-11-25/my_topic-with-dashes-0-5-5.parquet",
		},
		{
			name: "merged ranges in partition order", dataset: "patient", topic: "my_topic", ranges: []Range{{4, 7, 7}, {1, 5, 9}, {3, 100, 250}},
			key: "speed/patient/date=2026-11-25/my_topic-1-5-9_3-100-250_4-7-7.parquet",
		},
		{
			name: "a topic ending in an underscore", dataset: "resources", topic: "t_", ranges: []Range{{0, 1, 2}, {2, 3, 4}},
			key: "speed/resources/date=2026-11-25/t_-0-1-2_2-3-4.parquet",
		},
		{
			name: "too many ranges for one name", dataset: "resources", topic: "t", ranges: many,
			want: &SpeedName{Topic: "t", Ranges: []Range{{0, 39_000_000, 39_999_999}}, Omitted: 39},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := MergedKey(tt.dataset, day, tt.topic, tt.ranges)
			if tt.key != "" && key != tt.key {
				t.Errorf("MergedKey: got %s, want %s", key, tt.key)
			}
			if len(tt.ranges) == 1 {
				r := tt.ranges[0]
				if k := Key(tt.dataset, day, tt.topic, r.Partition, r.First, r.Last); k != key {
					t.Errorf("Key: got %s, MergedKey %s", k, key)
				}
			}
			f, ok := ParseSpeedKey(key)
			if !ok || f.Dataset != tt.dataset || f.Date != "2026-11-25" || f.Key != key || key != PartitionPrefix(tt.dataset, day)+f.Name {
				t.Fatalf("ParseSpeedKey(%s): got %+v %v", key, f, ok)
			}
			if len(f.Name)-len(".parquet") > MaxMergedName {
				t.Errorf("name of %d bytes, want at most %d", len(f.Name)-len(".parquet"), MaxMergedName)
			}
			want := SpeedName{Topic: tt.topic, Ranges: slices.Clone(tt.ranges)}
			slices.SortFunc(want.Ranges, func(a, b Range) int { return int(a.Partition - b.Partition) })
			if tt.want != nil {
				want = *tt.want
			}
			got, ok := ParseSpeedName(f.Name)
			if !ok || got.Topic != want.Topic || !slices.Equal(got.Ranges, want.Ranges) || got.Omitted != want.Omitted {
				t.Errorf("ParseSpeedName(%s): got %+v %v, want %+v", f.Name, got, ok, want)
			}
		})
	}
}

// TestMergedKeyHashesEveryRange: two sets of ranges that share their first range
// still get different names when shortened.
func TestMergedKeyHashesEveryRange(t *testing.T) {
	var a, b []Range
	for i := range 30 {
		a = append(a, Range{int32(i), 1_000_000_000, 1_000_000_000 + int64(i)})
		b = append(b, Range{int32(i), 1_000_000_000, 1_000_000_000 + int64(i)})
	}
	b[29].Last++
	if ka, kb := MergedKey("resources", day, "t", a), MergedKey("resources", day, "t", b); ka == kb {
		t.Errorf("both got %s", ka)
	}
}

func TestParseSpeedKey(t *testing.T) {
	tests := []struct {
		key                 string
		ok                  bool
		dataset, date, name string
	}{
		{"speed/resources/date=2026-11-25/fhir.notifications-3-0-784.parquet", true, "resources", "2026-11-25", "fhir.notifications-3-0-784.parquet"},
		{"speed/observation_component/date=2025-01-06/t-0-1-2.parquet", true, "observation_component", "2025-01-06", "t-0-1-2.parquet"},
		{"speed/resources/date=2026-11-25/any-name.parquet", true, "resources", "2026-11-25", "any-name.parquet"},
		{"speed/resources/date=2026-13-01/x.parquet", false, "", "", ""},
		{"speed/resources/date=x/x.parquet", false, "", "", ""},
		{"speed/resources/2026-11-25/x.parquet", false, "", "", ""},
		{"speed/resources/date=2026-11-25/.put-123", false, "", "", ""},
		{"speed/resources/date=2026-11-25/.get-1.parquet", false, "", "", ""},
		{"speed/resources/date=2026-11-25/x.json", false, "", "", ""},
		{"speed/Resources/date=2026-11-25/x.parquet", false, "", "", ""},
		{"speed/Resources Evil/date=2026-11-25/x.parquet", false, "", "", ""},
		{"speed/" + strings.Repeat("a", 129) + "/date=2026-11-25/x.parquet", false, "", "", ""},
		{"speed/resources/date=2026-11-25/sub/x.parquet", false, "", "", ""},
		{"speed/resources/date=2026-11-25/a\\..\\x.parquet", false, "", "", ""},
		{"speed//resources/date=2026-11-25/x.parquet", false, "", "", ""},
		{"speed/resources/date=2026-11-25/../../../../globex/x.parquet", false, "", "", ""},
		{"speed/../../globex/speed/resources/date=2026-11-25/x.parquet", false, "", "", ""},
		{"speed/resources/x.parquet", false, "", "", ""},
		{"batch/20261125T000000Z-abc/patients/data_0.parquet", false, "", "", ""},
		{ManifestKey, false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			f, ok := ParseSpeedKey(tt.key)
			if ok != tt.ok {
				t.Fatalf("ok: got %v, want %v", ok, tt.ok)
			}
			if ok && (f.Dataset != tt.dataset || f.Date != tt.date || f.Name != tt.name || f.Key != tt.key) {
				t.Errorf("got %+v, want dataset %s date %s name %s", f, tt.dataset, tt.date, tt.name)
			}
		})
	}
}

func TestParseSpeedName(t *testing.T) {
	tests := []struct {
		name string
		want *SpeedName
	}{
		{"ib1.notifications-3-100-250.parquet", &SpeedName{"ib1.notifications", []Range{{3, 100, 250}}, 0}},
		{"speed/resources/date=x/t-0-0-2.parquet", &SpeedName{"t", []Range{{0, 0, 2}}, 0}},
		{"t-0-1-2_5more-0123456789abcdef", &SpeedName{"t", []Range{{0, 1, 2}}, 5}},
		{"x-1-9-8.parquet", nil},
		{"x-1-2.parquet", nil},
		{"-1-2-3.parquet", nil},
		{"t-0-1-2_5more-0123.parquet", nil},
		{"t-0-1-2_0more-0123456789abcdef.parquet", nil},
		{"t-3-1-2_1-5-6.parquet", nil},
		{"t-0-1-2_x-5-6.parquet", nil},
		{"x.parquet", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseSpeedName(tt.name)
			if ok != (tt.want != nil) {
				t.Fatalf("ok: got %v (%+v), want %v", ok, got, tt.want != nil)
			}
			if ok && fmt.Sprint(got) != fmt.Sprint(*tt.want) {
				t.Errorf("got %+v, want %+v", got, *tt.want)
			}
		})
	}
}

func TestPrefixesAndGlobs(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{DatasetPrefix("patient"), "speed/patient/"},
		{PartitionPrefix("patient", day), "speed/patient/date=2026-11-25/"},
		{SpeedGlob(RawDataset), "speed/resources/*/*.parquet"},
		{ModelKey("20261125T000000Z-abc", "patients", "data_0.parquet"), "batch/20261125T000000Z-abc/patients/data_0.parquet"},
		{SnapshotManifestKey("20261125T000000Z-abc"), "batch/20261125T000000Z-abc/manifest.json"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

func TestCleanKey(t *testing.T) {
	for key, want := range map[string]bool{
		"speed/resources/date=2026-01-01/x.parquet": true,
		"_manifest/batch.json":                      true,
		"":                                          false,
		"/speed/x.parquet":                          false,
		"speed//x.parquet":                          false,
		"speed/./x.parquet":                         false,
		"speed/../x.parquet":                        false,
		"speed/x.parquet/":                          false,
		"speed\\x.parquet":                          false,
		"speed/x\x00.parquet":                       false,
	} {
		if got := CleanKey(key); got != want {
			t.Errorf("CleanKey(%q): got %v, want %v", key, got, want)
		}
	}
}
