package worker

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// Two workers whose series carry the same labels (tenant "*" without
// serve.metrics_tenant_labels) must add up, not collide: a scrape that
// reports the same series twice fails as a whole.
func TestMergeFamilyAddsSameSeries(t *testing.T) {
	series := func(tenant string, v float64) *dto.Metric {
		return &dto.Metric{
			Label:   []*dto.LabelPair{{Name: proto.String("tenant"), Value: proto.String(tenant)}},
			Counter: &dto.Counter{Value: proto.Float64(v)},
		}
	}
	family := func(ms ...*dto.Metric) *dto.MetricFamily {
		return &dto.MetricFamily{Name: proto.String("fhirlake_query_view_builds_total"), Type: dto.MetricType_COUNTER.Enum(), Metric: ms}
	}
	into := family(series("*", 2), series("acme", 1))
	mergeFamily(into, family(series("*", 3), series("globex", 4)))
	got := map[string]float64{}
	for _, m := range into.Metric {
		got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	want := map[string]float64{"*": 5, "acme": 1, "globex": 4}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %q: got %v, want %v", k, got[k], v)
		}
	}
}
