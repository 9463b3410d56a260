"""The tenant's S3 secret in DuckDB, renewed while a run lasts.

A dbt-duckdb plugin (profiles.yml, target `tenant`). `fhirlake compact` hands dbt
two pipes, named by FHIRLAKE_DBT_CREDENTIALS_FDS ("<answers fd>,<requests fd>"):
each time dbt opens a connection, that is before every node, the plugin asks for
the tenant's credentials and, when they changed, replaces DuckDB's S3 secret. The
compactor renews them before they expire, so temporary credentials (an assumed
role's, the default chain's) last for a run of any length, and none is ever in
dbt's environment or on disk.

Without the pipes (dbt run by hand), the key comes from FHIRLAKE_DBT_S3_ACCESS_KEY,
FHIRLAKE_DBT_S3_SECRET_KEY and FHIRLAKE_DBT_S3_SESSION_TOKEN. The secret's other
settings always come from FHIRLAKE_DBT_S3_REGION, _ENDPOINT, _URL_STYLE, _USE_SSL
and _SCOPE (the lake's root: the credentials are offered for it only), and
FHIRLAKE_DBT_S3_CA_FILE, when set, is the PEM bundle httpfs trusts for the
endpoint (the tenant's store.ca_file).
"""
import json
import os
import threading

from dbt.adapters.duckdb.plugins import BasePlugin

SECRET = "fhirlake_tenant_s3"


def _quote(value):
    return "'" + str(value).replace("'", "''") + "'"


class Plugin(BasePlugin):
    def initialize(self, plugin_config):
        self._lock = threading.Lock()
        self._answers = self._requests = None
        fds = os.environ.get("FHIRLAKE_DBT_CREDENTIALS_FDS")
        if fds:
            answers, requests = (int(fd) for fd in fds.split(","))
            self._answers = os.fdopen(answers, "rb")
            self._requests = os.fdopen(requests, "wb")
        # The credentials the secret was last created with, per DuckDB database:
        # a connection reopened after dbt closed the last one has no secret.
        self._current = {}

    def configure_connection(self, conn):
        ca_file = os.environ.get("FHIRLAKE_DBT_S3_CA_FILE")
        if ca_file:
            # GLOBAL: a plain SET holds for this connection only, not the
            # cursors dbt runs the models on.
            conn.execute("SET GLOBAL ca_cert_file = " + _quote(ca_file))
        self._refresh(conn, new_database=True)

    def configure_cursor(self, cursor):
        self._refresh(cursor, new_database=False)

    def _credentials(self):
        if self._requests is None:
            return (
                os.environ.get("FHIRLAKE_DBT_S3_ACCESS_KEY", ""),
                os.environ.get("FHIRLAKE_DBT_S3_SECRET_KEY", ""),
                os.environ.get("FHIRLAKE_DBT_S3_SESSION_TOKEN", ""),
            )
        self._requests.write(b"s3\n")
        self._requests.flush()
        line = self._answers.readline(1 << 16)
        if not line:
            raise RuntimeError("fhirlake compact stopped answering requests for S3 credentials")
        answer = json.loads(line)
        if answer.get("error"):
            raise RuntimeError("S3 credentials: " + answer["error"])
        return answer.get("key_id", ""), answer.get("secret", ""), answer.get("session_token", "")

    def _refresh(self, con, new_database):
        with self._lock:
            if new_database:
                self._current = {}
            creds = self._credentials()
            if not creds[0] or self._current.get("creds") == creds:
                return
            key_id, secret, token = creds
            env = os.environ.get
            options = [
                "TYPE s3",
                "KEY_ID " + _quote(key_id),
                "SECRET " + _quote(secret),
                "REGION " + _quote(env("FHIRLAKE_DBT_S3_REGION", "us-east-1")),
                "ENDPOINT " + _quote(env("FHIRLAKE_DBT_S3_ENDPOINT", "s3.amazonaws.com")),
                "URL_STYLE " + _quote(env("FHIRLAKE_DBT_S3_URL_STYLE", "vhost")),
                "USE_SSL " + ("true" if env("FHIRLAKE_DBT_S3_USE_SSL", "true") == "true" else "false"),
                "SCOPE " + _quote(env("FHIRLAKE_DBT_S3_SCOPE", "s3://")),
            ]
            if token:
                options.append("SESSION_TOKEN " + _quote(token))
            con.execute(f"CREATE OR REPLACE SECRET {SECRET} ({', '.join(options)})")
            self._current["creds"] = creds
