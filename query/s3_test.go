package query

import (
	"strings"
	"testing"
)

func TestS3AccessSecret(t *testing.T) {
	base := S3Access{Bucket: "fhirlake-acme", Prefix: "/runs/r1/", Endpoint: "http://127.0.0.1:17070", PathStyle: true, AccessKey: "AK", SecretKey: "it's"}
	stmt, root, err := base.secret("acme-1")
	if err != nil {
		t.Fatal(err)
	}
	if root != "s3://fhirlake-acme/runs/r1" {
		t.Errorf("got root %s", root)
	}
	for _, want := range []string{"CREATE SECRET lake_acme_1 (TYPE s3, PROVIDER config", "KEY_ID 'AK'", "SECRET 'it''s'", "REGION 'us-east-1'",
		"ENDPOINT '127.0.0.1:17070'", "URL_STYLE 'path'", "USE_SSL false", "SCOPE 's3://fhirlake-acme/runs/r1/'"} {
		if !strings.Contains(stmt, want) {
			t.Errorf("got %s, want %s in it", stmt, want)
		}
	}
	aws := S3Access{Bucket: "b", AccessKey: "AK", SecretKey: "SK", Region: "eu-west-1"}
	if stmt, root, _ := aws.secret("acme"); root != "s3://b" || !strings.Contains(stmt, "USE_SSL true") || !strings.Contains(stmt, "URL_STYLE 'vhost'") ||
		!strings.Contains(stmt, "ENDPOINT 's3.amazonaws.com'") || !strings.Contains(stmt, "SCOPE 's3://b/'") {
		t.Errorf("AWS: got %s, %s", stmt, root)
	}
	for name, a := range map[string]S3Access{
		"no key":             {Bucket: "b"},
		"no bucket":          {AccessKey: "a", SecretKey: "s"},
		"a bucket with a /":  {Bucket: "a/b", AccessKey: "a", SecretKey: "s"},
		"a prefix with ..":   {Bucket: "b", Prefix: "x/../y", AccessKey: "a", SecretKey: "s"},
		"a prefix with glob": {Bucket: "b", Prefix: "x*", AccessKey: "a", SecretKey: "s"},
		"a bad endpoint":     {Bucket: "b", Endpoint: "127.0.0.1:17070", AccessKey: "a", SecretKey: "s"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := a.secret("acme"); err == nil {
				t.Errorf("got no error for %+v", a)
			}
		})
	}
}
