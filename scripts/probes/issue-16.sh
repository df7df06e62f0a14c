#!/usr/bin/env bash
# Replays issue 16's findings 1, 3, 4, 5, 6, 8 and 9 against one weir binary.
# Usage: scripts/probes/issue-16.sh WEIR_BINARY (run it with two binaries to compare)
set -u
weir="$(realpath "$1")"
w="$(mktemp -d)"; cd "$w"
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$w"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

P=$(port); T=$(port)
cat > http.toml <<T
[runtime]
shards = 2
[sources.events]
type = "http"
format = "weir"
listen = "127.0.0.1:$P"
token = "s3cret"
[sources.frames]
type = "tcp"
listen = "127.0.0.1:$T"
[sinks.out]
type = "file"
inputs = ["events", "frames"]
path = "$w/out"
format = "ndjson"
T

echo "--- 1. a second run on the same data directory"
"$weir" run http.toml --data-dir data > run1.log 2>&1 & first=$!
wait_port $P
timeout 5 "$weir" run http.toml --data-dir data > run2.log 2>&1; echo "second run exit: $? (124 = still running after 5 s)"
tail -1 run2.log | cut -c1-200

echo "--- 9. two Content-Length headers"
python3 - $P <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
body = b'{"key":"a"}\n'
s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: %d\r\nContent-Length: 99\r\n\r\n" % len(body) + body)
print("answer:", s.recv(200).split(b"\r\n")[0].decode())
PY

echo "--- 3. 200 TCP headers claiming 10 MiB payloads (RSS of the weir process)"
rss() { grep VmRSS /proc/$first/status | awk '{print $2 " kB"}'; }
echo "before: $(rss)"
python3 - $T $first <<'PY'
import socket, struct, sys, time
def rss(pid):
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmRSS"): return line.split()[1] + " kB"
conns = []
for i in range(200):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    # magic, version, flags, reserved, batch id, payload length (10 MiB, the default limit), crc
    s.sendall(struct.pack("<4sBBHQII", b"WEIR", 1, 0, 0, i, 10 << 20, 0))
    conns.append(s)
time.sleep(3)
print("RSS with 200 headers open, no payload sent:", rss(sys.argv[2]))
for s in conns: s.close()
time.sleep(2)
PY
echo "after they closed: $(rss)"

echo "--- 4. 200 unauthorized 10 MiB bodies"
python3 - $P $first <<'PY'
import socket, sys, threading
def rss(pid):
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmRSS"): return line.split()[1] + " kB"
body = b"x" * (10 << 20)
def one():
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.settimeout(10)
        s.sendall(body)
        s.recv(100)
    except Exception as e:
        pass
threads = [threading.Thread(target=one) for _ in range(200)]
[t.start() for t in threads]; [t.join() for t in threads]
print("RSS after 200 unauthorized 10 MiB bodies:", rss(sys.argv[2]))
PY

echo "--- 8. a 17 MiB body under body_limit_bytes = 100 MiB"
sed 's/token = "s3cret"/token = "s3cret"\nbody_limit_bytes = 104857600/' http.toml > big.toml
"$weir" validate big.toml > validate.log 2>&1; echo "validate exit: $?"; head -2 validate.log | cut -c1-200

kill -TERM $first; wait $first

echo "--- 5. a following file source publishes while it runs"
: > input.ndjson
cat > follow.toml <<T
[sources.lines]
type = "file"
path = "$w/input.ndjson"
follow = true
schema = { n = "int" }
[sinks.out]
type = "file"
inputs = ["lines"]
path = "$w/followed"
format = "ndjson"
T
"$weir" run follow.toml --data-dir fdata > follow.log 2>&1 & f=$!
sleep 1
for i in $(seq 15); do echo "{\"n\":$i}" >> input.ndjson; sleep 0.2; done
sleep 1
echo "published lines while running: $(cat followed/shard-* 2>/dev/null | wc -l) of 15"
kill -TERM $f; wait $f

echo "--- 6. the newest WAL segment deleted after kill -9"
"$weir" run http.toml --data-dir kdata > k.log 2>&1 & k=$!
wait_port $P
python3 - $P <<'PY'
import sys, urllib.request
for i in range(50):
    body = "\n".join('{"key":"k%d"}' % j for j in range(2000)).encode()
    r = urllib.request.Request("http://127.0.0.1:%s/events" % sys.argv[1], data=body, headers={"Authorization": "Bearer s3cret", "Content-Type": "application/x-ndjson"})
    urllib.request.urlopen(r).read()
PY
kill -9 $k; wait $k 2>/dev/null
newest=$(find kdata -path '*shard-0*' -name '*.wal' | sort | tail -1)
echo "deleting $newest"; rm -f "$newest"
"$weir" wal inspect kdata > inspect.log 2>&1; echo "wal inspect exit: $?"; grep -i "missing\|gap\|clean\|corrupt\|below" inspect.log | head -3 | cut -c1-200
timeout 20 "$weir" run http.toml --data-dir kdata > restart.log 2>&1; echo "restart exit: $? (124 = it started and ran)"; grep -i "error\|refus\|missing" restart.log | head -2 | cut -c1-250
