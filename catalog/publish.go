package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go"
	icebergio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
)

// Iceberg's position delete files: the reserved field ids of their two columns
// (the spec's file_path and pos).
const (
	PosDeleteFilePathID = 2147483546
	PosDeletePosID      = 2147483545
)

// FileSet is what a table should hold after a Publish: data files, and position
// delete files over them (columns file_path and pos, PosDeleteFilePathID and
// PosDeletePosID), all referenced where they are.
type FileSet struct {
	Data    []string
	Deletes []string
}

// Published is what one Publish did to a table's files.
type Published struct {
	// Added and Removed are data files; DeletesAdded and DeletesRemoved position
	// delete files.
	Added, Removed               []string
	DeletesAdded, DeletesRemoved []string
	// Snapshots is how many table snapshots the commit made: 0 when the table already
	// held the set.
	Snapshots int
}

// Summary properties of the snapshots Publish commits.
const (
	PropDeletesAdded   = "fhirlake.deletes-added"
	PropDeletesRemoved = "fhirlake.deletes-removed"
)

// current is a table's live files, data and delete, by location.
type current struct {
	data, deletes map[string]iceberg.DataFile
}

func liveFiles(ctx context.Context, tbl *table.Table) (current, error) {
	cur := current{data: map[string]iceberg.DataFile{}, deletes: map[string]iceberg.DataFile{}}
	snap := tbl.CurrentSnapshot()
	if snap == nil {
		return cur, nil
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return cur, err
	}
	manifests, err := snap.Manifests(fs)
	if err != nil {
		return cur, fmt.Errorf("manifests of %s: %w", tbl.Identifier(), err)
	}
	for _, mf := range manifests {
		for e, err := range mf.Entries(fs, true) {
			if err != nil {
				return cur, fmt.Errorf("manifest %s of %s: %w", mf.FilePath(), tbl.Identifier(), err)
			}
			df := e.DataFile()
			if df.ContentType() == iceberg.EntryContentData {
				cur.data[df.FilePath()] = df
			} else {
				cur.deletes[df.FilePath()] = df
			}
		}
	}
	return cur, nil
}

// diffSet is the change from the files held to the files wanted, each list sorted.
func diffSet(held map[string]iceberg.DataFile, want []string) (add, remove []string) {
	seen := map[string]bool{}
	for _, loc := range want {
		if seen[loc] {
			continue
		}
		seen[loc] = true
		if _, ok := held[loc]; !ok {
			add = append(add, loc)
		}
	}
	for loc := range held {
		if !seen[loc] {
			remove = append(remove, loc)
		}
	}
	sort.Strings(add)
	sort.Strings(remove)
	return add, remove
}

// Publish commits the change that makes tbl hold exactly set, in one commit on the
// table as read (a writer that committed in between makes it fail with ErrStale).
// Files the table holds and set names stay as they are (a base carried from an
// earlier publication keeps its sequence number); files set does not name are
// removed, data and delete files alike; new data files are added; new position
// delete files are added last, with a sequence number above every data file they
// may delete from. The commit is one snapshot when nothing is removed or no delete
// file is added; otherwise two: the removals with the new data files (an
// overwrite), then the new delete files (a delete), whose end state is the set.
// Every snapshot's summary carries props. A table that already holds set commits
// nothing, so publishing the same set twice is harmless.
func Publish(ctx context.Context, tbl *table.Table, set FileSet, props iceberg.Properties) (*table.Table, Published, error) {
	var p Published
	cur, err := liveFiles(ctx, tbl)
	if err != nil {
		return tbl, p, err
	}
	p.Added, p.Removed = diffSet(cur.data, set.Data)
	p.DeletesAdded, p.DeletesRemoved = diffSet(cur.deletes, set.Deletes)
	if len(p.Added)+len(p.Removed)+len(p.DeletesAdded)+len(p.DeletesRemoved) == 0 {
		return tbl, p, nil
	}
	summary := iceberg.Properties{}
	for k, v := range props {
		summary[k] = v
	}
	summary[PropFilesAdded] = strconv.Itoa(len(p.Added))
	summary[PropFilesRemoved] = strconv.Itoa(len(p.Removed))
	summary[PropDeletesAdded] = strconv.Itoa(len(p.DeletesAdded))
	summary[PropDeletesRemoved] = strconv.Itoa(len(p.DeletesRemoved))

	added, err := dataFiles(ctx, tbl, p.Added)
	if err != nil {
		return tbl, p, fmt.Errorf("read data files for %s: %w", tbl.Identifier(), err)
	}
	deletes, err := positionDeleteFiles(ctx, tbl, p.DeletesAdded)
	if err != nil {
		return tbl, p, fmt.Errorf("read delete files for %s: %w", tbl.Identifier(), err)
	}
	txn := tbl.NewTransaction()
	if err := txn.AssertRefSnapshotID(table.MainBranch); err != nil {
		return tbl, p, fmt.Errorf("pin %s: %w", tbl.Identifier(), err)
	}
	removing := len(p.Removed)+len(p.DeletesRemoved) > 0
	if removing || len(deletes) == 0 {
		removeData := pick(cur.data, p.Removed)
		removeDeletes := pick(cur.deletes, p.DeletesRemoved)
		if err := txn.ReplaceFiles(ctx, removeData, added, removeDeletes, summary); err != nil {
			return tbl, p, fmt.Errorf("replace files of %s: %w", tbl.Identifier(), err)
		}
		p.Snapshots++
		added = nil
	}
	if len(deletes) > 0 {
		// A row delta's delete files take the new snapshot's sequence number, so they
		// apply to every data file the table holds, the ones added with them included.
		if err := txn.NewRowDelta(summary).AddRows(added...).AddDeletes(deletes...).Commit(ctx); err != nil {
			return tbl, p, fmt.Errorf("add delete files to %s: %w", tbl.Identifier(), err)
		}
		p.Snapshots++
	}
	next, err := txn.Commit(ctx)
	if err != nil {
		p.Snapshots = 0
		if isConflict(err) {
			return tbl, p, fmt.Errorf("commit %s: %w: %w", tbl.Identifier(), ErrStale, err)
		}
		return tbl, p, fmt.Errorf("commit %s: %w", tbl.Identifier(), err)
	}
	return next, p, nil
}

func pick(files map[string]iceberg.DataFile, locations []string) []iceberg.DataFile {
	out := make([]iceberg.DataFile, len(locations))
	for i, loc := range locations {
		out[i] = files[loc]
	}
	return out
}

// positionDeleteFiles reads each position delete file's footer for its row count.
func positionDeleteFiles(ctx context.Context, tbl *table.Table, locations []string) ([]iceberg.DataFile, error) {
	if len(locations) == 0 {
		return nil, nil
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]iceberg.DataFile, 0, len(locations))
	for _, loc := range locations {
		f, err := fs.Open(loc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		size, err := f.Seek(0, 2)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		rdr, err := file.NewParquetReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		rows := rdr.NumRows()
		if err := checkPositionDeleteSchema(rdr); err != nil {
			rdr.Close()
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		rdr.Close()
		b, err := iceberg.NewDataFileBuilder(*iceberg.UnpartitionedSpec, iceberg.EntryContentPosDeletes, loc,
			iceberg.ParquetFile, nil, nil, nil, rows, size)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		out = append(out, b.Build())
	}
	return out, nil
}

// checkPositionDeleteSchema refuses a file that is not a position delete file: its
// first two columns must be file_path and pos with Iceberg's field ids, or every
// reader would take it for something else.
func checkPositionDeleteSchema(rdr *file.Reader) error {
	sc := rdr.MetaData().Schema
	if sc.NumColumns() < 2 {
		return fmt.Errorf("not a position delete file: %d columns", sc.NumColumns())
	}
	for i, want := range []struct {
		name string
		id   int32
	}{{"file_path", PosDeleteFilePathID}, {"pos", PosDeletePosID}} {
		col := sc.Column(i)
		if col.Name() != want.name || col.SchemaNode().FieldID() != want.id {
			return fmt.Errorf("not a position delete file: column %d is %s (field id %d), want %s (field id %d)",
				i, col.Name(), col.SchemaNode().FieldID(), want.name, want.id)
		}
	}
	return nil
}

// BaseFile is a data file as DuckDB reads it (Path: a local path, or an s3:// URL
// that db reads through httpfs) and as the table knows it (Location; for the
// compactor's tables the same).
type BaseFile struct {
	Path, Location string
}

// WritePositionDeletes writes to out, through db (DuckDB), the position delete file
// of the rows of base whose key columns hold a key of changed (Parquet files of keys):
// file_path (the base file's Location) and pos (the row's position in it, from 0),
// sorted, with Iceberg's field ids. The key columns are keys, or with none every
// column of the changed files (a state model's changed keys are resource_type and
// resource_id). It returns how many rows it deletes; with none it writes nothing.
func WritePositionDeletes(ctx context.Context, db *sql.DB, base []BaseFile, changed []string, keys []string, out string) (int64, error) {
	if len(base) == 0 || len(changed) == 0 {
		return 0, nil
	}
	changedList := make([]string, len(changed))
	for i, c := range changed {
		changedList[i] = sqlString(c)
	}
	if len(keys) == 0 {
		var err error
		if keys, err = columns(ctx, db, "read_parquet(["+strings.Join(changedList, ", ")+"], union_by_name = true)"); err != nil {
			return 0, fmt.Errorf("position deletes: the changed keys' columns: %w", err)
		}
	}
	if len(keys) == 0 {
		return 0, errors.New("position deletes: no key columns")
	}
	paths, cases := make([]string, len(base)), make([]string, len(base))
	for i, b := range base {
		paths[i] = sqlString(b.Path)
		cases[i] = "WHEN " + sqlString(b.Path) + " THEN " + sqlString(b.Location)
	}
	cond := make([]string, len(keys))
	cols := make([]string, len(keys))
	for i, k := range keys {
		cond[i] = "c." + quoteIdent(k) + " = b." + quoteIdent(k)
		cols[i] = quoteIdent(k)
	}
	sel := fmt.Sprintf(`SELECT CASE b.filename %s END AS file_path, b.file_row_number::BIGINT AS pos
		FROM read_parquet([%s], filename = true, file_row_number = true) AS b
		SEMI JOIN (SELECT DISTINCT %s FROM read_parquet([%s], union_by_name = true)) AS c ON %s
		ORDER BY file_path, pos`,
		strings.Join(cases, " "), strings.Join(paths, ", "), strings.Join(cols, ", "), strings.Join(changedList, ", "),
		strings.Join(cond, " AND "))
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM ("+sel+")").Scan(&n); err != nil {
		return 0, fmt.Errorf("position deletes: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	_, err := db.ExecContext(ctx, fmt.Sprintf("COPY (%s) TO %s (FORMAT parquet, COMPRESSION zstd, FIELD_IDS {file_path: %d, pos: %d})",
		sel, sqlString(out), PosDeleteFilePathID, PosDeletePosID))
	if err != nil {
		return 0, fmt.Errorf("write position deletes: %w", err)
	}
	return n, nil
}

// columns are the column names of a relation, in order.
func columns(ctx context.Context, db *sql.DB, relation string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT column_name FROM (DESCRIBE SELECT * FROM "+relation+")")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// FileSchema is the Arrow schema of the Parquet file at location, read with the
// tenant's file IO: the schema a table of such files is made with (Table).
func (c *Catalog) FileSchema(ctx context.Context, location string) (*arrow.Schema, error) {
	fs, err := icebergio.LoadFS(ctx, c.props, location)
	if err != nil {
		return nil, fmt.Errorf("catalog: file io for %s: %w", location, err)
	}
	f, err := fs.Open(location)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	rdr, err := file.NewParquetReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("catalog: %s: %w", location, err)
	}
	defer rdr.Close()
	sc, err := pqarrow.FromParquet(rdr.MetaData().Schema, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", location, err)
	}
	return sc, nil
}

// PropLayer is the table property that marks a table of the batch layer
// (LayerBatch), made by BatchTable.
const (
	PropLayer  = "fhirlake.layer"
	LayerBatch = "batch"
)

// BatchTable loads the batch layer's table of that name in the tenant's namespace,
// creating it with schema (the Arrow schema of its files, FileSchema) and PropLayer
// when it does not exist. A table of that name that is not the batch layer's (a
// change table of `fhirlake register`) is refused. A schema with columns the table
// lacks widens it (union by name, in one commit, with its name mapping), so a model
// that gained a column publishes; columns a model dropped stay in the table and read
// as null.
func (c *Catalog) BatchTable(ctx context.Context, name string, schema *arrow.Schema) (*table.Table, error) {
	tbl, err := c.table(ctx, name, schema, iceberg.Properties{PropLayer: LayerBatch})
	if err != nil {
		return nil, err
	}
	if tbl.Properties()[PropLayer] != LayerBatch {
		return nil, fmt.Errorf("catalog: table %s.%s exists and is not a batch table (%s is not %q): another table has its name",
			c.Namespace(), name, PropLayer, LayerBatch)
	}
	want, err := IcebergSchema(schema)
	if err != nil {
		return nil, fmt.Errorf("catalog: table %s: %w", name, err)
	}
	missing := false
	for _, f := range want.Fields() {
		if _, ok := tbl.Schema().FindFieldByName(f.Name); !ok {
			missing = true
			break
		}
	}
	if !missing {
		return matchNameMapping(ctx, tbl)
	}
	txn := tbl.NewTransaction()
	u := txn.UpdateSchema(true, false).UnionByNameWith(want)
	widened, err := u.Apply()
	if err == nil {
		err = u.Commit()
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: widen the schema of %s: %w", name, err)
	}
	props, err := nameMappingProperty(widened)
	if err == nil {
		err = txn.SetProperties(props)
	}
	if err == nil {
		tbl, err = txn.Commit(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: widen the schema of %s: %w", name, err)
	}
	return matchNameMapping(ctx, tbl)
}

// matchNameMapping makes the table's name mapping that of its schema as committed: a
// REST catalog assigns its own field ids to a new table's schema (nested fields
// numbered after the top-level ones), so the mapping computed from the schema sent
// would send a file's column to another field.
func matchNameMapping(ctx context.Context, tbl *table.Table) (*table.Table, error) {
	props, err := nameMappingProperty(tbl.Schema())
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", tbl.Identifier(), err)
	}
	if tbl.Properties()[table.DefaultNameMappingKey] == props[table.DefaultNameMappingKey] {
		return tbl, nil
	}
	txn := tbl.NewTransaction()
	if err := txn.SetProperties(props); err != nil {
		return nil, fmt.Errorf("catalog: name mapping of %s: %w", tbl.Identifier(), err)
	}
	next, err := txn.Commit(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: name mapping of %s: %w", tbl.Identifier(), err)
	}
	return next, nil
}

// Load loads the table of that name in the tenant's namespace; a missing table is an
// error.
func (c *Catalog) Load(ctx context.Context, name string) (*table.Table, error) {
	tbl, err := c.cat.LoadTable(ctx, table.Identifier{c.Namespace(), name})
	if err != nil {
		return nil, fmt.Errorf("catalog: load %s.%s: %w", c.Namespace(), name, err)
	}
	return tbl, nil
}
