#!/usr/bin/env bash
# Sustained ingest of `logveil daemon` while the log rotates (rename and copytruncate),
# and the time from a line's append to it being counted (/metrics lines_read_total).
#
#   benches/daemon-ingest.sh [LINES] [RATE]
#
# LINES (default 3000000): the sample lines repeated with increasing timestamps (20 days).
# Phase 1 appends the first half as fast as Python can write and measures how fast the
# daemon counts it. Phase 2 appends the rest at RATE lines/s (default 200000) in 20 ms
# blocks, rotating every 2 s, and measures append-to-count latency per block.
# Numbers go in the README ("Daemon", performance). Needs python3 and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
lines="${1:-3000000}"
rate="${2:-200000}"
cargo build --release -q -p logveil
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$lines" "$rate" "$work" <<'PY'
import os, re, signal, socket, subprocess, sys, threading, time, urllib.request

total, rate, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
repo = os.getcwd()
logs = os.path.join(work, "logs"); os.makedirs(logs)
live = os.path.join(logs, "access.log")

# Lines: the samples, repeated, each with a new timestamp (UTC), spread over 20 days.
src = []
for day in ("access-2026-11-01.log", "access-2026-11-02.log"):
    with open(os.path.join(repo, "sample-logs", day), "rb") as f:
        src.extend(f.read().splitlines(keepends=True))
stamp = re.compile(rb"\[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]")
months = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"]
base = 1793491200  # 2026-11-01T00:00:00Z
span = 20 * 86400
t0 = time.time()
out = []
for i in range(total):
    line = src[i % len(src)]
    t = time.gmtime(base + i * span // total)
    new = b"[%02d/%s/%d:%02d:%02d:%02d +0000]" % (t.tm_mday, months[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)
    out.append(stamp.sub(new, line, count=1))
size = sum(map(len, out))
print(f"prepared {total} lines ({size / 1e6:.0f} MB) in {time.time() - t0:.1f} s", flush=True)

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
binary = os.path.join(repo, "target", "release", "logveil")
err = open(os.path.join(work, "daemon.log"), "wb")
daemon = subprocess.Popen(
    [binary, "daemon", "pipelines/daily.toml", "--input", os.path.join(logs, "access.log*"),
     "--out", os.path.join(work, "out"), "--state", os.path.join(work, "state"),
     "--metrics-addr", f"127.0.0.1:{port}"],
    cwd=repo, stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ, LOGVEIL_LOG="warn"))

def counted():
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    m = re.search(r"^logveil_lines_read_total (\d+)$", body, re.M)
    return int(m.group(1)) if m else None

while counted() is None:
    if daemon.poll() is not None:
        sys.exit("daemon exited:\n" + open(os.path.join(work, "daemon.log")).read())
    time.sleep(0.05)

# Counter samples from a poller thread: (time, lines_read_total).
samples = []
stop = False
def poll():
    while not stop:
        n = counted()
        if n is not None:
            samples.append((time.time(), n))
        time.sleep(0.01)
poller = threading.Thread(target=poll); poller.start()

rotations = 0
def rotate(i):
    global rotations
    rotated = os.path.join(logs, f"access.log.{i}")
    if rotations % 2 == 0:
        os.rename(live, rotated)
    else:
        with open(live, "rb") as f, open(rotated, "wb") as g:
            g.write(f.read())
        os.truncate(live, 0)
    rotations += 1

def append(block):
    with open(live, "ab") as f:
        f.write(b"".join(block))

# Phase 1: as fast as possible, four rotations.
half = total // 2
start = time.time()
quarter = half // 4
for q in range(4):
    for i in range(q * quarter, (q + 1) * quarter, 20000):
        append(out[i:min(i + 20000, (q + 1) * quarter)])
    rotate(q + 1)
written = 4 * quarter
wrote_at = time.time()
while (samples[-1][1] if samples else 0) < written:
    time.sleep(0.01)
first = next(t for t, n in samples if n > 0)
done = next(t for t, n in samples if n >= written)
print(f"phase 1: {written} lines appended in {wrote_at - start:.2f} s (4 rotations); counted at {written / (done - first):,.0f} lines/s "
      f"(first count to last: {done - first:.2f} s)", flush=True)

# Phase 2: paced at `rate`, rotating every 2 s; latency per 20 ms block.
blocks = []
cursor = written
block = max(1, rate // 50)
t_next = time.time()
last_rotate = time.time()
while cursor < total:
    end = min(cursor + block, total)
    append(out[cursor:end])
    blocks.append((time.time(), end))
    cursor = end
    if time.time() - last_rotate >= 2:
        rotate(4 + rotations)
        last_rotate = time.time()
    t_next += 0.02
    delay = t_next - time.time()
    if delay > 0:
        time.sleep(delay)
phase2 = time.time() - blocks[0][0]
deadline = time.time() + 60
while (samples[-1][1] if samples else 0) < total and time.time() < deadline:
    time.sleep(0.01)
stop = True; poller.join()
lat = []
for t, n in blocks:
    seen = next((ts for ts, c in samples if c >= n and ts >= t), None)
    lat.append(seen - t if seen else float("inf"))
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"phase 2: {total - written} lines at {(total - written) / phase2:,.0f} lines/s offered ({rotations - 4} rotations); "
      f"append-to-count latency p50 {pct(0.5):.3f} s, p99 {pct(0.99):.3f} s, max {lat[-1]:.3f} s", flush=True)

daemon.send_signal(signal.SIGTERM)
t = time.time(); code = daemon.wait(30)
print(f"SIGTERM: exit {code} in {time.time() - t:.2f} s; {rotations} rotations in all")
with open(os.path.join(work, "daemon.log")) as f:
    warnings = [l for l in f if '"level":"ERROR"' in l]
if warnings:
    print("daemon errors:", *warnings[:5], sep="\n")
PY
