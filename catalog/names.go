package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"fhirlake/lake"
)

// ViewColKafkaPartition is the view tables' name of the lineage column the speed files
// call _partition (lake.ViewColPartition): the Kafka partition, named as the batch
// layer's staging models name it (kafka_partition), with the lineage's underscore.
const ViewColKafkaPartition = "_kafka_partition"

// reserved are the names Iceberg gives its metadata columns (Java's MetadataColumns).
// An engine takes a requested column of such a name for the metadata column: Spark
// refuses a table that has one ("multiple fields for name _partition"). No table
// column may bear one.
var reserved = []string{"_file", "_pos", "_deleted", "_spec_id", "_partition",
	"_row_id", "_last_updated_sequence_number", "_change_type", "_change_ordinal", "_commit_snapshot_id"}

// renamed maps a lake column whose name Iceberg reserves to its name in the tables.
// The files keep the lake's name; the tables' name mapping lists both for the field,
// so every engine reads the file's column under the table's name.
var renamed = map[string]string{lake.ViewColPartition: ViewColKafkaPartition}

// tableName is a lake column's name in the tables. A reserved name without a
// replacement is an error: a table with it would be unreadable by Spark.
func tableName(lakeName string) (string, error) {
	if n, ok := renamed[lakeName]; ok {
		return n, nil
	}
	if slices.Contains(reserved, lakeName) {
		return "", fmt.Errorf("column %s: Iceberg reserves the name for a metadata column", lakeName)
	}
	return lakeName, nil
}

// lakeName is a table column's name in the speed files.
func lakeName(tableName string) string {
	for l, t := range renamed {
		if t == tableName {
			return l
		}
	}
	return tableName
}

// nameMapping is the table's schema.name-mapping.default: each top-level field under
// its table name and, where the files call it otherwise, its lake name too.
func nameMapping(sc *iceberg.Schema) iceberg.NameMapping {
	m := sc.NameMapping()
	for i, f := range m {
		if len(f.Names) == 1 {
			if l := lakeName(f.Names[0]); l != f.Names[0] {
				m[i].Names = []string{f.Names[0], l}
			}
		}
	}
	return m
}

func nameMappingProperty(sc *iceberg.Schema) (iceberg.Properties, error) {
	b, err := json.Marshal(nameMapping(sc))
	if err != nil {
		return nil, fmt.Errorf("name mapping: %w", err)
	}
	return iceberg.Properties{table.DefaultNameMappingKey: string(b)}, nil
}

// fileSchema is the table's schema under the speed files' names, the same field ids:
// the schema a file's footer is read against. iceberg-go's AddFiles checks a file
// against the schema's own names, not the table's name mapping, so it refuses a file
// whose column the table renamed.
func fileSchema(sc *iceberg.Schema) *iceberg.Schema {
	fields := sc.Fields()
	for i, f := range fields {
		fields[i].Name = lakeName(f.Name)
	}
	return iceberg.NewSchemaWithIdentifiers(sc.ID, sc.IdentifierFieldIDs, fields...)
}

// upgrade renames the columns of a table made before the rename (the lake's reserved
// names), adding the new names to the table's name mapping beside the old ones, in one
// commit; a table without such a column is returned as it is.
func upgrade(ctx context.Context, tbl *table.Table) (*table.Table, error) {
	var olds []string
	for _, f := range tbl.Schema().Fields() {
		if _, ok := renamed[f.Name]; ok {
			olds = append(olds, f.Name)
		}
	}
	if len(olds) == 0 {
		return tbl, nil
	}
	mapping := tbl.NameMapping()
	if mapping == nil {
		// no file was added yet: the mapping AddFiles would have set
		mapping = tbl.Schema().NameMapping()
	}
	txn := tbl.NewTransaction()
	us := txn.UpdateSchema(true, false, table.WithNameMapping(mapping))
	for _, old := range olds {
		us.RenameColumn([]string{old}, renamed[old])
	}
	if err := us.Commit(); err != nil {
		return tbl, fmt.Errorf("rename %v of %s: %w", olds, tbl.Identifier(), err)
	}
	next, err := txn.Commit(ctx)
	if err != nil {
		return tbl, fmt.Errorf("rename %v of %s: %w", olds, tbl.Identifier(), err)
	}
	return next, nil
}
