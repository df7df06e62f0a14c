#!/usr/bin/env bash
# Kafka throughput, weir beside Kafka's own perf tools on the same broker in
# one run (issue 18):
#
#   bench/scripts/kafka.sh [EVENTS] [RUNS] [EPOCH_MS]
#
#   EVENTS    events in the input topic (default 5000000)
#   RUNS      repetitions of each measurement (default 3); medians reported
#   EPOCH_MS  weir's epoch interval (default 100)
#
# The broker is scripts/start-kafka.sh's (started if needed), on this
# machine, so the broker, the tools and weir share its cores. Events are
# JSON objects of 100 bytes, 6 partitions.
# 1. produce: `kafka-producer-perf-test` writes EVENTS events (payloads
#    drawn from a file of 100-byte JSON events, acks=all, the idempotent
#    producer's defaults) into a fresh topic: the produce rate, and the
#    input for the rest.
# 2. consume: `kafka-consumer-perf-test` reads the topic (fresh group each
#    time): the consume rate.
# 3. weir kafka → blackhole: `weir run` (2 shards, data directory, the
#    source `bounded`, `format = "raw"`), exactly-once positions per epoch.
# 4. weir kafka → filter → kafka: the source with `format = "json"` and a
#    schema, `filter` (status >= 400, about 40 % pass), a `kafka` sink,
#    exactly-once (one transaction per shard and epoch); checked afterwards
#    with `kafka-get-offsets`: the output topic's end offsets must sum to
#    the rows weir wrote plus one commit marker per transaction or more.
# weir's rate is EVENTS over the whole run, start to exit (connecting,
# reading, the final epoch's commits): the same span the tools report.
# Prints each run and the medians, and the ratios the issue asks for.
# Build first: cargo build --release.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/scripts/kafka-common.sh
source bench/scripts/kafka-common.sh

events=${1:-5000000}
runs=${2:-3}
epoch_ms=${3:-100}
kafka_bench_setup
stamp="$(date +%s)"
topic="bench-in-$stamp"

"$tool" topics --bootstrap-server "$bootstrap" --create --topic "$topic" --partitions 6 \
  --replication-factor 1 >/dev/null
write_payloads "$work/payloads" 18


echo "== produce: kafka-producer-perf-test, $events events of 100 bytes"
"$tool" producer-perf-test --topic "$topic" --num-records "$events" --throughput -1 \
  --payload-file "$work/payloads" \
  --producer-props "bootstrap.servers=$bootstrap" linger.ms=5 batch.size=262144 \
  | tee "$work/produce.txt" | tail -1
produce_rate=$(tail -1 "$work/produce.txt" | sed -E 's/.* ([0-9.]+) records\/sec.*/\1/')

cat > "$work/blackhole.toml" <<EOF
[runtime]
shards = 2
epoch_interval_ms = $epoch_ms

[sources.in]
type = "kafka"
brokers = "$bootstrap"
topics = ["$topic"]
format = "raw"
start = "earliest"
bounded = true

[sinks.out]
type = "blackhole"
inputs = ["in"]
EOF

consume=() blackhole=() filtered=()
for run in $(seq 1 "$runs"); do
  # Kafka's consumer.
  "$tool" consumer-perf-test --bootstrap-server "$bootstrap" --topic "$topic" \
    --num-records "$events" --group "bench-perf-$stamp-$run" --timeout 60000 \
    > "$work/consume.txt"
  # data.consumed.in.nMsg.sec is the 6th column of the result line.
  rate=$(tail -1 "$work/consume.txt" | awk -F', *' '{print $6}')
  consume+=("$rate")

  # weir kafka → blackhole.
  rm -rf "$work/data"
  start=$(date +%s.%N)
  "$weir" run "$work/blackhole.toml" --data-dir "$work/data" > "$work/blackhole.log" 2>&1
  end=$(date +%s.%N)
  blackhole+=("$(echo "$events / ($end - $start)" | bc -l)")

  # weir kafka → filter → kafka, exactly-once.
  out="bench-out-$stamp-$run"
  "$tool" topics --bootstrap-server "$bootstrap" --create --topic "$out" --partitions 6 \
    --replication-factor 1 >/dev/null
  cat > "$work/filter-$run.toml" <<EOF
[runtime]
shards = 2
epoch_interval_ms = $epoch_ms

[sources.in]
type = "kafka"
brokers = "$bootstrap"
topics = ["$topic"]
format = "json"
schema = { id = "int", user = "string", host = "string", at = "timestamp", status = "int" }
start = "earliest"
bounded = true

[processors.errors]
type = "filter"
inputs = ["in"]
condition = "status >= 400"

[sinks.out]
type = "kafka"
inputs = ["errors"]
brokers = "$bootstrap"
topic = "$out"
EOF
  rm -rf "$work/data"
  start=$(date +%s.%N)
  "$weir" run "$work/filter-$run.toml" --data-dir "$work/data" > "$work/filter.log" 2>&1
  end=$(date +%s.%N)
  filtered+=("$(echo "$events / ($end - $start)" | bc -l)")
  written=$("$tool" get-offsets --bootstrap-server "$bootstrap" --topic "$out" \
    | awk -F: '{s += $3} END {print s}')
  printf 'run %d: consumer tool %.0f/s, weir kafka→blackhole %.0f/s, weir kafka→filter→kafka %.0f/s (output end offsets %s)\n' \
    "$run" "${consume[-1]}" "${blackhole[-1]}" "${filtered[-1]}" "$written"
done

c=$(printf '%s\n' "${consume[@]}" | median)
b=$(printf '%s\n' "${blackhole[@]}" | median)
f=$(printf '%s\n' "${filtered[@]}" | median)
limit=$(echo "if ($c < $produce_rate) $c else $produce_rate" | bc -l)
printf 'medians of %d, %d events, %d ms epochs, 2 shards:\n' "$runs" "$events" "$epoch_ms"
printf '  kafka-producer-perf-test        %10.0f events/s\n' "$produce_rate"
printf '  kafka-consumer-perf-test        %10.0f events/s\n' "$c"
printf '  weir kafka → blackhole          %10.0f events/s  %.2f × consumer tool\n' "$b" "$(echo "$b / $c" | bc -l)"
printf '  weir kafka → filter → kafka EO  %10.0f events/s  %.2f × min(consume, produce)\n' "$f" "$(echo "$f / $limit" | bc -l)"
"$tool" topics --bootstrap-server "$bootstrap" --delete --topic "$topic" >/dev/null 2>&1 || true
