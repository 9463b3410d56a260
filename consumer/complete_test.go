package consumer

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestPositionThrough(t *testing.T) {
	checked := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	early := checked.Add(-time.Hour)
	for _, tc := range []struct {
		name string
		p    Position
		want time.Time // zero: cannot tell
	}{
		{"committed up to the end", Position{Committed: 10, End: 10}, checked},
		{"an empty partition the group never read", Position{Committed: -1, End: 0}, checked},
		{"retention deleted everything the group had not read", Position{Committed: 3, Start: 10, End: 10}, checked},
		{"behind: the first pending record's time", Position{Committed: 4, End: 10, Probed: true, Next: early}, early},
		{"never committed: from the log start", Position{Committed: -1, Start: 2, End: 5, Probed: true, Next: early}, early},
		{"behind, not probed", Position{Committed: 4, End: 10}, time.Time{}},
		{"only transaction markers pending", Position{Committed: 9, End: 10, Probed: true}, checked},
		{"a producer's clock ahead of the check", Position{Committed: 9, End: 10, Probed: true, Next: checked.Add(time.Minute)}, checked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.p.Through(checked)
			if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
				t.Errorf("got %s (%v), want %s", got, ok, tc.want)
			}
		})
	}
}

func TestCompleteThrough(t *testing.T) {
	checked := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t1, t2 := checked.Add(-2*time.Hour), checked.Add(-time.Hour)
	caughtUp := Position{Committed: 5, End: 5}
	behind1 := Position{Committed: 1, End: 5, Probed: true, Next: t1}
	behind2 := Position{Committed: 1, End: 5, Probed: true, Next: t2}
	unknown := Position{Committed: 1, End: 5}
	for _, tc := range []struct {
		name string
		ps   []Position
		want time.Time
	}{
		{"no partition", nil, checked},
		{"every partition caught up", []Position{caughtUp, caughtUp}, checked},
		{"the earliest pending record of any partition", []Position{caughtUp, behind2, behind1}, t1},
		{"one partition that cannot tell", []Position{behind1, unknown}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := CompleteThrough(checked, tc.ps)
			if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
				t.Errorf("got %s (%v), want %s", got, ok, tc.want)
			}
		})
	}
}

func TestTenantTopics(t *testing.T) {
	topics := []string{"shared", "acme.only", "globex.only"}
	routes := map[string]string{"acme.only": "acme", "globex.only": "globex"}
	for tenant, want := range map[string][]string{
		"acme":    {"shared", "acme.only"},
		"globex":  {"shared", "globex.only"},
		"initech": {"shared"},
	} {
		if got := TenantTopics(tenant, topics, routes); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", tenant, got, want)
		}
	}
	if got := TenantTopics("acme", topics, nil); !slices.Equal(got, topics) {
		t.Errorf("without topic routes: got %v, want every topic", got)
	}
}

// TestReadCompleteness reads a group's positions from a broker: a
// partition behind is complete through its first record not committed, one
// caught up through the check, one the group never committed through its
// first record; and once the group commits everything, through the check.
func TestReadCompleteness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "a"), kfake.SeedTopics(1, "b"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	seeds := []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, r := range []struct {
		topic     string
		partition int32
		ts        time.Time
	}{
		{"a", 0, at(0)}, {"a", 0, at(1)}, {"a", 0, at(2)},
		{"a", 1, at(5)}, {"a", 1, at(6)},
		{"b", 0, at(3)},
	} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: r.topic, Partition: r.partition, Timestamp: r.ts, Value: []byte("{}")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(offsets map[string]map[int32]int64) {
		t.Helper()
		var o kadm.Offsets
		for topic, ps := range offsets {
			for p, at := range ps {
				o.Add(kadm.Offset{Topic: topic, Partition: p, At: at, LeaderEpoch: -1})
			}
		}
		resp, err := adm.CommitOffsets(ctx, "g", o)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	commit(map[string]map[int32]int64{"a": {0: 1, 1: 2}})

	c, err := ReadCompleteness(ctx, adm, seeds, "g", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		topics []string
		want   time.Time
	}{
		{[]string{"a"}, at(1)}, // a/0's offset 1 is pending; a/1 is caught up
		{[]string{"b"}, at(3)}, // never committed: its first record
		{[]string{"a", "b"}, at(1)},
	} {
		if got, ok := c.Through(tc.topics); !ok || !got.Equal(tc.want) {
			t.Errorf("%v complete through %s (%v), want %s; positions %+v", tc.topics, got, ok, tc.want, c.Positions)
		}
	}

	commit(map[string]map[int32]int64{"a": {0: 3}, "b": {0: 1}})
	c, err = ReadCompleteness(ctx, adm, seeds, "g", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Through([]string{"a", "b"}); !ok || !got.Equal(c.Checked) || c.Checked.Before(at(6)) {
		t.Errorf("caught up: complete through %s (%v), want the check's time %s", got, ok, c.Checked)
	}
}

// TestReadCompletenessSkipsTransactionMarkers: a group that committed the
// last record of a transaction stops before its commit marker; the
// partition holds nothing more to deliver, so it is complete through the
// check, not stuck at the marker's time.
func TestReadCompletenessSkipsTransactionMarkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "tx"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	seeds := []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(seeds, kgo.TransactionalID("completeness-test"), kgo.DefaultProduceTopic("tx"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("{}")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	var o kadm.Offsets
	o.Add(kadm.Offset{Topic: "tx", Partition: 0, At: 1, LeaderEpoch: -1}) // the record at 0, durable
	if resp, err := adm.CommitOffsets(ctx, "g", o); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	c, err := ReadCompleteness(ctx, adm, seeds, "g", []string{"tx"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Positions) != 1 || c.Positions[0].End != 2 {
		t.Fatalf("positions %+v, want one partition ending after the marker at 1", c.Positions)
	}
	if got, ok := c.Through([]string{"tx"}); !ok || !got.Equal(c.Checked) {
		t.Errorf("complete through %s (%v), want the check's time %s; positions %+v", got, ok, c.Checked, c.Positions)
	}
}

// TestCompletenessWatchUnknownWhileKafkaIsDown: the watch's latest reading
// is a time while Kafka answers and unknown once it does not, never the
// last time read.
func TestCompletenessWatchUnknownWhileKafkaIsDown(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "a"))
	if err != nil {
		t.Fatal(err)
	}
	w := NewCompletenessWatch(WatchOptions{Brokers: cluster.ListenAddrs(), Group: "g", Topics: []string{"a"}, Tenants: []string{"acme"},
		Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor := func(what string, ok func(TenantCompleteness) bool) TenantCompleteness {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := w.Latest()
			if ok(got) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: latest reading still %+v", what, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	got := waitFor("kafka up", func(c TenantCompleteness) bool { return !c.Checked.IsZero() })
	if through, ok := got.Through["acme"]; !ok || !through.Equal(got.Checked) {
		t.Fatalf("an empty topic: acme complete through %s (%v), want the check's time %s", through, ok, got.Checked)
	}
	cluster.Close()
	got = waitFor("kafka down", func(c TenantCompleteness) bool { return c.Checked.IsZero() })
	if len(got.Through) != 0 {
		t.Errorf("kafka down: got %v, want no tenant's time", got.Through)
	}
}
