"""The bench job (pipelines/bench.toml) written by hand in DuckDB SQL, and the agreement check.

    python compare_duckdb.py job LOG KEYFILE OUT_DIR [THREADS]
        Regex parse of the combined+cookie log, sha256 of key‖cookie (or key‖ip‖ua‖UTC day,
        logveil's cookieless visitor), views per UTC hour and page and distinct visitors per
        UTC hour (views only: GET, status 200-399, no bot or tool agent), each COPY'd to
        Parquet. `SET threads` = THREADS (default 2).

    python compare_duckdb.py check LOGVEIL_OUT DUCKDB_OUT
        Reads logveil's Parquet partitions and DuckDB's files with DuckDB and checks that
        total views and the visitors of every hour agree. Exit 1 when they do not.
"""

import re
import sys

import duckdb

# The view definition's bot and tool markers (README "Definitions"), lower case.
BOT_MARKERS = [
    "bot", "crawler", "spider", "curl/", "wget/", "python-requests/", "python-urllib/",
    "go-http-client/", "libwww-perl/", "okhttp/", "java/", "scrapy/", "httpie/",
    "apache-httpclient/",
]

# Only the fields the job needs are captured (fewer groups: RE2 runs ~30 % faster).
LINE_RE = (
    r'^([^ ]*) [^ ]* [^ ]* \[([^\]]*)\] "([^ "]*) ([^ "]*)[^"]*" ([0-9]{3}) [^ ]* "[^"]*" "([^"]*)" "([^"]*)"$'
)


def key_hex(path):
    text = open(path, encoding="utf-8").read()
    secrets = re.findall(r'secret\s*=\s*"([0-9a-fA-F]{64})"', text)
    if not secrets:
        sys.exit(f"{path}: no secret found")
    return secrets[-1]


def job(log, keyfile, out_dir, threads=2):
    import os

    os.makedirs(out_dir, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    key = key_hex(keyfile)
    bots = "|".join(re.escape(m) for m in BOT_MARKERS)
    con.execute(
        f"""
        CREATE TEMP TABLE views AS
        WITH raw AS (
            SELECT regexp_extract(line, $line_re,
                ['ip', 'ts', 'method', 'target', 'status', 'ua', 'cookie']) AS m
            FROM read_csv($log, columns = {{'line': 'VARCHAR'}}, header = false, delim = chr(1),
                          quote = '', escape = '', auto_detect = false)
        ),
        parsed AS (
            SELECT m.ip AS ip,
                   strptime(m.ts, '%d/%b/%Y:%H:%M:%S %z') AS t,
                   m.method AS method,
                   m.target AS target,
                   TRY_CAST(m.status AS INTEGER) AS status,
                   m.ua AS ua,
                   regexp_extract(m.cookie, '(?:^|;\\s*)jt_uid=([^;]*)', 1) AS uid
            FROM raw
            WHERE m.ip <> ''
        )
        SELECT date_trunc('hour', t) AS hour,
               regexp_extract(target, '^([^?#;]*)', 1) AS page,
               CASE WHEN uid <> ''
                    THEN sha256($key || 'c' || uid)
                    ELSE sha256($key || 'f' || ip || chr(0) || ua || chr(0) || CAST(CAST(t AS DATE) AS VARCHAR))
               END AS visitor
        FROM parsed
        WHERE method = 'GET' AND status BETWEEN 200 AND 399
          AND NOT regexp_matches(lower(ua), '{bots}')
        """,
        {"line_re": LINE_RE, "log": log, "key": key},
    )
    con.execute(
        f"""COPY (SELECT hour, page, count(*) AS views, count(DISTINCT visitor) AS visitors
                  FROM views GROUP BY hour, page)
            TO '{out_dir}/page_views_hourly.parquet' (FORMAT parquet, COMPRESSION zstd)"""
    )
    con.execute(
        f"""COPY (SELECT hour, count(DISTINCT visitor) AS visitors FROM views GROUP BY hour)
            TO '{out_dir}/visitors_hourly.parquet' (FORMAT parquet, COMPRESSION zstd)"""
    )


def check(logveil_out, duck_out):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def one(sql):
        return con.execute(sql).fetchone()

    lv_views, lv_rows = one(
        f"SELECT sum(views), count(*) FROM read_parquet('{logveil_out}/page_views_hourly/*/*.parquet')"
    )
    dk_views, dk_rows = one(
        f"SELECT sum(views), count(*) FROM read_parquet('{duck_out}/page_views_hourly.parquet')"
    )
    lv_visitors, lv_hours = one(
        f"SELECT sum(visitors), count(*) FROM read_parquet('{logveil_out}/visitors_hourly/*/*.parquet')"
    )
    dk_visitors, dk_hours = one(
        f"SELECT sum(visitors), count(*) FROM read_parquet('{duck_out}/visitors_hourly.parquet')"
    )
    hour_diff = one(
        f"""SELECT count(*) FROM (
              SELECT hour::TIMESTAMPTZ AS hour, visitors FROM read_parquet('{logveil_out}/visitors_hourly/*/*.parquet')
              EXCEPT ALL
              SELECT hour, visitors FROM read_parquet('{duck_out}/visitors_hourly.parquet'))"""
    )[0]
    print(
        f"agreement: views logveil {lv_views} / duckdb {dk_views}; "
        f"hourly visitors (sum over {lv_hours}/{dk_hours} hours) logveil {lv_visitors} / duckdb {dk_visitors}; "
        f"hours that differ: {hour_diff}; page rows logveil {lv_rows} / duckdb {dk_rows}"
    )
    ok = lv_views == dk_views and lv_visitors == dk_visitors and hour_diff == 0 and lv_hours == dk_hours
    print("agreement: OK" if ok else "agreement: MISMATCH")
    return 0 if ok else 1


def main(argv):
    if len(argv) >= 5 and argv[1] == "job":
        job(argv[2], argv[3], argv[4], *(argv[5:6]))
        return 0
    if len(argv) == 4 and argv[1] == "check":
        return check(argv[2], argv[3])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
