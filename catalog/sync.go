package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"golang.org/x/sync/errgroup"
)

// File is a Parquet file of the tenant's store that a table should hold.
type File struct {
	// Location is the file's full location, as the table's file IO reads it
	// (s3://bucket/key, or an absolute path).
	Location string
	// Size is its length in bytes: a file rewritten in place (an erasure) has another.
	Size int64
	// Modified is when the store last wrote it.
	Modified time.Time
}

// Change is what one Sync does to a table's file list.
type Change struct {
	// Add are files the table does not hold yet, and files rewritten since it
	// registered them (which are also in Remove).
	Add []string
	// Remove are files the table holds that are gone from the store (expired by the
	// compactor) or were rewritten in place.
	Remove []string
}

// Empty reports a change that commits nothing.
func (c Change) Empty() bool { return len(c.Add) == 0 && len(c.Remove) == 0 }

// Diff is the change that makes a table holding registered (location → size) hold
// exactly listed: every listed file once, none that is gone. It depends on nothing but
// its arguments, so a registrar that crashed anywhere computes from the table's
// committed state what is still to do, and registering twice adds nothing.
func Diff(registered map[string]int64, listed []File) Change {
	var c Change
	seen := make(map[string]bool, len(listed))
	for _, f := range listed {
		if seen[f.Location] {
			continue
		}
		seen[f.Location] = true
		size, ok := registered[f.Location]
		switch {
		case !ok:
			c.Add = append(c.Add, f.Location)
		case size != f.Size:
			c.Remove = append(c.Remove, f.Location)
			c.Add = append(c.Add, f.Location)
		}
	}
	for loc := range registered {
		if !seen[loc] {
			c.Remove = append(c.Remove, loc)
		}
	}
	sort.Strings(c.Add)
	sort.Strings(c.Remove)
	return c
}

// Summary properties of the snapshots Sync commits.
const (
	PropNewestModified = "fhirlake.newest-modified"
	PropFilesAdded     = "fhirlake.files-added"
	PropFilesRemoved   = "fhirlake.files-removed"
)

// Registered is the table's current data files, location → size in bytes.
func Registered(ctx context.Context, tbl *table.Table) (map[string]int64, error) {
	out := map[string]int64{}
	if tbl.CurrentSnapshot() == nil {
		return out, nil
	}
	scan := tbl.Scan()
	tasks, err := scan.PlanFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list files of %s: %w", tbl.Identifier(), err)
	}
	for _, t := range tasks {
		out[t.File.FilePath()] = t.File.FileSizeBytes()
	}
	return out, nil
}

// ErrStale is a commit refused because another writer committed to the table after
// this one read it: nothing was committed, and the next Sync starts from the new state.
var ErrStale = errors.New("the table changed since it was read")

// Sync commits the change that makes tbl hold exactly listed, in one transaction on
// the table as read: removed files first (an overwrite snapshot), then added ones (an
// append), each snapshot's summary carrying props and the newest modification time
// listed. It returns the change, empty when the table already held the files (then
// nothing is committed). A writer that committed in between makes it fail with
// ErrStale.
func Sync(ctx context.Context, tbl *table.Table, listed []File, props iceberg.Properties) (Change, *table.Table, error) {
	registered, err := Registered(ctx, tbl)
	if err != nil {
		return Change{}, tbl, err
	}
	change := Diff(registered, listed)
	if change.Empty() {
		return change, tbl, nil
	}
	summary := iceberg.Properties{}
	for k, v := range props {
		summary[k] = v
	}
	var newest time.Time
	for _, f := range listed {
		if f.Modified.After(newest) {
			newest = f.Modified
		}
	}
	if !newest.IsZero() {
		summary[PropNewestModified] = newest.UTC().Format(time.RFC3339Nano)
	}
	summary[PropFilesAdded] = strconv.Itoa(len(change.Add))
	summary[PropFilesRemoved] = strconv.Itoa(len(change.Remove))

	txn := tbl.NewTransaction()
	if err := txn.AssertRefSnapshotID(table.MainBranch); err != nil {
		return change, tbl, fmt.Errorf("pin %s: %w", tbl.Identifier(), err)
	}
	if len(change.Remove) > 0 {
		if err := txn.ReplaceDataFiles(ctx, change.Remove, nil, summary); err != nil {
			return change, tbl, fmt.Errorf("remove %d files from %s: %w", len(change.Remove), tbl.Identifier(), err)
		}
	}
	if len(change.Add) > 0 {
		files, err := dataFiles(ctx, tbl, change.Add)
		if err == nil {
			err = txn.AddDataFiles(ctx, files, summary)
		}
		if err != nil {
			return change, tbl, fmt.Errorf("add %d files to %s: %w", len(change.Add), tbl.Identifier(), err)
		}
	}
	next, err := txn.Commit(ctx)
	if err != nil {
		if isConflict(err) {
			return change, tbl, fmt.Errorf("commit %s: %w: %w", tbl.Identifier(), ErrStale, err)
		}
		return change, tbl, fmt.Errorf("commit %s: %w", tbl.Identifier(), err)
	}
	return change, next, nil
}

// footerReads bounds the Parquet footers read at once while adding files: each is a
// request to the tenant's store.
const footerReads = 8

// dataFiles reads each file's footer into the data file a manifest lists (row count,
// size, column statistics by field id). The footer is read against the table's schema
// under the files' own column names (fileSchema): iceberg-go's AddFiles would read it
// against the table's names and refuse a file whose column the table renamed.
func dataFiles(ctx context.Context, tbl *table.Table, locations []string) ([]iceberg.DataFile, error) {
	fs, err := tbl.FS(ctx)
	if err != nil {
		return nil, err
	}
	sc, spec, props := fileSchema(tbl.Schema()), tbl.Spec(), tbl.Properties()
	out := make([]iceberg.DataFile, len(locations))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(footerReads)
	for i, loc := range locations {
		g.Go(func() error {
			df, err := table.FileToDataFile(ctx, fs, loc, sc, spec, 0, props)
			if err != nil {
				return fmt.Errorf("%s: %w", loc, err)
			}
			out[i] = df
			return nil
		})
	}
	return out, g.Wait()
}

func isConflict(err error) bool {
	// a REST catalog answers 409 (ErrCommitFailed); a SQL catalog checks the
	// requirements itself and says "requirement failed"
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(err.Error(), "requirement failed:")
}

// Expire removes the table's snapshots older than olderThan, keeping at least the
// retainLast newest. Only metadata goes: the tables reference files the store keeps or
// the compactor expires, never files of their own, so no data file is deleted.
func Expire(ctx context.Context, tbl *table.Table, olderThan time.Duration, retainLast int) (*table.Table, error) {
	txn := tbl.NewTransaction()
	if err := txn.ExpireSnapshots(table.WithOlderThan(olderThan), table.WithRetainLast(retainLast), table.WithPostCommit(false)); err != nil {
		return tbl, fmt.Errorf("expire snapshots of %s: %w", tbl.Identifier(), err)
	}
	next, err := txn.Commit(ctx)
	if err != nil {
		return tbl, fmt.Errorf("expire snapshots of %s: %w", tbl.Identifier(), err)
	}
	return next, nil
}
