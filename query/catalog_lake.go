package query

// The lake's format as the catalog reads it: the speed layer's files and
// the manifest (lakeSource.scan) and the raw dataset's columns (rawColumns),
// each defined here and nowhere else in the catalog. The order that makes
// one version of a resource its latest is lake.LatestSQL's.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// speedFile is one Parquet file of the speed layer.
type speedFile struct {
	path     string
	size     int64
	modified time.Time
}

// lakeScan is what a tenant's lake holds.
type lakeScan struct {
	manifest *lake.Manifest
	// datasets are the directories under speed/ holding files: resources
	// and the view datasets, each file list sorted by path.
	datasets map[string][]speedFile
}

// lakeSource is where a session's lake lives: a local directory or a
// prefix of an S3 bucket.
type lakeSource interface {
	// base is the lake's root as DuckDB names it, without a trailing slash:
	// the directory, or s3://bucket/prefix.
	base() string
	// url is the file of key as DuckDB reads it.
	url(key string) string
	// list returns the speed files and the manifest (nil before the first
	// snapshot).
	list(ctx context.Context) ([]lake.SpeedFile, *lake.Manifest, error)
}

// dirSource is a lake in a local directory.
type dirSource struct{ root string }

func (d dirSource) base() string          { return d.root }
func (d dirSource) url(key string) string { return filepath.Join(d.root, filepath.FromSlash(key)) }

func (d dirSource) list(context.Context) ([]lake.SpeedFile, *lake.Manifest, error) {
	m, err := lake.ReadManifest(os.DirFS(d.root))
	if err != nil {
		return nil, nil, err
	}
	files, err := lake.ListSpeed(os.DirFS(d.root))
	if err != nil {
		return nil, nil, fmt.Errorf("list speed layer: %w", err)
	}
	return files, m, nil
}

// storeSource is a lake in an object store that DuckDB reads at s3://
// URLs under root (the store's own URL). The store lists it and reads
// the manifest with the tenant's credentials; DuckDB reads the Parquet
// files through httpfs with the same key.
type storeSource struct {
	store sink.Store
	root  string
	// The last manifest read and the object it was read from: a refresh
	// reads the manifest again only when its object changed.
	manifest    *lake.Manifest
	manifestObj sink.Object
}

func (s *storeSource) base() string          { return s.root }
func (s *storeSource) url(key string) string { return s.root + "/" + key }

func (s *storeSource) list(ctx context.Context) ([]lake.SpeedFile, *lake.Manifest, error) {
	objs, err := s.store.List(ctx, lake.SpeedPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("list speed layer: %w", err)
	}
	var files []lake.SpeedFile
	for _, o := range objs {
		f, ok := lake.ParseSpeedKey(o.Key)
		if !ok {
			continue
		}
		f.Size, f.Modified = o.Size, o.Modified
		files = append(files, f)
	}
	m, err := s.readManifest(ctx)
	if err != nil {
		return nil, nil, err
	}
	return files, m, nil
}

func (s *storeSource) readManifest(ctx context.Context) (*lake.Manifest, error) {
	objs, err := s.store.List(ctx, lake.ManifestKey)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var obj *sink.Object
	for i := range objs {
		if objs[i].Key == lake.ManifestKey {
			obj = &objs[i]
		}
	}
	if obj == nil {
		s.manifest, s.manifestObj = nil, sink.Object{}
		return nil, nil
	}
	if s.manifest != nil && obj.Size == s.manifestObj.Size && obj.Modified.Equal(s.manifestObj.Modified) {
		return s.manifest, nil
	}
	var buf bytes.Buffer
	if err := s.store.Get(ctx, lake.ManifestKey, &buf); err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := lake.DecodeManifest(buf.Bytes())
	if err != nil {
		return nil, err
	}
	s.manifest, s.manifestObj = m, *obj
	return m, nil
}

// snapshotManifest reads the manifest kept with snapshot id
// (lake.SnapshotManifestKey).
func (s *storeSource) snapshotManifest(ctx context.Context, id string) (*lake.Manifest, error) {
	var buf bytes.Buffer
	if err := s.store.Get(ctx, lake.SnapshotManifestKey(id), &buf); err != nil {
		return nil, fmt.Errorf("read the manifest of snapshot %s: %w", id, err)
	}
	m, err := lake.DecodeManifest(buf.Bytes())
	if err != nil {
		return nil, err
	}
	if m.SnapshotID != id {
		return nil, fmt.Errorf("the manifest of snapshot %s names snapshot %s", id, m.SnapshotID)
	}
	return m, nil
}

// scanLake lists the session's lake.
func (s *Session) scanLake(ctx context.Context) (*lakeScan, error) {
	files, m, err := s.src.list(ctx)
	if err != nil {
		return nil, err
	}
	if m, err = s.scanTables(ctx, m); err != nil {
		return nil, err
	}
	scan := &lakeScan{manifest: m, datasets: map[string][]speedFile{}}
	for _, f := range files {
		if f.Dataset != lake.RawDataset && !validViewName(f.Dataset) {
			continue
		}
		scan.datasets[f.Dataset] = append(scan.datasets[f.Dataset], speedFile{path: s.src.url(f.Key), size: f.Size, modified: f.Modified})
	}
	for _, files := range scan.datasets {
		sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	}
	s.setAside(scan, time.Now())
	return scan, nil
}

// modelFiles are the files of a snapshot's model as DuckDB reads them; nil
// for a model the snapshot does not have.
func (s *Session) modelFiles(m *lake.Manifest, model string) ([]string, error) {
	keys, err := m.Files("", model)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		keys[i] = s.src.url(filepath.ToSlash(k))
	}
	return keys, nil
}

// rawColumns is the raw dataset's schema as SQL, used when the lake is still
// empty so that queries find their views and return no rows.
var rawColumns = lake.RawColumnsSQL()
