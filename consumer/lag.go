package consumer

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
)

// PartitionLag is how far a group is behind on one partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	// Committed is the group's next offset to read; -1 when it has none
	// (then lag counts from the log start).
	Committed int64
	End       int64
	Lag       int64
}

// GroupLag is a group's lag over the given topics.
type GroupLag struct {
	Partitions []PartitionLag
	Total      int64
}

// Lag compares the group's committed offsets with the end of every
// partition of topics, including partitions the group never committed.
func Lag(ctx context.Context, adm *kadm.Client, group string, topics []string) (GroupLag, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return GroupLag{}, fmt.Errorf("list end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return GroupLag{}, fmt.Errorf("list end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return GroupLag{}, fmt.Errorf("list start offsets: %w", err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return GroupLag{}, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	var out GroupLag
	ends.Each(func(o kadm.ListedOffset) {
		pl := PartitionLag{Topic: o.Topic, Partition: o.Partition, Committed: -1, End: o.Offset}
		from := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			from = s.Offset
		}
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			pl.Committed = c.At
			from = c.At
		}
		pl.Lag = max(o.Offset-from, 0)
		out.Total += pl.Lag
		out.Partitions = append(out.Partitions, pl)
	})
	return out, nil
}
