#!/usr/bin/env bash
# Helpers shared by the Kafka benchmarks (kafka.sh, scale-out.sh,
# scale-out-window.sh, failover.sh); sourced, not run.

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

# pipeline_head FILE GROUP SCHEMA: writes to FILE the `[runtime]` and
# `[sources.in]` of a benchmark pipeline: a `kafka` source reading
# `$topic` from the earliest as json with SCHEMA, 100 ms epochs. With
# GROUP, scaled out in that group, with metrics on 127.0.0.1:$PORT (a
# placeholder the caller replaces) and librdkafka's statistics every 100
# ms (for wait_read_and_committed); without, one shard and a `bounded`
# source. The caller appends the processors and sinks.
pipeline_head() {
  local runtime source_extra
  if [ -n "$2" ]; then
    runtime="group = \"$2\"
metrics_listen = \"127.0.0.1:\$PORT\""
    source_extra='options = { "statistics.interval.ms" = "100" }'
  else
    runtime="shards = 1"
    source_extra="bounded = true"
  fi
  cat > "$1" <<EOF
[runtime]
$runtime
epoch_interval_ms = 100

[sources.in]
type = "kafka"
brokers = "$bootstrap"
topics = ["$topic"]
format = "json"
schema = $3
start = "earliest"
$source_extra
EOF
}

# caught_up GROUP: whether GROUP's committed offsets reached the end of
# every partition of the 12-partition `$topic` (an empty partition has no
# offset: a sticky partitioner can leave some empty).
caught_up() {
  "$tool" consumer-groups --bootstrap-server "$bootstrap" --describe --group "$1" 2>/dev/null \
    | awk -v t="$topic" '$2 == t { n++; if ($6 == "0" || $5 == "0") z++ }
        END { exit !(n == 12 && z == 12) }'
}

# static_rate TOML EVENTS: runs the bounded pipeline TOML in one process
# on a fresh data directory, start to exit, and prints EVENTS over its
# wall time.
static_rate() {
  local start end
  rm -rf "$work/data-static"
  start=$(date +%s.%N)
  "$weir" run "$1" --data-dir "$work/data-static" > "$work/static.log" 2>&1
  end=$(date +%s.%N)
  echo "$2 / ($end - $start)" | bc -l
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}

# wait_read_and_committed TOPIC PARTITIONS TIMEOUT_S PORT...: waits until
# the scaled-out processes whose metrics listen on PORTs have read every
# partition of TOPIC (each of PARTITIONS partitions held by one of them,
# `weir_kafka_source_partition_lag` 0; the pipeline should set
# `statistics.interval.ms` low) and then each committed two more epochs
# (`weir_epoch_committed`), the last of which holds the final offsets.
# Polls every 50 ms from this shell's Python, not a JVM tool: on 2 cores,
# `kafka-consumer-groups` every second took a large share of one core
# from the processes measured. Exits non-zero after TIMEOUT_S.
wait_read_and_committed() {
  python3 - "$@" <<'PY'
import re, sys, time, urllib.request
topic, partitions, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ports = sys.argv[4:]
deadline = time.time() + timeout
series = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')

def scrape(port):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=1).read().decode()
    except OSError:
        return None
    held, lag, epoch = set(), {}, 0
    for line in text.splitlines():
        if line.startswith("weir_epoch_committed "):
            epoch = int(float(line.split()[1]))
            continue
        m = series.match(line)
        if not m or 'topic="%s"' % topic not in m.group(2):
            continue
        p = int(re.search(r'partition="(\d+)"', m.group(2)).group(1))
        if m.group(1) == "weir_kafka_source_partition_assigned" and float(m.group(3)) == 1:
            held.add(p)
        elif m.group(1) == "weir_kafka_source_partition_lag":
            # Per shard: the shard reading the partition sets it, the
            # process's others show 0.
            lag[p] = lag.get(p, 0) + float(m.group(3))
    return held, lag, epoch

target = None
while time.time() < deadline:
    states = [scrape(port) for port in ports]
    if all(states):
        if target is None:
            read = set()
            for held, lag, _ in states:
                read |= {p for p in held if lag.get(p) == 0}
            if len(read) == partitions:
                target = [epoch + 2 for _, _, epoch in states]
        elif all(state[2] >= t for state, t in zip(states, target)):
            sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
PY
}
