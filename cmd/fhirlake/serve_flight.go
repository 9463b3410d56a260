package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"fhirlake/audit"
	"fhirlake/config"
	"fhirlake/query/flight"
	"fhirlake/query/web"
)

// startFlight serves Arrow Flight SQL on sc.Flight.Listen (TLS as
// serve.tls says), in front of the same workers as the HTTP API (fwd),
// until ctx is done; then it lets calls finish for up to 10 s. If it
// fails first, it calls failed. Its goroutines end with it: the returned
// function waits for them and gives the error that ended it, if any. Off
// (a no-op) without a listen address.
func startFlight(ctx context.Context, sc config.Serve, keys []web.Key, fwd web.Forwarder, aw *audit.Writer, failed func(), log *slog.Logger) (func() error, error) {
	if sc.Flight.Listen == "" {
		return func() error { return nil }, nil
	}
	fs, err := flight.New(flight.Options{
		Keys:              keys,
		Forward:           fwd,
		QueryTimeout:      sc.QueryTimeout,
		MaxStatementBytes: int(sc.MaxRequestBytes),
		MaxPrepared:       sc.Flight.MaxPreparedStatements,
		Version:           readBuildInfo().Version,
		Audit:             flightAudit(aw),
	}, log)
	if err != nil {
		return nil, fmt.Errorf("serve: flight: %w", err)
	}
	opts := fs.ServerOptions()
	scheme := "grpc"
	if sc.TLS.Enabled() {
		tlsCfg, err := serveTLSConfig(sc.TLS, tlsCheckEvery, log)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		scheme = "grpc+tls"
	} else if !config.Loopback(sc.Flight.Listen) {
		log.Warn("serve: Flight SQL without TLS on a listen address other machines can reach: API keys and results cross the network unencrypted; set serve.tls", "listen", sc.Flight.Listen)
	}
	// The query timeout bounds a call's work; a connection lives on.
	g := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(int(sc.MaxRequestBytes)+64<<10))...)
	fs.Register(g)
	ln, err := net.Listen("tcp", sc.Flight.Listen)
	if err != nil {
		return nil, fmt.Errorf("serve: flight.listen: %w", err)
	}
	log.Info("serving Flight SQL", "addr", ln.Addr().String(), "scheme", scheme, "client_certificates", sc.TLS.ClientCAFile != "")
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	stopped := make(chan struct{})
	var serveErr error
	go func() {
		defer close(stopped)
		select {
		case serveErr = <-done:
			failed() // it ended on its own: serve stops
			return
		case <-ctx.Done():
		}
		graceful := make(chan struct{})
		go func() { defer close(graceful); g.GracefulStop() }()
		select {
		case <-graceful:
		case <-time.After(10 * time.Second):
			g.Stop()
			<-graceful
		}
		serveErr = <-done
	}()
	return func() error {
		<-stopped
		if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
			return fmt.Errorf("serve: flight: %w", serveErr)
		}
		return nil
	}, nil
}

// flightAudit writes a Flight SQL call's record to the audit trail, as
// the HTTP API writes its requests'; nil without a trail.
func flightAudit(aw *audit.Writer) func(flight.Record) {
	if aw == nil {
		return nil
	}
	return func(r flight.Record) {
		aw.Write(audit.Record{
			Time:       r.Time,
			Kind:       r.Kind,
			Source:     audit.SourceServe,
			Protocol:   audit.ProtocolFlightSQL,
			Tenant:     r.Tenant,
			Key:        r.Key,
			RequestID:  r.RequestID,
			Remote:     r.Remote,
			SQL:        r.SQL,
			Rows:       r.Rows,
			Bytes:      r.Bytes,
			DurationMS: float64(r.Duration.Microseconds()) / 1000,
			Status:     r.Status,
		})
	}
}
