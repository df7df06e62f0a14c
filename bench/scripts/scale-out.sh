#!/usr/bin/env bash
# Scale-out over Kafka (issue 19, stateless pipelines): throughput of 1, 2
# and 3 `weir run` processes sharing a topic through `[runtime] group`,
# beside the same pipeline in one process without a group, on the same
# broker in one run:
#
#   bench/scripts/scale-out.sh [EVENTS] [RUNS]
#
#   EVENTS  events in the input topic (default 3000000)
#   RUNS    repetitions of each measurement (default 3); medians reported
#
# The broker is scripts/start-kafka.sh's (started if needed), on this
# machine: the broker and every weir process share its cores (2 here), so
# more processes add no cores. Scaling across machines is argued in
# docs/scale-out.md, not measured here.
# Events are 100-byte JSON objects in a 12-partition topic, produced once
# by kafka-producer-perf-test. The pipeline: `kafka` (json) → `filter`
# (status >= 400, about 40 % pass) → `kafka` sink, exactly-once, 100 ms
# epochs, 1 shard per process.
# - static: one process, no group, the source `bounded` (the run ends at
#   the topic's end): EVENTS over its wall time, start to exit.
# - group N: N processes with a fresh `[runtime] group`, started together;
#   the time from the start until they read every partition to its end
#   and each committed two more epochs (their /metrics, polled every 50
#   ms: kafka-common.sh's wait_read_and_committed), then checked with
#   `kafka-consumer-groups --describe` (no lag). Until 2026-12-06 the
#   time was taken by polling kafka-consumer-groups back to back: a JVM
#   start a second, which took a large share of one of the 2 cores from
#   the processes measured.
# Build first: cargo build --release.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/scripts/kafka-common.sh
source bench/scripts/kafka-common.sh

events=${1:-3000000}
runs=${2:-3}
kafka_bench_setup
stamp="$(date +%s)"
topic="scale-in-$stamp"

"$tool" topics --bootstrap-server "$bootstrap" --create --topic "$topic" --partitions 12 \
  --replication-factor 1 >/dev/null
write_payloads "$work/payloads" 19
echo "== produce: kafka-producer-perf-test, $events events of 100 bytes, 12 partitions"
"$tool" producer-perf-test --topic "$topic" --num-records "$events" --throughput -1 \
  --payload-file "$work/payloads" \
  --producer-props "bootstrap.servers=$bootstrap" linger.ms=5 batch.size=262144 | tail -1


# pipeline FILE OUT_TOPIC GROUP(empty: none)
pipeline() {
  pipeline_head "$1" "$3" \
    '{ id = "int", user = "string", host = "string", at = "timestamp", status = "int" }'
  cat >> "$1" <<EOF

[processors.errors]
type = "filter"
inputs = ["in"]
condition = "status >= 400"

[sinks.out]
type = "kafka"
inputs = ["errors"]
brokers = "$bootstrap"
topic = "$2"
EOF
}

declare -A rates
for run in $(seq 1 "$runs"); do
  out="scale-out-$stamp-$run-static"
  "$tool" topics --bootstrap-server "$bootstrap" --create --topic "$out" --partitions 6 \
    --replication-factor 1 >/dev/null
  pipeline "$work/static.toml" "$out" ""
  rates[static,$run]=$(static_rate "$work/static.toml" "$events")
  line="run $run: static 1 process $(printf '%.0f' "${rates[static,$run]}")/s"
  for n in 1 2 3; do
    group="scale-$stamp-$run-$n"
    out="scale-out-$stamp-$run-$n"
    "$tool" topics --bootstrap-server "$bootstrap" --create --topic "$out" --partitions 6 \
      --replication-factor 1 >/dev/null
    pipeline "$work/group.toml" "$out" "$group"
    pids=()
    ports=()
    start=$(date +%s.%N)
    for p in $(seq 1 "$n"); do
      rm -rf "$work/data-$p"
      port=$(free_port)
      ports+=("$port")
      sed "s/\$PORT/$port/" "$work/group.toml" > "$work/group-$p.toml"
      "$weir" run "$work/group-$p.toml" --data-dir "$work/data-$p" > "$work/group-$p.log" 2>&1 &
      pids+=($!)
    done
    wait_read_and_committed "$topic" 12 600 "${ports[@]}" \
      || { echo "group $n did not catch up within 600 s: see $work" >&2; exit 1; }
    end=$(date +%s.%N)
    caught_up "$group" || { echo "group $n: offsets not at the end: see $work" >&2; exit 1; }
    for pid in "${pids[@]}"; do kill -TERM "$pid"; done
    for pid in "${pids[@]}"; do wait "$pid" || echo "a process of group $n failed: see $work" >&2; done
    pids=()
    rates[$n,$run]=$(echo "$events / ($end - $start)" | bc -l)
    line="$line, group $n $(printf '%.0f' "${rates[$n,$run]}")/s"
  done
  echo "$line"
done

printf 'medians of %d, %d events (100 bytes, 12 partitions), filter → kafka exactly-once, 1 shard per process:\n' \
  "$runs" "$events"
s=$(for run in $(seq 1 "$runs"); do echo "${rates[static,$run]}"; done | median)
printf '  one process, no group (static)  %10.0f events/s\n' "$s"
for n in 1 2 3; do
  g=$(for run in $(seq 1 "$runs"); do echo "${rates[$n,$run]}"; done | median)
  printf '  %d process(es), group           %10.0f events/s  %.2f × static; %.0f events/s per process\n' \
    "$n" "$g" "$(echo "$g / $s" | bc -l)" "$(echo "$g / $n" | bc -l)"
done
"$tool" topics --bootstrap-server "$bootstrap" --delete --topic "$topic" >/dev/null 2>&1 || true
