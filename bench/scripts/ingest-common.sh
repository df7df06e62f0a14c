# Shared by ingest.sh and ingest-latency.sh (sourced, not run): finds the
# weir binary, raises the locked-memory limit, makes a work directory that is
# removed (and its server stopped) on exit, picks a port, and writes the
# benchmark pipeline: PROTOCOL source → keyed per-second count → NDJSON files.
#
#   ingest_setup PROTOCOL SHARDS [METRICS_PORT]
#
# EPOCH_MS (environment) sets the epoch interval, default 100 ms; SINK, the
# sink, and HTTP_FORMAT, what the http source reads (below). TLS=1: the
# source listens with TLS (a throwaway CA and certificate for 127.0.0.1 made
# with the openssl tool) and tls_args holds the load generator's --tls-ca
# (tcp only).
#
# sets: weir, work, port, target (the load generator's --target), tls_args.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
weir=${WEIR_BIN:-$root/target/release/weir}
[[ -x $weir ]] || { echo "no $weir: run cargo build --release" >&2; exit 1; }
ulimit -l unlimited 2>/dev/null || ulimit -l $((64 * 1024)) 2>/dev/null || true

ingest_setup() {
  local protocol=$1 shards=$2 metrics_port=${3:-}
  work=$(mktemp -d /tmp/weir-ingest-bench.XXXXXX)
  trap 'pkill -TERM -f "$work/pipeline.toml" 2>/dev/null || true; rm -rf "$work"' EXIT
  port=$(( 20000 + RANDOM % 20000 ))
  case $protocol in
    tcp) target="tcp://127.0.0.1:$port" ;;
    http) target="http://127.0.0.1:$port/events" ;;
    # OTLP/HTTP log exports: run the load generator with --http-body otlp.
    otlp) target="http://127.0.0.1:$port/v1/logs" ;;
    *) echo "protocol must be tcp, http or otlp" >&2; exit 1 ;;
  esac
  local metrics=""
  [[ -n $metrics_port ]] && metrics="metrics_listen = \"127.0.0.1:$metrics_port\""
  local tls=""
  tls_args=()
  if [[ ${TLS:-0} == 1 ]]; then
    make_certificates "$work"
    tls="tls = { cert = \"$work/server.crt\", key = \"$work/server.key\" }"
    tls_args=(--tls-ca "$work/ca.crt")
  fi
  cat > "$work/pipeline.toml" <<TOML
[runtime]
shards = $shards
epoch_interval_ms = ${EPOCH_MS:-100}
$metrics

[sources.events]
type = "$protocol"
listen = "127.0.0.1:$port"
$(http_format_toml "$protocol")
$tls

[processors.per_second]
type = "window"
inputs = ["events"]
size_ms = 1000
group_by = "key"
aggregates = ["count"]

$(sink_toml)
TOML
}

# HTTP_FORMAT=shipper (environment): the http source reads log shippers'
# JSON (`format = "json"`, six typed fields of the access profile and an
# RFC 3339 timestamp: run the load generator with --http-body shipper);
# default: the weir format the load generator sends by default.
http_format_toml() {
  [[ $1 == http ]] || return 0
  if [[ ${HTTP_FORMAT:-weir} == shipper ]]; then
    printf '%s\n' 'key_field = "ip"' 'timestamp_field = "timestamp"' \
      'schema = { ip = "ip", method = "string", path = "string", status = "int", bytes = "int", user_agent = "string" }'
  else
    printf 'format = "weir"\n'
  fi
}

# A CA and a certificate for 127.0.0.1 it signed, in DIR (ca.crt,
# server.crt, server.key).
make_certificates() {
  local dir=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=weir bench CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$dir/ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/ext" -out "$dir/server.crt" 2>/dev/null
}

# SINK=blackhole (environment): the counts are dropped instead of written
# to files, so no sink file, fsync or rename shares the disk with the WAL.
sink_toml() {
  if [[ ${SINK:-file} == blackhole ]]; then
    printf '[sinks.counts]\ntype = "blackhole"\ninputs = ["per_second"]\n'
  else
    printf '[sinks.counts]\ntype = "file"\ninputs = ["per_second"]\npath = "%s"\nformat = "ndjson"\n' "$work/out"
  fi
}
