package compactor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// dbt parses the whole project at every run unless the parse it saved in the target
// directory (partial_parse.msgpack) is still valid: same dbt, profile, target and
// command-line vars, and the checksums of the files it parsed. Parsing the built-in
// project costs seconds, a fixed cost of every run, large beside the rest of an
// incremental run. So, for the built-in project, the compactor keeps the vars the same
// from run to run: its run directory has a fixed path, and the values that change
// with every run go to a file the project reads while it executes (macro
// fhir_run_var); and it keeps dbt's saved parse per tenant and state mode between
// runs. dbt itself decides what to parse again: a changed file, a new version or
// other vars.

// runVarsFile is the file, in the run directory, of the vars that change with every
// run.
const runVarsFile = "run.json"

// changingVars are the vars that change with every run (dbt_project.yml).
var changingVars = []string{"speed_partitions", "previous_state", "snapshot_id", "watermark"}

// splitVars moves the changing vars of vars into dir/run.json and returns the
// others, with run_file naming it, for the command line.
func splitVars(vars map[string]any, dir string) (map[string]any, error) {
	run, rest := map[string]any{}, map[string]any{}
	for k, v := range vars {
		rest[k] = v
	}
	for _, k := range changingVars {
		if v, ok := rest[k]; ok {
			run[k] = v
			delete(rest, k)
		}
	}
	b, err := json.Marshal(run)
	if err != nil {
		return nil, fmt.Errorf("dbt run vars: %w", err)
	}
	path := filepath.Join(dir, runVarsFile)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	rest["run_file"] = path
	return rest, nil
}

// partialParse is where dbt saves its parse in a target directory.
const partialParse = "partial_parse.msgpack"

// restoreParse copies the saved parse at cache, if any, into the target directory.
func restoreParse(cache, target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	err := copyFile(cache, filepath.Join(target, partialParse))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// saveParse keeps the target directory's parse at cache for the next run, replacing
// the previous one whole (a rename), so that a run never reads half a file.
func saveParse(target, cache string) error {
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		return err
	}
	tmp := cache + ".tmp"
	if err := copyFile(filepath.Join(target, partialParse), tmp); err != nil {
		return err
	}
	return os.Rename(tmp, cache)
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(out, in)
	return err
}
