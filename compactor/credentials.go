package compactor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// A dbt run gets the tenant's S3 credentials from the compactor, never from its
// environment or a file: its plugin (dbt/plugins/fhirlake_s3.py) asks over a pair
// of pipes each time dbt opens a connection, that is before every node, and
// re-creates DuckDB's S3 secret when the answer changed. The provider renews them
// before they expire (sink.CredentialsExpiryWindow), so a run outlives any one
// set of temporary credentials, such as a role's one-hour session.

// credentialsEnv names the two descriptors of dbt's side: the one it reads answers
// from, then the one it writes requests to.
const credentialsEnv = "FHIRLAKE_DBT_CREDENTIALS_FDS"

// credentialsAnswer is one answer, a JSON line.
type credentialsAnswer struct {
	KeyID        string `json:"key_id,omitempty"`
	Secret       string `json:"secret,omitempty"`
	SessionToken string `json:"session_token,omitempty"`
	// Expires is RFC 3339, empty for credentials that do not expire.
	Expires string `json:"expires,omitempty"`
	// Error says why there are none.
	Error string `json:"error,omitempty"`
}

// maxCredentialsRequest bounds a request line: a request is one short word.
const maxCredentialsRequest = 64

// serveCredentials answers each request line read from r with the provider's
// current credentials, one JSON line on w, until r ends.
func serveCredentials(ctx context.Context, p aws.CredentialsProvider, r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, maxCredentialsRequest), maxCredentialsRequest)
	enc := json.NewEncoder(w)
	for sc.Scan() {
		var a credentialsAnswer
		if c, err := p.Retrieve(ctx); err != nil {
			a.Error = err.Error()
		} else {
			a.KeyID, a.Secret, a.SessionToken = c.AccessKeyID, c.SecretAccessKey, c.SessionToken
			if c.CanExpire {
				a.Expires = c.Expires.UTC().Format(time.RFC3339)
			}
		}
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return sc.Err()
}

// credentialsPipes are the two pipes between the compactor and one dbt process.
type credentialsPipes struct {
	// requests are read from here, answers written there (the compactor's ends);
	// dbt's ends are handed to it and closed here once it has started.
	requests, answers *os.File
	child             [2]*os.File
}

// attachCredentials gives cmd the pipes and names them in its environment; call
// started once cmd has started (or failed to), then serve.
func attachCredentials(cmd *exec.Cmd) (*credentialsPipes, error) {
	answersR, answersW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	requestsR, requestsW, err := os.Pipe()
	if err != nil {
		answersR.Close()
		answersW.Close()
		return nil, err
	}
	first := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, answersR, requestsW)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d,%d", credentialsEnv, first, first+1))
	return &credentialsPipes{requests: requestsR, answers: answersW, child: [2]*os.File{answersR, requestsW}}, nil
}

// started closes the compactor's copies of dbt's ends, so that the requests end
// when dbt exits.
func (p *credentialsPipes) started() {
	for _, f := range p.child {
		f.Close()
	}
}

// serve answers dbt until it exits or close is called; run it in a goroutine.
func (p *credentialsPipes) serve(ctx context.Context, provider aws.CredentialsProvider) error {
	err := serveCredentials(ctx, provider, p.requests, p.answers)
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// close ends serve: dbt has exited, and whatever it left undone is not waited for.
func (p *credentialsPipes) close() {
	p.requests.Close()
	p.answers.Close()
}
