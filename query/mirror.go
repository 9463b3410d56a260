package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// MirrorOptions tune SyncMirror.
type MirrorOptions struct {
	// Parallelism is how many objects download at once. Default: 8.
	Parallelism int
}

// MirrorStats describe one synchronisation.
type MirrorStats struct {
	// Listed counts the objects listed; Downloaded and Bytes those fetched
	// because they were new or changed; Deleted the local files removed
	// because their object is gone (or belongs to a snapshot no longer
	// current).
	Listed, Downloaded, Deleted int
	Bytes                       int64
	// Snapshot is the batch snapshot mirrored, "" when there is none.
	Snapshot string
	Duration time.Duration
}

// Mirror keeps a local read-through copy of a tenant's lake: see
// SyncMirror. It returns the number of objects downloaded.
func Mirror(ctx context.Context, store sink.Store, dir string) (int, error) {
	st, err := SyncMirror(ctx, store, dir, MirrorOptions{})
	return st.Downloaded, err
}

// SyncMirror brings dir up to date with the tenant's store, through the
// store's own client and credentials (DuckDB's httpfs cannot be loaded into
// this build). It lists the speed layer and the manifest, downloads only
// the objects that are new or whose size or modification time changed,
// dates each file with its object's modification time (which the views use
// to tell speed files newer than a snapshot's watermark), and removes local
// files whose object is gone. With a batch snapshot, its files are fetched
// before the manifest that names it is put in place, and the files of
// snapshots no longer current are removed after. Every key is checked to
// be a clean path inside dir; anything else is refused, so an object cannot
// write outside the tenant's mirror.
func SyncMirror(ctx context.Context, store sink.Store, dir string, o MirrorOptions) (out MirrorStats, err error) {
	start := time.Now()
	if o.Parallelism <= 0 {
		o.Parallelism = 8
	}
	var st MirrorStats
	defer func() { out.Duration = time.Since(start) }()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, err
	}
	speed, err := store.List(ctx, lake.SpeedPrefix)
	if err != nil {
		return st, err
	}
	manifests, err := store.List(ctx, lake.ManifestKey)
	if err != nil {
		return st, err
	}
	var want []sink.Object
	for _, obj := range speed {
		if speedKey(obj.Key) {
			want = append(want, obj)
		}
	}
	st.Listed = len(speed) + len(manifests)

	// The manifest first into memory: its snapshot's files are fetched
	// before it replaces the local one.
	var manifest []byte
	var m *lake.Manifest
	for _, obj := range manifests {
		if obj.Key != lake.ManifestKey {
			continue
		}
		var buf bytes.Buffer
		if err := store.Get(ctx, lake.ManifestKey, &buf); err != nil {
			return st, fmt.Errorf("mirror %s: %w", lake.ManifestKey, err)
		}
		if m, err = lake.DecodeManifest(buf.Bytes()); err != nil {
			return st, err
		}
		manifest = buf.Bytes()
		st.Snapshot = m.SnapshotID
		batch, err := store.List(ctx, m.Prefix())
		if err != nil {
			return st, err
		}
		st.Listed += len(batch)
		for _, obj := range batch {
			if lake.CleanKey(obj.Key) && strings.HasSuffix(obj.Key, ".parquet") {
				want = append(want, obj)
			}
		}
	}

	n, bytes, err := fetch(ctx, store, dir, want, o.Parallelism)
	st.Downloaded, st.Bytes = n, bytes
	if err != nil {
		return st, err
	}
	keep := map[string]bool{}
	for _, obj := range want {
		keep[filepath.Join(dir, filepath.FromSlash(obj.Key))] = true
	}
	manifestPath := filepath.Join(dir, filepath.FromSlash(lake.ManifestKey))
	// The snapshot current until now stays one more round: a session's views
	// still read it until they are rebuilt over the new one.
	if prev, err := lake.ReadManifest(os.DirFS(dir)); err == nil && prev != nil && (m == nil || prev.SnapshotID != m.SnapshotID) {
		keepTree(filepath.Join(dir, filepath.FromSlash(prev.Prefix())), keep)
	}
	if m != nil {
		if err := writeFileAtomic(manifestPath, manifest); err != nil {
			return st, err
		}
	} else if err := os.Remove(manifestPath); err == nil {
		st.Deleted++
	}
	for _, sub := range []string{lake.SpeedPrefix, lake.BatchPrefix} {
		st.Deleted += prune(filepath.Join(dir, sub), keep)
	}
	return st, nil
}

// speedKey accepts the keys of speed files (lake.ParseSpeedKey) of the datasets
// a session reads: the raw dataset and those that can be a view's name.
func speedKey(key string) bool {
	f, ok := lake.ParseSpeedKey(key)
	return ok && (f.Dataset == lake.RawDataset || validViewName(f.Dataset))
}

// fetch downloads the objects missing locally or changed, parallel at most
// at once, each into a temporary file renamed into place and dated with the
// object's modification time.
func fetch(ctx context.Context, store sink.Store, dir string, objs []sink.Object, parallel int) (int, int64, error) {
	var todo []sink.Object
	for _, o := range objs {
		dst := filepath.Join(dir, filepath.FromSlash(o.Key))
		if info, err := os.Stat(dst); err == nil && info.Size() == o.Size && (o.Modified.IsZero() || info.ModTime().Equal(o.Modified)) {
			continue
		}
		todo = append(todo, o)
	}
	var (
		mu    sync.Mutex
		n     int
		bytes int64
		errs  []error
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, parallel)
	for _, o := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := download(ctx, store, dir, o)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				cancel()
				return
			}
			n++
			bytes += o.Size
		}()
	}
	wg.Wait()
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return n, bytes, errors.Join(errs...)
}

func download(ctx context.Context, store sink.Store, dir string, o sink.Object) error {
	dst := filepath.Join(dir, filepath.FromSlash(o.Key))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".get-*")
	if err != nil {
		return err
	}
	if err := store.Get(ctx, o.Key, tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("mirror %s: %w", o.Key, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if !o.Modified.IsZero() {
		if err := os.Chtimes(tmp.Name(), o.Modified, o.Modified); err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// prune removes the files under root that keep does not name, and the
// directories left empty; it returns how many files it removed. It is best
// effort: what it cannot read or remove now is left for the next
// synchronisation.
func prune(root string, keep map[string]bool) int {
	n := 0
	var dirs []string
	// The callback returns no error of its own, so neither does WalkDir.
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			// WalkDir reports only a directory it cannot read: root when it
			// does not exist (batch/ before the first snapshot), or one that
			// is unreadable now. Nothing in it is pruned this time.
			return filepath.SkipDir
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if !keep[p] {
			// A download still in flight in another process is not ours to
			// remove; ours finished before prune runs.
			if os.Remove(p) == nil && !strings.HasPrefix(d.Name(), ".get-") {
				n++
			}
		}
		return nil
	})
	for i := len(dirs) - 1; i > 0; i-- {
		os.Remove(dirs[i]) // fails unless empty
	}
	return n
}

// keepTree adds every file under root to keep. A directory it cannot read
// keeps nothing, but prune cannot read it either and so removes nothing there.
func keepTree(root string, keep map[string]bool) {
	// The callback returns no error, so neither does WalkDir.
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			keep[p] = true
		}
		return nil
	})
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".get-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
