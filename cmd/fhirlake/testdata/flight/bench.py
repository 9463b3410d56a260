"""The Flight SQL benchmark's client (make bench-flight): the dashboard queries
through ADBC's Flight SQL driver and through the HTTP API (Arrow IPC), and one
large result streamed both ways. Prints one JSON object of timings.

usage: bench.py FLIGHT_URI HTTP_BASE KEY TENANT ROUNDS QUERIES_JSON STREAM_SQL
"""

import json
import sys
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.ipc as ipc
from adbc_driver_flightsql import DatabaseOptions

uri, base, key, tenant, rounds, queries, stream_sql = sys.argv[1:8]
rounds = int(rounds)


def over_http(sql):
    req = urllib.request.Request(
        f"{base}/v1/tenants/{tenant}/query?format=arrow",
        data=json.dumps({"sql": sql}).encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return ipc.open_stream(resp).read_all()


conn = flightsql.connect(uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + key})


def over_flight(sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def timed(fn, sql):
    t0 = time.perf_counter()
    table = fn(sql)
    return time.perf_counter() - t0, table


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, len(xs) * p // 100)]


out = {"queries": []}
for sql in json.loads(queries):
    row = {"sql": sql}
    for name, fn in (("flight", over_flight), ("http", over_http)):
        timed(fn, sql)  # warm
        ds = [timed(fn, sql)[0] for _ in range(rounds)]
        row[name] = {"p50_ms": round(pct(ds, 50) * 1000, 1), "p95_ms": round(pct(ds, 95) * 1000, 1)}
    out["queries"].append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)

for name, fn in (("flight", over_flight), ("http", over_http)):
    runs = []
    for _ in range(3):
        d, table = timed(fn, stream_sql)
        runs.append(d)
    out["stream_" + name] = {"rows": table.num_rows, "arrow_bytes": table.nbytes,
                             "best_s": round(min(runs), 2), "median_s": round(sorted(runs)[1], 2)}
print(json.dumps(out))
