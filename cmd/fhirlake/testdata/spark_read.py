"""Reads a tenant's Iceberg tables with Apache Spark, for interop_integration_test.go
(`make interop`).

    spark_read.py NAMESPACE REST_URI POSTGRES_URI SQL_CATALOG_NAME DOC

One Spark session (local[2]) with two Iceberg catalogs: `rest`, the REST catalog at
REST_URI, and SQL_CATALOG_NAME, the JDBC catalog on PostgreSQL (POSTGRES_URI is
postgres://user:password@host:port/db; the Spark catalog's name is the catalog's name in
the iceberg_tables rows). Both read the tenant's files through Iceberg's S3FileIO with
the reader's own key (READ_ACCESS_KEY, READ_SECRET_KEY) at FHIRLAKE_S3_ENDPOINT,
path-style. The jars (iceberg-spark-runtime, iceberg-aws-bundle, the PostgreSQL driver)
are the files of FHIRLAKE_SPARK_JARS, a directory.

The latest version of each resource and each view's live rows are the Spark SQL views
shipped in DOC (docs/format/iceberg.md: the ```sql block after the line
`<!-- interop: spark-sql -->`), written for the tenant `acme` and the catalog `lake`,
taken as they are and pointed at this namespace and catalog.

Prints one JSON object: per catalog, the resources table's count of distinct changes,
each view table's rows of the live latest versions, those versions (count and md5 of
their type/id/version sorted by type and id) and the seconds it took; or the error that
refused the read (of the catalog, or under "refused" of one table). With batch tables
(`fhirlake compact`), under "batch": each one's rows and delete files, the live
resources of resources_latest per type and their md5, and the md5 of the patients
mart, as iceberg_batch_read.py asks pyiceberg and DuckDB.
"""
import glob
import json
import os
import re
import sys
import time
from urllib.parse import urlsplit, unquote

from pyspark.sql import SparkSession

ns, rest_uri, pg_uri, sql_name, doc = sys.argv[1:6]
endpoint = os.environ["FHIRLAKE_S3_ENDPOINT"]
key, secret = os.environ["READ_ACCESS_KEY"], os.environ["READ_SECRET_KEY"]
jars = sorted(glob.glob(os.path.join(os.environ["FHIRLAKE_SPARK_JARS"], "*.jar")))
if not jars:
    sys.exit("no jars in FHIRLAKE_SPARK_JARS")


def catalog_conf(name, props):
    """Spark settings of an Iceberg catalog reading S3 with the reader's own key."""
    conf = {"": "org.apache.iceberg.spark.SparkCatalog",
            ".io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            ".s3.endpoint": endpoint, ".s3.path-style-access": "true",
            ".s3.access-key-id": key, ".s3.secret-access-key": secret,
            ".client.region": "us-east-1"}
    conf.update({"." + k: v for k, v in props.items()})
    return {f"spark.sql.catalog.{name}{k}": v for k, v in conf.items()}


os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # the driver listens on loopback only
pg = urlsplit(pg_uri)
builder = (SparkSession.builder.master("local[2]").appName("fhirlake-interop")
           .config("spark.jars", ",".join(jars))
           .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
           .config("spark.sql.shuffle.partitions", "4")
           .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
           .config("spark.sql.session.timeZone", "UTC"))
for k, v in {**catalog_conf("rest", {"type": "rest", "uri": rest_uri}),
             **catalog_conf(sql_name, {"type": "jdbc", "uri": f"jdbc:postgresql://{pg.hostname}:{pg.port}{pg.path}",
                                       "jdbc.user": unquote(pg.username), "jdbc.password": unquote(pg.password),
                                       # only a new table would be placed there; fhirlake's tables exist
                                       "warehouse": f"s3://unused-{sql_name}/"})}.items():
    builder = builder.config(k, v)
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")


def shipped_views():
    """The Spark SQL statements of DOC's interop block."""
    text = open(doc, encoding="utf-8").read()
    m = re.search(r"<!-- interop: spark-sql -->\s*```sql\n(.*?)```", text, re.S)
    if not m:
        sys.exit(f"{doc}: no ```sql block after <!-- interop: spark-sql -->")
    body = "\n".join(line for line in m.group(1).splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def point(stmt, cat, view=None):
    """A statement of the shipped block for acme in catalog lake, for ns in cat (and a
    view table other than patient)."""
    if view is not None:
        stmt = stmt.replace("acme_patient", f"acme_{view}").replace("lake.acme.patient", f"lake.acme.`{view}`")
    return stmt.replace("lake.acme.", f"`{cat}`.`{ns}`.").replace("acme_", "t_")


def tables(cat):
    """The namespace's change tables (their summaries name their dataset) and batch
    tables (their summaries name their model), each a list of names."""
    changes, batch = [], []
    for row in spark.sql(f"SHOW TABLES IN `{cat}`.`{ns}`").collect():
        name = row["tableName"]
        snap = spark.sql(f"SELECT summary FROM `{cat}`.`{ns}`.`{name}`.snapshots ORDER BY committed_at DESC LIMIT 1").collect()
        if snap and snap[0]["summary"].get("fhirlake.dataset") == name:
            changes.append(name)
        elif snap and snap[0]["summary"].get("fhirlake.model"):
            batch.append(name)
    return changes, batch


LATEST = """SELECT count(*) AS n, md5(concat_ws(',', transform(
    array_sort(collect_list(struct(resource_type, id, coalesce(version_id, '') AS v))),
    x -> concat(x.resource_type, '/', x.id, '/', x.v)))) AS h FROM t_resources"""


# The batch tables' questions, as iceberg_batch_read.py asks them of pyiceberg and
# DuckDB: the live resources of resources_latest per type, the md5 of their sorted
# type/id/version, the md5 of the patients mart's rows.
BATCH_PER_TYPE = """SELECT concat_ws(',', transform(array_sort(collect_list(struct(resource_type, n))),
    x -> concat(x.resource_type, ':', cast(x.n AS string)))) AS v
    FROM (SELECT resource_type, count(*) AS n FROM {t} WHERE NOT is_deleted GROUP BY 1)"""
BATCH_LATEST = """SELECT md5(concat_ws(',', transform(
    array_sort(collect_list(struct(resource_type, resource_id, coalesce(version_id, '') AS v))),
    x -> concat(x.resource_type, '/', x.resource_id, '/', x.v)))) AS v FROM {t} WHERE NOT is_deleted"""
BATCH_PATIENTS = """SELECT md5(concat_ws(',', transform(array_sort(collect_list(struct(patient_id,
    coalesce(version_id, '') AS v, coalesce(gender, '') AS g, coalesce(cast(birth_date AS string), '') AS b))),
    x -> concat(x.patient_id, '/', x.v, '/', x.g, '/', x.b)))) AS v FROM {t}"""


def read_batch(cat, names):
    """Each batch table's rows and the batch questions, read with the position
    deletes of the tables merged on read applied by Spark."""
    t = lambda n: f"`{cat}`.`{ns}`.`{n}`"
    out = {"tables": {n: spark.sql(f"SELECT count(*) AS n FROM {t(n)}").collect()[0]["n"] for n in names}}
    out["deletes"] = {n: spark.sql(f"SELECT count(*) AS n FROM {t(n)}.delete_files").collect()[0]["n"] for n in names}
    out["per_type"] = spark.sql(BATCH_PER_TYPE.format(t=t("resources_latest"))).collect()[0]["v"]
    out["latest"] = spark.sql(BATCH_LATEST.format(t=t("resources_latest"))).collect()[0]["v"]
    out["patients"] = spark.sql(BATCH_PATIENTS.format(t=t("patients"))).collect()[0]["v"]
    return out


def short(e):
    """The cause of a Spark error, without the JVM's stack."""
    text = str(e)
    java = re.search(r"^: ([\w.$]+(?:Exception|Error)[^\n]*)", text, re.M)
    line = java.group(1) if java else text.strip().splitlines()[0]
    return f"{type(e).__name__}: {line}"[:400]


def read(cat):
    t0 = time.monotonic()
    stmts = shipped_views()
    latest, resources, view_stmt = stmts[0], stmts[1], stmts[2]
    names, batch = tables(cat)
    if "resources" not in names:
        raise RuntimeError(f"no resources table in {cat}.{ns}")
    spark.sql(point(latest, cat))
    spark.sql(point(resources, cat))
    out = {"tables": {}}
    row = spark.sql(LATEST).collect()[0]
    out["latest"] = [row["n"], row["h"]]
    out["tables"]["resources"] = spark.sql(
        f"SELECT count(DISTINCT topic, `partition`, `offset`) AS n FROM `{cat}`.`{ns}`.resources").collect()[0]["n"]
    out["refused"] = {}
    for n in names:
        if n == "resources":
            continue
        try:
            spark.sql(point(view_stmt, cat, n))
            out["tables"][n] = spark.sql(f"SELECT count(*) AS n FROM t_{n}").collect()[0]["n"]
        except Exception as e:  # one table Spark cannot read does not hide the others
            out["refused"][n] = short(e)
    if batch:
        out["batch"] = read_batch(cat, batch)
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


result = {"spark": spark.version}
for label, cat in (("rest", "rest"), ("sql", sql_name)):
    try:
        result[label] = read(cat)
    except Exception as e:  # the refusal is the answer when the key is another tenant's
        result[label] = {"error": short(e)}
spark.stop()
print(json.dumps(result))
