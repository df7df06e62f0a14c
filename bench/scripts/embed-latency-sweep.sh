#!/usr/bin/env bash
# The issue-7 latency sweep in one go, for a many-core machine (the lent
# device): push→visible and query latency of an embedded pipeline with 2
# pushing threads, at 250k, 500k and 1 M events/s, into 2 and 4 pinned,
# busy-polling shards, without and then with 100k queries/s. Each
# configuration is one run of `embed_latency` under a time limit, so a run
# that does not finish is reported (and does not eat the rest of the
# sweep); its refused and undelivered counts show whether it saturated.
#
#   bench/scripts/embed-latency-sweep.sh [EMBED_LATENCY_BINARY]
#
# Build here first (cargo build --release -p weir-bench --bin embed_latency)
# and carry the binary; the default is target/release/embed_latency. Prints
# the table lines of every run and, at the end, one JSON line per run.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${1:-$root/target/release/embed_latency}
[[ -x $bin ]] || { echo "no $bin: cargo build --release -p weir-bench --bin embed_latency" >&2; exit 1; }
ulimit -l unlimited 2>/dev/null || ulimit -l $((64 * 1024)) 2>/dev/null || true
cores=$(nproc)
echo "cores: $cores; kernel: $(uname -r)"

json=$(mktemp)
trap 'rm -f "$json"' EXIT
for queries in 1 100000; do
  for shards in 2 4; do
    # Shards, 2 pushers and the query thread each need a core of their own.
    if (( shards + 3 > cores )); then
      echo "skip: $shards shards need $((shards + 3)) cores"
      continue
    fi
    for rate in 250000 500000 1000000; do
      echo "== shards $shards, rate $rate, queries/s $queries"
      timeout 60 "$bin" --shards "$shards" --pushers 2 --rate "$rate" --pin \
        --spin-us 1000000000 --runs 1 --duration 3 --warmup 1 --idle-secs 1 \
        --query-rate "$queries" --json >"$json.out" 2>&1
      rc=$?
      grep -vE '^\{' "$json.out" | grep -E 'run 1|rolling|event|query|refused|undelivered' || true
      grep -E '^\{' "$json.out" >>"$json" || true
      (( rc == 124 )) && echo "did not finish within 60 s"
      (( rc != 0 && rc != 124 )) && { echo "failed (exit $rc):"; tail -5 "$json.out"; }
    done
  done
done
rm -f "$json.out"
echo "== JSON"
cat "$json"
