#!/usr/bin/env bash
# Usage: scripts/probes/issue-16-descriptors.sh WEIR_BINARY
# Issue 16 finding 2: with `ulimit -n 256`, 300 idle connections, then they
# leave; does a well-behaved client get served, and what CPU did weir use?
set -u
weir="$(realpath "$1")"
w="$(mktemp -d)"; cd "$w"
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$w"' EXIT
P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > http.toml <<T
[runtime]
shards = 2
[sources.events]
type = "http"
format = "weir"
listen = "127.0.0.1:$P"
[sinks.out]
type = "blackhole"
inputs = ["events"]
T
(ulimit -n 256; exec "$weir" run http.toml --data-dir data > run.log 2>&1) & pid=$!
sleep 2
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
python3 - $P $pid <<'PY'
import os, socket, sys, time, urllib.request
port, pid = int(sys.argv[1]), sys.argv[2]
def ticks():
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
def post():
    r = urllib.request.Request("http://127.0.0.1:%d/events" % port, data=b'{"key":"a"}\n',
                               headers={"Content-Type": "application/x-ndjson"})
    try:
        return urllib.request.urlopen(r, timeout=5).status
    except Exception as e:
        return repr(e)[:80]
conns = []
for i in range(300):
    try:
        conns.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except Exception as e:
        pass
t0 = ticks(); time.sleep(5); busy = (ticks() - t0) / os.sysconf("SC_CLK_TCK") / 5
print("300 idle connections opened (%d connected); weir CPU while they sit: %.0f %%" % (len(conns), busy * 100))
print("a POST while they are open:", post())
for c in conns: c.close()
time.sleep(3)
t0 = ticks(); time.sleep(5); busy = (ticks() - t0) / os.sysconf("SC_CLK_TCK") / 5
print("after they left: weir CPU %.0f %%; a POST: %s; open fds: %d" % (busy * 100, post(), len(os.listdir("/proc/%s/fd" % pid))))
PY
