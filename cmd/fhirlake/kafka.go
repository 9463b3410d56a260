package main

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/kafkaconn"
)

// kafkaClient is a client of the cluster k describes — its brokers, TLS
// and SASL — with extra options after those, checked at once: refused
// credentials or an untrusted certificate end the command here, with one
// error, rather than in retries.
func kafkaClient(ctx context.Context, k config.Kafka, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := kafkaconn.Options(ctx, k)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	if err := kafkaconn.Check(ctx, cl); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// kafkaErr is err, or the permanent failure it wraps (kafkaconn.Error),
// whose message says what to fix.
func kafkaErr(err error) error {
	if p := kafkaconn.Permanent(err); p != nil {
		return p
	}
	return err
}
