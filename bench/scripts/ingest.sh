#!/usr/bin/env bash
# Durable network ingest throughput: `weir run` (tcp or http source → keyed
# per-second count → NDJSON file sink, data directory, 100 ms epochs) in one
# process, `weir loadgen --max` (closed loop, saturation) in another.
#
#   bench/scripts/ingest.sh PROTOCOL SHARDS [RUNS] [LOADGEN OPTIONS...]
#
#   PROTOCOL  tcp | http | otlp (run the load generator with --http-body otlp)
#   SHARDS    shards of the runtime (1, 2, 4, 8, 14, ...)
#   RUNS      repetitions (default 5); the median is reported
#
# TLS=1 (environment): the source listens with TLS and the load generator
# speaks it (tcp; see ingest-common.sh).
#
# Each run uses a fresh data directory and checks that the committed window
# counts add up to at least the events the load generator saw acknowledged
# in its measured period (warm-up events are committed too), so a run that
# lost events fails. The server is stopped with SIGTERM under `--drain`, so
# the windows still open fire and count (a plain stop is a savepoint that
# keeps them open). Prints one line per run and the median events/s and
# events/s per shard. Build first: cargo build --release.
set -euo pipefail

protocol=${1:?usage: ingest.sh tcp|http SHARDS [RUNS] [LOADGEN OPTIONS...]}
shards=${2:?usage: ingest.sh tcp|http SHARDS [RUNS] [LOADGEN OPTIONS...]}
runs=${3:-5}
shift $(( $# < 3 ? $# : 3 ))
source "$(dirname "$0")/ingest-common.sh"
ingest_setup "$protocol" "$shards"
case $protocol in
  tcp) defaults=(--connections 4 --inflight 8) ;;
  http | otlp) defaults=(--connections 8) ;;
esac

rates=()
for run in $(seq 1 "$runs"); do
  rm -rf "$work/data" "$work/out"
  "$weir" run "$work/pipeline.toml" --data-dir "$work/data" --drain > "$work/server.log" 2>&1 &
  server=$!
  "$weir" loadgen --target "$target" --max --duration 10s --warmup 2s --quiet \
    "${defaults[@]}" ${tls_args[@]+"${tls_args[@]}"} "$@" > "$work/loadgen.txt"
  kill -TERM "$server"
  wait "$server"
  rate=$(awk '/^throughput/ {print $2}' "$work/loadgen.txt")
  acked=$(awk '/^events/ {print $2}' "$work/loadgen.txt")
  errors=$(awk '/^errors/ {$1=""; print}' "$work/loadgen.txt")
  committed=$(cat "$work"/out/*.ndjson | python3 -c \
    'import sys, json; print(sum(json.loads(l)["count"] for l in sys.stdin))')
  if (( committed < acked )); then
    echo "run $run: committed $committed < acknowledged $acked" >&2
    exit 1
  fi
  p99=$(awk '$1 == "p99" {print $2}' "$work/loadgen.txt")
  printf 'run %d: %.0f events/s (%.0f per shard), ack p99 %s ms, %s acked, %s committed in all, errors:%s\n' \
    "$run" "$rate" "$(awk -v r="$rate" -v s="$shards" 'BEGIN {print r / s}')" "$p99" "$acked" "$committed" "$errors"
  rates+=("$rate")
done
median=$(printf '%s\n' "${rates[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
printf '%s, %d shards, median of %d: %.0f events/s, %.0f events/s per shard\n' \
  "$protocol" "$shards" "$runs" "$median" "$(awk -v r="$median" -v s="$shards" 'BEGIN {print r / s}')"
