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
		if t := s.icebergTable(m, model); t != "" {
			return icebergPositionsFrom(t, base), base, nil
		}
		return readFiles(base), base, nil
	}
	changed, delta, err := s.mergedParts(m, model)
	if err != nil {
		return "", nil, err
	}
	files = append(base, delta...)
	if t := s.icebergTable(m, model); t != "" {
		// The table's position deletes drop the changed keys' base rows.
		return icebergPositionsFrom(t, files), files, nil
	}
	if len(changed) == 0 {
		return readFiles(files), files, nil
	}
	from = fmt.Sprintf(`(SELECT *, file_index, file_row_number FROM %s AS s
				WHERE file_index >= %d OR NOT EXISTS (SELECT 1 FROM %s AS c
					WHERE c.resource_type = s.resource_type AND c.resource_id = s.resource_id))`,
		readFiles(files), len(base), readFiles(changed))
	return from, files, nil
}

// mergedFrom is a snapshot's model as it reads without positions, as the FROM of a
// mart's view: lake.MergeSQL over its files as DuckDB reads them, on the model's key
// (a resource mart merged on read: its id; docs/format/snapshot.md); nil files when
// the snapshot has no rows of it.
func (s *Session) mergedFrom(m *lake.Manifest, model string) (from string, files []string, err error) {
	base, err := s.modelFiles(m, model)
	if err != nil {
		return "", nil, err
	}
	if !m.Models[model].Merged() {
		if len(base) == 0 {
			return "", nil, nil
		}
		if t := s.icebergTable(m, model); t != "" {
			return icebergScan(t), base, nil
		}
		return readFiles(base), base, nil
	}
	changed, delta, err := s.mergedParts(m, model)
	if err != nil {
		return "", nil, err
	}
	if len(base)+len(delta) == 0 {
		return "", nil, nil
	}
	if t := s.icebergTable(m, model); t != "" {
		return icebergScan(t), append(base, delta...), nil
	}
	return lake.MergeSQL(m.Models[model].MergeKey(), base, changed, delta), append(base, delta...), nil
}

// mergedParts are the URLs of a merged model's changed keys and delta files, as
// DuckDB reads them.
func (s *Session) mergedParts(m *lake.Manifest, model string) (changed, delta []string, err error) {
	if changed, err = m.ChangedFiles("", model); err != nil {
		return nil, nil, err
	}
	if delta, err = m.DeltaFiles("", model); err != nil {
		return nil, nil, err
	}
	for i, k := range changed {
		changed[i] = s.src.url(k)
	}
	for i, k := range delta {
		delta[i] = s.src.url(k)
	}
	return changed, delta, nil
}
