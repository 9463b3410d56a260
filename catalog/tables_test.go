package catalog

import (
	"strings"
	"testing"
)

func TestTableNames(t *testing.T) {
	if err := TableNames([]string{"resources", "patient", "vitals_latest"}, []string{"patients", "encounter_summary"}); err != nil {
		t.Errorf("distinct names refused: %v", err)
	}
	for _, c := range []struct {
		datasets, marts []string
		want            string
	}{
		{[]string{"resources", "patient"}, []string{"patient_latest"},
			"iceberg table patient_latest would be both the state table of dataset patient and the table of mart patient_latest: rename the mart patient_latest (compact.project_dir)"},
		{[]string{"resources"}, []string{"resources"},
			"iceberg table resources would be both the change table of dataset resources and the table of mart resources: rename the mart resources (compact.project_dir)"},
		{[]string{"resources", "resources_latest"}, nil,
			"iceberg table resources_latest would be both the change table of dataset resources_latest and the state table of dataset resources: rename the view resources_latest (views_dir)"},
		{[]string{"resources", "observations"}, []string{"observations"},
			"rename the view observations (views_dir)"},
	} {
		err := TableNames(c.datasets, c.marts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: got %v, want %q", c.datasets, c.marts, err, c.want)
		}
	}
}
