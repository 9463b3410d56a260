package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"fhirlake/bulkexport"
	"fhirlake/lake"
	"fhirlake/sink"
)

// serverFlags are backfill's flags for an export from a live server.
type serverFlags struct {
	url, level, group, since string
	types                    []string
	sinceLast, restart       bool
	parallel                 int
	maxPollWait              time.Duration

	clientID, privateKey, keyID, scope, tokenURL string
	tokenEnv                                     string
}

func (s *serverFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.url, "from-server", "", "FHIR base URL to ask for a Bulk Data $export instead of reading files")
	f.StringVar(&s.level, "level", "", "export level: system, patient or group (default system; group with --group)")
	f.StringVar(&s.group, "group", "", "Group id, for a Group-level export")
	f.StringSliceVar(&s.types, "type", nil, "resource types to export (_type), comma-separated or repeated")
	f.StringVar(&s.since, "since", "", "export only resources changed after this time (_since; RFC 3339 or YYYY-MM-DD)")
	f.BoolVar(&s.sinceLast, "since-last", false, "continue from the transactionTime of the last export of the same request recorded in the tenant's lake")
	f.BoolVar(&s.restart, "restart", false, "drop the saved state of an interrupted export of the same request and start a new one")
	f.IntVar(&s.parallel, "parallel", 4, fmt.Sprintf("files downloaded at once (at most %d)", bulkexport.MaxParallel))
	f.DurationVar(&s.maxPollWait, "max-poll-wait", 10*time.Minute, "longest wait between polls or retries, whatever Retry-After says")
	f.StringVar(&s.clientID, "client-id", "", "SMART Backend Services client id")
	f.StringVar(&s.privateKey, "private-key", "", "SMART Backend Services private key, PEM (RSA signs RS384, P-384 signs ES384)")
	f.StringVar(&s.keyID, "key-id", "", "kid of the private key in the client's registered JWK Set")
	f.StringVar(&s.scope, "scope", bulkexport.DefaultScope, "SMART scopes asked for")
	f.StringVar(&s.tokenURL, "token-url", "", "token endpoint (default: from the server's .well-known/smart-configuration)")
	f.StringVar(&s.tokenEnv, "token-env", "", "environment variable holding a static bearer token, instead of SMART")
}

// request is the export the flags ask for, _since not yet set by --since-last.
func (s serverFlags) request() (bulkexport.Request, error) {
	req := bulkexport.Request{Base: s.url, Level: bulkexport.Level(s.level), Group: s.group, Types: s.types}
	if req.Level == "" && s.group != "" {
		req.Level = bulkexport.Group
	}
	if req.Level == bulkexport.Group && s.group == "" {
		return req, errors.New("--level group needs --group ID")
	}
	if s.since != "" {
		if s.sinceLast {
			return req, errors.New("give --since or --since-last, not both")
		}
		t, err := parseSince(s.since)
		if err != nil {
			return req, err
		}
		req.Since = t
	}
	return req, req.Validate()
}

func parseSince(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-01-02T03:04:05Z) or a date (2026-01-02)", v)
}

// tokens is the authentication the flags ask for: SMART, a static token, or none.
func (s serverFlags) tokens(ctx context.Context) (bulkexport.Tokens, error) {
	smart := s.clientID != "" || s.privateKey != "" || s.keyID != ""
	switch {
	case smart && s.tokenEnv != "":
		return nil, errors.New("give SMART Backend Services (--client-id, --private-key, --key-id) or --token-env, not both")
	case smart:
		if s.clientID == "" || s.privateKey == "" || s.keyID == "" {
			return nil, errors.New("SMART Backend Services needs --client-id, --private-key and --key-id")
		}
		pem, err := os.ReadFile(s.privateKey)
		if err != nil {
			return nil, fmt.Errorf("--private-key: %w", err)
		}
		return bulkexport.NewSMART(ctx, bulkexport.NewHTTPClient(), s.url, bulkexport.SMARTOptions{
			ClientID: s.clientID, KeyPEM: pem, KeyID: s.keyID, Scope: s.scope, TokenURL: s.tokenURL})
	case s.tokenEnv != "":
		tok := os.Getenv(s.tokenEnv)
		if tok == "" {
			return nil, fmt.Errorf("--token-env: environment variable %s is not set", s.tokenEnv)
		}
		return bulkexport.StaticToken(tok), nil
	}
	return nil, nil
}

// backfillFromServer runs an export of the server into the tenant's lake:
// each downloaded file goes through ld, as files given on the command line
// do. The state of the export lives under workDir, one directory per
// kick-off URL, so that the same command resumes it.
func backfillFromServer(ctx context.Context, out io.Writer, workDir string, store sink.Store, ld *loader, s serverFlags, quiet bool) error {
	req, err := s.request()
	if err != nil {
		return err
	}
	if s.sinceLast {
		last, ok, err := bulkexport.LastExport(ctx, store, req.Source())
		if err != nil {
			return err
		}
		if ok {
			req.Since = last.NextSince
			fmt.Fprintf(out, "since the last export: %s (its transactionTime %s, loaded %s)\n",
				last.NextSince.Format(time.RFC3339Nano), last.TransactionTime.Format(time.RFC3339Nano), last.Loaded.Format(time.RFC3339))
		} else {
			fmt.Fprintln(out, "no earlier export of this request is recorded: exporting everything")
		}
	}
	tokens, err := s.tokens(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(req.KickOff()))
	dir := filepath.Join(workDir, hex.EncodeToString(sum[:8]))
	fmt.Fprintf(out, "exporting %s\n", req.KickOff())
	start := time.Now()

	bar := exportBar(quiet)
	res, err := bulkexport.Export(ctx, req, bulkexport.Options{
		Dir: dir, Tokens: tokens, Parallel: s.parallel, MaxWait: s.maxPollWait, Restart: s.restart,
		Load: func(ctx context.Context, f bulkexport.File) error {
			return ld.load(ctx, f.Path, fmt.Sprintf("%s %s (%s)", f.Kind, f.Type, f.URL))
		},
		Progress: func(p bulkexport.Progress) {
			// A progress bar that cannot draw changes nothing.
			if p.Files == 0 {
				bar.Describe("export being built: " + p.Status)
			} else {
				bar.Describe(fmt.Sprintf("files: %d/%d downloaded, %d loaded", p.Downloaded, p.Files, p.Loaded))
			}
			_ = bar.Add64(p.Bytes)
		},
	})
	_ = bar.Finish()
	if err != nil {
		return fmt.Errorf("%w (the export's state is kept in %s: run the same command to resume it, or add --restart)", err, dir)
	}
	if res.Resumed {
		fmt.Fprintf(out, "resumed the export %s\n", res.StatusURL)
	}
	fmt.Fprintf(out, "export of %s: %d files, %d bytes downloaded, %d resources, %d deletes; the server built it in %s, the whole run took %s\n",
		res.Manifest.TransactionTime.Format(time.RFC3339Nano), res.Files, res.Bytes, ld.resources, ld.deletes,
		res.Built.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, e := range res.Errors {
		fmt.Fprintln(out, "server error:", e)
	}
	if err := ld.report(); err != nil {
		return fmt.Errorf("%w; the export is not recorded for --since-last", err)
	}
	if res.ErrorCount > 0 {
		return fmt.Errorf("the server reported %d errors in the export; the export is not recorded for --since-last", res.ErrorCount)
	}
	return bulkexport.RecordExport(ctx, store, ld.tenant, lake.ExportSource{
		Request: req.Source(), TransactionTime: res.Manifest.TransactionTime, NextSince: res.NextSince, Loaded: time.Now().UTC(),
		Files: res.Files, Resources: int64(ld.resources)})
}

// exportBar shows the bytes downloaded and what the export is doing.
func exportBar(quiet bool) *progressbar.ProgressBar {
	if quiet {
		return progressbar.DefaultSilent(-1)
	}
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetDescription("exporting"),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionClearOnFinish(),
	)
}
