#!/usr/bin/env bash
# Peak memory of `logveil run pipelines/daily.toml` under hostile input: every line a
# distinct, long path (issue #15 item 8: report state must not grow with what an attacker
# sends). Lines are generated on the fly and piped to `--input -`, so nothing is stored.
#
#   benches/hostile-paths.sh [GIGABYTES] [PATH_BYTES]
#
# GIGABYTES (default 10): input size; PATH_BYTES (default 60000): bytes per path. Prints
# lines, input bytes, wall time, throughput and peak RSS (from /usr/bin/time). The target:
# peak RSS ≤ 512 MiB for 10 GB of unique 60 KB paths (pages are cut at 1 KiB, so state
# grows with distinct cut pages, not with input bytes). Needs python3 and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
gigabytes="${1:-10}"
path_bytes="${2:-60000}"
cargo build --release -q -p logveil
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$gigabytes" "$path_bytes" <<'PY' > "$work/gen.py"
import sys
print(f"""
import os, sys
total = int({sys.argv[1]} * 1e9)
path_bytes = {sys.argv[2]}
out = sys.stdout.buffer
filler = (b"abcdefghij" * (path_bytes // 10 + 1))[:path_bytes]
written, i = 0, 0
while written < total:
    # A distinct path per line: its number up front (so the first KiB differs too).
    path = b"/p/%012d/" % i + filler
    line = (b'198.51.100.%d - - [01/Nov/2026:%02d:%02d:%02d +0900] "GET ' % (i % 250 + 1, (i // 3600) % 24, (i // 60) % 60, i % 60)
            + path + b' HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0" "jt_uid=u-%016x"\\n' % i)
    out.write(line)
    written += len(line)
    i += 1
sys.stderr.write(f"lines {{i}} bytes {{written}}\\n")
""")
PY
start=$(date +%s.%N)
python3 "$work/gen.py" 2> "$work/gen.err" \
  | /usr/bin/time -v ./target/release/logveil run pipelines/daily.toml --input - \
      --out "$work/out" --privacy-state "$work/state" --summary "$work/summary.json" \
      > "$work/stdout" 2> "$work/time.err"
end=$(date +%s.%N)
cat "$work/gen.err"
python3 - "$work" "$start" "$end" <<'PY'
import json, re, sys
work, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
gen = open(f"{work}/gen.err").read()
nbytes = int(re.search(r"bytes (\d+)", gen).group(1))
rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{work}/time.err").read()).group(1))
summary = json.load(open(f"{work}/summary.json"))
wall = end - start
print(f"input {nbytes/1e9:.2f} GB, {summary['lines_read']} lines, values_cut {summary.get('values_cut')}, "
      f"wall {wall:.1f} s ({nbytes/1e6/wall:.0f} MB/s incl. generation), peak RSS {rss_kib/1024:.0f} MiB")
PY
