package compactor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// openLakeDuckDB opens an in-memory DuckDB that reads the tenant's lake where it is,
// as dbt does: a local lake's files by path, loading no extension; an s3:// lake's
// through httpfs (loaded from extDir, never downloaded) with an S3 secret of the
// tenant's own credentials, taken now and offered for the lake's root only. Nothing
// of the lake is copied to local disk: DuckDB reads the parts of a file it needs
// (a Parquet file's footer and the columns asked for) with ranged GETs.
func openLakeDuckDB(ctx context.Context, t Tenant, extDir string) (*sql.DB, error) {
	db, err := openDuckDB()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(t.Lake, "s3://") {
		return db, nil
	}
	setup, err := httpfsSetup(ctx, t, extDir)
	if err == nil {
		for _, q := range setup {
			if _, err = db.ExecContext(ctx, q); err != nil {
				err = fmt.Errorf("duckdb httpfs: %w", err)
				break
			}
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	return db, nil
}

// httpfsSetup are the statements that give DuckDB httpfs and the tenant's S3 secret.
func httpfsSetup(ctx context.Context, t Tenant, extDir string) ([]string, error) {
	if extDir == "" {
		return nil, errors.New("an s3:// lake is read through DuckDB's httpfs, which must be installed in compact.duckdb_extension_dir (or $FHIRLAKE_DUCKDB_EXTENSION_DIR): DuckDB never downloads it")
	}
	if t.S3 == nil || t.S3.Credentials == nil {
		return nil, errors.New("an s3:// lake needs S3 access settings with the tenant's credentials")
	}
	endpoint, ssl, region, style, err := t.S3.httpfs()
	if err != nil {
		return nil, err
	}
	cr, err := t.S3.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3 credentials: %w", err)
	}
	abs, err := filepath.Abs(extDir)
	if err != nil {
		return nil, err
	}
	secret := fmt.Sprintf("CREATE SECRET lake (TYPE s3, PROVIDER config, KEY_ID %s, SECRET %s, REGION %s, ENDPOINT %s, URL_STYLE %s, USE_SSL %t, SCOPE %s",
		sqlString(cr.AccessKeyID), sqlString(cr.SecretAccessKey), sqlString(region), sqlString(endpoint), sqlString(style), ssl,
		sqlString(strings.TrimSuffix(t.Lake, "/")+"/"))
	if cr.SessionToken != "" {
		secret += ", SESSION_TOKEN " + sqlString(cr.SessionToken)
	}
	setup := []string{"SET extension_directory = " + sqlString(abs), "LOAD httpfs", secret + ")"}
	if t.S3.CAFile != "" {
		ca, err := filepath.Abs(t.S3.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		setup = append(setup, "SET GLOBAL ca_cert_file = "+sqlString(ca))
	}
	return setup, nil
}
