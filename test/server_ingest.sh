#!/usr/bin/env bash
# The server without BPF: an independent Python agent (test/wire_agent.py) drives it over the
# wire protocol. Deduplication by (instance, sequence), topology reload on SIGHUP (a broken
# file keeps the last good index), retention of a departed pod's series, the server's flags,
# and its HTTP limits (header size, connections, request-head time), each counted.
. "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$((20000 + $$ % 12000)) # below 32768: not an ephemeral port another socket may hold
HTTP=$((PORT + 1))
url=http://127.0.0.1:$HTTP

"$SERVER" --no-such-flag >/dev/null 2>&1
check_eq "server rejects an unknown flag with exit 2" "$?" 2
"$SERVER" --flow-logs=some >/dev/null 2>&1
check_eq "server rejects a bad --flow-logs with exit 2" "$?" 2
check "server --help lists every flag" bash -c "'$SERVER' --help | grep -q -- --pod-retention"
echo '{"nodes": [{"name": "n1",}]}' >"$WORK/broken.json"
out=$("$SERVER" --topology "$WORK/broken.json" --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$PORT 2>&1)
rc=$?
if [ $rc = 1 ] && echo "$out" | grep -q "line 1, column 26"; then
	ok "server refuses a malformed topology at start, with line and column"
else
	not_ok "server refuses a malformed topology at start, with line and column" "exit $rc: $out"
fi

topology() { # topology ZONE-OF-N2: pod p1 on n1 (zone a), pod p2 on n2
	cat >"$WORK/topology.json" <<EOT
{"nodes": [{"name": "n1", "zone": "a", "region": "r"}, {"name": "n2", "zone": "$1", "region": "r"}],
 "pods": [{"namespace": "ns", "name": "p1", "node": "n1", "ips": ["10.0.0.1"]},
          {"namespace": "ns", "name": "p2", "node": "n2", "ips": ["10.0.0.2"]}]}
EOT
}
topology b
"$SERVER" $ANY_ADDRESS --topology "$WORK/topology.json" --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$PORT \
	--pod-retention 2s --http-max-connections 4 >"$WORK/flows" 2>"$WORK/log" &
SRV=$!
wait_for 5 grep -q listening "$WORK/log" || { sed 's/^/#   /' "$WORK/log"; exit 1; }
metric() { curl -s "$url/metrics" | awk -v want="$1{$2}" '$1 == want { print $2 }'; }
p1() { metric pod_cross_zone_network_traffic_bytes_total 'namespace="ns",pod="p1"'; }

acked=$(python3 "$TOP/test/wire_agent.py" 127.0.0.1 $PORT n1 77 1 10.0.0.1 10.0.0.2 1000 2 10.0.0.1 10.0.0.2 500)
check_eq "ingest: reports acknowledged" "$acked" "1 2"
check_eq "ingest: cross-zone bytes counted" "$(p1)" 1500
# The same instance resends 2 (its ACK was lost) and then sends 3.
acked=$(python3 "$TOP/test/wire_agent.py" 127.0.0.1 $PORT n1 77 2 10.0.0.1 10.0.0.2 500 3 10.0.0.1 10.0.0.2 250)
check_eq "ingest: a resent report is acknowledged again" "$acked" "2 3"
check_eq "ingest: a resent report is not counted twice" "$(p1)" 1750
check_eq "ingest: duplicates counted" "$(metric kubezonnet_reports_total 'result="duplicate"')" 1
# The receiving node's copy of the same packets adds nothing.
python3 "$TOP/test/wire_agent.py" 127.0.0.1 $PORT n2 78 1 10.0.0.1 10.0.0.2 1000 >/dev/null
check_eq "ingest: the receiving node's copy is ignored" "$(p1)" 1750

# SIGHUP: a broken file keeps the last good index; a good one takes effect.
cp "$WORK/topology.json" "$WORK/good.json"
cp "$WORK/broken.json" "$WORK/topology.json"
kill -HUP $SRV
wait_for 5 grep -q "keeping the previous one" "$WORK/log"
python3 "$TOP/test/wire_agent.py" 127.0.0.1 $PORT n1 79 1 10.0.0.1 10.0.0.2 100 >/dev/null
check_eq "reload: a broken file keeps the previous topology" "$(p1)" 1850
topology a
kill -HUP $SRV
reloaded() { [ "$(grep -c ': 2 nodes, 2 pods' "$WORK/log")" -ge 2 ]; }
wait_for 5 reloaded
python3 "$TOP/test/wire_agent.py" 127.0.0.1 $PORT n1 80 1 10.0.0.1 10.0.0.2 100 >/dev/null
check_eq "reload: a good file takes effect (now same zone)" "$(p1)" 1850
same=$(metric zone_network_traffic_bytes_total 'src_zone="a",dst_zone="a"')
check_eq "reload: same-zone bytes after the move" "$same" 100

# Retention: p1 leaves the topology; its series stays, then goes after --pod-retention.
cat >"$WORK/topology.json" <<EOT
{"nodes": [{"name": "n1", "zone": "a"}, {"name": "n2", "zone": "a"}],
 "pods": [{"namespace": "ns", "name": "p2", "node": "n2", "ips": ["10.0.0.2"]}]}
EOT
kill -HUP $SRV
sleep 0.5
check_eq "retention: a departed pod's series is kept at first" "$(p1)" 1850
gone() { [ -z "$(p1)" ]; }
if wait_for 10 gone; then ok "retention: and dropped after --pod-retention"; else not_ok "retention: and dropped after --pod-retention" "still $(p1)"; fi

# HTTP limits.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' a)" "$url/metrics")
check_eq "http: a head over 8 KiB gets 431" "$code" 431
# At --http-max-connections the quietest connection makes room: four idle clients cannot keep
# a scraper out (they used to get it a 503 until they left).
python3 - "$HTTP" <<'PY' >"$WORK/limit"
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
time.sleep(0.3)
extra = socket.create_connection(("127.0.0.1", port), timeout=5)
extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
print(extra.recv(100).split(b"\r\n")[0].decode())
held[0].settimeout(5)
print("closed" if held[0].recv(100) == b"" else "open")
PY
check_eq "http: at --http-max-connections a new client is served" "$(head -1 "$WORK/limit")" "HTTP/1.1 200 OK"
check_eq "http: the quietest connection made room for it" "$(sed -n 2p "$WORK/limit")" closed
python3 - "$HTTP" <<'PY' >"$WORK/slow"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
print(s.recv(100).split(b"\r\n")[0].decode())
PY
check_eq "http: an unfinished request head times out with 408" "$(cat "$WORK/slow")" "HTTP/1.1 408 Request Timeout"
rejected=$(curl -s "$url/metrics" | awk '/^kubezonnet_http_rejected_total/ { printf "%s ", $1 }')
for reason in header_too_large evicted head_timeout; do
	case "$rejected" in
	*"reason=\"$reason\""*) ok "http: '$reason' counted" ;;
	*) not_ok "http: '$reason' counted" "$rejected" ;;
	esac
done
check "http: server still serves after all that" curl -sf "$url/healthz"
kill $SRV
wait $SRV 2>/dev/null

# An empty host listens on IPv4 and IPv6 alike.
"$SERVER" --http-listen :$HTTP --agent-listen :$PORT --flow-logs none 2>"$WORK/log6" &
SRV=$!
wait_for 5 grep -q listening "$WORK/log6"
if [ -e /proc/net/if_inet6 ]; then
	check "http: ':PORT' answers on IPv6 ([::1])" curl -sf "http://[::1]:$HTTP/healthz"
else
	skip "http: ':PORT' answers on IPv6 ([::1])" "no IPv6 on this machine"
fi
check "http: ':PORT' answers on IPv4 (127.0.0.1)" curl -sf "http://127.0.0.1:$HTTP/healthz"
acked=$(python3 "$TOP/test/wire_agent.py" ::1 $PORT n1 5 1 10.0.0.1 10.0.0.2 1 2>&1)
check_eq "agents: ':PORT' takes agents over IPv6" "$acked" 1

# Idle keep-alive connections do not each keep a /metrics-sized buffer: 4,000 pods with
# cross-zone bytes (about 1 MiB of metrics), 40 scrapers that each fetch /metrics once and
# stay connected; the server's RSS may not grow by anything like 40 responses.
python3 - "$WORK/many.json" <<'PY'
import json, sys
pods = [{"namespace": "ns", "name": "pod-%04d" % i, "node": "n1", "workload": "w%d" % (i % 50),
         "workload_kind": "Deployment", "ips": ["10.7.%d.%d" % (i // 250, i % 250 + 1)]} for i in range(4000)]
json.dump({"nodes": [{"name": "n1", "zone": "a", "ips": ["10.6.0.1"]}, {"name": "n2", "zone": "b", "ips": ["10.6.0.2"]}],
           "pods": pods}, open(sys.argv[1], "w"))
PY
P2=$((PORT + 7))
"$SERVER" $ANY_ADDRESS --topology "$WORK/many.json" --http-listen 127.0.0.1:$((P2 + 1)) --agent-listen 127.0.0.1:$P2 \
	--flow-logs none 2>"$WORK/many.log" &
many=$!
wait_for 5 curl -sf -o /dev/null "http://127.0.0.1:$((P2 + 1))/readyz"
args=()
for i in $(seq 0 3999); do args+=($((i + 1)) 10.7.$((i / 250)).$((i % 250 + 1)) 10.6.0.2 1000); done
python3 "$TOP/test/wire_agent.py" 127.0.0.1 $P2 n1 5 "${args[@]}" >/dev/null
rss() { awk '$1 == "VmRSS:" { print $2 }' /proc/$many/status; }
size=$(curl -s "http://127.0.0.1:$((P2 + 1))/metrics" | wc -c)
before=$(rss)
grown=$(python3 - $((P2 + 1)) "$many" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
conns = []
for _ in range(40):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < n:
        body += s.recv(1 << 20)
    conns.append(s)  # kept open, idle
time.sleep(0.5)
print(open("/proc/%s/status" % pid).read().split("VmRSS:")[1].split()[0])
PY
)
growth=$((grown - before))
if [ -n "${KZN_SANITIZED:-}" ]; then # test/sanitizers.sh: freed memory waits in ASan's quarantine
	skip "server: idle keep-alive scrapers keep no response buffers" "RSS under AddressSanitizer"
elif [ "$size" -gt 500000 ] && [ "$growth" -lt $((size * 40 / 1024 / 4)) ]; then
	ok "server: idle keep-alive scrapers keep no response buffers ($((size / 1024)) KiB metrics, 40 idle: +${growth} KiB RSS)"
else
	not_ok "server: idle keep-alive scrapers keep no response buffers" "$((size / 1024)) KiB metrics, 40 idle connections: +${growth} KiB RSS"
fi
kill $many

# A flow log reader that stops reading (a full pipe) never stalls the server: /metrics and the
# agents are still served, and the lines that cannot be written are dropped and counted.
mkfifo "$WORK/fifo"
exec 3<>"$WORK/fifo" # held open and never read
P3=$((PORT + 9))
"$SERVER" $ANY_ADDRESS --topology "$WORK/many.json" --http-listen 127.0.0.1:$((P3 + 1)) --agent-listen 127.0.0.1:$P3 \
	--flow-logs all >"$WORK/fifo" 2>"$WORK/stalled.log" &
stalled=$!
wait_for 5 curl -sf -o /dev/null "http://127.0.0.1:$((P3 + 1))/readyz"
acks=$(timeout 60 python3 "$TOP/test/wire_agent.py" 127.0.0.1 $P3 n1 6 --bulk 40 1000 10.7.0.1 10.6.0.2 100 | wc -w)
t=$(curl -s -o "$WORK/stalled.txt" -w '%{time_total}' --max-time 5 "http://127.0.0.1:$((P3 + 1))/metrics")
dropped=$(awk '$1 == "kubezonnet_flow_logs_dropped_total" { print $2 }' "$WORK/stalled.txt")
if [ "$acks" = 40 ] && [ "${dropped:-0}" -gt 0 ] && awk -v t="$t" 'BEGIN { exit !(t < 1) }'; then
	ok "server: a stalled flow log reader stalls nothing (40,000 records acknowledged, $dropped lines dropped, /metrics in ${t}s)"
else
	not_ok "server: a stalled flow log reader stalls nothing" "$acks of 40 reports acknowledged, dropped '${dropped}', /metrics took ${t}s"
fi
kill -9 $stalled # (a server blocked on its stdout would not stop otherwise)
exec 3>&-
