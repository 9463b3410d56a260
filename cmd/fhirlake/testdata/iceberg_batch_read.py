"""Reads a tenant's batch Iceberg tables with other engines, for iceberg_integration_test.go.

    iceberg_batch_read.py CATALOG_TYPE CATALOG_URI CATALOG_NAME NAMESPACE

CATALOG_TYPE is rest or sql (a PostgreSQL URI). The reader's S3 key comes from
READ_ACCESS_KEY and READ_SECRET_KEY, the endpoint from FHIRLAKE_S3_ENDPOINT, DuckDB's
extensions from FHIRLAKE_HTTPFS_EXTENSION, FHIRLAKE_DUCKDB_AVRO_EXTENSION and
FHIRLAKE_DUCKDB_ICEBERG_EXTENSION.

Prints one JSON object: "snapshots", each batch table's current Iceberg snapshot id
(pyiceberg); then for pyiceberg and for DuckDB's iceberg_scan, each batch table's row
count, the live resources of resources_latest per type and their md5 (sorted
type/id/version), and the md5 of the patients mart's rows, or the error that refused
the read.
"""
import json
import os
import sys

import duckdb
from pyiceberg.catalog import load_catalog

kind, uri, name, ns = sys.argv[1:5]
endpoint = os.environ["FHIRLAKE_S3_ENDPOINT"]
key, secret = os.environ["READ_ACCESS_KEY"], os.environ["READ_SECRET_KEY"]
s3 = {"s3.endpoint": endpoint, "s3.access-key-id": key, "s3.secret-access-key": secret,
      "s3.region": "us-east-1", "s3.path-style-access": "true"}
if kind == "rest":
    cat = load_catalog(name, type="rest", uri=uri, **s3)
else:
    cat = load_catalog(name, type="sql", uri=uri.replace("postgres://", "postgresql+psycopg2://", 1).split("?")[0], **s3)

PER_TYPE = """SELECT coalesce(string_agg(resource_type || ':' || n, ',' ORDER BY resource_type), '') FROM (
    SELECT resource_type, count(*) AS n FROM {t} WHERE NOT is_deleted GROUP BY 1)"""
LATEST = """SELECT md5(coalesce(string_agg(resource_type || '/' || resource_id || '/' || coalesce(version_id, ''),
    ',' ORDER BY resource_type, resource_id), '')) FROM {t} WHERE NOT is_deleted"""
PATIENTS = """SELECT md5(coalesce(string_agg(patient_id || '/' || coalesce(version_id, '') || '/' || coalesce(gender, '')
    || '/' || coalesce(CAST(birth_date AS VARCHAR), ''), ',' ORDER BY patient_id), '')) FROM {t}"""

tables = {}
for _, n in cat.list_tables(ns):
    t = cat.load_table(f"{ns}.{n}")
    if t.properties.get("fhirlake.layer") == "batch":
        tables[n] = t


def answers(con, rel):
    out = {"tables": {n: con.execute(f"SELECT count(*) FROM {r}").fetchone()[0] for n, r in rel.items()}}
    out["per_type"] = con.execute(PER_TYPE.format(t=rel["resources_latest"])).fetchone()[0]
    out["latest"] = con.execute(LATEST.format(t=rel["resources_latest"])).fetchone()[0]
    out["patients"] = con.execute(PATIENTS.format(t=rel["patients"])).fetchone()[0]
    return out


def read_pyiceberg():
    con = duckdb.connect()
    for n, t in tables.items():
        con.register(f"t_{n}", t.scan().to_arrow())
    return answers(con, {n: f"t_{n}" for n in tables})


def read_duckdb():
    con = duckdb.connect(config={"allow_unsigned_extensions": "false"})
    for e in ("FHIRLAKE_HTTPFS_EXTENSION", "FHIRLAKE_DUCKDB_AVRO_EXTENSION", "FHIRLAKE_DUCKDB_ICEBERG_EXTENSION"):
        con.execute(f"LOAD '{os.environ[e]}'")
    host = endpoint.split("://", 1)[1]
    con.execute(f"""CREATE SECRET reader (TYPE s3, KEY_ID '{key}', SECRET '{secret}', ENDPOINT '{host}',
        URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')""")
    return answers(con, {n: f"iceberg_scan('{t.metadata_location}')" for n, t in tables.items()})


result = {"snapshots": {n: str(t.current_snapshot().snapshot_id) for n, t in tables.items() if t.current_snapshot()}}
for engine, read in (("pyiceberg", read_pyiceberg), ("duckdb", read_duckdb)):
    try:
        result[engine] = read()
    except Exception as e:
        result[engine] = {"error": f"{type(e).__name__}: {e}"[:1000]}
print(json.dumps(result))
