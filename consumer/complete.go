package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The completeness watermark: the time through which a tenant's lake is
// complete, every change produced before it durable. The consumer commits a
// partition's offset only once the files holding the records before it are
// durable (the commit protocol), so the group's committed offsets are the
// lake's durable positions, whichever replica committed them.
//
// A partition is complete through the moment its end offset was listed
// when the group has committed up to that end; otherwise through the Kafka
// timestamp of the first record not yet committed: every record before it
// in the log is durable. A tenant is complete through the earliest of the
// partitions that can carry its changes (TenantTopics). See
// docs/DESIGN.md, "The completeness watermark".

// Position is the group's durable position on one partition, as the
// completeness watermark reads it.
type Position struct {
	Topic     string
	Partition int32
	// Committed is the group's committed offset, the first record not yet
	// durable; -1 when the group has none (it starts from the log start).
	Committed int64
	// Start and End are the partition's log start and end offsets when
	// checked.
	Start, End int64
	// Probed says Next was looked for: the partition is behind (From <
	// End) and its first pending records were read.
	Probed bool
	// Next is the Kafka timestamp of the first data record at or after
	// From and before End. Zero when Probed found only transaction markers
	// there.
	Next time.Time
}

// From is the first offset the group has not made durable: its committed
// offset, or the log start when it has none or Kafka's retention has
// deleted records it never read (those can no longer reach the lake).
func (p Position) From() int64 { return max(p.Committed, p.Start) }

// Behind says the partition holds records, appended before the check, that
// are not durable yet.
func (p Position) Behind() bool { return p.From() < p.End }

// Through is the time through which the partition is complete, given
// when its end offset was listed; false when it cannot be told (behind,
// and its first pending record was not read).
func (p Position) Through(checked time.Time) (time.Time, bool) {
	switch {
	case !p.Behind():
		return checked, true
	case !p.Probed:
		return time.Time{}, false
	case p.Next.IsZero() || p.Next.After(checked):
		// Only transaction markers are pending; or a producer's clock is
		// ahead of ours: the partition is no more complete than the check.
		return checked, true
	default:
		return p.Next, true
	}
}

// CompleteThrough is the time through which every partition of ps is
// complete: the earliest of their Through. A set without partitions is
// complete through the check. False when a partition cannot tell.
func CompleteThrough(checked time.Time, ps []Position) (time.Time, bool) {
	through := checked
	for _, p := range ps {
		t, ok := p.Through(checked)
		if !ok {
			return time.Time{}, false
		}
		if t.Before(through) {
			through = t
		}
	}
	return through, true
}

// TenantTopics are the consumed topics that can carry tenant's changes:
// every topic but those that routes (routing.topics) give to another
// tenant, since a record of such a topic is that tenant's or a dead letter.
// A topic shared by several tenants counts for each of them.
func TenantTopics(tenant string, topics []string, routes map[string]string) []string {
	out := make([]string, 0, len(topics))
	for _, t := range topics {
		if owner, ok := routes[t]; ok && owner != tenant {
			continue
		}
		out = append(out, t)
	}
	return out
}

// Completeness is one reading of the group's durable positions.
type Completeness struct {
	// Checked is when the end offsets were asked for: every record
	// appended before it is below them.
	Checked   time.Time
	Positions []Position
}

// Through is the time through which the partitions of topics are
// complete; false when it cannot be told.
func (c Completeness) Through(topics []string) (time.Time, bool) {
	var ps []Position
	for _, p := range c.Positions {
		if slices.Contains(topics, p.Topic) {
			ps = append(ps, p)
		}
	}
	return CompleteThrough(c.Checked, ps)
}

// ReadCompleteness reads the group's durable positions on every partition
// of topics: the end offsets first (their time is Checked), then the log
// starts and the committed offsets, then, for each partition behind, its
// first pending records through a short-lived client made with probe
// (seed brokers and the like; it joins no group and commits nothing).
func ReadCompleteness(ctx context.Context, adm *kadm.Client, probe []kgo.Opt, group string, topics []string) (Completeness, error) {
	checked := time.Now()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return Completeness{}, fmt.Errorf("list end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return Completeness{}, fmt.Errorf("list start offsets: %w", err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		// No member has ever committed (some brokers say so with an
		// error, Kafka with no offsets): nothing is durable yet.
		committed, err = nil, nil
	}
	if err != nil {
		return Completeness{}, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	c := Completeness{Checked: checked}
	ends.Each(func(o kadm.ListedOffset) {
		p := Position{Topic: o.Topic, Partition: o.Partition, Committed: -1, End: o.Offset}
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			p.Start = s.Offset
		}
		if oc, ok := committed.Lookup(o.Topic, o.Partition); ok && oc.Err == nil && oc.At >= 0 {
			p.Committed = oc.At
		}
		c.Positions = append(c.Positions, p)
	})
	slices.SortFunc(c.Positions, func(a, b Position) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	if err := probePending(ctx, probe, c.Positions); err != nil {
		return Completeness{}, err
	}
	return c, nil
}

// probe bounds what reading the first pending records holds: one fetch
// response of at most this much (a partition's first batch is returned
// whole even when larger).
const (
	probeFetchBytes     = 1 << 20
	probePartitionBytes = 64 << 10
)

// probePending sets Next on every partition of ps that is behind: the
// timestamp of its first data record from From on, skipping transaction
// markers, read by a client of its own that it closes before returning.
func probePending(ctx context.Context, opts []kgo.Opt, ps []Position) error {
	type tp struct {
		topic     string
		partition int32
	}
	pending := map[tp]*Position{}
	offsets := map[string]map[int32]kgo.Offset{}
	for i := range ps {
		p := &ps[i]
		if !p.Behind() {
			continue
		}
		pending[tp{p.Topic, p.Partition}] = p
		if offsets[p.Topic] == nil {
			offsets[p.Topic] = map[int32]kgo.Offset{}
		}
		offsets[p.Topic][p.Partition] = kgo.NewOffset().At(p.From())
	}
	if len(pending) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(slices.Clip(opts),
		kgo.ConsumePartitions(offsets),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(probeFetchBytes),
		kgo.FetchMaxPartitionBytes(probePartitionBytes),
	)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	for len(pending) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read the first pending record of %d partitions: %w", len(pending), err)
		}
		var fetchErr error
		fs.EachError(func(topic string, partition int32, err error) {
			// Data loss is the client telling that it reset past records
			// retention deleted; the records it reads next are pending.
			if _, ok := errors.AsType[*kgo.ErrDataLoss](err); !ok && fetchErr == nil {
				fetchErr = fmt.Errorf("read %s/%d: %w", topic, partition, err)
			}
		})
		if fetchErr != nil {
			return fetchErr
		}
		fs.EachRecord(func(r *kgo.Record) {
			key := tp{r.Topic, r.Partition}
			p, ok := pending[key]
			if !ok || r.Offset < p.From() {
				return
			}
			switch {
			case r.Offset >= p.End:
				// Everything before the end was a transaction marker.
			case r.Attrs.IsControl():
				if r.Offset < p.End-1 {
					return
				}
			default:
				p.Next = r.Timestamp
			}
			p.Probed = true
			delete(pending, key)
		})
	}
	return nil
}
