#!/usr/bin/env bash
# Scale-out of a window over Kafka (issue 19, state that moves): what the
# changelog costs, and how fast a task's state is restored from it, on the
# same broker in one run:
#
#   bench/scripts/scale-out-window.sh [EVENTS] [USERS] [RUNS]
#
#   EVENTS  events in the input topic (default 2000000)
#   USERS   distinct users, the window's groups (default 500000)
#   RUNS    repetitions of each measurement (default 3); medians reported
#
#   COMPRESSION (environment, default none): the sink's `compression`
#   (none, gzip, snappy, lz4, zstd); scaled out, the changelog records go
#   through the same producer, compressed the same way.
#
# Events are ~100-byte JSON objects keyed by `user` (Kafka's console
# producer: Java's partitioner), in a 12-partition topic, all in one
# 10-minute window of event time (so the state is every user at the end).
# The pipeline: `kafka` (json) → a tumbling 10-minute count and byte sum
# per user → `kafka` sink, exactly-once, 100 ms epochs, 1 shard.
# - static: one process, no group, the source `bounded`: EVENTS over its
#   wall time, start to exit (the window's rows come out at the end).
# - group 1: one process with a fresh `[runtime] group`, the source saying
#   its input is keyed by user (`keyed_by`): the window's
#   state goes to its changelog topic every epoch; the time from the start
#   until the process read every partition to its end and committed two
#   more epochs (its /metrics, polled every 50 ms: kafka_common.sh's
#   wait_read_and_committed), checked afterwards with kafka-consumer-groups
#   (the group's offsets at the end). The ratio group / static is what the
#   changelog (and the group's transactions) cost.
# - group 2 shards: group 1 with `shards = 2` in the one process (one
#   member, partition p read and its task kept on shard p mod 2). On a
#   2-core machine the broker and the process share the cores.
# - repartition: the same, but the source says nothing of its key, so the
#   window sends every row through its repartition topic (in the epoch's
#   transaction) and counts it when the source reads it back; timed until
#   the input and then the repartition topic were read to their ends and
#   two more epochs committed. The ratio repartition / static is what the
#   repartition topic and the changelog cost together.
# - restore: the group-1 process is stopped (SIGTERM), and a second one
#   joins the same group on a fresh data directory: it restores all 12
#   tasks from the changelog before it reads; its log line `kafka:
#   restored ... K keys from N records (B bytes) in T ms` gives keys/s,
#   records/s and MB/s; the time from its start to that line is timed too.
# - local restart: that second process, holding every task, is stopped
#   (SIGTERM; timed: its final snapshot logs every task whole) and started
#   again on its data directory: it restores every task from its local
#   log, reading the changelog from its checkpoint on (0 records); the
#   time from its start to its `restored` line against the fresh one's.
# Build first: cargo build --release.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/scripts/kafka-common.sh
source bench/scripts/kafka-common.sh

events=${1:-2000000}
users=${2:-500000}
runs=${3:-3}
kafka_bench_setup
stamp="$(date +%s)"
topic="window-in-$stamp"

"$tool" topics --bootstrap-server "$bootstrap" --create --topic "$topic" --partitions 12 \
  --replication-factor 1 >/dev/null
python3 - "$events" "$users" > "$work/keyed" <<'PY'
import random, sys
events, users = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(26)
out = sys.stdout
for i in range(events):
    user = "u%d" % r.randrange(users)
    line = '{"id":%d,"user":"%s","host":"h%d","at":%d,"status":%d,"bytes":%d}' % (
        i, user, r.randrange(8), 1764900000000 + i * 100000 // events, r.choice([200, 404, 500]),
        r.randrange(100000))
    out.write(user + "\t" + line + "\n")
PY
echo "== produce: $events events keyed by user ($users users), console producer, 12 partitions"
start=$(date +%s.%N)
"$tool" console-producer --bootstrap-server "$bootstrap" --topic "$topic" \
  --property parse.key=true --property "key.separator=	" \
  --producer-property linger.ms=20 --producer-property batch.size=262144 < "$work/keyed"
echo "   produced in $(echo "$(date +%s.%N) - $start" | bc -l | xargs printf '%.1f') s"

# pipeline FILE OUT_TOPIC GROUP(empty: none) [KEYED_BY]
pipeline() {
  pipeline_head "$1" "$3" \
    '{ id = "int", user = "string", host = "string", at = "timestamp", status = "int", bytes = "int" }'
  sed -i "s/\$PORT/$metrics_port/" "$1"
  if [ -n "${4:-}" ]; then
    sed -i "s/^start = \"earliest\"\$/start = \"earliest\"\nkeyed_by = [\"$4\"]/" "$1"
  fi
  cat >> "$1" <<EOF

[processors.per_user]
type = "window"
inputs = ["in"]
size = "10m"
time_field = "at"
group_by = ["user"]
aggregates = ["count", "sum:bytes"]

[sinks.out]
type = "kafka"
inputs = ["per_user"]
brokers = "$bootstrap"
topic = "$2"
key = ["user"]
compression = "${COMPRESSION:-none}"
EOF
}

metrics_port=$(free_port)

# cpu_seconds PID: the CPU time (user + system) process PID has used.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# group_rate TOML GROUP NAME [TOPIC...]: runs TOML (scaled out in GROUP)
# on a fresh data directory $work/data-NAME, logging to $work/NAME.log,
# until it read `$topic` and then each TOPIC to its end and committed two
# more epochs (wait_read_and_committed), checks the group's offsets,
# stops it (SIGTERM) and sets `rate` to EVENTS over that time, `cores` to
# the cores the process kept busy meanwhile (its CPU time over that
# time) and `broker_cores` to the broker's.
group_rate() {
  local toml=$1 group=$2 name=$3 start end pid read cpu broker broker_cpu
  shift 3
  rm -rf "$work/data-$name"
  broker=$(pgrep -f kafka.Kafka | head -1)
  broker_cpu=$(cpu_seconds "$broker")
  start=$(date +%s.%N)
  "$weir" run "$toml" --data-dir "$work/data-$name" > "$work/$name.log" 2>&1 &
  pid=$!
  pids=("$pid")
  for read in "$topic" "$@"; do
    wait_read_and_committed "$read" 12 600 "$metrics_port" \
      || { echo "$name did not catch up with $read within 600 s: see $work" >&2; exit 1; }
  done
  end=$(date +%s.%N)
  cpu=$(cpu_seconds "$pid")
  cores=$(echo "$cpu / ($end - $start)" | bc -l)
  broker_cores=$(echo "($(cpu_seconds "$broker") - $broker_cpu) / ($end - $start)" | bc -l)
  caught_up "$group" || { echo "$name: the group's offsets are not at the end: see $work" >&2; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || { echo "$name's process failed: see $work/$name.log" >&2; exit 1; }
  pids=()
  rate=$(echo "$events / ($end - $start)" | bc -l)
}

# start_until_restored NAME: starts group.toml on $work/data-2, logging to
# $work/NAME.log, and waits (up to 300 s) for its first `kafka: restored`
# line; sets `pids` and `restored_after` (seconds from the start).
start_until_restored() {
  local name=$1 start
  start=$(date +%s.%N)
  "$weir" run "$work/group.toml" --data-dir "$work/data-2" > "$work/$name.log" 2>&1 &
  pids=($!)
  for _ in $(seq 1 6000); do
    grep -q "kafka: restored " "$work/$name.log" && break
    sleep 0.05
  done
  restored_after=$(echo "$(date +%s.%N) - $start" | bc -l)
}

declare -A figures
for run in $(seq 1 "$runs"); do
  out="window-out-$stamp-$run"
  "$tool" topics --bootstrap-server "$bootstrap" --create --topic "$out" --partitions 6 \
    --replication-factor 1 >/dev/null
  pipeline "$work/static.toml" "$out" ""
  figures[static,$run]=$(static_rate "$work/static.toml" "$events")

  group="window-$stamp-$run"
  pipeline "$work/group.toml" "$out" "$group" user
  group_rate "$work/group.toml" "$group" group-1
  figures[group,$run]=$rate
  figures[group_cores,$run]=$cores
  figures[group_broker,$run]=$broker_cores

  # The same in a process of two shards, in a group of its own.
  twogroup="window-2-$stamp-$run"
  pipeline "$work/group2.toml" "$out" "$twogroup" user
  sed -i "s/^\[runtime\]\$/[runtime]\nshards = 2/" "$work/group2.toml"
  group_rate "$work/group2.toml" "$twogroup" group-2-shards
  figures[group2,$run]=$rate
  figures[group2_cores,$run]=$cores
  figures[group2_broker,$run]=$broker_cores

  # The same without `keyed_by`: through the repartition topic.
  regroup="window-r-$stamp-$run"
  pipeline "$work/repartition.toml" "$out" "$regroup"
  group_rate "$work/repartition.toml" "$regroup" repartition "$regroup-per_user-repartition"
  figures[repartition,$run]=$rate

  # A second process takes every task over: the restore.
  rm -rf "$work/data-2"
  start_until_restored group-2
  figures[fresh_wall,$run]=$restored_after
  start=$(date +%s.%N)
  kill -TERM "${pids[0]}"
  wait "${pids[0]}" || { echo "the restoring process failed: see $work/group-2.log" >&2; exit 1; }
  figures[stop,$run]=$(echo "$(date +%s.%N) - $start" | bc -l)
  pids=()
  grep -q "kafka: wrote the checkpoint of 12 tasks" "$work/group-2.log" \
    || { echo "no checkpoint written: see $work/group-2.log" >&2; exit 1; }
  # The same process again, on its data directory: from the local log.
  start_until_restored group-3
  figures[local_wall,$run]=$restored_after
  kill -TERM "${pids[0]}"
  wait "${pids[0]}" || { echo "the restarted process failed: see $work/group-3.log" >&2; exit 1; }
  pids=()
  local_line=$(grep -m1 "kafka: restored " "$work/group-3.log" || true)
  case "$local_line" in
    *"from the local log"*) ;;
    *) echo "the restart did not restore from its local log: see $work/group-3.log" >&2; exit 1 ;;
  esac
  read -r local_keys local_records _ local_ms < <(echo "$local_line" | sed -E \
    's/.*\]: ([0-9]+) keys from ([0-9]+) records \(([0-9]+) bytes\) in ([0-9]+) ms.*/\1 \2 \3 \4/')
  figures[local_keys,$run]=$local_keys
  figures[local_records,$run]=$local_records
  figures[local_ms,$run]=$local_ms
  restored=$(grep -m1 "kafka: restored " "$work/group-2.log" || true)
  [ -n "$restored" ] || { echo "no restore logged: see $work/group-2.log" >&2; exit 1; }
  # "...]: K keys from N records (B bytes) in T ms"
  read -r keys records bytes ms < <(echo "$restored" | sed -E \
    's/.*\]: ([0-9]+) keys from ([0-9]+) records \(([0-9]+) bytes\) in ([0-9]+) ms.*/\1 \2 \3 \4/')
  ms=$(( ms > 0 ? ms : 1 ))
  figures[keys,$run]=$keys
  figures[records,$run]=$records
  figures[mb,$run]=$(echo "$bytes / 1000000" | bc -l)
  figures[ms,$run]=$ms
  figures[keys_s,$run]=$(echo "$keys * 1000 / $ms" | bc -l)
  figures[records_s,$run]=$(echo "$records * 1000 / $ms" | bc -l)
  figures[mb_s,$run]=$(echo "$bytes / 1000 / $ms" | bc -l)
  printf 'run %d: group with 2 shards %.0f/s (%.2f × static); cores busy: weir %.2f, broker %.2f with 1 shard; weir %.2f, broker %.2f with 2\n' \
    "$run" "${figures[group2,$run]}" \
    "$(echo "${figures[group2,$run]} / ${figures[static,$run]}" | bc -l)" \
    "${figures[group_cores,$run]}" "${figures[group_broker,$run]}" \
    "${figures[group2_cores,$run]}" "${figures[group2_broker,$run]}"
  printf 'run %d: static %.0f/s, group 1 %.0f/s (%.2f ×), repartition %.0f/s (%.2f ×); restore %d keys from %d records (%.1f MB) in %d ms: %.0f keys/s, %.0f records/s, %.1f MB/s\n' \
    "$run" "${figures[static,$run]}" "${figures[group,$run]}" \
    "$(echo "${figures[group,$run]} / ${figures[static,$run]}" | bc -l)" \
    "${figures[repartition,$run]}" \
    "$(echo "${figures[repartition,$run]} / ${figures[static,$run]}" | bc -l)" \
    "$keys" "$records" "${figures[mb,$run]}" "$ms" "${figures[keys_s,$run]}" \
    "${figures[records_s,$run]}" "${figures[mb_s,$run]}"
  printf 'run %d: start to restored %.2f s fresh (%d ms restoring), %.2f s on its data directory (%d keys from the local log, %d changelog records, %d ms restoring); graceful stop holding every task %.2f s\n' \
    "$run" "${figures[fresh_wall,$run]}" "$ms" "${figures[local_wall,$run]}" \
    "${figures[local_keys,$run]}" "${figures[local_records,$run]}" "${figures[local_ms,$run]}" \
    "${figures[stop,$run]}"
done

med() { for run in $(seq 1 "$runs"); do echo "${figures[$1,$run]}"; done | median; }
printf 'medians of %d, %d events keyed by user (%d users, 12 partitions), window → kafka exactly-once (compression %s), 1 shard:\n' \
  "$runs" "$events" "$users" "${COMPRESSION:-none}"
s=$(med static)
g=$(med group)
printf '  one process, no group (static)       %10.0f events/s\n' "$s"
r=$(med repartition)
printf '  one process, group (changelog)       %10.0f events/s  %.2f × static\n' "$g" "$(echo "$g / $s" | bc -l)"
printf '  one process, group, repartitioned    %10.0f events/s  %.2f × static\n' "$r" "$(echo "$r / $s" | bc -l)"
g2=$(med group2)
printf '  one process of 2 shards, group        %10.0f events/s  %.2f × static, %.2f × 1 shard\n' "$g2" \
  "$(echo "$g2 / $s" | bc -l)" "$(echo "$g2 / $g" | bc -l)"
printf '  restore of every task: %.0f keys from %.0f records (%.1f MB) in %.0f ms: %.0f keys/s, %.0f records/s, %.1f MB/s\n' \
  "$(med keys)" "$(med records)" "$(med mb)" "$(med ms)" "$(med keys_s)" "$(med records_s)" "$(med mb_s)"
fw=$(med fresh_wall)
lw=$(med local_wall)
printf '  start to every task restored: fresh data directory %.2f s, restart on its own after a graceful stop %.2f s (%.2f ×; %.0f keys from the local log, %.0f changelog records, %.0f ms restoring)\n' \
  "$fw" "$lw" "$(echo "$lw / $fw" | bc -l)" "$(med local_keys)" "$(med local_records)" "$(med local_ms)"
printf '  graceful stop of a process holding every task (its final snapshot logs them whole): %.2f s\n' "$(med stop)"
"$tool" topics --bootstrap-server "$bootstrap" --delete --topic "$topic" >/dev/null 2>&1 || true
