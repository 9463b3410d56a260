// Package rows turns decoded changes into the Arrow record batches of a
// tenant's speed layer: one row per change in the raw dataset, and the rows
// of every SQL-on-FHIR view of the resource's type, each resource parsed
// once for all its views, in the schemas package lake defines (lake.RawSchema,
// lake.ViewSchema). A Buffer holds them until its owner hands them to
// the sink. The Kafka engine (package consumer), the file readers (package
// bulk) and the tests' lake builders all build rows through it.
package rows
