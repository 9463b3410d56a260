package lake

import (
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
)

// ListSpeed returns the speed files of the lake in fsys (os.DirFS of a tenant's
// root), sorted by key, with their size and modification time. Entries outside the
// layout (ParseSpeedKey), directories and links are left out, and so is a file
// removed while it is listed; a lake without a speed layer has no files.
func ListSpeed(fsys fs.FS) ([]SpeedFile, error) {
	var out []SpeedFile
	datasets, err := fs.ReadDir(fsys, path.Clean(SpeedPrefix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, ds := range datasets {
		if !ds.IsDir() || !ValidDataset(ds.Name()) {
			continue
		}
		dates, err := fs.ReadDir(fsys, path.Clean(DatasetPrefix(ds.Name())))
		if err != nil {
			return nil, err
		}
		for _, d := range dates {
			if !d.IsDir() {
				continue
			}
			dir := DatasetPrefix(ds.Name()) + d.Name()
			entries, err := fs.ReadDir(fsys, dir)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				f, ok := ParseSpeedKey(dir + "/" + e.Name())
				if !ok || !e.Type().IsRegular() {
					continue
				}
				info, err := e.Info()
				if err != nil {
					continue // removed since the listing
				}
				f.Size, f.Modified = info.Size(), info.ModTime()
				out = append(out, f)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Path is where the file is in a lake rooted at the local directory root.
func (f SpeedFile) Path(root string) string { return filepath.Join(root, filepath.FromSlash(f.Key)) }
