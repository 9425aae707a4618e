#!/usr/bin/env bash
# Only real agents are counted (issue #13), at the server, without BPF: the independent Python
# agent (test/wire_agent.py) connects from chosen loopback addresses (any 127.x.y.z is this
# machine's), which the topology gives to nodes.
#
# The node identity check: a HELLO is accepted from one of its node's addresses, or from an
# address in the node's pod CIDRs that is no pod's (a bridge or tunnel device); refused from
# another node's address and from a pod's; a node the server does not know yet is refused
# with the retryable code and gets in once the topology knows it; --no-agent-address-check
# turns the check off. Then the shared secret (wire protocol version 3, HMAC-SHA-256 in
# Python's hmac module against the server's OpenSSL): the right secret counts, a wrong one, an
# agent without one and a version 3 agent at a server without one are refused; a session
# captured on the wire and replayed byte for byte on a new connection counts nothing; a frame
# with a wrong MAC is refused; the file is read again when it changes (old and new secrets
# both accepted during a rotation, a broken file keeping the previous ones), and a bad file at
# start is an error. Every refusal is counted by reason, and counts nothing.
. "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$((20000 + $$ % 4000)) # below 32768: not an ephemeral port another socket may hold
HTTP=$((PORT + 1))
url=http://127.0.0.1:$HTTP
agent() { python3 "$TOP/test/wire_agent.py" "$@"; }
metric() { curl -s "$url/metrics" | awk -v want="$1{$2}" '$1 == want { print $2 }'; }
refused() { metric kubezonnet_agent_handshakes_rejected_total "reason=\"$1\""; }
stored() { metric kubezonnet_reports_total 'result="stored"'; }
pod_bytes() { metric pod_cross_zone_network_traffic_bytes_total "namespace=\"ns\",pod=\"$1\""; }
start_server() { # start_server LOG ARGS...: a server on PORT/HTTP, waited for
	local log=$1
	shift
	"$SERVER" --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$PORT --flow-logs none "$@" \
		2>"$log" &
	SRV=$!
	wait_for 5 grep -q listening "$log" || { sed 's/^/#   /' "$log"; exit 1; }
}
stop_server() { kill $SRV 2>/dev/null; wait $SRV 2>/dev/null; }

# n1 (zone a) is 127.0.0.2 with pod CIDR 127.0.1.0/24, where p1 is 127.0.1.5; n2 (zone b) is
# 127.0.0.3 with p2 at 10.0.0.2. n3 comes later.
topology() {
	cat <<EOT
{"nodes": [{"name": "n1", "zone": "a", "region": "r", "ips": ["127.0.0.2"], "pod_cidrs": ["127.0.1.0/24"]},
           {"name": "n2", "zone": "b", "region": "r", "ips": ["127.0.0.3"]} $1],
 "pods": [{"namespace": "ns", "name": "p1", "node": "n1", "ips": ["127.0.1.5"]},
          {"namespace": "ns", "name": "p2", "node": "n2", "ips": ["10.0.0.2"]}]}
EOT
}
topology >"$WORK/topology.json"

# ---- the node identity check ----
start_server "$WORK/log" --topology "$WORK/topology.json"
out=$(agent --source 127.0.0.2 127.0.0.1 $PORT n1 11 1 127.0.1.5 10.0.0.2 100 2>&1)
check_eq "identity: a node's agent from the node's address is counted" "$out/$(pod_bytes p1)" "1/100"
out=$(agent --source 127.0.1.1 127.0.0.1 $PORT n1 12 1 127.0.1.5 10.0.0.2 10 2>&1)
check_eq "identity: ... and from its pod CIDR's bridge address (no pod's)" "$out/$(pod_bytes p1)" "1/110"
out=$(agent --source 127.0.0.3 127.0.0.1 $PORT n1 13 1 127.0.1.5 10.0.0.2 1000 2>&1)
check "identity: another node's address claiming n1 is refused with code 7" \
	grep -q "^server error 7: the connection comes from 127.0.0.3, which is not an address of node n1" <<<"$out"
out=$(agent --source 127.0.1.5 127.0.0.1 $PORT n1 14 1 127.0.1.5 10.0.0.2 1000 2>&1)
check "identity: a pod's address claiming its own node is refused" \
	grep -q "^server error 7: the connection comes from 127.0.1.5" <<<"$out"
out=$(agent 127.0.0.1 $PORT n2 15 1 10.0.0.2 127.0.1.5 1000 2>&1)
check "identity: 127.0.0.1, no node's address, is refused" grep -q "^server error 7" <<<"$out"
check_eq "identity: refusals counted under node_address, and nothing of theirs counted" \
	"$(refused node_address)/$(pod_bytes p1)/$(pod_bytes p2)/$(stored)" "3/110//2"
out=$(agent --source 127.0.0.4 127.0.0.1 $PORT n3 16 1 127.0.0.4 10.0.0.2 1000 2>&1)
check_eq "identity: a node the server does not know yet is refused with the retry code (6)" \
	"$out" "server error 6: node n3 is not known to the server (yet); try again"
check_eq "identity: ... counted under unknown_node" "$(refused unknown_node)" 1
topology ', {"name": "n3", "zone": "a", "region": "r", "ips": ["127.0.0.4"]}' >"$WORK/topology.json"
kill -HUP $SRV
wait_for 5 grep -q "topology.*reloaded\|loaded.*topology" "$WORK/log"
out=$(agent --source 127.0.0.4 127.0.0.1 $PORT n3 16 1 127.0.0.4 10.0.0.2 1000 2>&1)
check_eq "identity: ... and gets in on a later try, once the server knows the node" "$out" 1
out=$(agent --source 127.0.1.7 127.0.0.1 $PORT n1 19 1 127.0.1.5 10.0.0.2 1000 2>&1)
check "identity: another address of n1's pod CIDR, no pod's and not its devices', is refused" \
	grep -q "^server error 7: the connection comes from 127.0.1.7" <<<"$out"
# The check holds for the whole session: n1 gets a new address, and the session that came
# from the old one is closed before its next report counts.
python3 - "$TOP/test" $PORT "$WORK/go" >"$WORK/session" 2>&1 <<'PY' &
import os, socket, sys, time
sys.path.insert(0, sys.argv[1])
import wire_agent as w
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), source_address=("127.0.0.2", 0), timeout=10)
agent = w.Agent(1, (0, 0), False)
src, _ = w.addr16("127.0.1.5")
dst, _ = w.addr16("10.0.0.2")
hello = w.struct.pack(">IHQH", w.MAGIC, 1, 40, 2) + b"n1" + w.struct.pack(">H", 4) + b"test"
s.sendall(w.frame(w.HELLO, hello) + agent.stats(1, 1, agent.record(4, 17, 53, src, dst, 3, 1, 0)))
print("acked", w.read_ack(s), flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
s.sendall(agent.stats(2, 1, agent.record(4, 17, 53, src, dst, 100000, 1, 0)))
print("closed" if s.recv(100) == b"" else "answered", flush=True)
PY
SESSION=$!
wait_for 5 grep -q "acked 1" "$WORK/session"
before=$(pod_bytes p1) # its first report counted, the ACK came after
topology | sed 's/"127.0.0.2"/"127.0.0.9"/' >"$WORK/topology.json"
reloads=$(grep -c "topology" "$WORK/log")
kill -HUP $SRV
wait_for 5 grep -q "its address is no longer one of its node's" "$WORK/log"
touch "$WORK/go"
wait $SESSION
check_eq "identity: a session whose address stops being its node's is closed, its next report not counted" \
	"$(tail -1 "$WORK/session")/$(pod_bytes p1)/$(metric kubezonnet_agent_connections_closed_total 'reason="node_address"')" \
	"closed/$before/1"
topology ', {"name": "n3", "zone": "a", "region": "r", "ips": ["127.0.0.4"]}' >"$WORK/topology.json"
kill -HUP $SRV
check "identity: the server log names the refusal and the address" \
	grep -q "agent 127.0.0.3:[0-9]* (node n1): refused: the connection comes from 127.0.0.3" "$WORK/log"
stop_server
start_server "$WORK/log-any" --topology "$WORK/topology.json" --no-agent-address-check
out=$(agent 127.0.0.1 $PORT n2 17 1 10.0.0.2 127.0.1.5 1000 2>&1)
check_eq "identity: --no-agent-address-check accepts any address" "$out/$(pod_bytes p2)" "1/1000"
stop_server
start_server "$WORK/log-none"
out=$(agent 127.0.0.1 $PORT anything 18 1 10.0.0.2 127.0.1.5 1000 2>&1)
check_eq "identity: without a source of nodes there is nothing to check against" "$out" 1
stop_server

# ---- the shared secret (wire protocol version 3) ----
printf 'first-secret-0123456789\n' >"$WORK/old"
printf 'second-secret-abcdefghi\n' >"$WORK/new"
printf 'second-secret-abcdefghi\r\n\nfirst-secret-0123456789\n' >"$WORK/both"
cp "$WORK/old" "$WORK/secret"
start_server "$WORK/log-secret" --topology "$WORK/topology.json" --agent-secret-file "$WORK/secret"
out=$(agent --secret "$WORK/old" --source 127.0.0.2 127.0.0.1 $PORT n1 21 1 127.0.1.5 10.0.0.2 100 2 127.0.1.5 10.0.0.2 5 2>&1)
check_eq "secret: an agent that proves the secret is counted, its ACKs authenticated" "$out/$(pod_bytes p1)" "1 2/105"
out=$(agent --secret "$WORK/new" --source 127.0.0.2 127.0.0.1 $PORT n1 22 1 127.0.1.5 10.0.0.2 1000 2>&1)
check_eq "secret: a wrong secret is refused (code 8)" "$out" \
	"server error 8: the agent's proof matches no agent secret of this server"
out=$(agent --protocol 2 --source 127.0.0.2 127.0.0.1 $PORT n1 23 1 127.0.1.5 10.0.0.2 1000 2>&1)
check_eq "secret: an agent without the secret (version 2) is refused" "$out" \
	"server error 8: this server requires the agent secret (--agent-secret-file, wire protocol version 3)"
out=$(agent --secret "$WORK/old" --source 127.0.0.3 127.0.0.1 $PORT n1 24 1 127.0.1.5 10.0.0.2 1000 2>&1)
check "secret: the secret does not lift the identity check" grep -q "^server error 7" <<<"$out"
check_eq "secret: refusals counted by reason" "$(refused auth_failed)/$(refused secret_required)/$(refused node_address)" 1/1/1
out=$(agent --secret "$WORK/old" --source 127.0.0.2 --capture "$WORK/capture" 127.0.0.1 $PORT n1 25 1 127.0.1.5 10.0.0.2 7 2>&1)
check_eq "secret: a session captured on the wire" "$out/$(pod_bytes p1)/$(stored)" "1/112/3"
python3 - 127.0.0.2 $PORT "$WORK/capture" >"$WORK/replay" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), source_address=(sys.argv[1], 0), timeout=5)
s.sendall(open(sys.argv[3], "rb").read())
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
types = []
while len(data) >= 8:
    length, ftype, _ = struct.unpack(">IHH", data[:8])
    types.append(ftype)
    data = data[4 + length:]
print(" ".join(map(str, types)))
PY
check_eq "secret: ... replayed byte for byte on a new connection gets a CHALLENGE, then an ERROR" \
	"$(cat "$WORK/replay")" "5 4"
check_eq "secret: ... and counts nothing" "$(pod_bytes p1)/$(stored)/$(refused auth_failed)" "112/3/2"
out=$(agent --secret "$WORK/old" --bad-mac --source 127.0.0.2 127.0.0.1 $PORT n1 26 1 127.0.1.5 10.0.0.2 1000 2>&1)
check_eq "secret: a frame with a wrong MAC is refused" "$out" "server error 1: message authentication failed"
check_eq "secret: ... counted under reason mac, and nothing of it counted" \
	"$(metric kubezonnet_frames_rejected_total 'reason="mac"')/$(pod_bytes p1)" "1/112"

# Rotation: old and new both accepted, then only the new one; a broken file keeps the last.
cp "$WORK/both" "$WORK/secret.tmp" && mv "$WORK/secret.tmp" "$WORK/secret"
wait_for 5 grep -q "secret file .* read again: 2 secrets" "$WORK/log-secret"
a=$(agent --secret "$WORK/old" --source 127.0.0.2 127.0.0.1 $PORT n1 27 1 127.0.1.5 10.0.0.2 1 2>&1)
b=$(agent --secret "$WORK/new" --source 127.0.0.2 127.0.0.1 $PORT n1 28 1 127.0.1.5 10.0.0.2 1 2>&1)
check_eq "secret rotation: during it, the old and the new secret are both accepted" "$a/$b" 1/1
cp "$WORK/new" "$WORK/secret.tmp" && mv "$WORK/secret.tmp" "$WORK/secret"
wait_for 5 grep -q "secret file .* read again: 1 secret;" "$WORK/log-secret"
a=$(agent --secret "$WORK/old" --source 127.0.0.2 127.0.0.1 $PORT n1 29 1 127.0.1.5 10.0.0.2 1 2>&1)
b=$(agent --secret "$WORK/new" --source 127.0.0.2 127.0.0.1 $PORT n1 30 1 127.0.1.5 10.0.0.2 1 2>&1)
check_eq "secret rotation: after it, only the new one" "$a/$b" \
	"server error 8: the agent's proof matches no agent secret of this server/1"
printf 'short\n' >"$WORK/secret.tmp" && mv "$WORK/secret.tmp" "$WORK/secret"
wait_for 5 grep -q "keeping the secrets read before" "$WORK/log-secret"
b=$(agent --secret "$WORK/new" --source 127.0.0.2 127.0.0.1 $PORT n1 31 1 127.0.1.5 10.0.0.2 1 2>&1)
check_eq "secret rotation: a broken file keeps the secrets read before" "$b" 1
check_eq "secret rotation: reads counted by result" \
	"$(metric kubezonnet_agent_secret_reloads_total 'result="ok"')/$(metric kubezonnet_agent_secret_reloads_total 'result="error"')" 2/1
check_eq "secret: every accepted report counted exactly" "$(pod_bytes p1)/$(stored)" "116/7"
check_eq "secret: the server never made a forbidden system call" \
	"$(grep -c "forbidden system call" "$WORK/log-secret")" 0
stop_server
start_server "$WORK/log-nosecret" --topology "$WORK/topology.json"
out=$(agent --secret "$WORK/old" --source 127.0.0.2 127.0.0.1 $PORT n1 32 1 127.0.1.5 10.0.0.2 1 2>&1)
check_eq "secret: a server without one refuses version 3 (it could not prove a secret)" "$out" \
	"server error 8: this server has no agent secret (--agent-secret-file): it cannot prove one"
check_eq "secret: ... counted under no_secret" "$(refused no_secret)" 1
stop_server
printf 'too short\n' >"$WORK/bad"
out=$("$SERVER" --agent-secret-file "$WORK/bad" --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$PORT 2>&1)
check_eq "secret: a bad file at start is an error (exit 2) saying what is wrong" "$?: $out" \
	"2: kubezonnet-server: --agent-secret-file: $WORK/bad: line 1: a secret must be 16 to 1024 bytes, this one is 9"
out=$("$SERVER" --agent-secret-file "$WORK/missing" --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$PORT 2>&1)
check_eq "secret: a missing file at start is an error too" "$?: $out" \
	"2: kubezonnet-server: --agent-secret-file: $WORK/missing: No such file or directory"
