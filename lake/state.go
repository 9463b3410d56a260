package lake

import (
	"fmt"
	"strings"
)

// A model merged on read (docs/format/snapshot.md): the base rows whose key is
// not among the changed keys, and the delta rows. This is Iceberg v2's equality
// delete: the changed keys are equality deletes on the model's key columns
// (Model.MergeKey: a state model's (resource_type, resource_id), a resource mart's
// id) applied to the base, the delta the data files added since.

// StateKeyColumns are the columns of a state model's changed keys, the key its rows
// are merged on.
var StateKeyColumns = []string{"resource_type", "resource_id"}

// StateSQL is a state model as one relation (a parenthesised subquery) for DuckDB,
// from the paths or URLs of its base files, changed keys and delta rows
// (MergeSQL on StateKeyColumns).
func StateSQL(base, changed, delta []string) string {
	return MergeSQL(StateKeyColumns, base, changed, delta)
}

// MergeSQL is a model merged on read as one relation (a parenthesised subquery) for
// DuckDB: the rows of its base files whose key columns match no row of its changed
// keys, and the rows of its delta files; the columns of base and delta are matched
// by name. It needs at least one base or delta file.
func MergeSQL(key, base, changed, delta []string) string {
	read := func(paths []string) string {
		quoted := make([]string, len(paths))
		for i, p := range paths {
			quoted[i] = "'" + strings.ReplaceAll(p, "'", "''") + "'"
		}
		return "read_parquet([" + strings.Join(quoted, ", ") + "], union_by_name = true)"
	}
	var parts []string
	switch {
	case len(base) > 0 && len(changed) > 0:
		on := make([]string, len(key))
		for i, k := range key {
			q := `"` + strings.ReplaceAll(k, `"`, `""`) + `"`
			on[i] = "c." + q + " = b." + q
		}
		parts = append(parts, "SELECT b.* FROM "+read(base)+" AS b ANTI JOIN "+read(changed)+
			" AS c ON "+strings.Join(on, " AND "))
	case len(base) > 0:
		parts = append(parts, "SELECT * FROM "+read(base))
	}
	if len(delta) > 0 {
		parts = append(parts, "SELECT * FROM "+read(delta))
	}
	return "(" + strings.Join(parts, " UNION ALL BY NAME ") + ")"
}

// ModelSQL is a model of the manifest as a reader reads it (MergeSQL on its key), its
// files under root, a local directory.
func (m *Manifest) ModelSQL(root, model string) (string, error) {
	base, err := m.Files(root, model)
	if err != nil {
		return "", err
	}
	changed, err := m.ChangedFiles(root, model)
	if err != nil {
		return "", err
	}
	delta, err := m.DeltaFiles(root, model)
	if err != nil {
		return "", err
	}
	if len(base)+len(delta) == 0 {
		return "", fmt.Errorf("snapshot %s has no table %s", m.SnapshotID, model)
	}
	return MergeSQL(m.Models[model].MergeKey(), base, changed, delta), nil
}
