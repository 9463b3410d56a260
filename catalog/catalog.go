package catalog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	icecat "github.com/apache/iceberg-go/catalog"
	_ "github.com/apache/iceberg-go/catalog/rest" // registers the "rest" catalog type
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	icebergio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // registers the s3:// file IO
	"github.com/apache/iceberg-go/table"
	"github.com/aws/aws-sdk-go-v2/aws"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for PostgreSQL
	"github.com/uptrace/bun/driver/sqliteshim"
)

// Catalog types.
const (
	TypeSQL  = "sql"
	TypeREST = "rest"
)

// Options open a deployment's catalog for one tenant.
type Options struct {
	// Type is TypeSQL or TypeREST.
	Type string
	// URI is, for TypeSQL, a PostgreSQL URL (postgres://…) or a SQLite database file
	// (a path, or file:…); for TypeREST, the service's base URL.
	URI string
	// Name is the catalog's name: the SQL catalog keys its rows by it. Default "fhirlake".
	Name string
	// Token is a REST catalog's bearer token; empty sends none.
	Token string
	// Tenant names the tenant; its namespace bears the same name.
	Tenant string
	// Warehouse is where the tenant's tables live, in the tenant's store:
	// s3://bucket/prefix/_iceberg, or an absolute directory for a local store.
	Warehouse string
	// S3 is the tenant's own access to its bucket; zero for a local store.
	S3 S3
}

// S3 is a tenant's file IO for an S3 store: every data and metadata file of its tables
// is read and written with these and nothing else.
type S3 struct {
	Endpoint     string
	Region       string
	PathStyle    bool
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Credentials, when set, replace the static key: Open takes the current key,
	// secret and session token from it (a role's short-lived credentials, renewed by
	// the provider before they expire). An opened catalog keeps the ones it took, so
	// it is opened for one pass and closed.
	Credentials aws.CredentialsProvider
}

// Catalog is one tenant's view of the deployment's catalog.
type Catalog struct {
	cat       icecat.Catalog
	namespace table.Identifier
	warehouse string
	// props are the catalog's properties, the tenant's file IO among them.
	props iceberg.Properties
}

// Open connects to the catalog with the tenant's file IO and makes sure the tenant's
// namespace exists.
func Open(ctx context.Context, o Options) (*Catalog, error) {
	if o.Tenant == "" {
		return nil, errors.New("catalog: a tenant is required")
	}
	if o.Warehouse == "" {
		return nil, fmt.Errorf("catalog: tenant %s: a warehouse location is required", o.Tenant)
	}
	if o.Name == "" {
		o.Name = "fhirlake"
	}
	if p := o.S3.Credentials; p != nil {
		cr, err := p.Retrieve(ctx)
		if err != nil {
			return nil, fmt.Errorf("catalog: tenant %s: credentials: %w", o.Tenant, err)
		}
		o.S3.AccessKey, o.S3.SecretKey, o.S3.SessionToken = cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken
	}
	props := o.S3.properties()
	props["warehouse"] = o.Warehouse
	switch o.Type {
	case TypeSQL:
		if o.URI == "" {
			return nil, errors.New("catalog: sql: a uri is required (postgres://… or a SQLite file)")
		}
		props["type"] = TypeSQL
		props["uri"] = o.URI
		props[sqlcat.SchemaVersionKey] = sqlcat.SchemaVersionV1
		if isPostgres(o.URI) {
			props[sqlcat.DriverKey], props[sqlcat.DialectKey] = "pgx", string(sqlcat.Postgres)
		} else {
			props[sqlcat.DriverKey], props[sqlcat.DialectKey] = sqliteshim.ShimName, string(sqlcat.SQLite)
		}
	case TypeREST:
		if o.URI == "" {
			return nil, errors.New("catalog: rest: a uri is required (http://…)")
		}
		props["type"] = TypeREST
		props["uri"] = o.URI
		if o.Token != "" {
			props["token"] = o.Token
		}
	default:
		return nil, fmt.Errorf("catalog: unknown type %q (want %s or %s)", o.Type, TypeSQL, TypeREST)
	}
	cat, err := icecat.Load(ctx, o.Name, props)
	if err != nil {
		return nil, fmt.Errorf("catalog: open %s catalog: %w", o.Type, err)
	}
	c := &Catalog{cat: cat, namespace: table.Identifier{o.Tenant}, warehouse: o.Warehouse, props: props}
	if err := c.ensureNamespace(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func isPostgres(uri string) bool {
	for _, p := range []string{"postgres://", "postgresql://"} {
		if len(uri) >= len(p) && uri[:len(p)] == p {
			return true
		}
	}
	return false
}

func (s S3) properties() iceberg.Properties {
	p := iceberg.Properties{}
	set := func(k, v string) {
		if v != "" {
			p[k] = v
		}
	}
	set(icebergio.S3EndpointURL, s.Endpoint)
	set(icebergio.S3Region, s.Region)
	set(icebergio.S3AccessKeyID, s.AccessKey)
	set(icebergio.S3SecretAccessKey, s.SecretKey)
	set(icebergio.S3SessionToken, s.SessionToken)
	if s.Endpoint != "" || s.PathStyle {
		p[icebergio.S3ForceVirtualAddressing] = strconv.FormatBool(!s.PathStyle)
	}
	return p
}

// Close releases the catalog's connections.
func (c *Catalog) Close() {
	if cl, ok := c.cat.(interface{ Close() error }); ok {
		_ = cl.Close()
	}
}

// Namespace is the tenant's namespace.
func (c *Catalog) Namespace() string { return c.namespace[0] }

func (c *Catalog) ensureNamespace(ctx context.Context) error {
	ok, err := c.cat.CheckNamespaceExists(ctx, c.namespace)
	if err != nil {
		return fmt.Errorf("catalog: namespace %s: %w", c.Namespace(), err)
	}
	if ok {
		return nil
	}
	err = c.cat.CreateNamespace(ctx, c.namespace, iceberg.Properties{"location": c.warehouse})
	if err != nil && !errors.Is(err, icecat.ErrNamespaceAlreadyExists) {
		return fmt.Errorf("catalog: create namespace %s: %w", c.Namespace(), err)
	}
	return nil
}

// Table loads the table of that name in the tenant's namespace, creating it under the
// tenant's warehouse with the schema given when it does not exist yet. A table made
// before a column was renamed (ViewColKafkaPartition) is renamed now, in one commit;
// one made before its metadata was bounded (maintain.go) gets the properties that
// bound it.
func (c *Catalog) Table(ctx context.Context, name string, schema *arrow.Schema) (*table.Table, error) {
	return c.table(ctx, name, schema, nil)
}

// table is Table creating a missing table with the properties extra besides.
func (c *Catalog) table(ctx context.Context, name string, schema *arrow.Schema, extra iceberg.Properties) (*table.Table, error) {
	id := table.Identifier{c.Namespace(), name}
	tbl, err := c.cat.LoadTable(ctx, id)
	if err == nil {
		if tbl, err = upgrade(ctx, tbl); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		if tbl, err = boundMetadata(ctx, tbl); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		return tbl, nil
	}
	if !errors.Is(err, icecat.ErrNoSuchTable) {
		return nil, fmt.Errorf("catalog: load %s: %w", name, err)
	}
	sc, err := IcebergSchema(schema)
	if err != nil {
		return nil, fmt.Errorf("catalog: table %s: %w", name, err)
	}
	props, err := nameMappingProperty(sc)
	if err != nil {
		return nil, fmt.Errorf("catalog: table %s: %w", name, err)
	}
	props["format-version"] = "2"
	for k, v := range metadataProperties() {
		props[k] = v
	}
	for k, v := range extra {
		props[k] = v
	}
	tbl, err = c.cat.CreateTable(ctx, id, sc,
		icecat.WithLocation(c.warehouse+"/"+c.Namespace()+"/"+name),
		icecat.WithProperties(props))
	if errors.Is(err, icecat.ErrTableAlreadyExists) {
		// another registrar created it since we looked
		tbl, err = c.cat.LoadTable(ctx, id)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: create %s: %w", name, err)
	}
	return tbl, nil
}

// IcebergSchema turns a dataset's Arrow schema (lake.RawSchema, lake.ViewSchema) into
// an Iceberg schema with fresh field ids. Every field is optional: DuckDB, which writes
// the lake's Parquet files, declares every column optional, and Iceberg readers refuse a
// file whose column is optional where the table's is required. A column whose name
// Iceberg reserves takes its table name (lake.ViewColPartition is ViewColKafkaPartition).
func IcebergSchema(s *arrow.Schema) (*iceberg.Schema, error) {
	fields := make([]arrow.Field, s.NumFields())
	for i, f := range s.Fields() {
		name, err := tableName(f.Name)
		if err != nil {
			return nil, err
		}
		f.Name = name
		f.Nullable = true
		fields[i] = f
	}
	return table.ArrowSchemaToIcebergWithFreshIDs(arrow.NewSchema(fields, nil), false)
}
