"""Open every logveil output file with DuckDB and pyarrow (and pandas) and check types.

Usage: check_parquet.py OUT_DIR   (exit 0 and "checked N files" when all pass)
Called by the Rust integration test `readers`; see scripts/test.
"""

import pathlib
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

BUCKETS = {
    "hour": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "week": pa.date32(),
    "month": pa.date32(),
}
METRICS = {"views", "visitors", "bytes", "accounts"}
REQUIRED_METADATA = [
    "logveil.version", "logveil.report", "logveil.audience", "logveil.purpose",
    "logveil.policy_sha256", "logveil.key_id", "logveil.k_min",
]


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check_file(path: pathlib.Path):
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    for key in REQUIRED_METADATA:
        if key not in meta:
            fail(f"{path}: metadata {key} missing")
    report = path.parent.parent.name
    if meta["logveil.report"] != report:
        fail(f"{path}: logveil.report={meta['logveil.report']} but directory is {report}")
    bucket = table.schema.field(0)
    if bucket.name not in BUCKETS or bucket.type != BUCKETS[bucket.name]:
        fail(f"{path}: first column {bucket.name}: {bucket.type}")
    for field in table.schema:
        if field.name in METRICS and field.type != pa.int64():
            fail(f"{path}: metric {field.name} is {field.type}, expected int64")
        if field.name not in METRICS and field.name not in BUCKETS and field.type != pa.string():
            fail(f"{path}: dimension {field.name} is {field.type}, expected string")
        if field.nullable and table.column(field.name).null_count:
            fail(f"{path}: {field.name} has nulls")
    k_min = int(meta["logveil.k_min"])
    if "visitors" in table.column_names and table.num_rows:
        low = min(table.column("visitors").to_pylist())
        if low < k_min:
            fail(f"{path}: a published cell has {low} visitors < k_min {k_min}")

    # DuckDB sees the same rows and types.
    con = duckdb.connect()
    described = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()}
    if bucket.name == "hour" and described["hour"] != "TIMESTAMP WITH TIME ZONE":
        fail(f"{path}: DuckDB sees hour as {described['hour']}")
    if bucket.name == "date" and described["date"] != "DATE":
        fail(f"{path}: DuckDB sees date as {described['date']}")
    for m in METRICS & described.keys():
        if described[m] != "BIGINT":
            fail(f"{path}: DuckDB sees {m} as {described[m]}")
    (count,) = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()
    if count != table.num_rows:
        fail(f"{path}: DuckDB counts {count} rows, pyarrow {table.num_rows}")

    # pandas: the README snippet's path.
    df = table.to_pandas()
    if len(df) != table.num_rows:
        fail(f"{path}: pandas rows")
    if bucket.name == "hour" and str(df["hour"].dtype) not in ("datetime64[us, UTC]", "datetime64[ns, UTC]"):
        fail(f"{path}: pandas hour dtype {df['hour'].dtype}")


def main():
    out = pathlib.Path(sys.argv[1])
    files = sorted(out.glob("*/date=*/*.parquet"))
    if not files:
        fail(f"no parquet files under {out}")
    for f in files:
        check_file(f)
    # Hive partitioning works in both readers (the README's snippets).
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT date, sum(views) FROM read_parquet('{out}/visitors_daily/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY 1"
    ).fetchall()
    if len(rows) < 1:
        fail("DuckDB hive read of visitors_daily returned nothing")
    dataset = ds.dataset(out / "page_views_hourly", format="parquet", partitioning="hive")
    if dataset.to_table().num_rows == 0:
        fail("pyarrow dataset read of page_views_hourly returned nothing")
    # The README's snippets, verbatim in spirit.
    import pandas as pd
    hourly = pd.read_parquet(out / "page_views_hourly")
    if "date" not in hourly.columns or hourly["views"].sum() <= 0:
        fail("pandas read of page_views_hourly lacks the date partition column or views")
    kv = con.execute(
        f"SELECT decode(key), decode(value) FROM parquet_kv_metadata('{out}/demographics_daily/*/*.parquet')"
    ).fetchall()
    if ("logveil.audience", "partner") not in kv:
        fail(f"DuckDB parquet_kv_metadata lacks logveil.audience=partner: {kv[:3]}")
    print(f"checked {len(files)} files")


if __name__ == "__main__":
    main()
