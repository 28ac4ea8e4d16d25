#!/usr/bin/env bash
# Side by side (issue #8): logveil, the same job in DuckDB SQL, and GoAccess on one big
# generated combined+cookie log. Prints wall time, CPU time (user+sys) and peak RSS of
# each, best of RUNS runs, with logveil's ratios; checks that logveil and DuckDB agree
# on total views and hourly distinct visitors.
#
#   benches/compare.sh                 # 2M lines, 3 runs each
#   LINES=8000000 RUNS=1 benches/compare.sh
#   WORK=/tmp/lvbench SKIP_GOACCESS=1 benches/compare.sh
#   SKIP_BUILD=1 LOGVEIL=path/to/logveil SAMPLEGEN=path/to/logveil-samplegen benches/compare.sh
#
# Needs: cargo, the project venv (.venv with duckdb; scripts/setup-test-deps makes it),
# GNU time (/usr/bin/time) and goaccess (apt-get install -y time goaccess; installed here
# when missing and running as root). The log and every output stay under $WORK
# (default target/compare), never in the repository.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LINES=${LINES:-2000000}
RUNS=${RUNS:-3}
SEED=${SEED:-42}
WORK=${WORK:-$ROOT/target/compare}
PY=${PY:-$ROOT/.venv/bin/python}
LOG=$WORK/access-$LINES.log
KEY=$ROOT/sample-logs/demo.key
mkdir -p "$WORK"

say() { printf '%s\n' "$*" >&2; }

need_apt() { # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "$1" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing $2"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        say "missing $1: apt-get install $2"; exit 1
    fi
}
need_apt /usr/bin/time time
[ -n "${SKIP_GOACCESS:-}" ] || need_apt goaccess goaccess
if ! "$PY" -c 'import duckdb' 2>/dev/null; then
    "$ROOT/scripts/setup-test-deps"
fi

if [ -z "${SKIP_BUILD:-}" ]; then
    say "building (release)"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p logveil -p logveil-samplegen
fi
LOGVEIL=${LOGVEIL:-$ROOT/target/release/logveil}
SAMPLEGEN=${SAMPLEGEN:-$ROOT/target/release/logveil-samplegen}

if [ ! -s "$LOG" ] || [ "$(cat "$LOG.stamp" 2>/dev/null)" != "$SEED $LINES" ]; then
    say "generating $LINES lines -> $LOG"
    "$SAMPLEGEN" --seed "$SEED" --lines "$LINES" --log "$LOG"
    echo "$SEED $LINES" > "$LOG.stamp"
fi
BYTES=$(stat -c %s "$LOG")
cat "$LOG" > /dev/null   # every run reads from the page cache

# measure NAME CMD...: runs CMD $RUNS times under GNU time; keeps the fastest run's
# "wall user sys maxrss_kb" in $WORK/NAME.time.
measure() {
    local name=$1; shift
    local best=""
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.run" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" \
            || { say "$name failed:"; cat "$WORK/$name.err" >&2; exit 1; }
        local this; this=$(tail -n 1 "$WORK/$name.run")
        if [ -z "$best" ] || awk -v a="${this%% *}" -v b="${best%% *}" 'BEGIN { exit !(a < b) }'; then
            best=$this
        fi
    done
    echo "$best" > "$WORK/$name.time"
    say "$name: $best (wall s, user s, sys s, max RSS KiB)"
}

say "load before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$WORK/logveil-out" "$WORK/logveil-1t-out" "$WORK/daily-out" "$WORK/duckdb-out"
measure logveil    "$LOGVEIL" run "$ROOT/pipelines/bench.toml" --input "$LOG" --out "$WORK/logveil-out" --threads 2
measure logveil-1t "$LOGVEIL" run "$ROOT/pipelines/bench.toml" --input "$LOG" --out "$WORK/logveil-1t-out" --threads 1
measure daily      "$LOGVEIL" run "$ROOT/pipelines/daily.toml" --input "$LOG" --out "$WORK/daily-out" --threads 2
measure duckdb     "$PY" "$ROOT/benches/compare_duckdb.py" job "$LOG" "$KEY" "$WORK/duckdb-out" 2
if [ -z "${SKIP_GOACCESS:-}" ]; then
    measure goaccess goaccess "$LOG" --log-format=COMBINED --no-progress --no-global-config -o "$WORK/goaccess.json"
fi
say "load after timing: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" "$ROOT/benches/compare_duckdb.py" check "$WORK/logveil-out" "$WORK/duckdb-out"

# The table (Markdown, as in the README).
python3 - "$WORK" "$BYTES" "$LINES" "$RUNS" <<'PY'
import os, platform, subprocess, sys, time
work, size, lines, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def read(name):
    path = os.path.join(work, name + ".time")
    if not os.path.exists(path):
        return None
    wall, user, sys_, rss = open(path).read().split()
    return float(wall), float(user) + float(sys_), int(rss) / 1024
rows = [
    ("logveil `bench.toml`, 2 threads", "logveil"),
    ("logveil `bench.toml`, 1 thread", "logveil-1t"),
    ("logveil `daily.toml` (4 reports, joins), 2 threads", "daily"),
    ("DuckDB SQL job, 2 threads", "duckdb"),
    ("GoAccess (`--log-format=COMBINED`)", "goaccess"),
]
base = read("logveil")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"\n{lines} lines, {size / 1e6:.0f} MB, best of {runs}; {time.strftime('%Y-%m-%d')}, "
      f"{os.cpu_count()} vCPU ({cpu}), {platform.system()} {platform.release()}\n")
print("| run | wall s | CPU s | peak RSS MiB | MB/s | wall ÷ logveil | CPU ÷ logveil |")
print("|---|---|---|---|---|---|---|")
for label, name in rows:
    r = read(name)
    if r is None:
        continue
    wall, cpu_s, rss = r
    print(f"| {label} | {wall:.2f} | {cpu_s:.2f} | {rss:.0f} | {size / 1e6 / wall:.0f} | "
          f"{wall / base[0]:.2f} | {cpu_s / base[1]:.2f} |")
one = read("logveil-1t"); daily = read("daily")
if one:
    print(f"\n2 threads vs 1: {one[0] / base[0]:.2f}x faster (target >= 1.8x)")
if daily:
    print(f"daily.toml vs bench.toml: {daily[0] / base[0]:.2f}x the time (target <= 1.5x)")
PY
