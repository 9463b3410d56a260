package compactor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	dbtproject "fhirlake/dbt"
)

// MartNames are the marts of a dbt project: the models under models/marts/, which a
// snapshot publishes, and so the batch tables they become (catalog.BatchTableName).
// projectDir is compact.project_dir; empty, the project built into the binary.
func MartNames(projectDir string) ([]string, error) {
	var fsys fs.FS = dbtproject.Project
	if projectDir != "" {
		fsys = os.DirFS(projectDir)
	}
	var out []string
	err := fs.WalkDir(fsys, "models/marts", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(path.Base(p), ".sql"); ok && !e.IsDir() {
			out = append(out, name)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the dbt project's marts: %w", err)
	}
	sort.Strings(out)
	return out, nil
}
