// Package compactor is fhirlake's batch layer. For each tenant it plans which speed
// files are new since the last published snapshot, runs the dbt project (package dbt)
// over them and the previous snapshot, and, only when every model and test passed,
// publishes the marts as a new snapshot, in the format package lake defines
// (docs/format/snapshot.md):
//
//	batch/<snapshot-id>/<model>/data_0.parquet   the tables, uploaded first
//	batch/<snapshot-id>/manifest.json            a copy of the manifest
//	_manifest/batch.json                         written last: the commit point
//
// A reader follows _manifest/batch.json, so a run that fails or dies at any step
// leaves the previous snapshot current. A run holds the tenant's lease
// (_lease/compactor.json, docs/format/lease.md) from before it plans until it ends,
// so one compactor at a time works on a tenant; it publishes only after renewing it.
// After a publication, speed files older than the watermark minus a retention window
// and snapshots beyond the newest few are deleted.
//
// Plan and Expired are pure functions over a listing and a manifest; Compactor does the
// effects through the tenant's sink.Store and a Runner (the dbt executable).
package compactor
