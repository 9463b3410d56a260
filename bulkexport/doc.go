// Package bulkexport is a FHIR Bulk Data client: it asks a live server for an
// $export (system, Patient or Group level, with _type and _since), polls the
// status URL until the manifest is ready (honouring Retry-After, passing
// X-Progress on), downloads the NDJSON files in parallel into a local
// directory and hands each finished file to its caller, which loads it.
//
// Requests carry a bearer token: a static one, or one obtained with SMART
// Backend Services (a client_credentials grant authenticated by a
// private_key_jwt assertion signed RS384 or ES384; the token endpoint is read
// from the server's .well-known/smart-configuration). A token the server
// refuses (401) is renewed once and the request repeated.
//
// An export survives interruption: the directory holds a state file (the
// status URL, then the manifest, then which files are downloaded and
// loaded), and a file cut short is resumed with an HTTP Range request (or
// downloaded again when the server ignores the range). Running the same
// request again picks up where the last run stopped.
//
// Everything is bounded: retries, waits (Retry-After is capped by
// Options.MaxWait), the manifest's size and number of files, the bytes of
// an error response read, the downloads in flight, the files waiting to be
// loaded.
//
// The package knows nothing of the lake's files: the caller loads each file
// (cmd/fhirlake hands them to bulk.Backfill). It reads and records only
// the transactionTime of a source's last export (lake.Exports), for
// --since-last.
package bulkexport
