package query

// Files the views leave out. One unreadable file — a truncated upload, a
// file planted by someone with write access to the bucket, a file of
// another schema — would otherwise make every view of the tenant fail to
// build. When a refresh fails, each speed file not yet known good is
// probed on its own; the files that fail are set aside (Catalog.Unreadable)
// and the views are built from the rest. A set-aside file is probed again
// after quarantineRetry, or at once if its size changes.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"fhirlake/lake"
)

// UnreadableFile is a speed file the views leave out.
type UnreadableFile struct {
	// Key is the file's key in the lake (never a server path).
	Key string `json:"key"`
	// Reason says what is wrong, in the tenant's terms.
	Reason string `json:"reason"`
	// Since is when it was first set aside.
	Since time.Time `json:"since"`

	size    int64
	dataset string
	// err is DuckDB's error, for the server's log only.
	err     error
	checked time.Time
}

// Err is the error that set the file aside, with server paths in it.
func (u UnreadableFile) Err() error { return u.err }

// quarantineRetry is how long a file stays set aside before it is probed
// again.
const quarantineRetry = 10 * time.Minute

// quarantine probes the speed files of scan not known good and sets aside
// those that fail, reporting how many it set aside. When most of the files
// probed fail, the lake is unreachable rather than its files bad, and
// none is set aside.
func (s *Session) quarantine(ctx context.Context, scan *lakeScan) (int, error) {
	type failure struct {
		f   speedFile
		ds  string
		err error
	}
	var failed []failure
	probed := 0
	for _, ds := range sortedKeys(scan.datasets) {
		for _, f := range scan.datasets[ds] {
			if s.good[f.path] == f.size {
				continue
			}
			probed++
			if err := s.probe(ctx, ds, f.path); err != nil {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				failed = append(failed, failure{f, ds, err})
				continue
			}
			s.good[f.path] = f.size
		}
	}
	if len(failed) == 0 || 2*len(failed) > probed && probed > 2 {
		return 0, nil
	}
	now := time.Now()
	for _, x := range failed {
		key := strings.TrimPrefix(strings.TrimPrefix(x.f.path, s.src.base()), "/")
		s.bad[x.f.path] = UnreadableFile{Key: path.Clean(key), Reason: unreadableReason(x.err), Since: now,
			size: x.f.size, dataset: x.ds, err: x.err, checked: now}
	}
	return len(failed), nil
}

// setAside drops from scan the files set aside and still the same, and
// forgets those gone, changed, or set aside long enough to be probed again.
func (s *Session) setAside(scan *lakeScan, now time.Time) {
	present := map[string]int64{}
	for _, files := range scan.datasets {
		for _, f := range files {
			present[f.path] = f.size
		}
	}
	for p, size := range s.good {
		if present[p] != size {
			delete(s.good, p)
		}
	}
	for p, u := range s.bad {
		if size, ok := present[p]; !ok || size != u.size || now.Sub(u.checked) >= quarantineRetry {
			delete(s.bad, p)
		}
	}
	if len(s.bad) == 0 {
		return
	}
	for ds, files := range scan.datasets {
		kept := slices.DeleteFunc(files, func(f speedFile) bool {
			u, ok := s.bad[f.path]
			return ok && u.size == f.size
		})
		if len(kept) == 0 {
			delete(scan.datasets, ds)
		} else {
			scan.datasets[ds] = kept
		}
	}
}

// unreadable lists the files set aside, by key.
func (s *Session) unreadable() []UnreadableFile {
	var out []UnreadableFile
	for _, p := range sortedKeys(s.bad) {
		out = append(out, s.bad[p])
	}
	return out
}

// hasUnreadable tells whether a file of dataset ds is set aside.
func (s *Session) hasUnreadable(ds string) bool {
	for _, u := range s.bad {
		if u.dataset == ds {
			return true
		}
	}
	return false
}

// probe reads f's schema and one lineage column: a file of dataset ds must
// hold the columns the lake's format gives it, with their types.
func (s *Session) probe(ctx context.Context, ds, file string) error {
	src := fmt.Sprintf("read_parquet('%s')", sqlString(file))
	rows, err := s.db.QueryContext(ctx, "DESCRIBE SELECT * FROM "+src)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for rows.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		if err := rows.Scan(&name, &typ, &null, &key, &def, &extra); err != nil {
			rows.Close()
			return err
		}
		have[name] = typ
	}
	if err := rows.Close(); err != nil {
		return err
	}
	fields, col := lake.RawSchema.Fields(), "resource_type"
	if ds != lake.RawDataset {
		fields, col = lake.ViewLineage(), lake.ViewColResourceID
	}
	if err := hasFields(have, fields); err != nil {
		return err
	}
	var n int64
	return s.db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(%s) FROM %s", quoteIdent(col), src)).Scan(&n)
}

// errSchema is a file whose columns are not its dataset's.
type errSchema struct{ msg string }

func (e errSchema) Error() string { return e.msg }

// describedAs are the names DESCRIBE gives types lake.SQLType names
// otherwise.
var describedAs = map[string]string{"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}

func hasFields(have map[string]string, fields []arrow.Field) error {
	for _, f := range fields {
		want, err := lake.SQLType(f.Type)
		if err != nil {
			return err
		}
		if long, ok := describedAs[want]; ok {
			want = long
		}
		got, ok := have[f.Name]
		switch {
		case !ok:
			return errSchema{fmt.Sprintf("no column %s", f.Name)}
		case got != want:
			return errSchema{fmt.Sprintf("column %s is %s, not %s", f.Name, got, want)}
		}
	}
	return nil
}

// unreadableReason says what is wrong with a file without its path.
func unreadableReason(err error) string {
	if e, ok := errors.AsType[errSchema](err); ok {
		return "not this dataset's columns: " + e.msg
	}
	return "not a readable Parquet file"
}
