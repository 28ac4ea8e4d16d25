"""Check the `visitors_hll` sketches of logveil partials against their exact visitor lists.

Usage: check_hll.py PARTIAL.parquet...   (exit 0 and one line of JSON when all pass)

For every cell (row) of every partial: the Apache DataSketches HLL sketch in `visitors_hll`
deserializes (Python bindings), has the footer's lg_k and type HLL_4, and its estimate is
within 3 % of the exact `len(visitors)` or within the sketch's 3-sigma bounds. Then the
sketches of each dimension key (the report's dimensions; every window and partition) are
unioned, as an analyst would across windows, and the exact distinct count over the union of
the visitor lists must lie within the union's 3-sigma bounds. DuckDB must read the column
as BLOB with the same bytes. Prints counts and relative errors only, never a pseudonym or
a dimension value (partials are pseudonymous data).
Called by the Rust integration test `partial_readers` (crates/logveil-report).
"""

import importlib.metadata
import json
import sys

import datasketches
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

PARTIAL_KEY = b"logveil.partial"
SIGMAS = 3
CELL_TOLERANCE = 0.03


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def rel_err(estimate, exact):
    return abs(estimate - exact) / exact if exact else abs(estimate)


def footer(path):
    meta = pq.read_metadata(path).metadata or {}
    if PARTIAL_KEY not in meta:
        fail(f"{path}: no {PARTIAL_KEY.decode()} metadata: not a logveil partial")
    return json.loads(meta[PARTIAL_KEY])


def check_duckdb(path, expected):
    """DuckDB reads visitors_hll as BLOB, byte for byte what pyarrow reads."""
    con = duckdb.connect()
    types = {
        name: type_
        for name, type_, *_ in con.execute(
            "describe select * from read_parquet(?)", [str(path)]
        ).fetchall()
    }
    if types.get("visitors_hll") != "BLOB":
        fail(f"{path}: DuckDB reads visitors_hll as {types.get('visitors_hll')}, expected BLOB")
    rows = con.execute(
        "select visitors_hll from read_parquet(?)", [str(path)]
    ).fetchall()
    if [bytes(r[0]) for r in rows] != expected:
        fail(f"{path}: DuckDB's visitors_hll bytes differ from pyarrow's")


def main(paths):
    if not paths:
        fail("usage: check_hll.py PARTIAL.parquet...")
    footers = [footer(p) for p in paths]
    reports = {f["meta"]["report"] for f in footers}
    if len(reports) != 1:
        fail(f"partials of {len(reports)} reports given; give one report's partials")
    dimensions = footers[0]["dimensions"]
    lg_ks = {f["hll_lg_k"] for f in footers}
    if None in lg_ks:
        fail("a partial was written without hll_lg_k (no visitors_hll column)")
    if any(f["dimensions"] != dimensions for f in footers):
        fail("partials with different dimensions")

    unions = {}  # dimension key -> [hll_union, exact visitor set, cells]
    windows = set()
    cells = 0
    visitors_in_cells = 0
    max_cell_err = 0.0
    for path, foot in zip(paths, footers):
        lg_k = foot["hll_lg_k"]
        table = pq.read_table(path, columns=[*dimensions, "visitors", "visitors_hll"])
        if table.schema.field("visitors_hll").type != pa.binary():
            fail(f"{path}: visitors_hll is {table.schema.field('visitors_hll').type}, expected binary")
        if table.num_rows != foot["rows"]:
            fail(f"{path}: {table.num_rows} rows, footer says {foot['rows']}")
        windows.add(foot["meta"]["partition_day"])
        blobs = table.column("visitors_hll").to_pylist()
        check_duckdb(path, blobs)
        lists = table.column("visitors").to_pylist()
        keys = zip(*(table.column(d).to_pylist() for d in dimensions))
        for row, (key, blob, visitors) in enumerate(zip(keys, blobs, lists)):
            where = f"{path}: row {row}"
            try:
                sketch = datasketches.hll_sketch.deserialize(blob)
            except Exception as e:  # noqa: BLE001 - any failure is a failed check
                fail(f"{where}: sketch does not deserialize: {e}")
            if sketch.lg_config_k != lg_k:
                fail(f"{where}: sketch lg_k {sketch.lg_config_k}, footer {lg_k}")
            if sketch.tgt_type != datasketches.tgt_hll_type.HLL_4:
                fail(f"{where}: sketch type {sketch.tgt_type}, expected HLL_4")
            exact = len(visitors)
            estimate = sketch.get_estimate()
            err = rel_err(estimate, exact)
            within_bounds = sketch.get_lower_bound(SIGMAS) <= exact <= sketch.get_upper_bound(SIGMAS)
            if err > CELL_TOLERANCE and not within_bounds:
                fail(
                    f"{where}: estimate {estimate:.1f} of {exact} visitors "
                    f"({err:.2%} off, outside the {SIGMAS}-sigma bounds)"
                )
            max_cell_err = max(max_cell_err, err)
            cells += 1
            visitors_in_cells += exact
            entry = unions.setdefault(key, [datasketches.hll_union(max(lg_ks)), set(), 0])
            entry[0].update(sketch)
            entry[1].update(visitors)
            entry[2] += 1

    max_union_err = 0.0
    visitors_in_unions = 0
    for i, (union, exact_set, n) in enumerate(unions.values()):
        exact = len(exact_set)
        estimate = union.get_estimate()
        lower, upper = union.get_lower_bound(SIGMAS), union.get_upper_bound(SIGMAS)
        if not lower <= exact <= upper:
            fail(
                f"union {i} ({n} cells): {exact} distinct visitors outside the "
                f"{SIGMAS}-sigma bounds [{lower:.1f}, {upper:.1f}] (estimate {estimate:.1f})"
            )
        max_union_err = max(max_union_err, rel_err(estimate, exact))
        visitors_in_unions += exact

    print(json.dumps({
        "files": len(paths),
        "windows": len(windows),
        "lg_k": sorted(lg_ks),
        "cells": cells,
        "unions": len(unions),
        "visitors_in_cells": visitors_in_cells,
        "visitors_in_unions": visitors_in_unions,
        "max_cell_rel_err": round(max_cell_err, 5),
        "max_union_rel_err": round(max_union_err, 5),
        "duckdb": "BLOB",
        "datasketches": importlib.metadata.version("datasketches"),
    }, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
