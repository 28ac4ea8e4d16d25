"""Open every logveil output file with Spark (pyspark) and check the types it sees.

Usage: check_spark.py OUT_DIR...   (prints one line per report and "spark: ok")
Run by scripts/check-spark, which provides pyspark and Java 17.
"""

import pathlib
import sys

from pyspark.sql import SparkSession

BUCKETS = {"hour": "timestamp", "date": "date", "week": "date", "month": "date"}
METRICS = {"views", "visitors", "bytes", "accounts"}


def main():
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("logveil-reader-check")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    failures = 0
    for out in map(pathlib.Path, sys.argv[1:]):
        for report in sorted(p for p in out.iterdir() if p.is_dir()):
            files = sorted(report.glob("date=*/*.parquet"))
            if not files:
                continue
            # Per file: Spark's hive discovery would clash with a `date` data column.
            for f in files:
                df = spark.read.option("mergeSchema", "false").parquet(str(f))
                types = dict(df.dtypes)
                problems = []
                for name, kind in types.items():
                    if name in METRICS and kind != "bigint":
                        problems.append(f"{name}:{kind}")
                    elif name in BUCKETS and kind != BUCKETS[name]:
                        problems.append(f"{name}:{kind}")
                    elif name not in METRICS and name not in BUCKETS and kind != "string":
                        problems.append(f"{name}:{kind}")
                rows = df.count()
                if problems:
                    failures += 1
                    print(f"FAIL {f}: {', '.join(problems)}")
            print(f"{report.name}: {len(files)} file(s), columns {', '.join(f'{n}:{k}' for n, k in types.items())}")
    spark.stop()
    if failures:
        sys.exit(1)
    print("spark: ok")


if __name__ == "__main__":
    main()
