package query

import (
	"fmt"

	"fhirlake/lake"
)

// stateFrom is what a session reads of a snapshot's state model, as the FROM of
// selectSQL and positionsSQL, and files, every file holding its rows (to describe
// their columns or scan their types). A model merged on read (lake.Model.Merged:
// docs/format/snapshot.md) is its base files' rows whose key is not among its
// changed keys, and its delta files' rows: one read_parquet over base and delta,
// filtered, so that file_index and file_row_number (positionExpr) stay those of
// the files read.
func (s *Session) stateFrom(m *lake.Manifest, model string) (from string, files []string, err error) {
	base, err := s.modelFiles(m, model)
	if err != nil {
		return "", nil, err
	}
	if !m.Models[model].Merged() {
		return readFiles(base), base, nil
	}
	changed, err := m.ChangedFiles("", model)
	if err != nil {
		return "", nil, err
	}
	delta, err := m.DeltaFiles("", model)
	if err != nil {
		return "", nil, err
	}
	for i, k := range changed {
		changed[i] = s.src.url(k)
	}
	for _, k := range delta {
		files = append(files, s.src.url(k))
	}
	files = append(base, files...)
	if len(changed) == 0 {
		return readFiles(files), files, nil
	}
	from = fmt.Sprintf(`(SELECT *, file_index, file_row_number FROM %s AS s
				WHERE file_index >= %d OR NOT EXISTS (SELECT 1 FROM %s AS c
					WHERE c.resource_type = s.resource_type AND c.resource_id = s.resource_id))`,
		readFiles(files), len(base), readFiles(changed))
	return from, files, nil
}
