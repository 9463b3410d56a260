// Package consumer is the Kafka engine of fhirlake: it reads FHIR
// subscription notifications from a Kafka consumer group and turns them
// into each tenant's Parquet files, committing Kafka offsets only once
// every file holding those records is durable.
//
// One poll loop (Consumer.Run) fetches records within a memory budget and
// dispatches them to one worker goroutine per assigned partition. A worker
// decodes each record (package notification), resolves its tenant (Router)
// and appends its rows to the partition's filling buffer (package rows);
// a record that cannot be stored goes to the dead-letter topic. The
// partition's flushPolicy decides when the buffer is flushed: by size, by
// age, at the end of a backlog, or when the memory budget runs out.
// Partitions flushed at about the same time form a flush group and write
// shared files. A sealed batch goes to the partition's flusher goroutine,
// which waits until the files holding its rows and its dead letters are
// durable and then commits the partition's offsets, in order; meanwhile
// the worker fills the next buffer.
//
// Files: consumer.go (options, the poll loop, rebalances), memory.go (the
// budget and memory events), worker.go (a partition's goroutine),
// process.go (a record to rows or a dead letter), policy.go (when to
// flush, and with whom), flushgroup.go (partitions flushed together),
// flusher.go (durable, then committed), dlq.go (dead letters), route.go
// (tenants), lag.go and observe.go (lag and freshness), metrics.go.
package consumer
