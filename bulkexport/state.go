package bulkexport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// stateName is the state file in an export's directory.
const stateName = "state.json"

// stateVersion is the state file's format.
const stateVersion = 1

// state is what an export has done so far, saved after each step so that a
// later run of the same request resumes it.
type state struct {
	Version int `json:"version"`
	// Request is the kick-off URL.
	Request string `json:"request"`
	// StatusURL is the kick-off's Content-Location, once accepted.
	StatusURL string `json:"status_url,omitempty"`
	// Accepted is the server's Date header on the kick-off's answer.
	Accepted time.Time `json:"accepted,omitzero"`
	// Manifest, once the export is complete on the server.
	Manifest *Manifest `json:"manifest,omitempty"`
	// Files are the manifest's output and deleted files.
	Files []fileState `json:"files,omitempty"`
}

// fileState is one file to download and load.
type fileState struct {
	Kind string `json:"kind"` // "output" or "deleted"
	Type string `json:"type"`
	URL  string `json:"url"`
	// Name is the local file, in the export's directory; while it is being
	// downloaded its bytes are in Name + ".part".
	Name string `json:"name"`
	// Validator is the ETag (or Last-Modified) the first answer carried: a
	// resumed range is asked for only if the file is still that one.
	Validator  string `json:"validator,omitempty"`
	Downloaded bool   `json:"downloaded,omitempty"`
	Loaded     bool   `json:"loaded,omitempty"`
}

// readState reads dir's state file; nil when there is none.
func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w (start over with --restart)", filepath.Join(dir, stateName), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: version %d, this build reads %d (start over with --restart)", filepath.Join(dir, stateName), st.Version, stateVersion)
	}
	return &st, nil
}

// save writes the state file atomically: a temporary file, synced, renamed
// over the old one.
func (st *state) save(dir string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, stateName))
}
