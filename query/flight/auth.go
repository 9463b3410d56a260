package flight

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"fhirlake/query/web"
)

// TenantHeader, when a client sends it, names the tenant it means to read:
// a key of another tenant is then refused (PermissionDenied) instead of
// opening its own tenant, so that a dashboard given the wrong key fails
// loudly.
const TenantHeader = "tenant"

// caller is who a call's key opens.
type caller struct {
	key    web.Key
	remote string
}

type callerKey struct{}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// presentedKey is the API key of a call's metadata: a bearer token, or the
// password of Basic credentials (the user name is not checked: JDBC and
// DBeaver ask for one), else X-API-Key.
func presentedKey(md metadata.MD) string {
	for _, v := range md.Get("authorization") {
		scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok {
			continue
		}
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			return strings.TrimSpace(cred)
		case strings.EqualFold(scheme, "Basic"):
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
			if err != nil {
				continue
			}
			if _, pass, ok := strings.Cut(string(b), ":"); ok {
				return pass
			}
		}
	}
	if v := md.Get("x-api-key"); len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// authenticate finds the tenant key of a call: Unauthenticated without a
// known tenant key (an admin key opens no data), PermissionDenied when the
// call names another tenant in TenantHeader.
func (s *Server) authenticate(ctx context.Context) (caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	presented := presentedKey(md)
	if presented == "" {
		return caller{}, status.Error(codes.Unauthenticated, "send the tenant's API key: authorization: Bearer <key>")
	}
	// Keyed by the digest, as in query/web: lookup timing reveals nothing
	// of the key.
	sum := sha256.Sum256([]byte(presented))
	k, ok := s.keys[hex.EncodeToString(sum[:])]
	if !ok {
		return caller{}, status.Error(codes.Unauthenticated, "unknown API key")
	}
	c := caller{key: k}
	if p, ok := peer.FromContext(ctx); ok {
		c.remote = p.Addr.String()
	}
	if want := md.Get(TenantHeader); len(want) > 0 && want[0] != k.Tenant {
		s.log.Warn("flight: key used for another tenant", "key", k.Name, "key_tenant", k.Tenant, "tenant", want[0], "remote", c.remote)
		return caller{}, status.Errorf(codes.PermissionDenied, "this key does not open tenant %q", want[0])
	}
	return c, nil
}

const handshakeMethod = "/arrow.flight.protocol.FlightService/Handshake"

// unaryAuth and streamAuth authenticate every call but the handshake,
// which answers for itself.
func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	c, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return h(context.WithValue(ctx, callerKey{}, c), req)
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod == handshakeMethod {
		return h(srv, ss)
	}
	c, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	return h(srv, &authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerKey{}, c)})
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// handshaker answers Flight's handshake: the key (a bearer token, or Basic
// credentials whose password is the key) is checked, and handed back as
// the bearer token the client sends on every later call, as JDBC and ADBC
// expect from a handshake with a user name and password.
type handshaker struct {
	flight.FlightServer
	s *Server
}

func (h handshaker) Handshake(stream flight.FlightService_HandshakeServer) error {
	c, err := h.s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	md, _ := metadata.FromIncomingContext(stream.Context())
	if err := stream.SetHeader(metadata.Pairs("authorization", "Bearer "+presentedKey(md))); err != nil {
		return err
	}
	// A client sends one request, or none.
	if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return stream.Send(&flight.HandshakeResponse{Payload: []byte(c.key.Tenant)})
}
