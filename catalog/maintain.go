package catalog

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// A table's metadata directory (<location>/metadata/) gains a metadata file at every
// commit and a manifest list and manifests at every snapshot; expiring a snapshot
// drops it from the metadata only (Expire: the data files are the lake's). What keeps
// the directory bounded:
//
//   - every table lists at most MetadataVersionsKept earlier metadata files, and the
//     committer deletes the one that falls off the list (Iceberg's table properties
//     write.metadata.previous-versions-max and write.metadata.delete-after-commit.enabled,
//     which iceberg-go, Iceberg Java and so a REST catalog honour);
//   - after an expiry that dropped snapshots, RemoveOrphanMetadata deletes the files of
//     the directory that the table's metadata no longer reaches: the expired snapshots'
//     manifest lists and manifests, metadata files a crash or another writer left.

// MetadataVersionsKept is how many earlier metadata files a table lists and keeps.
const MetadataVersionsKept = 5

// metadataProperties are the table properties that bound a table's metadata files.
func metadataProperties() iceberg.Properties {
	return iceberg.Properties{
		table.MetadataDeleteAfterCommitEnabledKey: "true",
		table.MetadataPreviousVersionsMaxKey:      strconv.Itoa(MetadataVersionsKept),
	}
}

// boundMetadata gives a table made before its metadata was bounded the properties
// that bound it, in one commit; a table that has them is returned as it is.
func boundMetadata(ctx context.Context, tbl *table.Table) (*table.Table, error) {
	want := metadataProperties()
	missing := iceberg.Properties{}
	for k, v := range want {
		if tbl.Properties()[k] != v {
			missing[k] = v
		}
	}
	if len(missing) == 0 {
		return tbl, nil
	}
	txn := tbl.NewTransaction()
	if err := txn.SetProperties(missing); err != nil {
		return tbl, fmt.Errorf("bound the metadata of %s: %w", tbl.Identifier(), err)
	}
	next, err := txn.Commit(ctx)
	if err != nil {
		return tbl, fmt.Errorf("bound the metadata of %s: %w", tbl.Identifier(), err)
	}
	return next, nil
}

// MetadataDir is the directory of a table's metadata files: its location's metadata/.
func MetadataDir(tbl *table.Table) string {
	return strings.TrimSuffix(tbl.Location(), "/") + "/metadata"
}

// RemoveOrphanMetadata deletes the files of the table's metadata directory that are
// older than grace and that its current metadata does not reach: its metadata file and
// the earlier ones it lists, every snapshot's manifest list and their manifests. It
// returns their locations. Nothing outside the metadata directory is ever deleted, so
// no data file: those are the consumer's and the compactor's. A file younger than
// grace may be another writer's commit in progress, and stays.
func RemoveOrphanMetadata(ctx context.Context, tbl *table.Table, grace time.Duration) ([]string, error) {
	res, err := tbl.DeleteOrphanFiles(ctx, table.WithLocation(MetadataDir(tbl)), table.WithFilesOlderThan(grace))
	if err != nil {
		return res.DeletedFiles, fmt.Errorf("remove orphan metadata of %s: %w", tbl.Identifier(), err)
	}
	return res.DeletedFiles, nil
}

// ExpireAndClean expires the table's snapshots as Expire does and, when snapshots
// went, removes the metadata files nothing reaches any more (RemoveOrphanMetadata,
// with grace). It returns the table as committed and the files removed.
func ExpireAndClean(ctx context.Context, tbl *table.Table, olderThan time.Duration, retainLast int, grace time.Duration) (*table.Table, []string, error) {
	before := len(tbl.Metadata().Snapshots())
	next, err := Expire(ctx, tbl, olderThan, retainLast)
	if err != nil || len(next.Metadata().Snapshots()) == before {
		return next, nil, err
	}
	removed, err := RemoveOrphanMetadata(ctx, next, grace)
	return next, removed, err
}
