#!/usr/bin/env bash
# Latency of durable network ingest at a fixed offered load (open loop):
# `weir run` (PROTOCOL source → keyed per-second count → NDJSON files, data
# directory, 100 ms epochs, metrics on a loopback port) in one process,
# `weir loadgen --rate RATE` in another.
#
#   bench/scripts/ingest-latency.sh PROTOCOL SHARDS RATE [RUNS] [LOADGEN OPTIONS...]
#
# Reports per run the load generator's acknowledgement latency (from each
# batch's intended send time: coordinated-omission free) and, from the
# runtime's Prometheus histograms scraped after the run, ingest→processed
# (the window counted the event) and ingest→committed (its epoch
# committed), estimated like PromQL's histogram_quantile (linear within a
# power-of-two bucket). After the runs, the floor under all of it on the
# same disk: a raw 4 KiB O_DIRECT overwrite + fdatasync, 3000 times, in the
# work directory (the WAL's own discipline on written blocks). EPOCH_MS sets
# the epoch interval (default 100). Build first: cargo build --release.
set -euo pipefail

protocol=${1:?usage: ingest-latency.sh tcp|http SHARDS RATE [RUNS] [LOADGEN OPTIONS...]}
shards=${2:?shards}
rate=${3:?rate, e.g. 1.5M}
runs=${4:-3}
shift $(( $# < 4 ? $# : 4 ))
source "$(dirname "$0")/ingest-common.sh"
metrics_port=$(( 40000 + RANDOM % 20000 ))
ingest_setup "$protocol" "$shards" "$metrics_port"

quantiles() { # METRIC FILE -> "p50 p99 p99.9" in ms
  python3 - "$1" "$2" <<'PY'
import sys, re
name, path = sys.argv[1], sys.argv[2]
buckets = {}
for line in open(path):
    if not line.startswith(name + "_bucket{"):
        continue
    le = re.search(r'le="([^"]+)"', line).group(1)
    bound = float("inf") if le == "+Inf" else float(le)
    buckets[bound] = buckets.get(bound, 0) + float(line.split()[-1])
items = sorted(buckets.items())
total = items[-1][1]
def q(p):
    rank, lower = p * total, (0.0, 0.0)
    for bound, count in items:
        if count >= rank:
            if bound == float("inf"):
                return lower[0]
            within = count - lower[1]
            return lower[0] + (bound - lower[0]) * ((rank - lower[1]) / within if within else 1)
        lower = (bound, count)
    return lower[0]
print(" ".join(f"{q(p) * 1000:.3f}" for p in (0.5, 0.99, 0.999)))
PY
}

for run in $(seq 1 "$runs"); do
  rm -rf "$work/data" "$work/out"
  WEIR_LOG=warn "$weir" run "$work/pipeline.toml" --data-dir "$work/data" --drain > "$work/server.log" 2>&1 &
  server=$!
  "$weir" loadgen --target "$target" --rate "$rate" --duration 10s --warmup 2s --quiet "$@" \
    > "$work/loadgen.txt"
  curl -s "http://127.0.0.1:$metrics_port/metrics" > "$work/metrics.txt"
  kill -TERM "$server"
  wait "$server"
  ack=$(awk '$1 ~ /^p(50|99|99\.9|99\.99)$/ {printf "%s=%s ", $1, $2}' "$work/loadgen.txt")
  thr=$(awk '/^throughput/ {print $2}' "$work/loadgen.txt")
  errors=$(awk '/^errors/ {$1=""; print}' "$work/loadgen.txt")
  processed=$(quantiles weir_ingest_to_processed_seconds "$work/metrics.txt")
  committed=$(quantiles weir_ingest_to_committed_seconds "$work/metrics.txt")
  wal=$(quantiles weir_wal_sync_latency_seconds "$work/metrics.txt")
  sent=$(quantiles weir_sent_to_processed_seconds "$work/metrics.txt")
  received=$(quantiles weir_ingest_receive_delay_seconds "$work/metrics.txt" 2>/dev/null || echo -)
  queued=$(quantiles weir_ingest_queue_wait_seconds "$work/metrics.txt")
  echo "run $run: $thr events/s; ack ms: $ack; ingest->processed p50/p99/p99.9 ms: $processed; ingest->committed: $committed; sent->processed: $sent; sent->frame read: $received; queue wait: $queued; WAL write+sync: $wal; errors:$errors"
done

raw_sync() { # DIR -> "p50 p99 p99.9" in ms of a 4 KiB O_DIRECT overwrite + fdatasync
  python3 - "$1" <<'PY'
import mmap, os, sys, time
path = os.path.join(sys.argv[1], "raw-sync")
size, block = 8 << 20, 4096
with open(path, "wb") as f:  # written blocks, as the WAL's spares
    f.write(b"\0" * size)
    f.flush()
    os.fsync(f.fileno())
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, block)
buf.write(b"x" * block)
samples = []
for i in range(3200):
    start = time.perf_counter_ns()
    os.pwrite(fd, buf, (i * block) % size)
    os.fdatasync(fd)
    samples.append(time.perf_counter_ns() - start)
os.close(fd)
os.unlink(path)
s = sorted(samples[200:])
q = lambda p: s[min(len(s) - 1, int(p * len(s)))] / 1e6
print(f"{q(0.5):.3f} {q(0.99):.3f} {q(0.999):.3f}")
PY
}
echo "raw 4 KiB O_DIRECT overwrite + fdatasync p50/p99/p99.9 ms, same disk: $(raw_sync "$work")"
