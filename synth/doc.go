// Package synth generates a deterministic stream of FHIR subscription
// notifications, as Kafka records, for the demo and the benchmarks.
//
// # Data
//
// Each tenant has Options.Patients patients. A patient brings a US Core
// flavoured Patient (race, ethnicity and birth sex extensions, name, gender,
// birth date, address), 1–4 Encounters (SNOMED type, v3 ActCode class,
// period), vital-sign Observations (LOINC body height, body weight, BMI,
// heart rate, and a blood pressure panel with systolic and diastolic
// components), laboratory Observations (glucose, HbA1c, cholesterol,
// hemoglobin), Conditions (SNOMED) and MedicationRequests (RxNorm). Resource
// bodies are FHIR R4 in every envelope; references are relative
// ("Patient/<id>"). Ids are UUID-shaped, derived from the seed, the tenant,
// the patient and the resource's position, so they are stable across runs
// and unique within a tenant.
//
// Every event gives its resource a new meta.versionId ("1", "2", …) and a
// meta.lastUpdated taken from a simulated clock that starts at
// 2025-01-06T08:00:00Z and advances 1 ms to 2 s per event, so lastUpdated
// increases along the stream. A resource's events appear in the stream in
// version order: its creation, then up to two updates (a changed status and
// value), then possibly its deletion. Updates and deletions of a patient's
// resources follow the creation of the tenant's next patient. Tenants are
// interleaved patient by patient.
//
// # Envelopes
//
// Every notification follows the published examples of its format: R4
// backport (Bundle.type "history", first entry a Parameters status with
// valueString counters), R4B backport (Bundle.type "history", first entry a
// SubscriptionStatus with string counters) and R5 (Bundle.type
// "subscription-notification", first entry a SubscriptionStatus whose
// counters are JSON strings in some notifications and JSON numbers in
// others). History bundles carry request and response on every entry.
//
// The status lists one notification event per entry that follows it, in the
// same order: its event number, its timestamp and its focus, the absolute URL
// <base>/<Type>/<id> with base https://fhir.<tenant>.example.org/fhir.
// Event numbers of a tenant's event notifications are contiguous from 1, and
// eventsSinceSubscriptionStart is the number of the notification's last
// event.
//
// An upsert entry has fullUrl, resource, request (POST <Type> or PUT
// <Type>/<id> for version 1, PUT <Type>/<id> after) and response (status
// 201 or 200, etag W/"<version>", lastModified). A delete entry has no
// resource: request DELETE <Type>/<id>, response status 204 with the etag
// and lastModified of the deletion, and its focus is versioned,
// <base>/<Type>/<id>/_history/<version>. A deletion is a version of its own,
// one above the resource's last upsert, as FHIR servers with versioned
// history record it; this lets readers that keep the latest
// (type, id, versionId) see the tombstone win.
//
// Handshakes (status "requested", no events) open each tenant's stream;
// heartbeats (status "active", no events) are spread over it.
//
// # Records
//
// Every record carries the tenant header (Options.TenantHeader) and a
// content-type header, except one unroutable record that has no tenant
// header. Event records are keyed "<Type>/<id>" of their first event's
// focus; control and malformed records by the tenant's subscription id.
// Malformed records (truncated JSON, XML, a Bundle without a status entry, an
// empty value, a JSON array) and unroutable records (valid notifications of
// a tenant "unknown-<n>", base URL included) hold resources that are not part
// of the expected state.
//
// Generator.Expected and WriteExpected give the final state of every
// resource, and Generator.Counts what was yielded, so that a test can
// reconcile a lake with the stream that filled it.
package synth
