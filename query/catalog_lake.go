package query

// The lake's format as the catalog reads it: the speed layer's files
// (scanLake), the raw dataset's columns (rawColumns) and the order that
// makes one version of a resource its latest (latestOrder). Each is
// defined here and nowhere else in the catalog.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// speedFile is one Parquet file of the speed layer.
type speedFile struct {
	path     string
	size     int64
	modified time.Time
}

// lakeScan is what a tenant's directory holds.
type lakeScan struct {
	manifest *Manifest
	// datasets are the directories under speed/ holding files: resources
	// and the view datasets, each file list sorted by path.
	datasets map[string][]speedFile
}

func scanLake(root string) (*lakeScan, error) {
	m, err := ReadManifest(root)
	if err != nil {
		return nil, err
	}
	scan := &lakeScan{manifest: m, datasets: map[string][]speedFile{}}
	speed := filepath.Join(root, "speed")
	sets, err := os.ReadDir(speed)
	if errors.Is(err, os.ErrNotExist) {
		return scan, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list speed layer: %w", err)
	}
	for _, ds := range sets {
		name := ds.Name()
		if !ds.IsDir() || (name != "resources" && !validViewName(name)) {
			continue
		}
		dates, err := os.ReadDir(filepath.Join(speed, name))
		if err != nil {
			return nil, fmt.Errorf("list speed layer: %w", err)
		}
		var files []speedFile
		for _, d := range dates {
			if !d.IsDir() || !strings.HasPrefix(d.Name(), "date=") {
				continue
			}
			dir := filepath.Join(speed, name, d.Name())
			entries, err := os.ReadDir(dir)
			if err != nil {
				return nil, fmt.Errorf("list speed layer: %w", err)
			}
			for _, e := range entries {
				if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".parquet") || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				info, err := e.Info()
				if err != nil {
					continue // removed since the listing
				}
				files = append(files, speedFile{path: filepath.Join(dir, e.Name()), size: info.Size(), modified: info.ModTime()})
			}
		}
		if len(files) > 0 {
			sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
			scan.datasets[name] = files
		}
	}
	return scan, nil
}

// latestOrder ranks the versions of a resource, newest first: by versionId
// (numerically when it is a number), then lastUpdated, then Kafka
// coordinates. The batch layer ranks the same way (int_resources__latest).
const latestOrder = `TRY_CAST(version_id AS BIGINT) DESC NULLS LAST, version_id DESC NULLS LAST,
	last_updated DESC NULLS LAST, "offset" DESC, "partition" DESC, topic DESC, ingest_time DESC`

// rawColumns is the raw dataset's schema, used when the lake is still empty
// so that queries find their views and return no rows.
const rawColumns = `tenant VARCHAR, resource_type VARCHAR, id VARCHAR, version_id VARCHAR,
	last_updated TIMESTAMPTZ, operation VARCHAR, topic VARCHAR, "partition" INTEGER,
	"offset" BIGINT, ingest_time TIMESTAMPTZ, resource VARCHAR`
