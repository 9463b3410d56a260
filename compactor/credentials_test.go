package compactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"fhirlake/sink"
)

// sessions hands out a new session each time it is asked, each lasting life.
type sessions struct {
	n    int
	life time.Duration
}

func (s *sessions) Retrieve(context.Context) (aws.Credentials, error) {
	s.n++
	return aws.Credentials{AccessKeyID: "ASIA" + strings.Repeat("X", s.n), SecretAccessKey: "secret", SessionToken: "token",
		CanExpire: true, Expires: time.Now().Add(s.life)}, nil
}

func answers(t *testing.T, p aws.CredentialsProvider, requests int) []credentialsAnswer {
	t.Helper()
	var out bytes.Buffer
	if err := serveCredentials(context.Background(), p, strings.NewReader(strings.Repeat("s3\n", requests)), &out); err != nil {
		t.Fatal(err)
	}
	var got []credentialsAnswer
	dec := json.NewDecoder(&out)
	for dec.More() {
		var a credentialsAnswer
		if err := dec.Decode(&a); err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if len(got) != requests {
		t.Fatalf("%d answers to %d requests", len(got), requests)
	}
	return got
}

// Each request is answered with credentials that last at least the expiry window:
// those about to expire are renewed first, those that are not are kept.
func TestServeCredentialsRenewsBeforeExpiry(t *testing.T) {
	cache := func(p aws.CredentialsProvider) aws.CredentialsProvider {
		return aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = sink.CredentialsExpiryWindow })
	}
	short := answers(t, cache(&sessions{life: sink.CredentialsExpiryWindow - time.Minute}), 3)
	for i, a := range short {
		if want := "ASIA" + strings.Repeat("X", i+1); a.KeyID != want || a.SessionToken != "token" || a.Expires == "" {
			t.Errorf("answer %d: %+v, want a new session %s", i, a, want)
		}
	}
	long := answers(t, cache(&sessions{life: sink.RoleSessionDuration}), 3)
	for i, a := range long {
		exp, err := time.Parse(time.RFC3339, a.Expires)
		if a.KeyID != "ASIAX" || err != nil || time.Until(exp) < sink.CredentialsExpiryWindow {
			t.Errorf("answer %d: %+v (%v), want the first session, which lasts", i, a, err)
		}
	}
}

func TestServeCredentialsSaysWhyThereAreNone(t *testing.T) {
	refused := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("assume role arn:aws:iam::1:role/x: AccessDenied")
	})
	got := answers(t, refused, 1)[0]
	if got.KeyID != "" || got.Error != "assume role arn:aws:iam::1:role/x: AccessDenied" {
		t.Errorf("got %+v", got)
	}
}

func TestServeCredentialsRefusesLongRequests(t *testing.T) {
	var out bytes.Buffer
	err := serveCredentials(context.Background(), &sessions{life: time.Hour}, strings.NewReader(strings.Repeat("x", 1<<20)), &out)
	if err == nil || out.Len() != 0 {
		t.Errorf("a request line of 1 MiB: %v, answered %q", err, out.String())
	}
}

// viaTenantTarget runs the real dbt project with the S3 target, its plugin and the
// credentials hand-over, over a local lake: DuckDB reads local paths whatever its S3
// secret holds.
type viaTenantTarget struct {
	*DBT
	creds aws.CredentialsProvider
}

func (v viaTenantTarget) Build(ctx context.Context, req BuildRequest) (*RunResults, error) {
	req.Target, req.Credentials = "tenant", v.creds
	req.Env = append(req.Env, "FHIRLAKE_DBT_S3_ENDPOINT=127.0.0.1:1", "FHIRLAKE_DBT_S3_USE_SSL=false",
		"FHIRLAKE_DBT_S3_URL_STYLE=path", "FHIRLAKE_DBT_S3_SCOPE=s3://fhirlake-none/")
	return v.DBT.Build(ctx, req)
}

// A run asks for the tenant's credentials before every node, so that it is never
// left with expired ones, and DuckDB takes each new session (token included).
func TestDBTAsksForCredentialsBeforeEveryNode(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	if runner.ExtensionDir = os.Getenv("FHIRLAKE_DUCKDB_EXTENSION_DIR"); runner.ExtensionDir == "" {
		t.Skip("FHIRLAKE_DUCKDB_EXTENSION_DIR is not set: the S3 target loads httpfs")
	}
	ten, store := newTenant(t, "t1")
	w := newLakeWriter(t, store)
	w.resources("n-0-0-1", change{"Patient", "p1", "1", "upsert", 0, 0, patientJSON("p1", "1", "female", false)},
		change{"Patient", "p2", "1", "upsert", 0, 1, patientJSON("p2", "1", "male", false)})
	renewed := &sessions{life: sink.CredentialsExpiryWindow - time.Minute}
	asked := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) { return renewed.Retrieve(ctx) })
	c := newTestCompactorWith(t, viaTenantTarget{DBT: runner, creds: asked})
	res, err := c.Compact(context.Background(), ten)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Published {
		t.Fatalf("nothing published: %+v", res)
	}
	// dbt asks once per connection, that is per model and per test; each answer is a
	// new session here, which DuckDB's secret takes.
	t.Logf("%d requests for %d models", renewed.n, len(res.Models))
	if m, n := renewed.n, len(res.Models); m < n {
		t.Errorf("dbt asked for credentials %d times for %d models (and their tests): want one request per node at least", m, n)
	}
}
