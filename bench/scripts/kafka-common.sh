#!/usr/bin/env bash
# Helpers shared by the Kafka benchmarks (kafka.sh, scale-out.sh,
# failover.sh); sourced, not run.

# write_payloads FILE SEED: 1000 distinct 100-byte JSON events (`id`,
# `user`, `host`, `at`, `status`, padding), one a line, for
# kafka-producer-perf-test's --payload-file (it splits the file on
# newlines).
write_payloads() {
  python3 - "$1" "$2" <<'PY'
import json, random, sys
r = random.Random(int(sys.argv[2]))
with open(sys.argv[1], "w") as f:
    for i in range(1000):
        e = {"id": i, "user": "u%d" % r.randrange(500), "host": "h%d" % r.randrange(8),
             "at": 1764900000000 + i, "status": r.choice([200, 200, 200, 404, 500]), "pad": ""}
        line = json.dumps(e, separators=(",", ":"))
        e["pad"] = "x" * (100 - len(line))
        line = json.dumps(e, separators=(",", ":"))
        assert len(line) == 100, len(line)
        f.write(line + "\n")
PY
}

# The median of the numbers on standard input, one a line.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# kafka_bench_setup: sets `weir` (the release binary, which must be built),
# `tool` (Kafka's command-line tools), `bootstrap` (scripts/start-kafka.sh's
# broker, started if needed) and `work` (a scratch directory), and at exit
# SIGKILLs the processes listed in `pids` and removes `work`.
kafka_bench_setup() {
  weir=target/release/weir
  tool=scripts/kafka-tool.sh
  [ -x "$weir" ] || { echo "build first: cargo build --release" >&2; exit 1; }
  bootstrap="$(scripts/start-kafka.sh)"
  work="$(mktemp -d)"
  pids=()
  trap kafka_bench_cleanup EXIT
}

kafka_bench_cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
