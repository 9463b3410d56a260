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
// The package knows nothing of Kafka, tenants' lakes or Arrow: the Kafka
// engine (package consumer), the file readers (package bulk) and the tests'
// lake builders all decode through it.
package notification
