package main

import (
	"context"
	"fmt"
	"os"

	"fhirlake/config"
	"fhirlake/sink"
)

// openStore builds one tenant's store from that tenant's configuration and
// credentials alone.
func openStore(ctx context.Context, t config.Tenant) (sink.Store, error) {
	switch t.Store.Type {
	case "local":
		return sink.NewLocal(t.Store.Path)
	case "s3":
		return sink.NewS3(ctx, sink.S3Options{
			Bucket:       t.Store.Bucket,
			Prefix:       t.Store.Prefix,
			Endpoint:     t.Store.Endpoint,
			Region:       t.Store.Region,
			PathStyle:    t.Store.PathStyle,
			AccessKey:    envOf(t.Store.AccessKeyEnv),
			SecretKey:    envOf(t.Store.SecretKeyEnv),
			SessionToken: envOf(t.Store.SessionTokenEnv),
			RoleARN:      t.Store.RoleARN,
			ExternalID:   t.Store.ExternalID,
			STSEndpoint:  t.Store.STSEndpoint,
			SessionName:  "fhirlake-" + t.Name,
			Encryption:   sink.Encryption{Mode: sink.EncryptionMode(t.Store.Encryption.Mode), KMSKeyID: t.Store.Encryption.KMSKeyID},
			CAFile:       t.Store.CAFile,
		})
	}
	return nil, fmt.Errorf("tenant %s: unknown store type %q", t.Name, t.Store.Type)
}

func openStores(ctx context.Context, cfg config.Config) (map[string]sink.Store, error) {
	stores := map[string]sink.Store{}
	for _, t := range cfg.Tenants {
		s, err := openStore(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		stores[t.Name] = s
	}
	return stores, nil
}

func envOf(name string) string {
	if name == "" {
		return ""
	}
	return os.Getenv(name)
}

func tenantNames(cfg config.Config) []string {
	names := make([]string, len(cfg.Tenants))
	for i, t := range cfg.Tenants {
		names[i] = t.Name
	}
	return names
}
