package consumer

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"fhirlake/kafkaconn"
	"fhirlake/sink"
)

// TestConsumerStopsWhenAccessIsDenied: a member whose principal may not
// join its group or read its topic stops with the reason, instead of
// retrying for as long as it runs.
func TestConsumerStopsWhenAccessIsDenied(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, testTopic, testDLQ),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "admin"), kfake.EnableACLs(),
		kfake.User("SCRAM-SHA-256", "reader", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	store, err := sink.NewLocal(filepath.Join(t.TempDir(), "acme"))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cluster: cluster, brokers: cluster.ListenAddrs(), stores: map[string]sink.Store{"acme": store}}
	c := h.consumerWith(prometheus.NewRegistry(), []string{"acme"}, func(o *Options) {
		o.ClientOpts = append(o.ClientOpts, kgo.SASL(scram.Auth{User: "reader", Pass: "secret"}.AsSha256Mechanism()))
	})
	// A deadline, not a measure: a consumer that retries would run on
	// until it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = c.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the consumer was still running after a minute (err %v)", err)
	}
	var perm *kafkaconn.Error
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("got %v, want the consumer to stop with access denied", err)
	}
}

// TestCompletenessWatchOverSASL: the watch that serve runs reads a
// cluster that requires SASL with the connection options it is given.
func TestCompletenessWatchOverSASL(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "a"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "fhirlake", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	w := NewCompletenessWatch(WatchOptions{
		Brokers: cluster.ListenAddrs(), Group: "g", Topics: []string{"a"}, Tenants: []string{"acme"},
		ClientOpts: []kgo.Opt{kgo.SASL(scram.Auth{User: "fhirlake", Pass: "secret"}.AsSha512Mechanism())},
		Interval:   20 * time.Millisecond, Timeout: 500 * time.Millisecond,
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for w.Latest().Checked.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the watch has not read the cluster in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := w.Latest().Through["acme"]; !ok {
		t.Errorf("got %+v, want acme's time", w.Latest())
	}
}
