package query

import (
	"fmt"
	"net/url"
	"strings"
)

// S3Access is how a session's DuckDB reaches a tenant's bucket: the
// tenant's own static key, offered for the lake's prefix only.
type S3Access struct {
	Bucket string
	// Prefix of the lake's keys in the bucket; may be empty.
	Prefix string
	// Endpoint such as http://127.0.0.1:17070; empty for AWS itself. An
	// http:// endpoint turns TLS off.
	Endpoint string
	// Region; default us-east-1.
	Region string
	// PathStyle addresses the bucket as endpoint/bucket.
	PathStyle bool
	// AccessKey and SecretKey are the tenant's static key; DuckDB reads with
	// nothing else.
	AccessKey, SecretKey string
	// SessionToken goes with temporary credentials (an assumed role's).
	SessionToken string
	// CAFile is the PEM bundle httpfs trusts for an https endpoint (the
	// tenant's store.ca_file); empty: the system's.
	CAFile string

	unscoped bool
}

// settings are the statements besides the secret that reach the bucket: the
// CA bundle when one is set, for every connection of the database (a plain
// SET would hold for the connection that ran it only).
func (a S3Access) settings() []string {
	if a.CAFile == "" {
		return nil
	}
	return []string{fmt.Sprintf("SET GLOBAL ca_cert_file = '%s'", sqlString(a.CAFile))}
}

// secret returns the CREATE SECRET statement of the tenant's key, scoped to
// the lake, and the lake's root URL (s3://bucket/prefix, no trailing slash).
func (a S3Access) secret(tenant string) (stmt, root string, err error) {
	if a.AccessKey == "" || a.SecretKey == "" {
		return "", "", fmt.Errorf("an S3 lake is read through DuckDB's httpfs, which needs a key of the tenant's: its static key (store access_key_env and secret_key_env) or the temporary one the query server obtains for its role")
	}
	if a.Bucket == "" || strings.ContainsAny(a.Bucket, "/'\\") {
		return "", "", fmt.Errorf("s3 bucket %q is not valid", a.Bucket)
	}
	root = "s3://" + a.Bucket
	if p := strings.Trim(a.Prefix, "/"); p != "" {
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "*?[]{}'\\") {
				return "", "", fmt.Errorf("s3 prefix %q is not a clean path", a.Prefix)
			}
		}
		root += "/" + p
	}
	endpoint, ssl := "s3.amazonaws.com", true
	if a.Endpoint != "" {
		u, err := url.Parse(a.Endpoint)
		if err != nil || u.Host == "" {
			return "", "", fmt.Errorf("s3 endpoint %q: want a URL such as https://s3.example.org", a.Endpoint)
		}
		endpoint, ssl = u.Host, u.Scheme != "http"
	}
	region := a.Region
	if region == "" {
		region = "us-east-1"
	}
	style := "vhost"
	if a.PathStyle {
		style = "path"
	}
	// PROVIDER config: this key and nothing else, never a credential chain.
	// The scope ends in a slash so that it does not cover another bucket
	// or prefix that merely starts the same.
	stmt = fmt.Sprintf("CREATE SECRET %s (TYPE s3, PROVIDER config, KEY_ID '%s', SECRET '%s', REGION '%s', ENDPOINT '%s', URL_STYLE '%s', USE_SSL %t",
		secretName(tenant), sqlString(a.AccessKey), sqlString(a.SecretKey), sqlString(region), sqlString(endpoint), style, ssl)
	if a.SessionToken != "" {
		stmt += fmt.Sprintf(", SESSION_TOKEN '%s'", sqlString(a.SessionToken))
	}
	if a.unscoped {
		return stmt + ")", root, nil
	}
	return stmt + fmt.Sprintf(", SCOPE '%s/')", sqlString(root)), root, nil
}

// UnscopedSecretForTests is the CREATE SECRET statement of the tenant's
// key offered for every URL, as no session makes it: for a test that
// shows what the key alone can open.
func (a S3Access) UnscopedSecretForTests(tenant string) (string, error) {
	a.unscoped = true
	stmt, _, err := a.secret(tenant)
	return stmt, err
}

// secretName is an identifier for the tenant's secret.
func secretName(tenant string) string {
	var b strings.Builder
	b.WriteString("lake_")
	for _, r := range tenant {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
