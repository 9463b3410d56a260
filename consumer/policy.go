package consumer

import (
	"cmp"
	"slices"
	"time"
)

// A flushReason says why a buffer is flushed. It is the reason label of
// fhirlake_consumer_flushes_total and decides with whom the buffer is
// flushed (takesAlongDue).
type flushReason string

const (
	reasonRows     flushReason = "rows"      // MaxRows reached
	reasonBytes    flushReason = "bytes"     // MaxBytes reached
	reasonAge      flushReason = "age"       // due by MaxAge
	reasonCaughtUp flushReason = "caught-up" // the end of a backlog
	reasonMemory   flushReason = "memory"    // the memory budget ran out
	reasonRevoke   flushReason = "revoke"    // the partition was taken away
	reasonShutdown flushReason = "shutdown"  // the consumer stops
)

// takesAlongDue reports whether a flush for r takes along the other
// partitions due within MaxAge/MinAgeFraction, and those waiting for the
// end of a backlog (Consumer.dueGroup). A flush by size is the partition's
// alone: it does not say the others are ready. A memory event forms its
// own group (memoryFlush). A stop flushes only the partitions stopped.
func (r flushReason) takesAlongDue() bool { return r == reasonAge || r == reasonCaughtUp }

// MinAgeFraction: partitions due within this fraction of MaxAge flush
// together (joinsDue), and agePhase spreads their age limits over it.
const MinAgeFraction = 5

// backlogHold is how long a buffer whose first record was produced long
// ago (the consumer is catching up) is still held: 2/5 of MaxAge. A
// catch-up then fills the memory budget before a buffer is due, and the
// backlog is written in few large files by memory events, which flush
// every partition as one group. A file costs the encoder a few
// milliseconds whatever its rows, one per tenant and dataset per group:
// held a fifth of MaxAge, a 300k catch-up on a slower 2-core machine
// flushed mostly by age and wrote 252–420 files in 13.6–17.9 CPU-seconds;
// held 2/5, 105–147 files in 12.1–14.0 (docs/benchmarks.md, Ingestion).
func backlogHold(maxAge time.Duration) time.Duration { return maxAge * 2 / 5 }

// recheckEvery is how often a buffer waiting at the end of its backlog
// looks again whether the partitions it waits for are still catching up:
// short against MaxAge, long against a poll.
const recheckEvery = 50 * time.Millisecond

// ageSlots is the number of phases agePhase spreads partitions over: a few
// are enough to keep equal partitions from flushing at the same instant.
const ageSlots = 8

// agePhase spreads partitions' age limits over the last fifth of MaxAge,
// so that partitions filled at the same rate do not all flush at the same
// moment.
func agePhase(maxAge time.Duration, partition int32) time.Duration {
	return maxAge / MinAgeFraction * time.Duration(int(uint32(partition)%ageSlots)) / ageSlots
}

// flushPolicy decides when one partition's filling buffer is flushed. It
// is a plain value owned by the partition's worker goroutine, with no
// clock and no goroutine of its own: the worker tells it what happened and
// when, and carries out what it answers.
//
//	open       the buffer's first records were decoded
//	add        a delivery was decoded into the buffer: flush now, and why?
//	untilNext  how long until tick has something to decide (the timer)
//	tick       the timer fired: flush now, and why?
//	flushed    the buffer was sealed: start over
//
// The rules, each with its reason:
//   - rows, bytes: a buffer holding MaxRows rows or MaxBytes record bytes
//     is flushed at once.
//   - age: a buffer is flushed when it is due (deadline).
//   - caught-up: a backlogged buffer (its first record was produced more
//     than MaxAge/2 before it opened, or so long before that the minimum
//     hold applied) is flushed as soon as a delivery reaches the high
//     watermark after earlier ones did not: holding it longer would only
//     wait for records that are not there. In steady state neither holds:
//     fetches reach the high watermark and records are fresh.
//   - …unless another partition is still catching up: then the buffer
//     waits, looking again every recheckEvery, so that the last partition
//     to reach the end takes the others along (one file per tenant and
//     dataset for all of them); it still flushes by age if that comes
//     first.
//
// With whom is decided across partitions, on snapshots of what each
// publishes (peer): a flush by size is the partition's alone; one by age
// or at the end of a backlog takes along the partitions joinsDue names
// (Consumer.dueGroup); a memory event flushes those memoryFlush chooses
// (Consumer.flushLargest). A partition signalled by either flushes if it
// holds records (worker.joinGroup).
type flushPolicy struct {
	maxRows  int
	maxBytes int64
	maxAge   time.Duration
	// phase shortens this partition's age limit a little (agePhase).
	phase time.Duration

	// The filling buffer, as far as flushing goes; all zero while it is
	// empty.
	due        time.Time // when it must be flushed by age; zero: the buffer is empty
	backlogged bool      // its first record was already old when it opened
	recheck    time.Time // while it waits for peers catching up: when to look again

	// behind is true when the partition's last delivery stopped short of
	// the high watermark. It outlives flushes: it is about the partition's
	// position in its log, not about the buffer.
	behind bool
}

func newFlushPolicy(o *Options, partition int32) flushPolicy {
	return flushPolicy{maxRows: o.MaxRows, maxBytes: o.MaxBytes, maxAge: o.MaxAge, phase: agePhase(o.MaxAge, partition)}
}

// held is the filling buffer as add sees it after a delivery.
type held struct {
	rows  int   // rows in the buffer (MaxRows)
	bytes int64 // record bytes decoded into it (MaxBytes)
}

// empty reports whether the buffer holds no records.
func (p *flushPolicy) empty() bool { return p.due.IsZero() }

// catchingUp reports whether the partition is working through a backlog
// whose end it has not reached: partitions at the end of theirs wait for
// it.
func (p *flushPolicy) catchingUp() bool { return p.backlogged && p.behind }

// waiting reports whether the buffer waits, at the end of its backlog, for
// other partitions still catching up.
func (p *flushPolicy) waiting() bool { return !p.recheck.IsZero() }

// open starts the clock of a buffer whose first records were decoded at
// now, the first of them produced at produced (its Kafka timestamp; zero
// when unknown). It does nothing while the buffer holds records.
func (p *flushPolicy) open(now, produced time.Time) {
	if !p.empty() {
		return
	}
	due, held := p.deadline(now, produced)
	stale := !produced.IsZero() && now.Sub(produced) > p.maxAge/2
	p.due, p.backlogged = due, held || stale
}

// deadline is when a buffer opened at now by a record produced at
// produced must be flushed: MaxAge after the record was produced (less the
// partition's phase), so that the time to durability is bounded from
// production rather than from arrival, but never sooner than
// backlogHold from now and never later than MaxAge from now (producer
// clocks may be wrong). held reports that the backlog hold applied: the
// record was already old.
func (p *flushPolicy) deadline(now, produced time.Time) (at time.Time, held bool) {
	latest := now.Add(p.maxAge - p.phase)
	if produced.IsZero() {
		return latest, false
	}
	d := produced.Add(p.maxAge - p.phase)
	if d.After(latest) {
		return latest, false
	}
	if earliest := now.Add(backlogHold(p.maxAge)); d.Before(earliest) {
		return earliest, true
	}
	return d, false
}

// add takes a delivery decoded at now into the buffer (opened first), which
// now holds h; caughtUp says the delivery reached the partition's high
// watermark. It returns why the buffer must be flushed now, or "" to go on
// filling it. peersCatchingUp, which reports whether another partition is
// still catching up, is asked only at the end of a backlog.
func (p *flushPolicy) add(now time.Time, h held, caughtUp bool, peersCatchingUp func() bool) flushReason {
	endOfBacklog := caughtUp && p.behind && p.backlogged
	p.behind = !caughtUp
	switch {
	case h.rows >= p.maxRows:
		return reasonRows
	case h.bytes >= p.maxBytes:
		return reasonBytes
	case endOfBacklog:
		return p.caughtUp(now, peersCatchingUp)
	}
	return ""
}

// caughtUp flushes the buffer at the end of its backlog, or has it wait
// while other partitions are still catching up.
func (p *flushPolicy) caughtUp(now time.Time, peersCatchingUp func() bool) flushReason {
	if peersCatchingUp() {
		p.recheck = now.Add(recheckEvery)
		return ""
	}
	return reasonCaughtUp
}

// untilNext is how long from now until tick has something to decide: the
// buffer's deadline, or the next look at the peers it waits for. ok is
// false when there is nothing to wait for (the buffer is empty).
func (p *flushPolicy) untilNext(now time.Time) (d time.Duration, ok bool) {
	if p.empty() {
		return 0, false
	}
	at := p.due
	if p.waiting() && p.recheck.Before(at) {
		at = p.recheck
	}
	return at.Sub(now), true
}

// tick decides at now, with no new delivery, whether the buffer must be
// flushed: it is due, or the partitions it waited for have caught up.
func (p *flushPolicy) tick(now time.Time, peersCatchingUp func() bool) flushReason {
	switch {
	case p.empty():
		return ""
	case !now.Before(p.due):
		return reasonAge
	case p.waiting() && !now.Before(p.recheck):
		return p.caughtUp(now, peersCatchingUp)
	}
	return ""
}

// flushed starts over with an empty buffer.
func (p *flushPolicy) flushed() {
	p.due, p.backlogged, p.recheck = time.Time{}, false, time.Time{}
}

// A peer is another partition as a flush decision sees it: a snapshot of
// what its worker publishes (worker.shared).
type peer struct {
	filling int64     // record bytes in its filling buffer; 0 when empty
	due     time.Time // when its buffer is due by age; zero when empty
	waiting bool      // its buffer waits for the end of a backlog
	// stuck: its flusher has been on one batch for longer than a group
	// waits for its members (JoinWait); its store is refusing or down, and
	// a group should not wait for it.
	stuck bool
}

// joinsDue reports whether a peer is taken along by a partition flushing at
// now by age or at the end of a backlog: it holds records, its flusher is
// not stuck, and it is due within MaxAge/MinAgeFraction (it flushes a
// little early, and all write one file per tenant and dataset instead of
// one each) or waiting for the end of that backlog. Partitions filled at
// the same rate soon flush in step this way, so at steady load a flush
// writes a view's rows of every partition in one file.
func joinsDue(now time.Time, maxAge time.Duration, p peer) bool {
	if p.filling == 0 || p.stuck {
		return false
	}
	return p.waiting || (!p.due.IsZero() && !p.due.After(now.Add(maxAge/MinAgeFraction)))
}

// memoryFlush asks the partitions a memory event flushes, as one group:
// those holding the most, largest first, until their buffers cover need
// (the budget less what flushes in progress will free), and a second one
// even when the largest covers it, since its view files cost little once
// shared. A partition holding nothing, or whose flusher is stuck, is not
// asked. signal(i) asks peers[i] and reports whether it counts: a
// partition already signalled flushes anyway and is not counted.
func memoryFlush(need int64, peers []peer, signal func(i int) bool) {
	if need <= 0 {
		return // enough is being flushed already; wait for it
	}
	order := make([]int, 0, len(peers))
	for i, p := range peers {
		if !p.stuck {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(peers[b].filling, peers[a].filling) })
	signalled := 0
	for _, i := range order {
		if peers[i].filling == 0 || (need <= 0 && signalled >= 2) {
			return
		}
		need -= peers[i].filling
		if signal(i) {
			signalled++
		}
	}
}
