#!/usr/bin/env bash
# Runs every example pipeline with a given `weir` binary and prints one line
# per output: the example, the output, its number of records and the
# SHA-256 of its records sorted. Two binaries that print the same lines
# produced the same committed output, record for record and byte for byte.
#
#   scripts/example-outputs.sh target/release/weir > after.txt
#   diff scripts/example-outputs.expected after.txt
#
# scripts/example-outputs.expected is what `195707d` (before the operators
# were reshaped into components) and every later main printed: a change
# that alters committed output shows in the diff.
#
# Only committed (published) files count, never `.staging/`. NDJSON lines
# are taken as written; Parquet rows are read with pyarrow (installed into
# a virtual environment under $WEIR_TOOLS, default ./target/tools) and
# written as JSON lines; webhook deliveries are recorded by a receiver on
# 127.0.0.1 and counted by their records. Records are sorted because which
# shard and which epoch a record lands in depends on timing, and what a
# file or request holds with it; the records themselves do not.
#
# Pipelines that read the network (examples/ingest-*.toml) get the same
# 3 000 events in one request; a stop with SIGTERM (a savepoint) ends them,
# so their outputs are the windows the events closed.
set -euo pipefail
cd "$(dirname "$0")/.."

weir="$(realpath "${1:?usage: scripts/example-outputs.sh WEIR_BINARY}")"
tools="${WEIR_TOOLS:-$PWD/target/tools}"
if ! "$tools/bin/python" -c 'import pyarrow' 2>/dev/null; then
  python3 -m venv "$tools" >&2
  "$tools/bin/pip" install --quiet pyarrow >&2
fi
python="$tools/bin/python"

work="$(mktemp -d)"
receiver_pid=""
weir_pid=""
cleanup() {
  [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null || true
  [ -n "$weir_pid" ] && kill -9 "$weir_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

# The webhook receiver: answers 200 to every POST and appends each
# request's records, one JSON line each, to $work/hooks/<path>.
mkdir -p "$work/hooks"
cat >"$work/receiver.py" <<'EOF'
import http.server, json, os, sys
root = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(os.path.join(root, self.path.strip("/").replace("/", "_")), "a") as out:
            for record in json.loads(body)["records"]:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
coproc RECEIVER { "$python" "$work/receiver.py" "$work/hooks"; }
receiver_pid=$RECEIVER_PID
read -r hook_port <&"${RECEIVER[0]}"

# Prints the record lines of every committed file under $1, sorted.
records() {
  "$python" - "$1" <<'EOF'
import json, os, sys
import pyarrow.parquet as pq
rebase = int(os.environ.get("REBASE") or 0)
def rebased(line):
    # Times taken from the wall clock, made relative to the run's base.
    if not rebase:
        return line
    record = json.loads(line)
    for key, value in record.items():
        if isinstance(value, int) and abs(value - rebase) < 10**7:
            record[key] = value - rebase
    return json.dumps(record, separators=(",", ":"))
lines = []
for directory, subdirectories, files in os.walk(sys.argv[1]):
    subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
    for name in files:
        path = os.path.join(directory, name)
        if name.startswith("."):
            continue
        if name.endswith(".parquet"):
            for row in pq.read_table(path).to_pylist():
                lines.append(json.dumps(row, default=str, separators=(",", ":")))
        else:
            with open(path) as f:
                lines.extend(rebased(line.rstrip("\n")) for line in f if line.strip())
for line in sorted(lines):
    print(line)
EOF
}

# Prints one line per output directory of the run in $1.
summarize() {
  local example="$1" out="$2"
  find "$out" -mindepth 1 -type d -not -path '*/.*' | sort | while read -r directory; do
    # Leaf directories only: the ones sinks publish into.
    if find "$directory" -mindepth 1 -maxdepth 1 -type d -not -name '.*' | grep -q .; then
      continue
    fi
    local sorted="$work/sorted"
    records "$directory" >"$sorted"
    printf '%s %s %s %s\n' "$example" "${directory#"$out"/}" "$(wc -l <"$sorted")" \
      "$(sha256sum <"$sorted" | cut -d' ' -f1)"
  done
  for hook in "$work/hooks"/*; do
    [ -e "$hook" ] || continue
    printf '%s webhook:%s %s %s\n' "$example" "$(basename "$hook")" "$(wc -l <"$hook")" \
      "$(sort "$hook" | sha256sum | cut -d' ' -f1)"
    rm "$hook"
  done
}

# Runs example $1 to its end in a fresh directory.
run_bounded() {
  local example="$1" run="$work/run"
  rm -rf "$run" && mkdir -p "$run"
  (
    cd "$run"
    WEIR_OUT="$run/weir-out" \
      WEIR_ALERT_URL="http://127.0.0.1:$hook_port/alerts" \
      WEIR_MITIGATION_URL="http://127.0.0.1:$hook_port/mitigate" \
      "$weir" run "$OLDPWD/$example" --data-dir "$run/data" >"$run/log" 2>&1
  ) || { echo "$example: weir run failed:" >&2; cat "$run/log" >&2; exit 1; }
  mkdir -p "$run/weir-out"
  summarize "$example" "$run/weir-out"
}

# Runs network example $1, sends it the same events, stops it with SIGTERM.
run_ingest() {
  local example="$1" run="$work/run"
  rm -rf "$run" && mkdir -p "$run"
  # The examples listen on 127.0.0.1:8080; take another free port.
  local port
  port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  sed "s/127.0.0.1:8080/127.0.0.1:$port/" "$example" >"$run/pipeline.toml"
  (cd "$run" && exec "$weir" run "$run/pipeline.toml" --data-dir "$run/data" >"$run/log" 2>&1) &
  weir_pid=$!
  "$python" - "$example" "$port" "$run/base" <<'EOF'
import json, socket, struct, sys, time, urllib.request
example, port = sys.argv[1], int(sys.argv[2])
# Event times a whole second ahead of the wall clock, so the source's
# watermark (the wall clock less 2 s) has not passed them; REBASE takes
# `base` out of the outputs again.
base = (int(time.time() * 1000) // 1000 + 2) * 1000
events = [{"key": "k%d" % (i % 7), "ts": base + i} for i in range(3000)]
open(sys.argv[3], "w").write(str(base))
deadline = time.time() + 30
while True:
    try:
        if example.endswith("http.toml"):
            body = "\n".join(json.dumps(e) for e in events).encode()
            request = urllib.request.Request("http://127.0.0.1:%d/events" % port, data=body,
                                             headers={"Content-Type": "application/x-ndjson"})
            assert urllib.request.urlopen(request, timeout=30).status == 200
        else:
            sys.exit("no sender for " + example)
        break
    except (ConnectionError, OSError):
        if time.time() > deadline:
            raise
        time.sleep(0.1)
# Until the watermark passed every event, and an epoch committed.
while time.time() * 1000 < base + 3000 + 2000 + 1000:
    time.sleep(0.1)
EOF
  kill -TERM "$weir_pid"
  wait "$weir_pid" || { echo "$example: weir run failed:" >&2; cat "$run/log" >&2; exit 1; }
  weir_pid=""
  mkdir -p "$run/weir-out"
  REBASE="$(cat "$run/base")" summarize "$example" "$run/weir-out"
}

for example in examples/pipelines/*.toml examples/pipelines/*.yaml examples/logins.toml \
  bench/pipelines/*.toml; do
  # Reads a Kafka broker and runs until stopped: tests/kafka_example.rs
  # runs it against the test broker instead.
  [ "$example" = examples/pipelines/kafka.toml ] && continue
  run_bounded "$example"
  echo "$example: ran" >&2
done
run_ingest examples/ingest-http.toml
