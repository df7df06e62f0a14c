#!/usr/bin/env bash
# Starts a throwaway single-node Kafka broker for weir's Kafka tests and
# benchmarks and prints its bootstrap address on stdout (the only thing
# printed there), e.g.
#
#   127.0.0.1:24817
#
#   scripts/start-kafka.sh [start]   start it, or find it running; print the address
#   scripts/start-kafka.sh stop      stop it and wait for the process to end
#   scripts/start-kafka.sh clean     stop it and delete its directory (topics and all)
#
# - Kafka 4.4 from Maven Central (scripts/kafka/pom.xml), no download of a
#   Kafka distribution: scripts/kafka/lib.sh resolves the jars with Maven
#   into $WEIR_KAFKA_HOME (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir-kafka),
#   once per version of the pom. It installs Java 17 and Maven with apt-get
#   when they are missing.
# - KRaft, one process that is both broker and controller (node 1), plain
#   text, listening on 127.0.0.1 only. Client port: $WEIR_TEST_KAFKA_PORT if
#   set, otherwise the port it had last time if that is free, otherwise a
#   free one; the controller port is chosen the same way. Replication factor
#   1 (and min ISR 1) for the internal topics (consumer offsets, transaction
#   state, share-group state); 10 partitions each instead of 50, so that the
#   first consumer group or transaction does not wait for 50 partitions to be
#   created. group.initial.rebalance.delay.ms=0. Heap -Xmx512m
#   ($KAFKA_HEAP_OPTS replaces it, $KAFKA_OPTS adds JVM options).
# - Directory: $WEIR_TEST_KAFKA_DIR (default ${TMPDIR:-/tmp}/weir-test-kafka,
#   or ...-kafka-$WEIR_TEST_KAFKA_PORT when a port is given): server.properties,
#   the log directory data/ (formatted on the first start, kept by `stop` and
#   reused by the next start; `clean` removes it), the broker's log
#   server.log, the JVM's own output stdout.log, and pid and port files.
# - Ready once the topics tool lists topics through the bootstrap address
#   (within $WEIR_TEST_KAFKA_START_TIMEOUT seconds, default 120; otherwise
#   it stops the broker, prints the end of its log and fails).
# - Idempotent: if a broker started by this script from that directory is
#   running and answers (a raw ApiVersions request over bash's /dev/tcp, so
#   no JVM starts), it prints its address and exits at once. Concurrent
#   calls are serialised with a lock file (DIR.lock).
# - The broker runs in its own session (setsid), so it outlives the calling
#   shell and a Ctrl-C there, as PostgreSQL does for scripts/start-postgres.sh.
#
# Kafka's command-line tools on the same jars: scripts/kafka-tool.sh.
set -euo pipefail

KAFKA_LOG_PREFIX=start-kafka.sh
# shellcheck source=scripts/kafka/lib.sh
. "$(dirname "$0")/kafka/lib.sh"

CMD="${1:-start}"
FIXED_PORT="${WEIR_TEST_KAFKA_PORT:-}"
DIR="${WEIR_TEST_KAFKA_DIR:-${TMPDIR:-/tmp}/weir-test-kafka${FIXED_PORT:+-$FIXED_PORT}}"
START_TIMEOUT="${WEIR_TEST_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT=60

case "$CMD" in
    start | stop | clean) ;;
    *)
        echo "usage: $0 [start | stop | clean]" >&2
        exit 2
        ;;
esac

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"  # the broker must not inherit it (see `9>&-` below)
flock 9

# Whether process $1 is a broker started from $DIR.
is_ours() {
    local cmdline
    cmdline="$({ tr '\0' '\n' <"/proc/$1/cmdline"; } 2>/dev/null)" || return 1
    grep -qx 'kafka.Kafka' <<<"$cmdline" && grep -qxF "$DIR/server.properties" <<<"$cmdline"
}

# Prints the pid of the broker running from $DIR, if there is one.
broker_pid() {
    local pid f
    if [ -f "$DIR/pid" ]; then
        pid="$(cat "$DIR/pid")"
        if [ -n "$pid" ] && is_ours "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    # The pid file is gone or stale: look for the process itself.
    for f in /proc/[0-9]*; do
        pid="${f#/proc/}"
        if is_ours "$pid"; then
            echo "$pid" >"$DIR/pid"
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether process $1 listens on TCP port $2 (Java's sockets are IPv6 ones,
# ::ffff:127.0.0.1, hence both tables). Something else listening there, such
# as another broker, does not count.
listens() {
    local hex inode
    hex="$(printf '%04X' "$2")"
    while read -r inode; do
        [ -n "$(find "/proc/$1/fd" -lname "socket:\[$inode\]" 2>/dev/null | head -n 1)" ] && return 0
    done < <(awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    return 1
}

# Whether a Kafka broker answers on 127.0.0.1:$1: sends an ApiVersions
# request (key 18, version 0, correlation id 0x5745, client id "weir") and
# checks that the response carries that correlation id. A version the broker
# does not support still gets an answer (with an error code), which is
# enough here.
answers() {
    local reply
    # shellcheck disable=SC2016 # $1 is the inner shell's
    reply="$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x57\x45\x00\x04weir" >&3
        head -c 8 <&3 | od -An -tx1' _ "$1" 2>/dev/null | tr -d ' \n')" || return 1
    [ "${reply:8:8}" = "00005745" ]
}

# Prints a free port (not $1), preferring $2 when it is free. Ports come from
# 20000-31999, below Linux's default ephemeral range.
pick_port() {
    local avoid="$1" prefer="${2:-}" p
    if [ -n "$prefer" ] && [ "$prefer" != "$avoid" ] && ! listening "$prefer"; then
        echo "$prefer"
        return 0
    fi
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        [ "$p" = "$avoid" ] && continue
        listening "$p" || { echo "$p"; return 0; }
    done
    log "found no free port"
    return 1
}

stop_broker() {
    local pid waited=0
    if ! pid="$(broker_pid)"; then
        log "no broker is running from $DIR"
        rm -f "$DIR/pid"
        return 0
    fi
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge $((STOP_TIMEOUT * 5)) ]; then
            log "the broker did not stop within ${STOP_TIMEOUT}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            waited=0
            while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 50 ]; do
                sleep 0.2
                waited=$((waited + 1))
            done
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "the broker (pid $pid) is still running"
        return 1
    fi
    rm -f "$DIR/pid"
    log "stopped"
}

show_logs() {
    local f
    for f in "$DIR/server.log" "$DIR/stdout.log"; do
        [ -s "$f" ] || continue
        log "the end of $f:"
        tail -n 40 "$f" >&2
    done
}

# Runs Kafka's topics tool against 127.0.0.1:$1 (`--list`), within $2 seconds.
topics_list() {
    timeout "$2" "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_SCRIPTS_DIR/log4j2-tools.properties" \
        -cp "$KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "127.0.0.1:$1" --list 8>&- 9>&-
}

# Waits until the broker (pid $1) answers a metadata request on port $2.
# Returns 1 if it does not within START_TIMEOUT, 2 if it exited.
wait_ready() {
    local pid="$1" port="$2" deadline=$((SECONDS + START_TIMEOUT)) out left
    until listens "$pid" "$port"; do
        kill -0 "$pid" 2>/dev/null || return 2
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
    while :; do
        kill -0 "$pid" 2>/dev/null || return 2
        left=$((deadline - SECONDS))
        [ "$left" -gt 0 ] || return 1
        if out="$(topics_list "$port" "$left" 2>&1)"; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 2
        [ "$SECONDS" -lt "$deadline" ] || { log "the topics tool said: $out"; return 1; }
        sleep 1
    done
}

write_config() {
    cat >"$DIR/server.properties" <<EOF
# Written by scripts/start-kafka.sh at every start; edits are lost.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
log.dirs=$DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=10
group.initial.rebalance.delay.ms=0
# Tests write events stamped in the past (their windows' fixed dates): with
# Kafka's 7-day default the retention check (every 5 minutes) deletes them
# mid-test, and a restarted reader's offsets fall below the log's start.
log.retention.ms=-1
EOF
}

# A cluster id as Kafka's Uuid.randomUuid() makes them: 16 random bytes in
# URL-safe base64 without padding, never starting with '-'.
cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [ "${id:0:1}" != "-" ] && { echo "$id"; return 0; }
    done
}

format_if_needed() {
    [ -f "$DIR/data/meta.properties" ] && return 0
    rm -rf "$DIR/data"
    log "formatting a KRaft log directory in $DIR/data"
    "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_SCRIPTS_DIR/log4j2-tools.properties" \
        -cp "$KAFKA_LIB/*" kafka.tools.StorageTool \
        format -t "$(cluster_id)" -c "$DIR/server.properties" >&2 8>&- 9>&-
}

# Starts the broker in the background; sets BROKER_PID.
launch() {
    cp "$KAFKA_SCRIPTS_DIR/log4j2-broker.properties" "$DIR/log4j2.properties"
    echo "=== $(date -Is) starting on 127.0.0.1:$PORT (controller $CONTROLLER_PORT)" >>"$DIR/stdout.log"
    local heap_opts extra_opts
    read -ra heap_opts <<<"${KAFKA_HEAP_OPTS:--Xmx512m}"
    read -ra extra_opts <<<"${KAFKA_OPTS:-}"
    # The JVM options of Kafka's kafka-run-class.sh, with a smaller heap.
    setsid "$JAVA" "${heap_opts[@]}" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$DIR/log4j2.properties" -Dkafka.logs.dir="$DIR" \
        ${extra_opts[@]+"${extra_opts[@]}"} \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$DIR/server.properties" \
        </dev/null >>"$DIR/stdout.log" 2>&1 8>&- 9>&- &
    BROKER_PID=$!
    echo "$BROKER_PID" >"$DIR/pid"
}

if [ "$CMD" = stop ]; then
    stop_broker
    exit
fi
if [ "$CMD" = clean ]; then
    stop_broker
    rm -rf "$DIR"
    log "removed $DIR"
    exit
fi

# Already running?
if pid="$(broker_pid)"; then
    PORT="$(cat "$DIR/port" 2>/dev/null || true)"
    if [ -n "$PORT" ] && listens "$pid" "$PORT" && answers "$PORT"; then
        echo "127.0.0.1:$PORT"
        exit 0
    fi
    log "a broker from $DIR (pid $pid) is running but does not answer on port ${PORT:-?}; waiting for it"
    find_java
    resolve_kafka_lib
    if [ -n "$PORT" ] && wait_ready "$pid" "$PORT"; then
        echo "127.0.0.1:$PORT"
        exit 0
    fi
    log "it did not answer within ${START_TIMEOUT}s; stopping it and starting afresh"
    show_logs
    stop_broker
fi

find_java
resolve_kafka_lib
mkdir -p "$DIR"

for attempt in 1 2 3; do
    if [ -n "$FIXED_PORT" ]; then
        PORT="$FIXED_PORT"
        if listening "$PORT"; then
            log "port $PORT (WEIR_TEST_KAFKA_PORT) is in use by another process"
            exit 1
        fi
    else
        PORT="$(pick_port "" "$(cat "$DIR/port" 2>/dev/null || true)")"
    fi
    CONTROLLER_PORT="$(pick_port "$PORT" "$(cat "$DIR/controller-port" 2>/dev/null || true)")"
    echo "$PORT" >"$DIR/port"
    echo "$CONTROLLER_PORT" >"$DIR/controller-port"
    write_config
    format_if_needed
    log "starting Kafka on 127.0.0.1:$PORT (controller 127.0.0.1:$CONTROLLER_PORT, $DIR)"
    started=$SECONDS
    log_start="$(stat -c %s "$DIR/server.log" 2>/dev/null || echo 0)"
    launch
    status=0
    wait_ready "$BROKER_PID" "$PORT" || status=$?
    if [ "$status" -eq 0 ]; then
        log "ready in $((SECONDS - started))s (pid $BROKER_PID)"
        echo "127.0.0.1:$PORT"
        exit 0
    fi
    if [ "$status" -eq 2 ] && [ -z "$FIXED_PORT" ] && [ "$attempt" -lt 3 ] \
        && tail -c +"$((log_start + 1))" "$DIR/server.log" 2>/dev/null | grep -q 'Address already in use'; then
        log "a port was taken meanwhile; trying other ports"
        rm -f "$DIR/port" "$DIR/controller-port"
        continue
    fi
    break
done

if [ "$status" -eq 2 ]; then
    log "Kafka exited during start-up"
else
    log "Kafka did not answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s; stopping it"
    stop_broker || true
fi
show_logs
exit 1
