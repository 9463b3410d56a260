package bulkexport

import (
	"context"
	"errors"
)

// Tokens gives the bearer token every request to the server carries.
type Tokens interface {
	// Token returns the token to send, obtaining one first if none is held
	// or the one held is about to expire.
	Token(ctx context.Context) (string, error)
	// Renew is called when the server refused stale (401): it returns a new
	// token, or an error when none can be had.
	Renew(ctx context.Context, stale string) (string, error)
}

// StaticToken is a bearer token given by the user. It cannot be renewed.
type StaticToken string

// Token returns the token.
func (s StaticToken) Token(context.Context) (string, error) { return string(s), nil }

// Renew fails: a refused static token stays refused.
func (s StaticToken) Renew(context.Context, string) (string, error) {
	return "", errors.New("the server refused the bearer token (401 Unauthorized); a static token cannot be renewed: give a valid one, or use SMART Backend Services")
}
