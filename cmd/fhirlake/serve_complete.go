package main

import (
	"context"
	"log/slog"

	"fhirlake/config"
	"fhirlake/consumer"
	"fhirlake/kafkaconn"
	"fhirlake/query/web"
)

// startCompleteness reads, every few seconds while serve runs, the time
// through which each tenant's lake is complete from the consumer group's
// committed offsets: the front holds the Kafka client, its workers never
// do. Without Kafka configured it returns nil (unknown). stop ends the
// readings and waits for them.
func startCompleteness(ctx context.Context, cfg config.Config, log *slog.Logger) (get web.CompletenessFunc, stop func()) {
	k := cfg.Kafka
	if len(k.Brokers) == 0 || k.Group == "" || len(k.Topics) == 0 {
		return nil, func() {}
	}
	tenants := make([]string, len(cfg.Tenants))
	for i, t := range cfg.Tenants {
		tenants[i] = t.Name
	}
	opts, err := kafkaconn.Options(ctx, k)
	if err != nil {
		log.Error("the lake's completeness cannot be read", "err", err)
		return nil, func() {}
	}
	w := consumer.NewCompletenessWatch(consumer.WatchOptions{
		Brokers: k.Brokers, ClientOpts: opts, ClientID: k.ClientID + "-serve", Group: k.Group, Topics: k.Topics,
		Routes: cfg.Routing.Topics, Tenants: tenants,
	}, log)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			log.Error("the lake's completeness cannot be read", "err", err)
		}
	}()
	get = func() web.Completeness {
		c := w.Latest()
		return web.Completeness{Checked: c.Checked, Through: c.Through}
	}
	return get, func() { cancel(); <-done }
}
