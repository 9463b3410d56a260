// Package catalog keeps a tenant's lake in an Apache Iceberg catalog: one catalog per
// deployment (SQL on SQLite or PostgreSQL, or an Iceberg REST service), a namespace per
// tenant, and tables whose every data and metadata file lives in the tenant's own store
// and is written with the tenant's own credentials (docs/format/iceberg.md).
//
// It knows iceberg-go and the lake's schemas (package lake), not Kafka or stores: a
// caller opens the catalog for one tenant with that tenant's file IO (Open), makes sure
// a dataset's table exists (Table), and brings the table's file list in line with what
// the tenant's store holds (Sync) in one commit that a stale writer cannot make.
package catalog
