"""Open every logveil output file with DuckDB, pyarrow, pandas and polars and check types.

Usage: check_parquet.py OUT_DIR   (exit 0 and "checked N files" when all pass)
Called by the Rust integration test `readers`; see scripts/test.
"""

import pathlib
import sys

import duckdb
import polars as pl
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
    "logveil.epsilon", "logveil.delta", "logveil.perturbation",
    "logveil.complementary_suppression", "logveil.legal_class",
]
# Exact counts outside the cells: internal files only (issue #14, no side channels).
INTERNAL_ONLY_METADATA = ["logveil.suppressed_cells", "logveil.input_sha256"]
EXTERNAL_AUDIENCES = {"partner", "public"}
DIMENSION = pa.dictionary(pa.int32(), pa.string())


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check_file(path: pathlib.Path):
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    for key in REQUIRED_METADATA:
        if key not in meta:
            fail(f"{path}: metadata {key} missing")
    external = meta["logveil.audience"] in EXTERNAL_AUDIENCES
    for key in INTERNAL_ONLY_METADATA:
        if external and key in meta:
            fail(f"{path}: external file carries {key}")
        if not external and key not in meta:
            fail(f"{path}: metadata {key} missing")
    if external and "logveil.release_id" in meta:
        fail(f"{path}: external file carries logveil.release_id")
    report = path.parent.parent.name
    if meta["logveil.report"] != report:
        fail(f"{path}: logveil.report={meta['logveil.report']} but directory is {report}")
    bucket = table.schema.field(0)
    if bucket.name not in BUCKETS or bucket.type != BUCKETS[bucket.name]:
        fail(f"{path}: first column {bucket.name}: {bucket.type}")
    for field in table.schema:
        if field.name in METRICS and field.type != pa.int64():
            fail(f"{path}: metric {field.name} is {field.type}, expected int64")
        if field.name in ("visitor_id", "key_id"):
            if field.type != pa.string():
                fail(f"{path}: {field.name} is {field.type}, expected string")
        elif field.name not in METRICS and field.name not in BUCKETS and field.type != DIMENSION:
            fail(f"{path}: dimension {field.name} is {field.type}, expected {DIMENSION}")
        # Nulls only in total rows (the dimensions a total sums over).
        if table.column(field.name).null_count and "total" not in table.column_names:
            fail(f"{path}: {field.name} has nulls outside total rows")
    if meta["logveil.legal_class"] not in ("internal-pseudonymous", "statistics"):
        fail(f"{path}: legal class {meta['logveil.legal_class']}")
    k_min = int(meta["logveil.k_min"])
    if "visitors" in table.column_names and table.num_rows and meta["logveil.epsilon"] == "0":
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
    for field in table.schema:
        if field.type == DIMENSION and str(df[field.name].dtype) != "category":
            fail(f"{path}: pandas reads dimension {field.name} as {df[field.name].dtype}, expected category")

    # polars: timestamps in UTC, dimensions categorical, counts Int64.
    pdf = pl.read_parquet(path)
    if pdf.height != table.num_rows:
        fail(f"{path}: polars counts {pdf.height} rows, pyarrow {table.num_rows}")
    for name, dtype in pdf.schema.items():
        if name in METRICS and dtype != pl.Int64:
            fail(f"{path}: polars reads {name} as {dtype}")
        if name == "hour" and dtype != pl.Datetime("us", "UTC"):
            fail(f"{path}: polars reads hour as {dtype}")
        if name == "date" and dtype != pl.Date:
            fail(f"{path}: polars reads date as {dtype}")
        if table.schema.field(name).type == DIMENSION and not isinstance(dtype, (pl.Categorical, pl.Enum)):
            fail(f"{path}: polars reads dimension {name} as {dtype}")


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
    lazy = pl.scan_parquet(out / "visitors_daily" / "**" / "*.parquet", hive_partitioning=True).collect()
    if lazy.height == 0 or "date" not in lazy.columns:
        fail("polars hive scan of visitors_daily returned nothing")
    print(f"checked {len(files)} files")


if __name__ == "__main__":
    main()
