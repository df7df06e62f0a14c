#!/usr/bin/env bash
# Failover over Kafka (issue 19): how long the partitions of a `weir run`
# process that dies (SIGKILL) or stops (SIGTERM) take to be processed again
# by the other process of its group, on scripts/start-kafka.sh's broker:
#
#   bench/scripts/failover.sh [RUNS] [SESSION_MS]
#
#   RUNS        repetitions of each measurement (default 3); medians reported
#   SESSION_MS  the consumer's session.timeout.ms (default 6000, the
#               broker's group.min.session.timeout.ms; librdkafka's default
#               is 45000); heartbeat.interval.ms is a third of it
#
# A 12-partition topic is fed by kafka-producer-perf-test at 20 000 events/s
# (100-byte JSON, dealt round-robin: every partition gets records all the
# time) for the whole measurement. Two processes A and B (1
# shard each, 100 ms epochs, `kafka` → `filter` → `kafka`, exactly-once)
# share it; once B reads partitions and its output commits, it is SIGKILLed
# (then, with a fresh B, SIGTERMed) at T0. Figures, from T0:
# - assigned: A's log line `kafka: now reading 12 partitions` (24 with
#   FAILOVER_WINDOW: the repartition topic's too; the group gave B's
#   partitions to A);
# - offsets: A's log line that it read the group's offsets of them, when it
#   had to wait for them (a SIGKILL inside B's transaction leaves them
#   pending until the broker aborts it, up to the transaction timeout,
#   10 s; no line: they were readable at once);
# - committed: A committed a transaction with records of each of B's
#   partitions (their offsets past where A started them, the group's
#   offsets B left), by A's debug log (`kafka: T/P starts at offset` and
#   `kafka scale-out: epoch committed`, with the offsets sent);
# - visible: `kafka-consumer-groups --describe`, polled back to back, shows
#   every one of B's partitions with a committed offset past where A
#   started it: Kafka's own tool agrees, but each poll is a JVM start
#   (about a second here), so this figure is late by up to a poll.
# FAILOVER_WINDOW=1 adds state: a 1-minute count per user (`window`,
# `group_by = ["user"]`) into the output topic. The input is not keyed
# by user, so the window repartitions (docs/scale-out.md): its tasks are
# the partitions of GROUP-per_user-repartition, and B's must be restored
# from the window's changelog by A before A counts their rows. Extra
# figure:
# - window: A committed a transaction with records of each of B's
#   repartition partitions past where A started them (as `committed`).
# FAILOVER_LOG_DIR, if set, receives A's and B's logs and T0 of each
# measurement. Build first: cargo build --release.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/scripts/kafka-common.sh
source bench/scripts/kafka-common.sh

runs=${1:-3}
session_ms=${2:-6000}
rate=20000
kafka_bench_setup

write_payloads "$work/payloads" 19

now() { date +%s.%N; }
# Seconds since the epoch of a log line's leading RFC 3339 timestamp.
stamp_of() { date -d "$(cut -d' ' -f1 <<<"$1")" +%s.%N; }

# pipeline FILE TOPIC OUT GROUP
pipeline() {
  cat > "$1" <<EOF
[runtime]
group = "$4"
epoch_interval_ms = 100

[sources.in]
type = "kafka"
brokers = "$bootstrap"
topics = ["$2"]
format = "json"
schema = { id = "int", user = "string", host = "string", at = "timestamp", status = "int" }
start = "earliest"
options = { "session.timeout.ms" = "$session_ms", "heartbeat.interval.ms" = "$((session_ms / 3))" }

[processors.errors]
type = "filter"
inputs = ["in"]
condition = "status >= 400"

[sinks.out]
type = "kafka"
inputs = ["errors"]
brokers = "$bootstrap"
topic = "$3"
EOF
  if [ -n "${FAILOVER_WINDOW:-}" ]; then
    cat >> "$1" <<EOF

[processors.per_user]
type = "window"
inputs = ["in"]
size = "1m"
time_field = "at"
group_by = ["user"]
aggregates = ["count"]

[sinks.counts]
type = "kafka"
inputs = ["per_user"]
brokers = "$bootstrap"
topic = "$3"
key = ["user"]
EOF
  fi
}

# partitions_of LOG [TOPIC]: the partitions (numbers) of TOPIC (default
# the input) in a process's last `now reading` line.
partitions_of() {
  { grep 'kafka: now reading' "$1" || true; } | tail -1 | { grep -o "${2:-$topic}/[0-9]*" || true; } \
    | cut -d/ -f2 | sort -n | tr '\n' ' '
}

# committed GROUP: "partition offset" lines of the group's committed
# offsets of the topic ("-" where none).
committed() {
  "$tool" consumer-groups --bootstrap-server "$bootstrap" --describe --group "$1" 2>/dev/null \
    | awk -v t="$topic" '$2 == t { print $3, $4 }'
}

# log_lines LOG T0: a Python prelude for the two helpers below: `lines()`
# yields (seconds since the epoch, line) for each line of LOG stamped at or
# after T0 (lines without a leading RFC 3339 stamp, such as `weir:
# stopping`, are skipped).
log_lines='
import datetime, re, sys
def lines(log, t0):
    for line in open(log):
        try:
            at = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        except (IndexError, ValueError):
            continue
        if at >= t0:
            yield at, line
'

# starts LOG T0 TOPIC: "partition offset" of each partition of TOPIC that
# LOG's process started reading after T0 (its debug line `kafka: T/P starts
# at offset Some(O)`: the group's offset, where B left the partition).
starts() {
  python3 -c "$log_lines"'
log, t0, topic = sys.argv[1], float(sys.argv[2]), sys.argv[3]
pattern = re.compile(r"kafka: %s/(\d+) starts at offset Some\((\d+)\)" % re.escape(topic))
for at, line in lines(log, t0):
    match = pattern.search(line)
    if match:
        print(match.group(1), match.group(2))
' "$@"
}

# first_commit LOG T0 TOPIC PARTITIONS STARTS: seconds after T0 of the
# first transaction LOG's process committed by which each of PARTITIONS
# ("p p ...") was committed past its offset in STARTS (`starts`'s output;
# "-" if none).
first_commit() {
  python3 -c "$log_lines"'
log, t0, topic, mine = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split()
base = {p: int(off) for p, off in (row.split() for row in sys.argv[5].splitlines())}
offsets = re.compile(r"\(\"%s\", (\d+), (\d+)\)" % re.escape(topic))
left = set(mine)
for at, line in lines(log, t0):
    if "kafka scale-out: epoch committed" not in line:
        continue
    for p, off in offsets.findall(line):
        if p in left and p in base and int(off) > base[p]:
            left.discard(p)
    if not left:
        print("%.2f" % (at - t0))
        break
else:
    print("-")
' "$@"
}

# measure MODE(kill|term) RUN: B goes away; writes "assigned offsets
# committed visible" (seconds after T0) to $work/result.
measure() {
  local mode=$1 run=$2 group out start_b t0 base p
  group="failover-$stamp-$run-$mode"
  out="failover-out-$stamp-$run-$mode"
  "$tool" topics --bootstrap-server "$bootstrap" --create --topic "$out" --partitions 6 \
    --replication-factor 1 >/dev/null
  pipeline "$work/f.toml" "$topic" "$out" "$group"
  rm -rf "$work/data-a" "$work/data-b"
  WEIR_LOG=${FAILOVER_WEIR_LOG:-info,weir_operators::sinks::kafka::group=debug,weir_operators::sources::kafka=debug} \
    "$weir" run "$work/f.toml" --data-dir "$work/data-a" > "$work/a.log" 2>&1 &
  local pid_a=$!
  "$weir" run "$work/f.toml" --data-dir "$work/data-b" > "$work/b.log" 2>&1 &
  local pid_b=$!
  pids=("$pid_a" "$pid_b" "${pids[@]}")
  start_b=$(now)
  local repartition="$group-per_user-repartition"
  # B reads partitions (with the window, of either topic: the group
  # balances counts, not topics), and the group's offsets of the input's
  # were committed.
  until [ -n "$(partitions_of "$work/b.log")$(partitions_of "$work/b.log" "$repartition")" ] \
    && [ "$(committed "$group" | awk '$2 != "-"' | wc -l)" -ge 12 ]; do
    if [ "$(echo "$(now) - $start_b > 120" | bc)" = 1 ]; then
      echo "B read no partitions within 120 s: see $work" >&2; exit 1
    fi
    sleep 0.5
  done
  sleep 3
  local theirs theirs_r
  theirs=$(partitions_of "$work/b.log")
  theirs_r=$(partitions_of "$work/b.log" "$repartition")
  if [ "$mode" = kill ]; then kill -KILL "$pid_b"; else kill -TERM "$pid_b"; fi
  t0=$(now)
  wait "$pid_b" 2>/dev/null || true
  # Where A started each of B's partitions (the group's offsets, where B
  # left them), from A's log; then the group's committed offsets past
  # them, by Kafka's tool.
  local t_done=""
  while [ -z "$t_done" ]; do
    local moved=0 total=0
    declare -A base=() current=()
    while read -r p off; do base[$p]=$off; done < <(starts "$work/a.log" "$t0" "$topic")
    while read -r p off; do current[$p]=$off; done < <(committed "$group")
    for p in $theirs; do
      total=$((total + 1))
      if [ -n "${base[$p]:-}" ] && [ "${current[$p]:--}" != "-" ] \
        && [ "${current[$p]}" -gt "${base[$p]}" ]; then
        moved=$((moved + 1))
      fi
    done
    if [ "$moved" = "$total" ]; then t_done=$(now); fi
    if [ "$(echo "$(now) - $t0 > 180" | bc)" = 1 ]; then
      echo "B's partitions were not processed again within 180 s: see $work" >&2; exit 1
    fi
  done
  local assigned_line offsets_line t_assigned t_offsets=""
  # All of the input's partitions (and, with the window, of its
  # repartition topic).
  local all=12
  [ -z "${FAILOVER_WINDOW:-}" ] || all=24
  assigned_line=$(grep "kafka: now reading $all partitions" "$work/a.log" | tail -1)
  t_assigned=$(stamp_of "$assigned_line")
  offsets_line=$(grep "kafka: read the group's offsets" "$work/a.log" | tail -1 || true)
  if [ -n "$offsets_line" ]; then
    t_offsets=$(stamp_of "$offsets_line")
    t_offsets=$(printf '%.2f' "$(echo "$t_offsets - $t0" | bc -l)")
  else
    t_offsets="-"
  fi
  sleep "${FAILOVER_LINGER:-0}"
  kill -TERM "$pid_a"
  wait "$pid_a" || echo "A failed to stop: see $work" >&2
  pids=()
  if [ -n "${FAILOVER_LOG_DIR:-}" ]; then
    cp "$work/a.log" "$FAILOVER_LOG_DIR/a-$run-$mode.log"
    cp "$work/b.log" "$FAILOVER_LOG_DIR/b-$run-$mode.log"
    echo "$t0" > "$FAILOVER_LOG_DIR/t0-$run-$mode"
  fi
  local t_committed="-" t_window="-"
  [ -z "$theirs" ] || t_committed=$(first_commit "$work/a.log" "$t0" "$topic" "$theirs" \
    "$(starts "$work/a.log" "$t0" "$topic")")
  # B held none of the input's partitions: nothing to be visible.
  [ -n "$theirs" ] || t_done=$t0
  if [ -n "${FAILOVER_WINDOW:-}" ]; then
    # "-" when the group gave B none of the repartition topic's
    # partitions (cooperative-sticky balances counts, not topics).
    [ -z "$theirs_r" ] || t_window=$(first_commit "$work/a.log" "$t0" "$repartition" "$theirs_r" \
      "$(starts "$work/a.log" "$t0" "$repartition")")
  fi
  local t_visible="-"
  [ -z "$theirs" ] || t_visible=$(printf '%.2f' "$(echo "$t_done - $t0" | bc -l)")
  printf '%.2f %s %s %s %s\n' "$(echo "$t_assigned - $t0" | bc -l)" "$t_offsets" \
    "$t_committed" "$t_visible" "$t_window" > "$work/result"
}

stamp="$(date +%s)"
topic="failover-in-$stamp"
"$tool" topics --bootstrap-server "$bootstrap" --create --topic "$topic" --partitions 12 \
  --replication-factor 1 >/dev/null
# Enough input for every measurement at $rate events/s.
"$tool" producer-perf-test --topic "$topic" --num-records $((rate * 120 * runs * 2)) \
  --throughput "$rate" --payload-file "$work/payloads" \
  --producer-props "bootstrap.servers=$bootstrap" linger.ms=5 \
  partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner \
  > "$work/producer.log" 2>&1 &
producer=$!
pids+=("$producer")

declare -A figures
for run in $(seq 1 "$runs"); do
  for mode in kill term; do
    measure "$mode" "$run"
    figures[$mode,$run]=$(cat "$work/result")
    echo "run $run, $mode: assigned / offsets readable / committed / visible / window, s after B went: ${figures[$mode,$run]}"
  done
done
kill "$producer" 2>/dev/null || true

printf 'medians of %d, session.timeout.ms %d, %d events/s in:\n' "$runs" "$session_ms" "$rate"
for mode in kill term; do
  a=$(for run in $(seq 1 "$runs"); do echo "${figures[$mode,$run]}" | cut -d' ' -f1; done | median)
  c=$(for run in $(seq 1 "$runs"); do echo "${figures[$mode,$run]}" | cut -d' ' -f3; done | median)
  d=$(for run in $(seq 1 "$runs"); do echo "${figures[$mode,$run]}" | cut -d' ' -f4; done | median)
  printf '  %-4s  B'"'"'s partitions assigned to A after %6.2f s; committed by A after %6s s; visible to kafka-consumer-groups after %6s s\n' \
    "$mode" "$a" "$c" "$d"
  if [ -n "${FAILOVER_WINDOW:-}" ]; then
    w=$(for run in $(seq 1 "$runs"); do echo "${figures[$mode,$run]}" | cut -d' ' -f5; done | median)
    printf '        B'"'"'s window tasks (restored, then counted) committed by A after %6s s\n' "$w"
  fi
done
"$tool" topics --bootstrap-server "$bootstrap" --delete --topic "$topic" >/dev/null 2>&1 || true
