package sink

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// loadDefaultConfig uses the standard AWS chain (environment, web identity,
// instance role): the way to run with a role per tenant. Its credentials are
// renewed CredentialsExpiryWindow before they expire, like a role's.
func loadDefaultConfig(ctx context.Context, region string) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx, config.WithRegion(region),
		config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = CredentialsExpiryWindow }))
}
