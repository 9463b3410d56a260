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
