package query

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"fhirlake/sink"
)

// Mirror keeps a local read-through copy of a tenant's speed layer: it
// downloads every object under speed/ that is missing or has another size,
// and removes local files whose object is gone. It returns the number of
// objects downloaded.
func Mirror(ctx context.Context, store sink.Store, dir string) (int, error) {
	objs, err := store.List(ctx, "speed/")
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	n := 0
	for _, o := range objs {
		dst := filepath.Join(dir, filepath.FromSlash(o.Key))
		want[dst] = true
		if info, err := os.Stat(dst); err == nil && info.Size() == o.Size {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return n, err
		}
		tmp, err := os.CreateTemp(filepath.Dir(dst), ".get-*")
		if err != nil {
			return n, err
		}
		if err := store.Get(ctx, o.Key, tmp); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return n, fmt.Errorf("mirror %s: %w", o.Key, err)
		}
		if err := tmp.Close(); err != nil {
			return n, err
		}
		if err := os.Rename(tmp.Name(), dst); err != nil {
			return n, err
		}
		n++
	}
	err = filepath.WalkDir(filepath.Join(dir, "speed"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && !want[p] {
			os.Remove(p)
		}
		return nil
	})
	return n, err
}
