package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/receive"
)

func newReceiveCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "receive",
		Short: "Receive FHIR servers' rest-hook notifications over HTTP and write them to Kafka",
		Long: `receive is the endpoint a FHIR server's Subscriptions call (channel.type rest-hook):

  POST   /notify              a notification Bundle: R4 Backport (history, Parameters status
                              first), R4B or R5 (full-resource, id-only, empty; handshake,
                              heartbeat), or a bare resource
  PUT    /notify/{type}/{id}  a classic rest-hook create or update (the resource as body)
  DELETE /notify/{type}/{id}  a classic rest-hook delete
  GET    /healthz, /readyz (Kafka reachable), /metrics

Each call carries a tenant's secret in receive.secret_header (X-Fhirlake-Secret; set it in the
Subscription's channel.header) or as a bearer token; receive.secrets holds only its SHA-256
("fhirlake serve hash-key" makes one). The call is checked by the decoder the consumer uses
(400 when it cannot be stored), then written to receive.topic (the first of kafka.topics) with
the tenant in the routing.header record header, by an idempotent producer waiting for every
in-sync replica: the answer, 200 with a FHIR body, comes only after Kafka has acknowledged the
record. When Kafka does not within receive.produce_timeout the answer is 503 with Retry-After,
and the server retries. Bodies are bounded by receive.max_request_bytes (413), calls in progress
by receive.max_concurrent (503 beyond).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			rc := cfg.Receive.WithDefaults(cfg.Kafka)
			if listen != "" {
				rc.Listen = listen
			}
			if err := rc.Validate(cfg.Tenants); err != nil {
				return err
			}
			return runReceive(contextOf(cmd), cfg, rc, g.logger())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "host:port to listen on (default: receive.listen)")
	return cmd
}

// runReceive serves until ctx is done, then drains calls for up to 10 s and
// waits for what Kafka still holds.
func runReceive(ctx context.Context, cfg config.Config, rc config.Receive, log *slog.Logger) error {
	cl, err := kafkaClient(ctx, cfg.Kafka,
		kgo.DefaultProduceTopic(rc.Topic),
		// Idempotent (franz-go's default) and acknowledged by every in-sync
		// replica: a 200 means the record survives a broker's loss.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(rc.ProduceTimeout),
		kgo.ProducerLinger(0),
		// One record per call in progress: the buffer is bounded by them.
		kgo.MaxBufferedRecords(rc.MaxConcurrent),
		kgo.ProducerBatchMaxBytes(int32(rc.MaxRequestBytes)+64<<10),
	)
	if err != nil {
		return kafkaErr(err)
	}
	defer cl.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	secrets := make([]receive.Secret, len(rc.Secrets))
	for i, s := range rc.Secrets {
		secrets[i] = receive.Secret{Tenant: s.Tenant, SHA256: s.SecretSHA256, Name: s.Name}
	}
	srv := receive.New(cl, receive.Options{
		Topic:           rc.Topic,
		TenantHeader:    cfg.Routing.Header,
		SecretHeader:    rc.SecretHeader,
		Secrets:         secrets,
		MaxRequestBytes: int64(rc.MaxRequestBytes),
		MaxConcurrent:   rc.MaxConcurrent,
		ProduceTimeout:  rc.ProduceTimeout,
	}, reg, log)
	sc := config.Serve{Listen: rc.Listen, TLS: rc.TLS, QueryTimeout: rc.ProduceTimeout}
	return listenAndServe(ctx, sc, srv.Handler(), log, "command", "receive", "topic", rc.Topic, "secrets", len(secrets))
}
