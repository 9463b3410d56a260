// Package lake defines a tenant's lake on disk, once, for every engine that writes or
// reads it: the object keys, the raw and view datasets' schemas, the batch snapshot's
// manifest and the order that decides which version of a resource is the latest.
//
//	speed/<dataset>/date=YYYY-MM-DD/<topic>-<partition>-<first>-<last>.parquet
//	batch/<snapshot-id>/<model>/data_0.parquet
//	batch/<snapshot-id>/manifest.json
//	_manifest/batch.json
//	_lease/compactor.json
//	_backfill/exports.json
//
// The consumer (through package rows and sink) writes the speed layer, the compactor
// writes the batch snapshots and the manifest (holding the lease while it runs),
// backfill from a FHIR server records its exports, the query layer reads all of it. Each
// format has a page under docs/format/ (docs/format/README.md is the index); the
// declarations here cite theirs.
//
// The package holds no engine: it imports only the standard library, Arrow and
// package flatten (for a view's own columns).
package lake
