package bulkexport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// SMARTOptions configure SMART Backend Services authentication.
type SMARTOptions struct {
	// ClientID is the client registered with the server's authorization
	// service: the assertion's iss and sub.
	ClientID string
	// KeyPEM is the client's private key, PKCS#8, PKCS#1 (RSA) or SEC 1
	// (EC) in PEM: an RSA key signs RS384, a P-384 key ES384.
	KeyPEM []byte
	// KeyID is the kid of the key in the JWK Set registered for the client.
	KeyID string
	// Scope asked for. Default: system/*.read.
	Scope string
	// TokenURL is the token endpoint. Empty: the token_endpoint of the
	// server's .well-known/smart-configuration.
	TokenURL string
}

// DefaultScope asks for read access to every resource type.
const DefaultScope = "system/*.read"

// assertionLifetime is the client assertion's validity; the specification
// allows at most five minutes.
const assertionLifetime = 5 * time.Minute

// renewBefore renews a token this long before its expiry.
const renewBefore = 30 * time.Second

// assertionType is the client_assertion_type of private_key_jwt.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// SMART obtains access tokens with SMART Backend Services: a
// client_credentials grant authenticated by a signed JWT assertion.
type SMART struct {
	clientID, keyID, scope, tokenURL string
	key                              any
	method                           jwt.SigningMethod
	hc                               *http.Client

	mu  sync.Mutex // held across a token request, so that one is asked for at a time
	tok *oauth2.Token
}

// NewSMART reads the key and, unless o.TokenURL is set, discovers the token
// endpoint from base's .well-known/smart-configuration.
func NewSMART(ctx context.Context, hc *http.Client, base string, o SMARTOptions) (*SMART, error) {
	if o.ClientID == "" {
		return nil, errors.New("smart: no client id")
	}
	if o.KeyID == "" {
		return nil, errors.New("smart: no key id (kid): the server finds the client's public key by it")
	}
	key, method, err := signingKey(o.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("smart: private key: %w", err)
	}
	s := &SMART{clientID: o.ClientID, keyID: o.KeyID, scope: o.Scope, tokenURL: o.TokenURL, key: key, method: method, hc: hc}
	if s.scope == "" {
		s.scope = DefaultScope
	}
	if s.tokenURL == "" {
		if s.tokenURL, err = discoverTokenURL(ctx, hc, base); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// TokenURL is the token endpoint in use.
func (s *SMART) TokenURL() string { return s.tokenURL }

// Algorithm is the assertion's signing algorithm, RS384 or ES384.
func (s *SMART) Algorithm() string { return s.method.Alg() }

// Token returns the token held, or a new one when none is or it expires
// within renewBefore.
func (s *SMART) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && (s.tok.Expiry.IsZero() || time.Until(s.tok.Expiry) > renewBefore) {
		return s.tok.AccessToken, nil
	}
	return s.fetch(ctx)
}

// Renew returns a new token unless the one held is already newer than
// stale (another request renewed it meanwhile).
func (s *SMART) Renew(ctx context.Context, stale string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken != stale {
		return s.tok.AccessToken, nil
	}
	return s.fetch(ctx)
}

// fetch asks the token endpoint for a token with a fresh assertion. s.mu is held.
func (s *SMART) fetch(ctx context.Context) (string, error) {
	assertion, err := s.assertion(time.Now())
	if err != nil {
		return "", err
	}
	cc := clientcredentials.Config{
		TokenURL:  s.tokenURL,
		Scopes:    strings.Fields(s.scope),
		AuthStyle: oauth2.AuthStyleInParams,
		EndpointParams: url.Values{
			"client_assertion_type": {assertionType},
			"client_assertion":      {assertion},
		},
	}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, s.hc))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return "", fmt.Errorf("smart: token from %s: %d %s", s.tokenURL, re.Response.StatusCode, tokenErrorMessage(re))
		}
		return "", fmt.Errorf("smart: token from %s: %w", s.tokenURL, err)
	}
	s.tok = tok
	return tok.AccessToken, nil
}

func tokenErrorMessage(re *oauth2.RetrieveError) string {
	switch {
	case re.ErrorCode != "" && re.ErrorDescription != "":
		return re.ErrorCode + ": " + clip(re.ErrorDescription)
	case re.ErrorCode != "":
		return re.ErrorCode
	}
	return bodyMessage(re.Body)
}

// assertion is the signed client assertion of SMART Backend Services.
func (s *SMART) assertion(now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	claims := jwt.RegisteredClaims{
		Issuer:    s.clientID,
		Subject:   s.clientID,
		Audience:  jwt.ClaimStrings{s.tokenURL},
		ExpiresAt: jwt.NewNumericDate(now.Add(assertionLifetime)),
		ID:        hex.EncodeToString(jti[:]),
	}
	t := jwt.NewWithClaims(s.method, claims)
	t.Header["kid"] = s.keyID
	signed, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("smart: sign the client assertion: %w", err)
	}
	return signed, nil
}

// signingKey reads a PEM private key and picks its algorithm: RS384 for RSA
// (2048 bits or more), ES384 for P-384.
func signingKey(b []byte) (any, jwt.SigningMethod, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, nil, fmt.Errorf("PEM block %q: want a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, nil, fmt.Errorf("an RSA key of %d bits: at least 2048", k.N.BitLen())
		}
		return k, jwt.SigningMethodRS384, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P384() {
			return nil, nil, fmt.Errorf("an EC key on %s: ES384 needs P-384", k.Curve.Params().Name)
		}
		return k, jwt.SigningMethodES384, nil
	}
	return nil, nil, fmt.Errorf("a %T: want an RSA or a P-384 EC key", key)
}

// discoverTokenURL reads token_endpoint from base/.well-known/smart-configuration.
func discoverTokenURL(ctx context.Context, hc *http.Client, base string) (string, error) {
	where := strings.TrimRight(base, "/") + "/.well-known/smart-configuration"
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return "", fmt.Errorf("smart: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("smart: discover the token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return "", fmt.Errorf("smart: discover the token endpoint: GET %s: %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("smart: discover the token endpoint: GET %s: %s: %s (give --token-url if the server publishes none)", where, resp.Status, bodyMessage(body))
	}
	var conf struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(body, &conf); err != nil {
		return "", fmt.Errorf("smart: discover the token endpoint: GET %s: %w", where, err)
	}
	u, err := url.Parse(conf.TokenEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("smart: discover the token endpoint: GET %s: token_endpoint %q is not an http or https URL", where, clip(conf.TokenEndpoint))
	}
	return conf.TokenEndpoint, nil
}
