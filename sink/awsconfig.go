package sink

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// loadDefaultConfig uses the standard AWS chain (environment, web identity,
// instance role): the way to run with a role per tenant. Its credentials are
// renewed CredentialsExpiryWindow before they expire, like a role's. Its
// requests go through hc when it is not nil, else the SDK's default client.
func loadDefaultConfig(ctx context.Context, region string, hc aws.HTTPClient) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(region),
		config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = CredentialsExpiryWindow }),
	}
	if hc != nil {
		opts = append(opts, config.WithHTTPClient(hc))
	}
	return config.LoadDefaultConfig(ctx, opts...)
}
