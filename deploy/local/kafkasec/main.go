// Command kafkasec prepares the local stack's secured Kafka listeners
// (deploy/local/stack): a certificate authority with the broker's and a
// client's certificates, and the SCRAM users.
//
//	kafkasec certs DIR                    write DIR/ca.pem, broker.pem, client.pem and client-key.pem unless there
//	kafkasec users BROKER USER PASSWORD   give USER SCRAM-SHA-256 and SCRAM-SHA-512 credentials, through BROKER
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/internal/testcert"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "certs":
		err = certs(os.Args[2])
	case len(os.Args) == 5 && os.Args[1] == "users":
		err = users(os.Args[2], os.Args[3], os.Args[4])
	default:
		err = errors.New("usage: kafkasec certs DIR | kafkasec users BROKER USER PASSWORD")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkasec:", err)
		os.Exit(1)
	}
}

// certs writes a CA, a certificate for the broker on the loopback address
// (its key first, then the certificate: one PEM key store for Kafka) and a
// client certificate, once: a restarted stack keeps them.
func certs(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "client-key.pem")); err == nil {
		return nil
	}
	ca, err := testcert.NewCA("fhirlake local stack CA")
	if err != nil {
		return err
	}
	broker, err := ca.Server("kafka", "127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	client, err := ca.Client("fhirlake")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, b := range map[string][]byte{
		"ca.pem":     ca.CertPEM(),
		"broker.pem": append(broker.Key, broker.Cert...),
		"client.pem": client.Cert,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	// Last: its presence says the set is complete.
	return os.WriteFile(filepath.Join(dir, "client-key.pem"), client.Key, 0o600)
}

// users sets user's SCRAM credentials (both hashes) through the plaintext
// listener broker.
func users(broker, user, password string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One mechanism per request: the broker refuses a user named twice.
	for _, m := range []kadm.ScramMechanism{kadm.ScramSha256, kadm.ScramSha512} {
		res, err := kadm.NewClient(cl).AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: m, Iterations: 4096, Password: password}})
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			return fmt.Errorf("set the %s credentials of %s: %w", m, user, err)
		}
	}
	return nil
}
