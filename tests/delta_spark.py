"""Cross-check: Apache Spark with Delta Lake (the reference Delta implementation, not delta-rs)
reads auditlake lakes as Delta tables; auditlake's own query engine reads the same lakes; both
must return the same rows: the count and, per column, a checksum of its values.

usage: delta_spark.py AUDITLAKE_BINARY LAKE [LAKE ...]

A column's checksum is the SHA-256 of its values rendered as text (NULL as \\N, timestamps as
microseconds since the epoch), sorted: independent of row order and of each engine's formatting.
Prints one JSON line per lake; exits 1 naming every lake and column where the two differ.
"""

import csv
import hashlib
import io
import json
import subprocess
import sys

from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

# Scalar columns of every kind the record has (strings, an integer, timestamps); lists and maps
# render differently in each engine, and the scalar identity columns derived from them cover them.
COLUMNS = [
    "cluster", "audit_id", "stage", "verb", "request_uri", "request_received_at", "stage_at",
    "resource", "namespace", "name", "response_code", "authn_username", "impersonated_username",
    "original_username", "actor_username", "actor_kind", "resolution", "claim_status",
    "proxy_profile", "credential_id", "source", "dt", "hour",
]
TIMESTAMPS = {"request_received_at", "stage_at"}


def digest(values):
    h = hashlib.sha256()
    for v in sorted(values):
        h.update(v.encode())
        h.update(b"\n")
    return h.hexdigest()


def ours(binary, lake):
    exprs = ", ".join(
        f"coalesce(cast(cast({c} AS bigint) AS varchar), '\\N') AS {c}" if c in TIMESTAMPS
        else f"coalesce(cast({c} AS varchar), '\\N') AS {c}"
        for c in COLUMNS
    )
    out = subprocess.run(
        [binary, "query", "--lake", lake, "--format", "csv", "--max-rows", "0",
         f"SELECT {exprs} FROM audit"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = list(csv.reader(io.StringIO(out)))[1:]
    return len(rows), {c: digest(r[i] for r in rows) for i, c in enumerate(COLUMNS)}


def theirs(spark, lake):
    exprs = [
        f"coalesce(cast(unix_micros({c}) AS string), '\\\\N') AS {c}" if c in TIMESTAMPS
        else f"coalesce(cast({c} AS string), '\\\\N') AS {c}"
        for c in COLUMNS
    ]
    rows = spark.read.format("delta").load(lake).selectExpr(*exprs).collect()
    return len(rows), {c: digest(r[c] for r in rows) for c in COLUMNS}


def main():
    binary, lakes = sys.argv[1], sys.argv[2:]
    builder = (
        SparkSession.builder.master("local[1]")
        .appName("auditlake-delta-crosscheck")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
    )
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    bad = []
    for lake in lakes:
        n_ours, c_ours = ours(binary, lake)
        n_theirs, c_theirs = theirs(spark, lake)
        differ = [c for c in COLUMNS if c_ours[c] != c_theirs[c]]
        print(json.dumps({"lake": lake, "auditlake": n_ours, "spark": n_theirs, "differ": differ}))
        if n_ours != n_theirs or differ:
            bad.append(f"{lake}: auditlake {n_ours} rows, Spark {n_theirs}; columns differing: {differ}")
    spark.stop()
    if bad:
        print("\n".join(bad), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
