package query

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Catalog describes a session's views as of its last refresh.
type Catalog struct {
	// Snapshot is the batch snapshot the views read; nil when the lake has
	// none and every view reads the speed layer alone.
	Snapshot *Manifest
	// Tables are the views a query may use, sorted by name.
	Tables []Table
	// Types are the resource types present, sorted.
	Types []string
	// Views are the typed views (one per SQL-on-FHIR view dataset), sorted.
	Views []string
	// SpeedFiles counts the speed files the views read: every one without a
	// snapshot, those newer than its watermark (minus the overlap) with one.
	SpeedFiles int
	// Built is when the views were last rebuilt; Checked when the lake was
	// last looked at.
	Built, Checked time.Time
	// Generation counts the rebuilds; it changes whenever the views do.
	Generation uint64
	// Changed counts the resources changed in the speed files read beside
	// the snapshot: only these are ranked again, once per rebuild.
	Changed int64

	fingerprint string
	// internal are the objects of schema lake the build made: name → VIEW
	// or TABLE.
	internal map[string]string
}

// Table is one view of a session.
type Table struct {
	Name string `json:"name"`
	// Kind is "resources" (resources, resources_latest, resources_all),
	// "view" (a SQL-on-FHIR view, with every stored row in <name>_all),
	// "resource" (the JSON of one resource type without a typed view),
	// "history" (a <view>_all), or "mart" (a table of the batch snapshot,
	// exactly as fresh as the snapshot).
	Kind string `json:"kind"`
	// ResourceType is the FHIR type the rows describe, when there is one.
	ResourceType string `json:"resource_type,omitempty"`
	// Source is "speed", "batch+speed" or "batch".
	Source string `json:"source"`
}

// Catalog returns the session's catalog as of its last refresh. It is safe
// for concurrent use.
func (s *Session) Catalog() *Catalog { return s.cat.Load() }

// Refresh brings the views up to date with the lake: a new or replaced
// batch snapshot, new speed files newer than its watermark, a new view
// dataset or resource type. It rebuilds the views, in one transaction, only
// when one of these changed, and reports whether it did. Speed files of a
// lake without a snapshot are read through globs, so they show up in
// queries even before a refresh. Safe for concurrent use with queries.
func (s *Session) Refresh(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	scan, err := scanLake(s.root)
	if err != nil {
		return false, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	p := &viewPlan{s: s, scan: scan}
	if err := p.resolve(ctx); err != nil {
		return false, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	old := s.cat.Load()
	if old != nil && old.fingerprint == p.fingerprint() {
		c := *old
		c.Checked = now
		s.cat.Store(&c)
		return false, nil
	}
	tables, err := s.build(ctx, p, old)
	if err != nil {
		return false, fmt.Errorf("tenant %s: build views: %w", s.tenant, err)
	}
	c := &Catalog{
		Snapshot: scan.manifest, Tables: tables, Types: p.types, Views: p.typed,
		SpeedFiles: p.speedFiles, Changed: p.changed, Built: now, Checked: now, fingerprint: p.fingerprint(),
		internal: p.internal,
	}
	if old != nil {
		c.Generation = old.Generation + 1
	}
	s.cat.Store(c)
	s.Types, s.Views = c.Types, c.Views
	return true, nil
}

// build (re)creates the views in one transaction on one connection, so
// that a query sees either the old views and tables or the new ones, and
// drops what the previous build made and this one did not.
func (s *Session) build(ctx context.Context, p *viewPlan, old *Catalog) ([]Table, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return nil, err
	}
	p.conn = conn
	defer func() { p.conn = nil }()
	tables, err := p.statements(ctx)
	if err == nil && old != nil {
		keep := map[string]bool{}
		for _, t := range tables {
			keep[t.Name] = true
		}
		for _, t := range old.Tables {
			if !keep[t.Name] && err == nil {
				err = p.exec(ctx, "DROP VIEW IF EXISTS "+t.Name)
			}
		}
		for _, name := range sortedKeys(old.internal) {
			if _, ok := p.internal[name]; !ok && err == nil {
				err = p.exec(ctx, fmt.Sprintf("DROP %s IF EXISTS lake.%s", old.internal[name], name))
			}
		}
	}
	if err != nil {
		conn.ExecContext(context.Background(), "ROLLBACK")
		return nil, err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return tables, err
}

// exec runs one statement of a build.
func (p *viewPlan) exec(ctx context.Context, q string) error {
	if p.trace != nil {
		p.trace(q)
	}
	if _, err := p.conn.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("%w\n%s", err, q)
	}
	return nil
}

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

// viewPlan decides the views of one refresh.
type viewPlan struct {
	s    *Session
	scan *lakeScan
	// cutoff: with a snapshot, the speed files modified at or after it are
	// read beside it.
	cutoff time.Time
	// fresh are, per dataset, the speed files read beside the snapshot.
	fresh map[string][]speedFile
	// batched are the view datasets whose state the snapshot holds.
	batched map[string]bool
	typed   []string
	types   []string
	// internal are the helper views and tables of schema lake: name →
	// VIEW or TABLE.
	internal   map[string]string
	speedFiles int
	// changed counts the resources changed beside the snapshot, and
	// changedTypes by resource type.
	changed      int64
	changedTypes map[string]int64
	// conn is the connection of the build's transaction.
	conn *sql.Conn
	// trace, when set, sees each statement the build runs (tests pin them).
	trace func(q string)
}

// resolve lists what the views will read and learns the resource types
// present (scanning only files it has not scanned before).
func (p *viewPlan) resolve(ctx context.Context) error {
	m := p.scan.manifest
	p.fresh = map[string][]speedFile{}
	p.batched = map[string]bool{}
	views := map[string]bool{}
	for ds := range p.scan.datasets {
		if ds != "resources" {
			views[ds] = true
		}
	}
	if m != nil {
		if _, ok := m.Models[batchRawModel]; !ok {
			return fmt.Errorf("batch snapshot %s has no %s", m.SnapshotID, batchRawModel)
		}
		p.cutoff = m.Watermark.Modified.Add(-p.s.opts.SpeedOverlap)
		for name := range m.Models {
			if v, ok := strings.CutPrefix(name, "int_"); ok {
				if v, ok = strings.CutSuffix(v, "__latest"); ok && validViewName(v) {
					p.batched[v] = true
					views[v] = true
				}
			}
		}
		for ds, files := range p.scan.datasets {
			if ds != "resources" && !p.batched[ds] {
				p.speedFiles += len(files)
				continue
			}
			for _, f := range files {
				if !f.modified.Before(p.cutoff) {
					p.fresh[ds] = append(p.fresh[ds], f)
				}
			}
			p.speedFiles += len(p.fresh[ds])
		}
	} else {
		for _, files := range p.scan.datasets {
			p.speedFiles += len(files)
		}
	}
	for v := range views {
		p.typed = append(p.typed, v)
	}
	sort.Strings(p.typed)
	return p.learnTypes(ctx)
}

// learnTypes adds the resource types of raw files (or of a new snapshot)
// not seen before to the session's set.
func (p *viewPlan) learnTypes(ctx context.Context) error {
	s := p.s
	var sources []string
	if m := p.scan.manifest; m != nil && !s.snapshots[m.SnapshotID] {
		files, err := m.Files(s.root, batchRawModel)
		if err != nil {
			return err
		}
		sources = append(sources, "read_parquet("+fileList(files)+")")
	}
	raw := p.scan.datasets["resources"]
	if p.scan.manifest != nil {
		raw = p.fresh["resources"]
	}
	var fresh []string
	for _, f := range raw {
		if size, ok := s.scanned[f.path]; !ok || size != f.size {
			fresh = append(fresh, f.path)
		}
	}
	if len(fresh) > 0 {
		sources = append(sources, "read_parquet("+fileList(fresh)+", union_by_name = true)")
	}
	for _, src := range sources {
		rows, err := s.db.QueryContext(ctx, "SELECT DISTINCT resource_type FROM "+src)
		if err != nil {
			return fmt.Errorf("resource types: %w", err)
		}
		for rows.Next() {
			var t sql.NullString
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return err
			}
			if validType(t.String) {
				s.types[t.String] = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("resource types: %w", err)
		}
	}
	if m := p.scan.manifest; m != nil {
		s.snapshots[m.SnapshotID] = true
	}
	for _, f := range raw {
		s.scanned[f.path] = f.size
	}
	for t := range s.types {
		p.types = append(p.types, t)
	}
	sort.Strings(p.types)
	return nil
}

// fingerprint changes whenever the views must be rebuilt.
func (p *viewPlan) fingerprint() string {
	h := sha256.New()
	if m := p.scan.manifest; m != nil {
		fmt.Fprintf(h, "snapshot %s %s\n", m.SnapshotID, m.Watermark.Modified)
		for _, ds := range sortedKeys(p.fresh) {
			for _, f := range p.fresh[ds] {
				fmt.Fprintf(h, "fresh %s %d %d\n", f.path, f.size, f.modified.UnixNano())
			}
		}
	}
	for _, ds := range sortedKeys(p.scan.datasets) {
		fmt.Fprintf(h, "dataset %s\n", ds)
	}
	fmt.Fprintf(h, "typed %s\ntypes %s\n", strings.Join(p.typed, ","), strings.Join(p.types, ","))
	return hex.EncodeToString(h.Sum(nil))
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

// statements (re)creates every view, on the build's connection, and
// returns the views.
//
// With a batch snapshot, the resources changed in the speed files read
// beside it are ranked once per build, not at each query: lake.changed
// holds their keys and lake.winners the coordinates of the latest version
// of each. For each dataset <x>, lake.drop_<x> lists the snapshot's rows
// that are no longer the latest by their position in its files
// (file_index, file_row_number), and lake.delta_<x> holds the rows of the
// latest versions from the speed files, deduplicated. A view is then the
// snapshot minus those positions (an anti join on one integer, no column
// read for it) plus the delta, so a query scans the snapshot's columns it
// uses and nothing is ranked. The raw dataset's delta stays a view over
// the speed files, which hold the resources' JSON. The build runs again
// whenever the snapshot or the list of speed files changes (Refresh), in
// one transaction.
func (p *viewPlan) statements(ctx context.Context) ([]Table, error) {
	var tables []Table
	var err error
	run := func(q string) {
		if err == nil {
			err = p.exec(ctx, q)
		}
	}
	add := func(t Table, q string) {
		run(fmt.Sprintf("CREATE OR REPLACE VIEW %s AS %s", t.Name, q))
		tables = append(tables, t)
	}
	p.internal = map[string]string{}
	helper := func(name, q string) {
		run(fmt.Sprintf("CREATE OR REPLACE VIEW lake.%s AS %s", name, q))
		p.internal[name] = "VIEW"
	}
	table := func(name, q string) {
		run(fmt.Sprintf("CREATE OR REPLACE TABLE lake.%s AS %s", name, q))
		p.internal[name] = "TABLE"
	}
	run("CREATE SCHEMA IF NOT EXISTS lake")
	m := p.scan.manifest
	source := "speed"
	if m != nil {
		source = "batch+speed"
	}
	raw := Table{Kind: "resources", Source: source}

	// The raw dataset: every change, the latest version of each resource,
	// and the live ones.
	if m == nil {
		if len(p.scan.datasets["resources"]) > 0 {
			raw.Name = "resources_all"
			add(raw, fmt.Sprintf("SELECT * EXCLUDE (date) FROM %s", p.speedGlob("resources")))
		} else {
			raw.Name = "resources_all"
			add(raw, "SELECT * FROM (SELECT "+nullColumns(rawColumns)+") WHERE false")
		}
		raw.Name = "resources_latest"
		add(raw, "SELECT * FROM resources_all QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY "+latestOrder+") = 1")
	} else {
		files, ferr := m.Files(p.s.root, batchRawModel)
		if ferr != nil {
			return nil, ferr
		}
		from := fmt.Sprintf("read_parquet(%s, union_by_name = true)", fileList(files))
		helper("batch_resources", fmt.Sprintf("SELECT %s FROM %s", batchRawColumns, from))
		raw.Name = "resources_all"
		if f := p.fresh["resources"]; len(f) > 0 {
			helper("fresh_resources", fmt.Sprintf("SELECT * EXCLUDE (date) FROM read_parquet(%s, hive_partitioning = true, union_by_name = true)", speedList(f)))
			helper("pos_resources", fmt.Sprintf("SELECT %s, %s AS %s FROM %s", batchRawColumns, positionExpr, posColumn, from))
			table("changed", "SELECT DISTINCT resource_type, id FROM lake.fresh_resources")
			// The snapshot's rows of the changed resources, read once.
			const cols = `resource_type, id, version_id, last_updated, operation, topic, "partition", "offset", ingest_time`
			table("stale_resources", fmt.Sprintf(`SELECT b.%s, %s FROM lake.pos_resources b
				SEMI JOIN lake.changed k ON k.resource_type = b.resource_type AND k.id = b.id`, posColumn, cols))
			// The latest version of each changed resource, between the
			// snapshot's and the speed files'. A record in both (the
			// overlap re-reads files older than the watermark) is taken
			// from the speed files (fresh), which hold it as written.
			table("winners", `SELECT resource_type, id, version_id, operation, topic, "partition", "offset", fresh FROM (
				SELECT `+cols+`, false AS fresh FROM lake.stale_resources
				UNION ALL BY NAME SELECT `+cols+`, true AS fresh FROM lake.fresh_resources)
				QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY `+latestOrder+`, fresh DESC) = 1`)
			// The snapshot's rows that are no longer the latest: all of a
			// changed resource's but the one of the latest version, when
			// the speed files do not hold it.
			table("drop_resources", fmt.Sprintf(`SELECT %[1]s FROM (
				SELECT c.%[1]s, w.id IS NOT NULL AS latest,
				       row_number() OVER (PARTITION BY c.resource_type, c.id ORDER BY w.id IS NOT NULL DESC, c.%[1]s) AS n
				FROM lake.stale_resources c
				LEFT JOIN lake.winners w ON w.resource_type = c.resource_type AND w.id = c.id AND NOT w.fresh AND w.topic = c.topic
				 AND w."partition" = c."partition" AND w."offset" = c."offset" AND w.version_id IS NOT DISTINCT FROM c.version_id)
				WHERE NOT (latest AND n = 1)`, posColumn))
			// The newer versions stay in the speed files (they hold the
			// resources' JSON): read and deduplicated at query time.
			helper("delta_resources", `SELECT f.* FROM lake.fresh_resources f
				SEMI JOIN lake.winners w ON w.fresh AND w.resource_type = f.resource_type AND w.id = f.id AND w.topic = f.topic
				 AND w."partition" = f."partition" AND w."offset" = f."offset" AND w.version_id IS NOT DISTINCT FROM f.version_id
				QUALIFY row_number() OVER (PARTITION BY f.resource_type, f.id ORDER BY f.ingest_time DESC) = 1`)
			if err == nil {
				err = p.countChanged(ctx)
			}
			add(raw, "SELECT * FROM lake.batch_resources UNION ALL BY NAME SELECT * FROM lake.fresh_resources")
			raw.Name = "resources_latest"
			add(raw, p.mergeSQL(ctx, &err, "resources", "lake.batch_resources"))
		} else {
			add(raw, "SELECT * FROM lake.batch_resources")
			raw.Name = "resources_latest"
			add(raw, "SELECT * FROM lake.batch_resources")
		}
	}
	raw.Name = "resources"
	add(raw, "SELECT * FROM resources_latest WHERE operation <> 'delete'")

	// One typed view per SQL-on-FHIR view dataset.
	typedTypes := map[string]bool{}
	for _, v := range p.typed {
		rt, terr := p.datasetType(ctx, v)
		if terr != nil {
			return nil, terr
		}
		typedTypes[rt] = true
		view := Table{Name: v, Kind: "view", ResourceType: rt, Source: "speed"}
		hist := Table{Name: v + "_all", Kind: "history", ResourceType: rt, Source: "speed"}
		if m != nil && p.batched[v] {
			view.Source, hist.Source = "batch+speed", "batch+speed"
			if berr := p.batchedView(ctx, v, view, hist, add, helper, table, &err); berr != nil {
				return nil, berr
			}
			continue
		}
		if m != nil {
			view.Source = "batch+speed" // its versions are ranked against the snapshot's
		}
		add(hist, fmt.Sprintf("SELECT * EXCLUDE (date) FROM %s", p.speedGlob(v)))
		filter := ""
		if rt != "" {
			filter = fmt.Sprintf(" AND resource_type = '%s'", sqlString(rt))
		}
		add(view, fmt.Sprintf(`SELECT v.* FROM %[1]s_all v
			SEMI JOIN (SELECT resource_type, id, version_id, topic, "partition", "offset" FROM resources_latest
			           WHERE operation = 'upsert'%[2]s) l
			  ON l.resource_type = v._resource_type AND l.id = v._resource_id AND l.topic = v._topic
			 AND l."partition" = v._partition AND l."offset" = v._offset AND l.version_id IS NOT DISTINCT FROM v._version_id
			QUALIFY row_number() OVER (PARTITION BY v._resource_type, v._resource_id, v._row ORDER BY v._ingest_time DESC) = 1`, v, filter))
	}

	// A JSON view per resource type without a typed view.
	for _, t := range p.types {
		name := ViewName(t)
		if typedTypes[t] || p.hasTable(tables, name) || !validViewName(name) {
			continue
		}
		add(Table{Name: name, Kind: "resource", ResourceType: t, Source: source},
			fmt.Sprintf(`SELECT id, version_id, last_updated, resource::JSON AS resource,
			tenant, topic, "partition", "offset", ingest_time FROM resources WHERE resource_type = '%s'`, sqlString(t)))
	}

	// The snapshot's marts, as fresh as the snapshot.
	if m != nil {
		for _, name := range m.ModelNames() {
			if strings.HasPrefix(name, "int_") || !validModelName(name) || p.hasTable(tables, name) || strings.HasPrefix(name, "resources") {
				continue
			}
			files, ferr := m.Files(p.s.root, name)
			if ferr != nil {
				return nil, ferr
			}
			if len(files) == 0 {
				continue
			}
			add(Table{Name: name, Kind: "mart", Source: "batch"}, fmt.Sprintf("SELECT * FROM read_parquet(%s, union_by_name = true)", fileList(files)))
		}
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].Name < tables[j].Name })
	return tables, nil
}

// countChanged counts the rows of lake.changed by resource type.
func (p *viewPlan) countChanged(ctx context.Context) error {
	p.changedTypes = map[string]int64{}
	rows, err := p.conn.QueryContext(ctx, "SELECT resource_type, count(*) FROM lake.changed GROUP BY ALL")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t sql.NullString
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return err
		}
		p.changedTypes[t.String] += n
		p.changed += n
	}
	return rows.Err()
}

// posColumn is the position of a snapshot row in its model's files, and
// positionExpr computes it: the file's index in the list read, then the
// row's number in the file.
const (
	posColumn    = "__fhirlake_pos"
	positionExpr = "file_row_number + (file_index::BIGINT << 40)"
)

// mergeSQL is a dataset's latest rows with a snapshot: its rows in the
// snapshot (batch) but those of lake.drop_<x>, plus, when the dataset has
// speed files beside the snapshot, lake.delta_<x>. A snapshot with no row
// to drop is read without the anti join.
func (p *viewPlan) mergeSQL(ctx context.Context, errp *error, x, batch string) string {
	var dropped int64
	if *errp == nil {
		*errp = p.conn.QueryRowContext(ctx, "SELECT count(*) FROM lake.drop_"+x).Scan(&dropped)
	}
	q := "SELECT * FROM " + batch
	if dropped > 0 {
		q = fmt.Sprintf("SELECT b.* EXCLUDE (%[2]s) FROM lake.pos_%[1]s b ANTI JOIN lake.drop_%[1]s d ON d.%[2]s = b.%[2]s", x, posColumn)
	}
	if len(p.fresh[x]) > 0 {
		q += " UNION ALL BY NAME SELECT * FROM lake.delta_" + x
	}
	return q
}

// batchedView defines a view whose state the snapshot holds: the
// snapshot's rows of the resources not changed since, and, for the changed
// ones, the rows of whichever version ranks first now.
func (p *viewPlan) batchedView(ctx context.Context, v string, view, hist Table, add func(Table, string), helper, table func(string, string), errp *error) error {
	m := p.scan.manifest
	files, err := m.Files(p.s.root, batchStateModel(v))
	if err != nil {
		return err
	}
	fresh := p.fresh[v]
	var freshTypes map[string]string
	var freshOrder map[string]int
	if len(fresh) > 0 {
		src := fmt.Sprintf("SELECT * EXCLUDE (date) FROM read_parquet(%s, hive_partitioning = true, union_by_name = true)", speedList(fresh))
		var cols []column
		if freshTypes, cols, err = p.describe(ctx, src); err != nil {
			return err
		}
		freshOrder = map[string]int{}
		for i, c := range cols {
			freshOrder[c.name] = i
		}
	}
	_, batchCols, err := p.describe(ctx, fmt.Sprintf("SELECT * FROM read_parquet(%s, union_by_name = true)", fileList(files)))
	if err != nil {
		return err
	}
	type selected struct {
		rank int
		expr string
	}
	var sel []selected
	for i, c := range batchCols {
		name := speedColumn(v, c.name)
		if name == "" {
			continue
		}
		expr := quoteIdent(c.name)
		// A column dbt cast to another type than the speed files hold is
		// cast back, so the union keeps the speed layer's types.
		if t, ok := freshTypes[name]; ok && t != c.typ {
			expr = fmt.Sprintf("TRY_CAST(%s AS %s)", expr, t)
		}
		// The speed layer's column order: the fresh files' when there are
		// some, else the lineage columns first, as the consumer writes them.
		rank := 1000 + i
		if pos, ok := freshOrder[name]; ok {
			rank = pos
		} else if pos := slices.Index(lineageOrder, name); pos >= 0 && freshOrder == nil {
			rank = pos
		}
		sel = append(sel, selected{rank, expr + " AS " + quoteIdent(name)})
	}
	sort.SliceStable(sel, func(i, j int) bool { return sel[i].rank < sel[j].rank })
	exprs := make([]string, len(sel))
	for i, c := range sel {
		exprs[i] = c.expr
	}
	from := fmt.Sprintf("read_parquet(%s, union_by_name = true)", fileList(files))
	helper("batch_"+v, fmt.Sprintf("SELECT %s FROM %s", strings.Join(exprs, ", "), from))
	if len(fresh) > 0 {
		helper("fresh_"+v, fmt.Sprintf("SELECT * EXCLUDE (date) FROM read_parquet(%s, hive_partitioning = true, union_by_name = true)", speedList(fresh)))
	} else {
		helper("fresh_"+v, fmt.Sprintf("SELECT * FROM lake.batch_%s WHERE false", v))
	}
	add(hist, fmt.Sprintf("SELECT * FROM lake.batch_%[1]s UNION ALL BY NAME SELECT * FROM lake.fresh_%[1]s", v))
	if len(p.fresh["resources"]) == 0 || (view.ResourceType != "" && p.changedTypes[view.ResourceType] == 0) {
		// Nothing of its type changed since the snapshot (the view's own
		// speed files only add their columns).
		add(view, fmt.Sprintf("SELECT * FROM lake.batch_%[1]s UNION ALL BY NAME SELECT * FROM lake.fresh_%[1]s WHERE false", v))
		return nil
	}
	helper("pos_"+v, fmt.Sprintf("SELECT %s, %s AS %s FROM %s", strings.Join(exprs, ", "), positionExpr, posColumn, from))
	// The rows of the latest versions in the view's speed files, once each
	// (an overlapping replay writes a row twice).
	if len(fresh) > 0 {
		table("delta_"+v, fmt.Sprintf(`SELECT f.* FROM lake.fresh_%[1]s f
			SEMI JOIN lake.winners w ON w.resource_type = f._resource_type AND w.id = f._resource_id AND w.operation = 'upsert'
			 AND w.topic = f._topic AND w."partition" = f._partition AND w."offset" = f._offset AND w.version_id IS NOT DISTINCT FROM f._version_id
			QUALIFY row_number() OVER (PARTITION BY f._resource_type, f._resource_id, f._row ORDER BY f._ingest_time DESC) = 1`, v))
	}
	// The snapshot's rows that are no longer the latest: every row of a
	// changed resource but those of its latest version that the speed
	// files do not hold (one per row index).
	latest, inDelta := "w.id IS NOT NULL", ""
	if len(fresh) > 0 {
		latest += " AND d._resource_id IS NULL"
		inDelta = fmt.Sprintf(`
		LEFT JOIN lake.delta_%s d ON d._resource_type = c._resource_type AND d._resource_id = c._resource_id AND d._row IS NOT DISTINCT FROM c._row`, v)
	}
	table("drop_"+v, fmt.Sprintf(`SELECT %[2]s FROM (
		SELECT c.%[2]s, %[3]s AS latest,
		       row_number() OVER (PARTITION BY c._resource_type, c._resource_id, c._row ORDER BY %[3]s DESC, c.%[2]s) AS n
		FROM (SELECT b.%[2]s, b._resource_type, b._resource_id, b._row, b._version_id, b._topic, b._partition, b._offset
		      FROM lake.pos_%[1]s b SEMI JOIN lake.changed k ON k.resource_type = b._resource_type AND k.id = b._resource_id) c
		LEFT JOIN lake.winners w ON w.resource_type = c._resource_type AND w.id = c._resource_id AND w.operation = 'upsert'
		 AND w.topic = c._topic AND w."partition" = c._partition AND w."offset" = c._offset AND w.version_id IS NOT DISTINCT FROM c._version_id%[4]s)
		WHERE NOT (latest AND n = 1)`, v, posColumn, latest, inDelta))
	add(view, p.mergeSQL(ctx, errp, v, "lake.batch_"+v))
	return nil
}

type column struct{ name, typ string }

// describe returns the columns of a query: by name → type, and in order.
func (p *viewPlan) describe(ctx context.Context, q string) (map[string]string, []column, error) {
	rows, err := p.conn.QueryContext(ctx, "SELECT column_name, column_type FROM (DESCRIBE "+q+")")
	if err != nil {
		return nil, nil, fmt.Errorf("describe: %w", err)
	}
	defer rows.Close()
	byName := map[string]string{}
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			return nil, nil, err
		}
		byName[c.name] = c.typ
		cols = append(cols, c)
	}
	return byName, cols, rows.Err()
}

// datasetType is the resource type of a view dataset's rows, read from one
// of its files (or the snapshot's state) once per session; "" when unknown.
func (p *viewPlan) datasetType(ctx context.Context, v string) (string, error) {
	s := p.s
	if t, ok := s.datasetTypes[v]; ok {
		return t, nil
	}
	var src string
	if files := p.scan.datasets[v]; len(files) > 0 {
		src = fmt.Sprintf("SELECT _resource_type AS t FROM read_parquet('%s') LIMIT 1", sqlString(files[0].path))
	} else if m := p.scan.manifest; m != nil {
		files, err := m.Files(s.root, batchStateModel(v))
		if err != nil || len(files) == 0 {
			return "", err
		}
		src = fmt.Sprintf("SELECT resource_type AS t FROM read_parquet('%s') LIMIT 1", sqlString(files[0]))
	} else {
		return "", nil
	}
	var t sql.NullString
	if err := p.conn.QueryRowContext(ctx, src).Scan(&t); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("view %s: resource type: %w", v, err)
	}
	if !validType(t.String) {
		return "", nil
	}
	s.datasetTypes[v] = t.String
	return t.String, nil
}

func (p *viewPlan) hasTable(tables []Table, name string) bool {
	for _, t := range tables {
		if t.Name == name {
			return true
		}
	}
	return false
}

// speedGlob reads every file of a speed dataset. A glob is expanded at each
// query, so new files of a lake without a snapshot are read at once.
func (p *viewPlan) speedGlob(dataset string) string {
	return fmt.Sprintf("read_parquet('%s/speed/%s/*/*.parquet', hive_partitioning = true, union_by_name = true)", sqlString(p.s.root), dataset)
}

func speedList(files []speedFile) string {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return fileList(paths)
}

func fileList(paths []string) string {
	quoted := make([]string, len(paths))
	for i, p := range paths {
		quoted[i] = "'" + sqlString(p) + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// nullColumns turns "a T, b U" into "NULL::T AS a, NULL::U AS b".
func nullColumns(cols string) string {
	var out []string
	for _, c := range strings.Split(cols, ",") {
		f := strings.Fields(strings.TrimSpace(c))
		out = append(out, fmt.Sprintf("NULL::%s AS %s", strings.Join(f[1:], " "), f[0]))
	}
	return strings.Join(out, ", ")
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
