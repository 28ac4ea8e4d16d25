#!/usr/bin/env bash
# Sustained throughput of the scale-out (issue #9) on loopback: 2 `logveil edge` → NATS
# JetStream → 2 `logveil aggregate` (partitions split in two) → `logveil merge`.
#
#   benches/scaleout.sh [LINES]         # LINES per web server (default 1000000), 2 servers
#   PIPELINE=pipelines/bench.toml WORK=/tmp/lvscale benches/scaleout.sh 500000
#   SKIP_BUILD=1 LOGVEIL=path/to/logveil SAMPLEGEN=path/to/logveil-samplegen benches/scaleout.sh
#   COMMIT_INTERVAL=250ms IDLE=1 benches/scaleout.sh
#
# Two runs, each on a fresh nats-server (-js, random loopback port, store under $WORK):
#   1. isolated: both edges publish their whole file, then both aggregators consume the
#      backlog, then merge: lines/s of the edges alone and of the aggregators alone;
#   2. pipelined: edges and aggregators start together (the files already complete, as a
#      catch-up after an outage): lines/s end to end, until both aggregators consumed all.
# Every process runs with --idle-exit IDLE (default 2 s). An edge's active time is its wall
# time minus IDLE (it exits IDLE seconds after reading its last line). The aggregators have
# consumed everything when they write their last partial (a batch is committed at most
# [scaleout] commit_interval after its first message): that file's mtime ends their time,
# not their exit, which comes after the edges' final watermarks and IDLE more seconds.
#
# The two files are `logveil-samplegen --lines LINES` with seeds 42 and 43 (the sample
# traffic model over the same two days, time-ordered), generated once under $WORK (default
# target/scaleout-bench; never in the repository). Needs nats-server (scripts/setup-nats),
# python3 (a free port) and a release build. Numbers go in the README (Performance).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LINES=${1:-${LINES:-1000000}}
IDLE=${IDLE:-2}
WORK=${WORK:-$ROOT/target/scaleout-bench}
PIPELINE=${PIPELINE:-$ROOT/pipelines/daily.toml}
mkdir -p "$WORK"

say() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }

"$ROOT/scripts/setup-nats"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS_SERVER" ] || { say "nats-server missing: scripts/setup-nats"; exit 1; }

if [ -z "${SKIP_BUILD:-}" ]; then
    say "building (release)"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p logveil -p logveil-samplegen
fi
LOGVEIL=${LOGVEIL:-$ROOT/target/release/logveil}
SAMPLEGEN=${SAMPLEGEN:-$ROOT/target/release/logveil-samplegen}

for k in 1 2; do
    log=$WORK/web$k.log
    seed=$((41 + k))
    if [ ! -s "$log" ] || [ "$(cat "$log.stamp" 2>/dev/null)" != "$seed $LINES" ]; then
        say "generating $LINES lines -> $log"
        "$SAMPLEGEN" --seed "$seed" --lines "$LINES" --log "$log" >/dev/null
        echo "$seed $LINES" >"$log.stamp"
    fi
    cat "$log" >/dev/null # from the page cache
done
TOTAL=$((2 * LINES))
BYTES=$(($(stat -c %s "$WORK/web1.log") + $(stat -c %s "$WORK/web2.log")))

# The pipeline with a [scaleout] section, beside the original (its relative paths resolve).
pipe="$(dirname "$PIPELINE")/.bench-scaleout-$$.toml"
cp "$PIPELINE" "$pipe"
printf '\n[scaleout]\nsite = "bench"\npartitions = 8\n' >>"$pipe"
# COMMIT_INTERVAL: how often an aggregator commits (default: the pipeline's, 2 s); every
# partition's last batch waits up to that long, which a small run's numbers show.
[ -z "${COMMIT_INTERVAL:-}" ] || printf 'commit_interval = "%s"\n' "$COMMIT_INTERVAL" >>"$pipe"

nats_pid=""
stop_nats() {
    if [ -n "$nats_pid" ]; then
        kill "$nats_pid" 2>/dev/null || true
        wait "$nats_pid" 2>/dev/null || true
        nats_pid=""
    fi
}
procs=()
cleanup() {
    for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_nats
    rm -f "$pipe"
}
trap cleanup EXIT

# start_nats RUN: a fresh server with its store under $WORK/RUN/nats; sets $URL.
start_nats() {
    local dir=$WORK/$1/nats port
    mkdir -p "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$NATS_SERVER" -js -a 127.0.0.1 -p "$port" -sd "$dir/store" >"$dir/server.log" 2>&1 &
    nats_pid=$!
    URL=nats://127.0.0.1:$port
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            say "nats-server: $NATS_SERVER -js -a 127.0.0.1 -p $port -sd $dir/store"
            return
        fi
        sleep 0.05
    done
    say "nats-server did not start:"; cat "$dir/server.log" >&2; exit 1
}

# spawn RUN NAME ARGS...: runs `logveil ARGS` in the background; its exit status and the
# time it exited go to $WORK/RUN/NAME.exit, its output to $WORK/RUN/NAME.log.
spawn() {
    local run=$1 name=$2; shift 2
    (
        set +e
        "$LOGVEIL" "$@" >"$WORK/$run/$name.log" 2>&1
        echo "$? $(now)" >"$WORK/$run/$name.exit"
    ) &
    procs+=($!)
}

# finish RUN NAME...: waits for the processes; each must exit 0. Sets LAST to the time the
# last one exited.
finish() {
    local run=$1; shift
    wait "${procs[@]}"
    procs=()
    LAST=0
    local name code at
    for name in "$@"; do
        read -r code at <"$WORK/$run/$name.exit"
        if [ "$code" != 0 ]; then
            say "$name exited $code:"; tail -n 30 "$WORK/$run/$name.log" >&2; exit 1
        fi
        LAST=$(awk -v a="$LAST" -v b="$at" 'BEGIN { print (b > a) ? b : a }')
    done
}

edges() { # RUN
    local run=$1 k
    for k in 1 2; do
        spawn "$run" "edge$k" edge "$pipe" --nats "$URL" --input "$WORK/web$k.log" \
            --state "$WORK/$run/state$k" --host "web$k" --idle-exit "$IDLE" \
            --summary "$WORK/$run/edge$k.summary.json"
    done
}

aggregators() { # RUN
    local run=$1 parts
    for parts in 0-3 4-7; do
        spawn "$run" "aggregate-$parts" aggregate "$pipe" --nats "$URL" --partitions "$parts" \
            --partials "$WORK/$run/partials" --idle-exit "$IDLE" \
            --summary "$WORK/$run/aggregate-$parts.summary.json"
    done
}

# rate SECONDS [IDLE]: lines/s over SECONDS minus IDLE (default 0).
rate() {
    awk -v t="$1" -v idle="${2:-0}" -v n="$TOTAL" 'BEGIN { a = t - idle; if (a <= 0) a = t; printf "%.0f lines/s (%.2f s)", n / a, a }'
}

# last_partial RUN: when the last partial Parquet file of the run was written (epoch s).
last_partial() {
    find "$WORK/$1/partials" -name '*.parquet' -printf '%T@\n' | sort -n | tail -n 1
}

say "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. Isolated.
run=isolated
rm -rf "${WORK:?}/$run"; mkdir -p "$WORK/$run"
start_nats "$run"
t0=$(now); edges "$run"; finish "$run" edge1 edge2
edge_s=$(awk -v a="$t0" -v b="$LAST" 'BEGIN { print b - a }')
t0=$(now); aggregators "$run"; finish "$run" aggregate-0-3 aggregate-4-7
agg_s=$(awk -v a="$t0" -v b="$(last_partial "$run")" 'BEGIN { print b - a }')
t0=$(now)
"$LOGVEIL" merge "$pipe" --nats "$URL" --partials "$WORK/$run/partials" --out "$WORK/$run/out" \
    >"$WORK/$run/merge.log" 2>&1 || { say "merge failed:"; tail -n 30 "$WORK/$run/merge.log" >&2; exit 1; }
merge_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
store_mb=$(du -sm "$WORK/$run/nats/store" | cut -f1)
stop_nats

# 2. Pipelined.
run=pipelined
rm -rf "${WORK:?}/$run"; mkdir -p "$WORK/$run"
start_nats "$run"
t0=$(now); aggregators "$run"; edges "$run"
finish "$run" aggregate-0-3 aggregate-4-7 edge1 edge2
e2e_s=$(awk -v a="$t0" -v b="$(last_partial "$run")" 'BEGIN { print b - a }')
stop_nats
say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo
echo "$TOTAL lines ($((BYTES / 1000000)) MB) in 2 files, $(basename "$PIPELINE") with 8 partitions, commit_interval ${COMMIT_INTERVAL:-default}; $(date +%F), $(nproc) vCPU ($cpu)"
echo "edges (2, isolated):           $(rate "$edge_s" "$IDLE") from start to the last line read"
echo "aggregators (2, on a backlog): $(rate "$agg_s") from start to the last partial written"
echo "merge:                         $(awk -v t="$merge_s" 'BEGIN { printf "%.2f s", t }') (all windows)"
echo "end to end (2 → 2, pipelined): $(rate "$e2e_s") from start to the last partial written"
echo "JetStream store after run 1:   ${store_mb} MB ($(awk -v m="$store_mb" -v n="$TOTAL" 'BEGIN { printf "%.0f", m * 1e6 / n }') bytes a line)"
python3 - "$WORK" "$TOTAL" <<'PY'
import json, sys
work, total = sys.argv[1], int(sys.argv[2])
for run in ("isolated", "pipelined"):
    edges = [json.load(open(f"{work}/{run}/edge{k}.summary.json")) for k in (1, 2)]
    aggs = [json.load(open(f"{work}/{run}/aggregate-{p}.summary.json")) for p in ("0-3", "4-7")]
    read = sum(e["lines_read"] for e in edges)
    parsed = sum(e["lines_parsed"] for e in edges)
    events = sum(a["events"] for a in aggs)
    messages = sum(e["messages_published"] for e in edges)
    ok = "ok" if read == total and events == parsed else "MISMATCH"
    print(f"{run}: edges read {read} lines ({parsed} parsed) in {messages} messages; aggregators took {events} events: {ok}")
    if ok != "ok":
        sys.exit(1)
PY
