# Sourced by deploy/local/stack: the services behind fhirlake's Iceberg catalogs.
#
#   catalog   Apache Iceberg's REST catalog test fixture (Maven Central, Java 17) on
#             loopback, through LoopbackRESTCatalog.java; a JDBC catalog on SQLite behind
#             it, writing table metadata into the tenants' buckets with the S3 admin key
#             (as a catalog service does with its own identity).
#   postgres  Debian's PostgreSQL, for the SQL catalog on PostgreSQL; loopback only, one
#             password user, database "iceberg".
#
# And, installed with them: pyiceberg and DuckDB with its iceberg and avro extensions in
# .cache/iceberg-venv (deploy/local/iceberg/requirements.txt), the extensions copied
# beside httpfs in .cache/duckdb/repo so that DuckDB loads them by path with their
# signatures checked.

ICEBERG_SRC="$SCRIPT_DIR/iceberg"
ICEBERG_REST_DIR="$CACHE/iceberg-rest"
ICEBERG_VENV="$CACHE/iceberg-venv"
ICEBERG_REQUIREMENTS="$ICEBERG_SRC/requirements.txt"
CATALOG_REST_PORT="${FHIRLAKE_CATALOG_REST_PORT:-17100}"
POSTGRES_PORT="${FHIRLAKE_POSTGRES_PORT:-17110}"
POSTGRES_USER_NAME="${FHIRLAKE_POSTGRES_USER:-fhirlake}"
POSTGRES_PASSWORD="${FHIRLAKE_POSTGRES_PASSWORD:-fhirlake-postgres-local-only}"
POSTGRES_DB=iceberg
POSTGRES_DATA="$DATA_DIR/postgres"

catalog_rest_url() { echo "http://$HOST:$CATALOG_REST_PORT"; }
postgres_url() { echo "postgres://$POSTGRES_USER_NAME:$POSTGRES_PASSWORD@$HOST:$POSTGRES_PORT/$POSTGRES_DB?sslmode=disable"; }

# ------------------------------------------------------------- installers ---
install_iceberg_rest() {
  local stamp="$ICEBERG_REST_DIR/.installed" want
  want="$(sha256sum "$ICEBERG_SRC/pom.xml" | cut -c1-16)"
  if [[ -f "$stamp" && "$(<"$stamp")" == "$want" ]] && compgen -G "$ICEBERG_REST_DIR/libs/iceberg-open-api-*-test-fixtures.jar" >/dev/null; then
    return 0
  fi
  have java || die "java not found (need a JDK 17+)"
  have mvn || die "mvn not found (needed to fetch the Iceberg REST catalog fixture from Maven Central)"
  local t0=$SECONDS
  log "installing the Iceberg REST catalog fixture into $ICEBERG_REST_DIR/libs"
  rm -rf "$ICEBERG_REST_DIR"
  mkdir -p "$ICEBERG_REST_DIR/libs" "$M2_REPO"
  if ! mvn -B -q -f "$ICEBERG_SRC/pom.xml" -Dmaven.repo.local="$M2_REPO" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$ICEBERG_REST_DIR/libs" \
      >"$ICEBERG_REST_DIR/mvn.log" 2>&1; then
    tail -n 40 "$ICEBERG_REST_DIR/mvn.log" >&2
    die "could not resolve the Iceberg REST catalog fixture from Maven Central (see $ICEBERG_REST_DIR/mvn.log)"
  fi
  echo "$want" >"$stamp"
  log "Iceberg REST catalog fixture installed in $((SECONDS - t0))s"
}

install_iceberg_clients() {
  local stamp="$ICEBERG_VENV/.fhirlake-requirements" want t0=$SECONDS
  want="$("$PYTHON" -c 'import sys; print("py%d.%d" % sys.version_info[:2])') $(sha256sum "$ICEBERG_REQUIREMENTS" | cut -c1-16)"
  if ! [[ -f "$stamp" && "$(<"$stamp")" == "$want" ]] || ! "$ICEBERG_VENV/bin/python" -c 'import pyiceberg, duckdb' 2>/dev/null; then
    log "installing pyiceberg and DuckDB's iceberg extension into $ICEBERG_VENV (pip install -r deploy/local/iceberg/requirements.txt)"
    rm -rf "$ICEBERG_VENV"
    "$PYTHON" -m venv "$ICEBERG_VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    if ! PIP_CACHE_DIR="$PIP_CACHE" "$ICEBERG_VENV/bin/python" -m pip install -q --disable-pip-version-check \
         -r "$ICEBERG_REQUIREMENTS" >"$ICEBERG_VENV/pip-install.log" 2>&1; then
      tail -n 40 "$ICEBERG_VENV/pip-install.log" >&2
      die "pip install -r $ICEBERG_REQUIREMENTS failed (see $ICEBERG_VENV/pip-install.log)"
    fi
    echo "$want" >"$stamp"
    log "pyiceberg installed in $((SECONDS - t0))s"
  fi
  local ext src
  for ext in iceberg avro; do
    src="$(compgen -G "$ICEBERG_VENV/lib/python*/site-packages/duckdb_extension_$ext/extensions/v*/$ext.duckdb_extension" | head -n1 || true)"
    [[ -n "$src" ]] || die "$ext extension file not found in $ICEBERG_VENV (is duckdb-extension-$ext in $ICEBERG_REQUIREMENTS?)"
    local meta ver plat
    meta="$(httpfs_footer "$src")"
    read -r ver plat _ _ <<<"$meta"
    mkdir -p "$DUCKDB_DIR/repo/$ver/$plat"
    cmp -s "$src" "$DUCKDB_DIR/repo/$ver/$plat/$ext.duckdb_extension" || cp -f "$src" "$DUCKDB_DIR/repo/$ver/$plat/$ext.duckdb_extension"
  done
}

postgres_bin() { # prints the directory of Debian's PostgreSQL binaries, newest first
  local d
  d="$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n1 || true)"
  [[ -n "$d" ]] && dirname "$d"
}

install_postgres() {
  postgres_bin >/dev/null && return 0
  have apt-get || die "PostgreSQL not found and no apt-get: install Debian's postgresql package"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    have sudo || die "need root or sudo to apt-get install postgresql"
    sudo=(sudo)
  fi
  log "installing Debian's postgresql package"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
    || die "apt-get install postgresql failed"
  # the package starts a cluster of its own on 5432 where systemd runs; ours is separate
  postgres_bin >/dev/null || die "postgresql installed but its binaries are not in /usr/lib/postgresql/*/bin"
}

install_iceberg() {
  install_iceberg_rest
  install_iceberg_clients
  install_postgres
}

# -------------------------------------------------------------- catalog ---
catalog_start() {
  local pid
  if pid="$(service_pid catalog)"; then
    log "catalog already running (pid $pid)"
  else
    ! port_open "$CATALOG_REST_PORT" || die "port $HOST:$CATALOG_REST_PORT is already in use by another process"
    mkdir -p "$DATA_DIR/iceberg-rest"
    log "starting the Iceberg REST catalog on $(catalog_rest_url)"
    printf '\n===== %s starting catalog =====\n' "$(date -Is)" >>"$(log_file catalog)"
    # CATALOG_* become the backend catalog's properties (`__` → `-`, `_` → `.`).
    setsid env CATALOG_REST_HOST="$HOST" CATALOG_REST_PORT="$CATALOG_REST_PORT" \
      CATALOG_URI="jdbc:sqlite:$DATA_DIR/iceberg-rest/catalog.db" \
      CATALOG_WAREHOUSE="file://$DATA_DIR/iceberg-rest/warehouse" \
      CATALOG_IO__IMPL=org.apache.iceberg.aws.s3.S3FileIO \
      CATALOG_S3_ENDPOINT="http://$HOST:$S3_PORT" CATALOG_S3_PATH__STYLE__ACCESS=true \
      CATALOG_S3_ACCESS__KEY__ID="$S3_ADMIN_ACCESS" CATALOG_S3_SECRET__ACCESS__KEY="$S3_ADMIN_SECRET" \
      CATALOG_CLIENT_REGION="$S3_REGION" \
      java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -cp "$ICEBERG_REST_DIR/libs/*" "$ICEBERG_SRC/LoopbackRESTCatalog.java" \
      >>"$(log_file catalog)" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file catalog)"
  fi
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    service_alive catalog >/dev/null || { log_tail catalog; die "the Iceberg REST catalog exited during startup"; }
    if http_ok "$(catalog_rest_url)/v1/config"; then
      log "catalog ready on $(catalog_rest_url)"
      return 0
    fi
    sleep 0.5
  done
  log_tail catalog
  die "the Iceberg REST catalog not ready on $(catalog_rest_url) after ${READY_TIMEOUT}s"
}

# ------------------------------------------------------------- postgres ---
# PostgreSQL refuses to run as root: as root, the cluster belongs to Debian's postgres user.
pg_as() {
  if [[ "$(id -u)" == 0 ]]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

postgres_start() {
  local pid bin
  bin="$(postgres_bin)" || die "PostgreSQL not installed (deploy/local/stack install)"
  if pid="$(service_pid postgres)"; then
    log "postgres already running (pid $pid)"
    return 0
  fi
  ! port_open "$POSTGRES_PORT" || die "port $HOST:$POSTGRES_PORT is already in use by another process"
  if [[ ! -f "$POSTGRES_DATA/PG_VERSION" ]]; then
    rm -rf "$POSTGRES_DATA"
    mkdir -p "$POSTGRES_DATA"
    [[ "$(id -u)" != 0 ]] || chown postgres:postgres "$POSTGRES_DATA"
    local pw="$POSTGRES_DATA.pw"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
    [[ "$(id -u)" != 0 ]] || chown postgres "$pw"
    pg_as "$bin/initdb" -D "$POSTGRES_DATA" -U "$POSTGRES_USER_NAME" --pwfile="$pw" \
      --auth=scram-sha-256 -E UTF8 >>"$(log_file postgres)" 2>&1 || { rm -f "$pw"; log_tail postgres; die "initdb failed"; }
    rm -f "$pw"
  fi
  log "starting postgres on $HOST:$POSTGRES_PORT"
  printf '\n===== %s starting postgres =====\n' "$(date -Is)" >>"$(log_file postgres)"
  local run=()
  [[ "$(id -u)" != 0 ]] || run=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  # no Unix socket: loopback TCP only
  setsid "${run[@]}" "$bin/postgres" -D "$POSTGRES_DATA" -h "$HOST" -p "$POSTGRES_PORT" \
    -c unix_socket_directories= -c fsync=off -c max_connections=50 \
    >>"$(log_file postgres)" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file postgres)"
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    service_alive postgres >/dev/null || { log_tail postgres; die "postgres exited during startup"; }
    if "$bin/pg_isready" -q -h "$HOST" -p "$POSTGRES_PORT"; then
      PGPASSWORD="$POSTGRES_PASSWORD" "$bin/psql" -q -h "$HOST" -p "$POSTGRES_PORT" -U "$POSTGRES_USER_NAME" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$POSTGRES_DB'" | grep -q 1 \
        || PGPASSWORD="$POSTGRES_PASSWORD" "$bin/createdb" -h "$HOST" -p "$POSTGRES_PORT" -U "$POSTGRES_USER_NAME" "$POSTGRES_DB" \
        || die "could not create the database $POSTGRES_DB"
      log "postgres ready on $HOST:$POSTGRES_PORT"
      return 0
    fi
    sleep 0.3
  done
  log_tail postgres
  die "postgres not ready on $HOST:$POSTGRES_PORT after ${READY_TIMEOUT}s"
}

iceberg_env() {
  local plat="$(httpfs_field 2)" ver="$(httpfs_field 1)"
  cat <<EOV
export FHIRLAKE_STACK_CATALOG_REST_URI=$(catalog_rest_url)
export FHIRLAKE_STACK_POSTGRES_URI='$(postgres_url)'
export FHIRLAKE_STACK_ICEBERG_PYTHON=$ICEBERG_VENV/bin/python
export FHIRLAKE_DUCKDB_ICEBERG_EXTENSION=$DUCKDB_DIR/repo/$ver/$plat/iceberg.duckdb_extension
export FHIRLAKE_DUCKDB_AVRO_EXTENSION=$DUCKDB_DIR/repo/$ver/$plat/avro.duckdb_extension
export FHIRLAKE_ICEBERG_EXTENSION=$DUCKDB_DIR/repo/$ver/$plat/iceberg.duckdb_extension
export FHIRLAKE_AVRO_EXTENSION=$DUCKDB_DIR/repo/$ver/$plat/avro.duckdb_extension
EOV
}
