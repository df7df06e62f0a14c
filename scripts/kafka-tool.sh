#!/usr/bin/env bash
# Runs one of Kafka's command-line tools, from the same Kafka 4.4 jars as the
# broker of scripts/start-kafka.sh, so that tests and benchmarks check weir
# against Kafka's own clients:
#
#   scripts/kafka-tool.sh TOOL ARGS...
#   scripts/kafka-tool.sh console-consumer --bootstrap-server "$WEIR_TEST_KAFKA_BOOTSTRAP" \
#       --topic out --from-beginning --isolation-level read_committed --max-messages 1000
#
# TOOL is the name of Kafka's bin/kafka-TOOL.sh script (`kafka-` and `.sh`
# may be kept: `kafka-topics.sh`, `kafka-topics` and `topics` are the same),
# or a fully qualified main class. `scripts/kafka-tool.sh --list` lists the
# names. The main classes are those the 4.4 scripts run (checked against the
# 4.4.0 jars).
#
# - stdout is the tool's own output; its log4j2 logging goes to stderr, at
#   WARN (scripts/kafka/log4j2-tools.properties; $KAFKA_LOG4J_OPTS replaces
#   that option).
# - Heap: -Xmx512m for the perf tests, -Xmx256m otherwise, as Kafka's scripts
#   do; $KAFKA_HEAP_OPTS replaces it, $KAFKA_OPTS adds JVM options.
# - Jars and Java: as for scripts/start-kafka.sh (scripts/kafka/lib.sh):
#   resolved into $WEIR_KAFKA_HOME on first use.
set -euo pipefail

KAFKA_LOG_PREFIX=kafka-tool.sh
# shellcheck source=scripts/kafka/lib.sh
. "$(dirname "$0")/kafka/lib.sh"

# name|main class|heap
TOOLS='
topics|org.apache.kafka.tools.TopicCommand|-Xmx256m
console-consumer|org.apache.kafka.tools.consumer.ConsoleConsumer|-Xmx256m
console-producer|org.apache.kafka.tools.ConsoleProducer|-Xmx256m
console-share-consumer|org.apache.kafka.tools.consumer.ConsoleShareConsumer|-Xmx256m
consumer-groups|org.apache.kafka.tools.consumer.group.ConsumerGroupCommand|-Xmx256m
share-groups|org.apache.kafka.tools.consumer.group.ShareGroupCommand|-Xmx256m
streams-groups|org.apache.kafka.tools.streams.StreamsGroupCommand|-Xmx256m
groups|org.apache.kafka.tools.GroupsCommand|-Xmx256m
transactions|org.apache.kafka.tools.TransactionsCommand|-Xmx256m
producer-perf-test|org.apache.kafka.tools.ProducerPerformance|-Xmx512m
consumer-perf-test|org.apache.kafka.tools.ConsumerPerformance|-Xmx512m
share-consumer-perf-test|org.apache.kafka.tools.ShareConsumerPerformance|-Xmx512m
e2e-latency|org.apache.kafka.tools.EndToEndLatency|-Xmx256m
verifiable-producer|org.apache.kafka.tools.VerifiableProducer|-Xmx256m
verifiable-consumer|org.apache.kafka.tools.VerifiableConsumer|-Xmx256m
get-offsets|org.apache.kafka.tools.GetOffsetShell|-Xmx256m
delete-records|org.apache.kafka.tools.DeleteRecordsCommand|-Xmx256m
configs|org.apache.kafka.tools.ConfigCommand|-Xmx256m
acls|org.apache.kafka.tools.AclCommand|-Xmx256m
features|org.apache.kafka.tools.FeatureCommand|-Xmx256m
metadata-quorum|org.apache.kafka.tools.MetadataQuorumCommand|-Xmx256m
cluster|org.apache.kafka.tools.ClusterTool|-Xmx256m
broker-api-versions|org.apache.kafka.tools.BrokerApiVersionsCommand|-Xmx256m
log-dirs|org.apache.kafka.tools.LogDirsCommand|-Xmx256m
dump-log|org.apache.kafka.tools.DumpLogSegments|-Xmx256m
leader-election|org.apache.kafka.tools.LeaderElectionCommand|-Xmx256m
reassign-partitions|org.apache.kafka.tools.reassign.ReassignPartitionsCommand|-Xmx256m
client-metrics|org.apache.kafka.tools.ClientMetricsCommand|-Xmx256m
delegation-tokens|org.apache.kafka.tools.DelegationTokenCommand|-Xmx256m
replica-verification|org.apache.kafka.tools.ReplicaVerificationTool|-Xmx256m
streams-application-reset|org.apache.kafka.tools.StreamsResetter|-Xmx256m
jmx|org.apache.kafka.tools.JmxTool|-Xmx256m
storage|kafka.tools.StorageTool|-Xmx256m
'

usage() {
    echo "usage: $0 TOOL ARGS...   (TOOL: one of the names below, or a main class)"
    awk -F'|' 'NF { printf "  %-26s %s\n", $1, $2 }' <<<"$TOOLS"
}

if [ "$#" -eq 0 ]; then
    usage >&2
    exit 2
fi
case "$1" in
    -h | --help | --list | list)
        usage
        exit 0
        ;;
esac

name="${1%.sh}"
name="${name#kafka-}"
shift
entry="$(awk -F'|' -v n="$name" '$1 == n { print; exit }' <<<"$TOOLS")"
if [ -n "$entry" ]; then
    IFS='|' read -r _ class heap <<<"$entry"
elif [[ "$name" == *.*[A-Z]* ]]; then
    class="$name"
    heap=-Xmx256m
else
    log "unknown tool '$name'"
    usage >&2
    exit 2
fi

find_java
resolve_kafka_lib

# The *_OPTS variables are lists of options, split at blanks as Kafka's
# scripts split them.
read -ra heap_opts <<<"${KAFKA_HEAP_OPTS:-$heap}"
if [ -n "${KAFKA_LOG4J_OPTS:-}" ]; then
    read -ra log4j_opts <<<"$KAFKA_LOG4J_OPTS"
else
    log4j_opts=("-Dlog4j2.configurationFile=$KAFKA_SCRIPTS_DIR/log4j2-tools.properties")
fi
read -ra extra_opts <<<"${KAFKA_OPTS:-}"
exec "$JAVA" "${heap_opts[@]}" -Djava.awt.headless=true "${log4j_opts[@]}" \
    ${extra_opts[@]+"${extra_opts[@]}"} -cp "$KAFKA_LIB/*" "$class" "$@"
