// Package notification turns the bytes of a FHIR change notification into
// the changes it carries: which resources were created, updated or deleted,
// with their versions and, where the envelope holds them, their bodies.
//
// Decode and DecodeRecord recognise every envelope fhirlake accepts (R5
// subscription-notification Bundles, R4B history Bundles, the R4 backport,
// Aidbox, HAPI/Smile message channels, IBM FHIR, Azure Health Data
// Services, Google Cloud Healthcare, a bare resource with interaction
// headers) from the value alone; headers only complete envelopes that put
// the interaction outside the body. A Fetcher reads the bodies of id-only
// notifications from the tenant's own FHIR server.
//
// A Decoder decodes as DecodeRecord does and also parses each resource it
// meets with package flatten's parser, once: the decoder reads the
// resource's type, id and meta from that tree and hands it on
// (Event.Parsed) for the views. It reuses its memory from record to
// record; it is the consumer's hot path.
//
// The package knows nothing of Kafka, tenants' lakes or Arrow: the Kafka
// engine (package consumer), the file readers (package bulk) and the tests'
// lake builders all decode through it.
package notification
