package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"fhirlake/config"

	_ "github.com/benthosdev/benthos/v4/public/components/aws"
	_ "github.com/benthosdev/benthos/v4/public/components/kafka"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	_ "github.com/benthosdev/benthos/v4/public/components/pure/extended" // parquet_encode
	"github.com/benthosdev/benthos/v4/public/service"
)

// benthosMapping extracts from a one-event notification the columns of
// fhirlake's raw dataset. The event is the entry after the status entry
// (Parameters in R4 backport, SubscriptionStatus in R4B and R5); a delete
// has no resource, its type, id and version come from request.url and the
// response's etag.
const benthosMapping = `
let e = this.entry.index(1)
let del = $e.request.method.or("") == "DELETE"
let ref = $e.request.url.or("").split("/")
root.tenant = metadata("fhir-tenant")
root.resource_type = if $del { $ref.index(0) } else { $e.resource.resourceType }
root.id = if $del { $ref.index(1) } else { $e.resource.id }
root.version_id = if $del { $e.response.etag.or("").trim_prefix("W/").trim("\"") } else { $e.resource.meta.versionId }
root.last_updated = (if $del { $e.response.lastModified } else { $e.resource.meta.lastUpdated }).ts_parse("2006-01-02T15:04:05.999Z07:00").ts_unix_micro()
root.operation = if $del { "delete" } else { "upsert" }
root.topic = metadata("kafka_topic")
root.partition = metadata("kafka_partition").int32()
root.offset = metadata("kafka_offset").int64()
root.ingest_time = timestamp_unix_micro()
root.resource = if $del { null } else { $e.resource.string() }
`

// benthosOptions are the knobs of the comparison pipeline.
type benthosOptions struct {
	Brokers []string
	// Kafka gives the TLS and SASL settings of the input.
	Kafka           config.Kafka
	Topic, Group    string
	Bucket, Prefix  string
	Endpoint        string
	Region          string
	AccessKey       string
	SecretKey       string
	BatchCount      int
	BatchBytes      int64
	BatchPeriod     time.Duration
	CheckpointLimit int
}

// benthosConfig is the whole stream: kafka_franz → mapping →
// parquet_encode (zstd) → aws_s3. Batches are formed per partition at the
// input with fhirlake's flush limits (rows, bytes, age), so that a file
// holds what one fhirlake flush of a partition holds.
func benthosConfig(o benthosOptions) (string, error) {
	security, err := benthosSecurity(o.Kafka)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `http:
  enabled: false
logger:
  level: WARN
metrics:
  none: {}
input:
  kafka_franz:
    seed_brokers: [%q]
    topics: [%q]
    consumer_group: %q
    client_id: ingestbench-benthos
%s    start_from_oldest: true
    checkpoint_limit: %d
    commit_period: 1s
    batching:
      count: %d
      byte_size: %d
      period: %s
pipeline:
  processors:
    - mapping: |
%s
    - parquet_encode:
        default_compression: zstd
        schema:
          - {name: tenant, type: UTF8}
          - {name: resource_type, type: UTF8}
          - {name: id, type: UTF8}
          - {name: version_id, type: UTF8, optional: true}
          - {name: last_updated, type: INT64, optional: true}
          - {name: operation, type: UTF8}
          - {name: topic, type: UTF8}
          - {name: partition, type: INT32}
          - {name: offset, type: INT64}
          - {name: ingest_time, type: INT64}
          - {name: resource, type: UTF8, optional: true}
output:
  # A message that failed a processor is refused (and retried), never
  # written as it is.
  reject_errored:
    aws_s3:
      bucket: %q
      path: '%s/speed/resources/${! metadata("kafka_topic") }-${! metadata("kafka_partition") }-${! metadata("kafka_offset") }.parquet'
      endpoint: %q
      region: %q
      force_path_style_urls: true
      content_type: application/vnd.apache.parquet
      max_in_flight: 64
      credentials:
        id: %q
        secret: %q
`, strings.Join(o.Brokers, ","), o.Topic, o.Group, security, o.CheckpointLimit, o.BatchCount, o.BatchBytes, o.BatchPeriod,
		indent(benthosMapping, "        "), o.Bucket, strings.Trim(o.Prefix, "/"), o.Endpoint, o.Region, o.AccessKey, o.SecretKey)
	return b.String(), nil
}

// benthosSecurity is kafka_franz's tls and sasl for k, with the secrets
// left in the environment (Benthos interpolates ${NAME}). Benthos is
// compared over TLS and the password mechanisms only.
func benthosSecurity(k config.Kafka) (string, error) {
	var b strings.Builder
	if k.TLS.Enabled {
		if k.TLS.ServerName != "" {
			return "", errors.New("the Benthos comparison does not take kafka.tls.server_name")
		}
		b.WriteString("    tls:\n      enabled: true\n")
		if k.TLS.CAFile != "" {
			fmt.Fprintf(&b, "      root_cas_file: %q\n", k.TLS.CAFile)
		}
		if k.TLS.CertFile != "" {
			fmt.Fprintf(&b, "      client_certs:\n        - {cert_file: %q, key_file: %q}\n", k.TLS.CertFile, k.TLS.KeyFile)
		}
	}
	switch m := k.SASL.Mechanism; m {
	case "":
	case config.SASLPlain, config.SASLScramSHA256, config.SASLScramSHA512:
		fmt.Fprintf(&b, "    sasl:\n      - {mechanism: %s, username: \"${%s}\", password: \"${%s}\"}\n", strings.ToUpper(m), k.SASL.UsernameEnv, k.SASL.PasswordEnv)
	default:
		return "", fmt.Errorf("the Benthos comparison does not take kafka.sasl.mechanism %s", m)
	}
	return b.String(), nil
}

func indent(s, pre string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n")
}

// runBenthos is `ingestbench benthos -config FILE`: the stream, run in this
// process through Benthos's public stream builder until SIGTERM.
func runBenthos(args []string) error {
	fs := flag.NewFlagSet("benthos", flag.ExitOnError)
	cfgPath := fs.String("config", "", "Benthos stream configuration (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conf, err := os.ReadFile(*cfgPath)
	if err != nil {
		return err
	}
	sb := service.NewStreamBuilder()
	if err := sb.SetYAML(string(conf)); err != nil {
		return fmt.Errorf("benthos config: %w", err)
	}
	stream, err := sb.Build()
	if err != nil {
		return fmt.Errorf("benthos build: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = stream.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := stream.Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("benthos stop: %w", err)
	}
	return nil
}
