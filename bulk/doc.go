// Package bulk reads FHIR files — bulk-export NDJSON, Bundles of every type,
// subscription notifications, plain or gzipped — and loads what they hold
// into a tenant's lake (Backfill) or into one Parquet dataset per
// SQL-on-FHIR view (Flatten).
//
// Both go through one Reader, so a file means the same to both:
//
//   - gzip is recognised by its magic number, whatever the file's name;
//   - a file is NDJSON when its first line with content is a whole JSON
//     object and another line with content follows; otherwise it is one
//     JSON document (pretty-printed or not). The name plays no part;
//   - a Bundle of any type is split into its entries by flatten.BundleEntries
//     without being parsed whole; a Bundle inside an entry is opened too;
//     a DELETE entry is a delete (read, when the Bundle spells DELETE at
//     all, by a SQL-on-FHIR view over the Bundle: flatten's parser again);
//   - a Bundle whose first entry is a subscription status (or a MessageHeader
//     around a notification), a bare status, and the vendor envelopes that
//     package notification recognises are subscription notifications: their
//     changes are those notification.Decode finds;
//   - a line of `fhirlake generate --out` is read as the notification it holds.
//
// A resource, entry or line that cannot be read is reported with its
// location (file, line, entry index in each enclosing Bundle) and skipped;
// the rest of the file is read. A line or document larger than
// Reader.MaxBytes is refused rather than held in memory.
//
// The Reader yields Items to a callback: resources held as such (an upsert
// of themselves), changes that a notification or a DELETE entry describes,
// and the resources a notification carries beside its changes (its status,
// additional context). Backfill stores the changes, as the Kafka consumer
// would; Flatten evaluates every resource the files hold, parsing each once
// for all the views of its type.
package bulk
