package query

// The lake's format as the catalog reads it: the speed layer's files
// (scanLake), the raw dataset's columns (rawColumns) and the order that
// makes one version of a resource its latest (latestOrder). Each is
// defined here and nowhere else in the catalog.

import (
	"fmt"
	"os"
	"sort"
	"time"

	"fhirlake/lake"
)

// speedFile is one Parquet file of the speed layer.
type speedFile struct {
	path     string
	size     int64
	modified time.Time
}

// lakeScan is what a tenant's directory holds.
type lakeScan struct {
	manifest *lake.Manifest
	// datasets are the directories under speed/ holding files: resources
	// and the view datasets, each file list sorted by path.
	datasets map[string][]speedFile
}

func scanLake(root string) (*lakeScan, error) {
	m, err := lake.ReadManifest(os.DirFS(root))
	if err != nil {
		return nil, err
	}
	files, err := lake.ListSpeed(os.DirFS(root))
	if err != nil {
		return nil, fmt.Errorf("list speed layer: %w", err)
	}
	scan := &lakeScan{manifest: m, datasets: map[string][]speedFile{}}
	for _, f := range files {
		if f.Dataset != lake.RawDataset && !validViewName(f.Dataset) {
			continue
		}
		scan.datasets[f.Dataset] = append(scan.datasets[f.Dataset], speedFile{path: f.Path(root), size: f.Size, modified: f.Modified})
	}
	for _, files := range scan.datasets {
		sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	}
	return scan, nil
}

// latestOrder ranks the versions of a resource, newest first: the lake's
// latest-version order (docs/format/latest.md).
const latestOrder = lake.LatestOrder

// rawColumns is the raw dataset's schema as SQL, used when the lake is still
// empty so that queries find their views and return no rows.
var rawColumns = lake.RawColumnsSQL()
