"""Reads a tenant's Iceberg tables with other engines, for iceberg_integration_test.go.

    iceberg_read.py CATALOG_TYPE CATALOG_URI CATALOG_NAME NAMESPACE LATEST_SQL

CATALOG_TYPE is rest or sql (a PostgreSQL URI). The reader's own S3 key comes from
READ_ACCESS_KEY and READ_SECRET_KEY, the endpoint from FHIRLAKE_S3_ENDPOINT, DuckDB's
extensions from FHIRLAKE_HTTPFS_EXTENSION, FHIRLAKE_DUCKDB_AVRO_EXTENSION and
FHIRLAKE_DUCKDB_ICEBERG_EXTENSION. LATEST_SQL is lake.LatestSQL over a relation named src.

Prints one JSON object: for pyiceberg and for DuckDB, the resources table's count of
distinct changes, each view table's rows of the live latest versions, and those versions (count and md5 of their sorted type/id/version),
or the error that refused the read.
"""
import json
import os
import sys

import duckdb
from pyiceberg.catalog import load_catalog

kind, uri, name, ns, latest_sql = sys.argv[1:6]
endpoint = os.environ["FHIRLAKE_S3_ENDPOINT"]
key, secret = os.environ["READ_ACCESS_KEY"], os.environ["READ_SECRET_KEY"]
s3 = {"s3.endpoint": endpoint, "s3.access-key-id": key, "s3.secret-access-key": secret,
      "s3.region": "us-east-1", "s3.path-style-access": "true"}
if kind == "rest":
    cat = load_catalog("fhirlake", type="rest", uri=uri, **s3)
else:
    sa = uri.replace("postgres://", "postgresql+psycopg2://", 1).split("?")[0]
    cat = load_catalog(name, type="sql", uri=sa, **s3)

LATEST = f"""SELECT count(*), md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, ''),
    ',' ORDER BY resource_type, id), '')) FROM ({latest_sql}) WHERE operation <> 'delete'"""


def count_sql(table, name):
    """resources: its distinct changes; a view: the rows of the live latest versions (a
    view table's Kafka partition is _kafka_partition, the files' _partition)."""
    if name == "resources":
        return f'SELECT count(DISTINCT (topic, "partition", "offset")) FROM {table}'
    return f"""SELECT count(*) FROM (SELECT DISTINCT ON (_topic, _kafka_partition, _offset, _row) * FROM {table}) v
        JOIN ({latest_sql}) l ON v._resource_type = l.resource_type AND v._resource_id = l.id
         AND v._topic = l.topic AND v._kafka_partition = l."partition" AND v._offset = l."offset"
        WHERE l.operation <> 'delete'"""


def tables():
    """The namespace's tables that fhirlake registered: their summaries name their dataset."""
    out = []
    for _, name in cat.list_tables(ns):
        snap = cat.load_table(f"{ns}.{name}").current_snapshot()
        if snap is not None and snap.summary.additional_properties.get("fhirlake.dataset") == name:
            out.append(name)
    return out


def connect():
    con = duckdb.connect(config={"allow_unsigned_extensions": "false"})
    for e in ("FHIRLAKE_HTTPFS_EXTENSION", "FHIRLAKE_DUCKDB_AVRO_EXTENSION", "FHIRLAKE_DUCKDB_ICEBERG_EXTENSION"):
        con.execute(f"LOAD '{os.environ[e]}'")
    return con


def read_pyiceberg():
    out = {"tables": {}}
    con = duckdb.connect()
    con.register("src", cat.load_table(f"{ns}.resources").scan().to_arrow())
    out["latest"] = list(con.execute(LATEST).fetchone())
    for name in tables():
        con.register("t", cat.load_table(f"{ns}.{name}").scan().to_arrow())
        out["tables"][name] = con.execute(count_sql("t", name)).fetchone()[0]
        con.unregister("t")
    return out


def read_duckdb():
    con = connect()
    host = endpoint.split("://", 1)[1]
    con.execute(f"""CREATE SECRET reader (TYPE s3, KEY_ID '{key}', SECRET '{secret}', ENDPOINT '{host}',
        URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')""")
    out = {"tables": {}}
    names = tables()
    if kind == "rest":
        # the catalog vends no credentials: the reader's own secret
        con.execute(f"ATTACH '' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none', ACCESS_DELEGATION_MODE 'none')")
        rel = {n: f'lake."{ns}"."{n}"' for n in names}
    else:
        rel = {n: f"iceberg_scan('{cat.load_table(f'{ns}.{n}').metadata_location}')" for n in names}
    con.execute(f"CREATE VIEW src AS SELECT * FROM {rel['resources']}")
    out["latest"] = list(con.execute(LATEST).fetchone())
    for n in names:
        out["tables"][n] = con.execute(count_sql(rel[n], n)).fetchone()[0]
    return out


result = {}
for name, read in (("pyiceberg", read_pyiceberg), ("duckdb", read_duckdb)):
    try:
        result[name] = read()
    except Exception as e:  # the refusal is the answer when the key is another tenant's
        result[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
print(json.dumps(result))
