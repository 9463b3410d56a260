package query

// The SQL of the catalog's views, one function or constant per statement
// shape, free of side effects. Every name a statement holds is a fixed one
// or a view dataset's, model's or resource type's that the plan checked;
// paths and resource types are spliced in through sqlString, column names
// and the names of views and helpers through quoteIdent.

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"fhirlake/lake"
)

// posColumn is the position of a snapshot row in its model's files, and
// positionExpr computes it: the file's index in the list read, then the
// row's number in the file.
const (
	posColumn    = "__fhirlake_pos"
	positionExpr = "file_row_number + (file_index::BIGINT << 40)"
)

// lakeName is the quoted name of a helper of schema lake.
func lakeName(name string) string { return "lake." + quoteIdent(name) }

// createView defines a view a query may use.
func createView(name, q string) string {
	return fmt.Sprintf("CREATE OR REPLACE VIEW %s AS %s", quoteIdent(name), q)
}

// createLakeObject defines a helper VIEW or TABLE of schema lake.
func createLakeObject(kind, name, q string) string {
	return fmt.Sprintf("CREATE OR REPLACE %s %s AS %s", kind, lakeName(name), q)
}

func dropView(name string) string { return "DROP VIEW IF EXISTS " + quoteIdent(name) }

func dropLakeObject(kind, name string) string {
	return fmt.Sprintf("DROP %s IF EXISTS %s", kind, lakeName(name))
}

// readFiles reads Parquet files, their columns matched by name.
func readFiles(paths []string) string {
	return fmt.Sprintf("read_parquet(%s, union_by_name = true)", fileList(paths))
}

// readSpeed reads speed files, with their date partition.
func readSpeed(files []speedFile) string {
	return fmt.Sprintf("read_parquet(%s, hive_partitioning = true, union_by_name = true)", speedList(files))
}

// speedGlob reads every file of a speed dataset. A glob is expanded at each
// query, so new files of a lake without a snapshot are read at once.
func speedGlob(root, dataset string) string {
	return fmt.Sprintf("read_parquet('%s/%s', hive_partitioning = true, union_by_name = true)", sqlString(root), sqlString(lake.SpeedGlob(dataset)))
}

// speedRowsSQL is the rows of speed files (readSpeed, speedGlob) without
// the date partition.
func speedRowsSQL(from string) string { return "SELECT * EXCLUDE (date) FROM " + from }

func selectSQL(cols, from string) string { return fmt.Sprintf("SELECT %s FROM %s", cols, from) }

// positionsSQL is selectSQL with each row's position (posColumn).
func positionsSQL(cols, from string) string {
	return fmt.Sprintf("SELECT %s, %s AS %s FROM %s", cols, positionExpr, posColumn, from)
}

// unionSQL is the rows of two relations, columns matched by name.
func unionSQL(a, b string) string {
	return fmt.Sprintf("SELECT * FROM %s UNION ALL BY NAME SELECT * FROM %s", a, b)
}

// snapshotOnlySQL is a batched view whose resources did not change beside
// the snapshot: the snapshot's rows, with the columns of its speed files.
func snapshotOnlySQL(v string) string {
	return unionSQL(lakeName("batch_"+v), lakeName("fresh_"+v)) + " WHERE false"
}

// noRowsSQL has the columns of a relation and no row.
func noRowsSQL(from string) string { return "SELECT * FROM " + from + " WHERE false" }

// emptyRawSQL is the raw dataset of a lake without a raw file.
func emptyRawSQL() string {
	return "SELECT * FROM (SELECT " + nullColumns(rawColumns) + ") WHERE false"
}

// rankedRawSQL is the latest version of each resource of resources_all,
// ranked at each query.
func rankedRawSQL() string {
	return lake.LatestSQL("resources_all", "")
}

// liveSQL is the resources whose latest version is not a delete.
const liveSQL = "SELECT * FROM resources_latest WHERE operation <> 'delete'"

// The ranking of the resources changed beside the snapshot is made for
// all resource types at once (rt "", read by the raw views) or for one
// type (read by a typed view of that type): rankName names its tables,
// lake.changed, lake.stale_resources and lake.winners for all types,
// lake.changed__<type>, lake.stale__<type> and lake.winners__<type> for
// one (ViewName spells the type; it is one-to-one, and "__" keeps the
// names apart from those for all types).
func rankName(kind, rt string) string {
	switch {
	case rt != "":
		return kind + "__" + ViewName(rt)
	case kind == "stale":
		return "stale_resources"
	}
	return kind
}

// rankRef is how a statement names a ranking table: as it always has for
// all types, quoted for one type.
func rankRef(kind, rt string) string {
	if rt == "" {
		return "lake." + rankName(kind, "")
	}
	return lakeName(rankName(kind, rt))
}

// typeFilter restricts rows to resource type rt (column col); "" when rt
// is "" (every type).
func typeFilter(col, rt string) string {
	if rt == "" {
		return ""
	}
	return fmt.Sprintf(" WHERE %s = '%s'", col, sqlString(rt))
}

// changedSQL keys the resources (of type rt, when set) changed in the raw
// speed files beside the snapshot.
func changedSQL(rt string) string {
	return "SELECT DISTINCT resource_type, id FROM lake.fresh_resources" + typeFilter("resource_type", rt)
}

// rankViewSQL is one type's ranking table (kind) read from the table for
// all types, once that is made: the same rows, nothing ranked again.
func rankViewSQL(kind, rt string) string {
	return "SELECT * FROM " + rankRef(kind, "") + typeFilter("resource_type", rt)
}

// rankColumns are the raw columns that rank and locate a version.
const rankColumns = `resource_type, id, version_id, last_updated, operation, topic, "partition", "offset", ingest_time`

// staleResourcesSQL is the snapshot's rows of the changed resources, read
// once.
func staleResourcesSQL(rt string) string {
	from := "lake.pos_resources b"
	if rt != "" {
		from = "(SELECT * FROM lake.pos_resources" + typeFilter("resource_type", rt) + ") b"
	}
	return fmt.Sprintf(`SELECT b.%s, %s FROM %s
				SEMI JOIN %s k ON k.resource_type = b.resource_type AND k.id = b.id`, posColumn, rankColumns, from, rankRef("changed", rt))
}

// winnersSQL is the latest version of each changed resource, between the
// snapshot's and the speed files'. A record in both (the overlap re-reads
// files older than the watermark) is taken from the speed files (fresh),
// which hold it as written.
func winnersSQL(rt string) string {
	return `SELECT resource_type, id, version_id, operation, topic, "partition", "offset", fresh FROM (
				` + lake.LatestSQL(`(SELECT `+rankColumns+`, false AS fresh FROM `+rankRef("stale", rt)+`
				UNION ALL BY NAME SELECT `+rankColumns+`, true AS fresh FROM lake.fresh_resources`+typeFilter("resource_type", rt)+`)`, "fresh DESC") + `)`
}

// dropResourcesSQL is the positions of the snapshot's raw rows that are no
// longer the latest: all of a changed resource's but the one of the latest
// version, when the speed files do not hold it.
func dropResourcesSQL() string {
	return fmt.Sprintf(`SELECT %[1]s FROM (
				SELECT c.%[1]s, w.id IS NOT NULL AS latest,
				       row_number() OVER (PARTITION BY c.resource_type, c.id ORDER BY w.id IS NOT NULL DESC, c.%[1]s) AS n
				FROM lake.stale_resources c
				LEFT JOIN lake.winners w ON w.resource_type = c.resource_type AND w.id = c.id AND NOT w.fresh AND w.topic = c.topic
				 AND w."partition" = c."partition" AND w."offset" = c."offset" AND w.version_id IS NOT DISTINCT FROM c.version_id)
				WHERE NOT (latest AND n = 1)`, posColumn)
}

// deltaResourcesSQL is the newer versions, left in the speed files (they
// hold the resources' JSON): read and deduplicated at query time.
const deltaResourcesSQL = `SELECT f.* FROM lake.fresh_resources f
				SEMI JOIN lake.winners w ON w.fresh AND w.resource_type = f.resource_type AND w.id = f.id AND w.topic = f.topic
				 AND w."partition" = f."partition" AND w."offset" = f."offset" AND w.version_id IS NOT DISTINCT FROM f.version_id
				QUALIFY row_number() OVER (PARTITION BY f.resource_type, f.id ORDER BY f.ingest_time DESC) = 1`

// mergeSQL is dataset x's latest rows beside a snapshot: its rows in the
// snapshot (lake.batch_<x>) but those of lake.drop_<x> when dropped, plus
// lake.delta_<x> when the dataset has speed files beside the snapshot.
func mergeSQL(x string, dropped, delta bool) string {
	q := "SELECT * FROM " + lakeName("batch_"+x)
	if dropped {
		q = fmt.Sprintf("SELECT b.* EXCLUDE (%[3]s) FROM %[1]s b ANTI JOIN %[2]s d ON d.%[3]s = b.%[3]s",
			lakeName("pos_"+x), lakeName("drop_"+x), posColumn)
	}
	if delta {
		q += " UNION ALL BY NAME SELECT * FROM " + lakeName("delta_"+x)
	}
	return q
}

// speedLatestSQL is a typed view read from the speed layer: the rows of
// v_all of the latest version of each resource (of type rt, when known),
// once each (an overlapping replay writes a row twice).
func speedLatestSQL(v, rt string) string {
	filter := ""
	if rt != "" {
		filter = fmt.Sprintf(" AND resource_type = '%s'", sqlString(rt))
	}
	return fmt.Sprintf(`SELECT v.* FROM %[1]s v
			SEMI JOIN (SELECT resource_type, id, version_id, topic, "partition", "offset" FROM resources_latest
			           WHERE operation = 'upsert'%[2]s) l
			  ON l.resource_type = v._resource_type AND l.id = v._resource_id AND l.topic = v._topic
			 AND l."partition" = v._partition AND l."offset" = v._offset AND l.version_id IS NOT DISTINCT FROM v._version_id
			QUALIFY row_number() OVER (PARTITION BY v._resource_type, v._resource_id, v._row ORDER BY v._ingest_time DESC) = 1`, quoteIdent(v+"_all"), filter)
}

// viewDeltaSQL is the rows of the latest versions in view v's speed files
// beside the snapshot, once each (an overlapping replay writes a row
// twice), by the ranking of resource type rt (rankName).
func viewDeltaSQL(v, rt string) string {
	return fmt.Sprintf(`SELECT f.* FROM %[1]s f
			SEMI JOIN %[2]s w ON w.resource_type = f._resource_type AND w.id = f._resource_id AND w.operation = 'upsert'
			 AND w.topic = f._topic AND w."partition" = f._partition AND w."offset" = f._offset AND w.version_id IS NOT DISTINCT FROM f._version_id
			QUALIFY row_number() OVER (PARTITION BY f._resource_type, f._resource_id, f._row ORDER BY f._ingest_time DESC) = 1`, lakeName("fresh_"+v), rankRef("winners", rt))
}

// viewDropSQL is the positions of view v's snapshot rows that are no
// longer the latest: every row of a changed resource but those of its
// latest version that the speed files do not hold (lake.delta_<v>, when
// delta), one per row index, by the ranking of resource type rt.
func viewDropSQL(v, rt string, delta bool) string {
	latest, inDelta := "w.id IS NOT NULL", ""
	if delta {
		latest += " AND d._resource_id IS NULL"
		inDelta = fmt.Sprintf(`
		LEFT JOIN %s d ON d._resource_type = c._resource_type AND d._resource_id = c._resource_id AND d._row IS NOT DISTINCT FROM c._row`, lakeName("delta_"+v))
	}
	return fmt.Sprintf(`SELECT %[2]s FROM (
		SELECT c.%[2]s, %[3]s AS latest,
		       row_number() OVER (PARTITION BY c._resource_type, c._resource_id, c._row ORDER BY %[3]s DESC, c.%[2]s) AS n
		FROM (SELECT b.%[2]s, b._resource_type, b._resource_id, b._row, b._version_id, b._topic, b._partition, b._offset
		      FROM %[1]s b SEMI JOIN %[5]s k ON k.resource_type = b._resource_type AND k.id = b._resource_id) c
		LEFT JOIN %[6]s w ON w.resource_type = c._resource_type AND w.id = c._resource_id AND w.operation = 'upsert'
		 AND w.topic = c._topic AND w."partition" = c._partition AND w."offset" = c._offset AND w.version_id IS NOT DISTINCT FROM c._version_id%[4]s)
		WHERE NOT (latest AND n = 1)`, lakeName("pos_"+v), posColumn, latest, inDelta, rankRef("changed", rt), rankRef("winners", rt))
}

// resourceSQL is the JSON view of resource type t.
func resourceSQL(t string) string {
	return fmt.Sprintf(`SELECT id, version_id, last_updated, resource::JSON AS resource,
			tenant, topic, "partition", "offset", ingest_time FROM resources WHERE resource_type = '%s'`, sqlString(t))
}

// batchSelect is the select list that shows view v's state model (batch:
// its columns) under the speed layer's names (speedColumn). A column dbt
// cast to another type than the speed files hold is cast back, so the
// union keeps the speed layer's types. The columns come in the speed
// layer's order: the fresh files' when there are some (fresh, nil when
// none), else the lineage columns first, as the consumer writes them.
func batchSelect(v string, batch, fresh []column) []string {
	types, order := map[string]string{}, map[string]int{}
	for i, c := range fresh {
		types[c.name], order[c.name] = c.typ, i
	}
	type selected struct {
		rank int
		expr string
	}
	var sel []selected
	for i, c := range batch {
		name := speedColumn(v, c.name)
		if name == "" {
			continue
		}
		expr := quoteIdent(c.name)
		// t is DuckDB's own spelling of a described type, which quotes
		// the field names of a STRUCT itself.
		if t, ok := types[name]; ok && t != c.typ {
			expr = fmt.Sprintf("TRY_CAST(%s AS %s)", expr, t)
		}
		rank := 1000 + i
		if pos, ok := order[name]; ok {
			rank = pos
		} else if pos := slices.Index(lineageOrder, name); pos >= 0 && fresh == nil {
			rank = pos
		}
		sel = append(sel, selected{rank, expr + " AS " + quoteIdent(name)})
	}
	sort.SliceStable(sel, func(i, j int) bool { return sel[i].rank < sel[j].rank })
	exprs := make([]string, len(sel))
	for i, c := range sel {
		exprs[i] = c.expr
	}
	return exprs
}

func speedList(files []speedFile) string {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return fileList(paths)
}

// fileList is a SQL list of string literals.
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
