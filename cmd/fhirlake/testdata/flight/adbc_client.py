"""Drives `fhirlake serve`'s Flight SQL endpoint with the ADBC Flight SQL driver
(adbc-driver-flightsql from PyPI), as a notebook or Superset would, and prints
what it saw as one JSON object. flight_integration_test.go asserts on it.

usage: adbc_client.py URI KEY OTHER_TENANT_KEY TENANT QUERIES_JSON [TLS_ROOT_CERT]
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions

uri, key, other_key, tenant, queries = sys.argv[1:6]
root_cert = sys.argv[6] if len(sys.argv) > 6 else ""


def connect(k, **extra):
    opts = {DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + k}
    if root_cert:
        opts[DatabaseOptions.TLS_ROOT_CERTS.value] = open(root_cert).read()
    opts.update(extra)
    return flightsql.connect(uri, db_kwargs=opts)


def failure(fn):
    """The error fn raised ("" if none), and what it returned."""
    try:
        return "", fn()
    except Exception as e:  # the driver's errors: report them all
        return type(e).__name__ + ": " + str(e), None


def scalar(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters=params)
        return cur.fetchone()[0]


out = {}
with connect(key) as conn:
    dashboards = []
    for sql in json.loads(queries):
        with conn.cursor() as cur:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
        dashboards.append({"rows": table.num_rows, "columns": table.column_names,
                           "first": [str(v) for v in table.slice(0, 1).to_pylist()[0].values()] if table.num_rows else []})
    out["dashboards"] = dashboards

    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    out["tables"] = sorted(t["table_name"] for c in objects for s in (c["catalog_db_schemas"] or []) for t in (s["db_schema_tables"] or []))
    out["patient_columns"] = conn.adbc_get_table_schema("patient").names

    out["prepared_female"] = scalar(conn, "SELECT count(*) FROM patient WHERE gender = ?", ("female",))
    out["prepared_injection"] = scalar(conn, "SELECT count(*) FROM patient WHERE gender = ?", ("female' OR '1'='1",))
    out["literal_female"] = scalar(conn, "SELECT count(*) FROM patient WHERE gender = 'female'")

    out["insert_error"], _ = failure(lambda: scalar(conn, "INSERT INTO patient VALUES (1)"))

    def update():
        with conn.cursor() as cur:
            cur.adbc_statement.set_sql_query("DELETE FROM patient")
            return cur.adbc_statement.execute_update()
    out["update_error"], _ = failure(update)

    out["runaway_error"], _ = failure(lambda: scalar(
        conn, "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range + b.range = -1"))

# Another tenant's key, naming this tenant: refused, no rows.
def other():
    with connect(other_key, **{"adbc.flight.sql.rpc.call_header.tenant": tenant}) as c:
        return scalar(c, "SELECT count(*) FROM patient")
out["other_key_error"], out["other_key_rows"] = failure(other)

def unknown():
    with connect("not-a-key") as c:
        return scalar(c, "SELECT count(*) FROM patient")
out["unknown_key_error"], out["unknown_key_rows"] = failure(unknown)

print(json.dumps(out))
