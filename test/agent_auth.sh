#!/usr/bin/env bash
# The real agent with --agent-secret-file (wire protocol version 3) against a server written
# in Python from the README's description, with Python's hmac module: the independent check
# of the agent's own HMAC-SHA-256 (sha256.c) and of its handshake and MACs.
# - The handshake and the MAC of every STATS frame check out, and every byte is reported
#   (against nftables counters in the node namespace).
# - A server that cannot prove the secret gets no report at all.
# - An ACK with a wrong MAC is not taken for one: the agent drops that connection and sends
#   the same report again on the next; nothing is lost, nothing counted twice.
. "$(dirname "$0")/lib.sh"

NAMES=("agent v3: the handshake and every report's MAC check out against Python's hmac, every byte reported"
	"agent v3: a server that cannot prove the secret gets no report"
	"agent v3: an ACK with a wrong MAC is not taken: the report is sent again, nothing lost")
scenario_begin "${NAMES[@]}"
ipv4_topology_setup
printf 'agent-auth-test-secret-0123456789\n' >"$WORK/secret"

# v3_server PORT OUT MODE: MODE good, badproof (a wrong server proof) or badack (the first
# connection's ACKs carry a wrong MAC). One JSON line per event.
v3_server() {
	ip netns exec "$NODE" python3 - "$@" "$WORK/secret" <<'PY' &
import hashlib, hmac, json, socket, struct, sys, zlib, os
port, out, mode = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1), sys.argv[3]
secret = open(sys.argv[4], "rb").read().split(b"\n")[0]
log = lambda **kv: out.write(json.dumps(kv) + "\n")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(4)
log(listening=True)
mac = lambda key, data: hmac.new(key, data, hashlib.sha256).digest()

def frames(c):
    buf = b""
    while True:
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            more = c.recv(65536)
            if not more:
                return
            buf += more
        n = struct.unpack(">I", buf[:4])[0]
        yield buf[:8], struct.unpack(">HH", buf[4:8]), buf[8:4 + n]
        buf = buf[4 + n:]

seen, connection = set(), 0
while True:
    c, _ = s.accept()
    connection += 1
    key = None
    received = sent = 0
    for header, (ftype, flags), payload in frames(c):
        if ftype == 1:  # HELLO
            version = struct.unpack(">H", payload[4:6])[0]
            log(hello=version)
            transcript, nonce = hashlib.sha256(payload).digest(), os.urandom(32)
            c.sendall(struct.pack(">IHH", 36, 5, 0) + nonce)
        elif ftype == 6:  # AUTH
            want = mac(secret, b"kubezonnet v3 agent proof" + transcript + nonce)
            log(agent_proof=hmac.compare_digest(want, payload))
            proof = mac(secret, b"kubezonnet v3 server proof" + transcript + nonce)
            if mode == "badproof":
                proof = bytes([proof[0] ^ 1]) + proof[1:]
            c.sendall(struct.pack(">IHH", 36, 6, 0) + proof)
            key = mac(secret, b"kubezonnet v3 session key" + transcript + nonce)
        elif ftype == 2:  # STATS
            body, tag = payload[:-32], payload[-32:]
            ok = bool(key) and bool(flags & 2) and hmac.compare_digest(
                tag, mac(key, struct.pack(">BQ", 0, received) + header + body))
            received += 1
            if flags & 1:
                body = zlib.decompress(body[4:])
            seq = struct.unpack(">Q", body[:8])[0]
            count, fixed = struct.unpack(">I", body[56:60])[0], 88  # version 3
            udp = 0
            for i in range(count):
                r = body[fixed + i * 60:fixed + (i + 1) * 60]
                if r[1] == 17 and r[16:20] == bytes([10, 77, 1, 2]) and r[32:36] == bytes([10, 77, 2, 2]):
                    udp += struct.unpack(">Q", r[36:44])[0]
            # Counted once per sequence, as the real server's deduplication does.
            log(stats=seq, mac_ok=ok, udp=0 if seq in seen else udp, connection=connection)
            seen.add(seq)
            ack = struct.pack(">IHHQ", 12 + 32, 3, 2, seq)
            tag = mac(key, struct.pack(">BQ", 1, sent) + ack)
            sent += 1
            if mode == "badack" and connection == 1:
                tag = bytes([tag[0] ^ 1]) + tag[1:]
            c.sendall(ack + tag)
    c.close()
PY
	PIDS+=($!)
	V3_PID=$!
	wait_for 5 grep -q listening "$2"
}
udp_bytes() { python3 -c '
import json, sys
print(sum(json.loads(l).get("udp", 0) for l in open(sys.argv[1])))' "$1"; }
want_bytes() { nft_count 10.77.1.2 10.77.2.2 udp | cut -d" " -f1; }
count_of() { grep -c "$1" "$2"; }

# run_agent OUT LOG PORT: the agent with the secret, traffic, until OUT has every byte (or
# 10 s), then SIGTERM and uninstall.
run_agent() {
	ip netns exec "$NODE" "$AGENT" --server 127.0.0.1:"$3" --node node-1 --interval 300ms \
		--agent-secret-file "$WORK/secret" --pin-path "$BPFFS/kubezonnet" >>"$2" 2>&1 &
	AGENT_PID=$!
	PIDS+=($AGENT_PID)
	wait_for 10 grep -q "attached to" "$2"
	in_pod "$POD1" python3 "$TRAFFIC" udp 10.77.2.2 5000 200 300
	got_all() { [ "$(udp_bytes "$1")" = "$(want_bytes)" ]; }
	wait_for 10 got_all "$1"
	kill -TERM "$AGENT_PID"
	wait "$AGENT_PID"
	ip netns exec "$NODE" "$AGENT" --uninstall --pin-path "$BPFFS/kubezonnet" >/dev/null 2>&1
}
fresh_counters() {
	ip netns exec "$NODE" nft delete table inet kzt
	nft_setup
}

v3_server 18097 "$WORK/good" good
run_agent "$WORK/good" "$WORK/agent-good" 18097
stats=$(count_of '"stats"' "$WORK/good")
if grep -q '"hello": 3' "$WORK/good" && grep -q '"agent_proof": true' "$WORK/good" &&
	[ "$stats" -ge 2 ] && [ "$(count_of '"mac_ok": true' "$WORK/good")" = "$stats" ] &&
	[ "$(udp_bytes "$WORK/good")" = "$(want_bytes)" ]; then
	ok "${NAMES[0]} ($stats reports, $(udp_bytes "$WORK/good") UDP bytes)"
else
	not_ok "${NAMES[0]}" "$(tr '\n' ' ' <"$WORK/good" | head -c 600); nftables $(want_bytes)"
	sed 's/^/#   /' "$WORK/agent-good" | tail -5
fi
kill "$V3_PID" 2>/dev/null

fresh_counters
v3_server 18096 "$WORK/badproof" badproof
ip netns exec "$NODE" "$AGENT" --server 127.0.0.1:18096 --node node-1 --interval 300ms \
	--agent-secret-file "$WORK/secret" --pin-path "$BPFFS/kubezonnet" >"$WORK/agent-badproof" 2>&1 &
AGENT_PID=$!
PIDS+=($AGENT_PID)
wait_for 10 grep -q "attached to" "$WORK/agent-badproof"
in_pod "$POD1" python3 "$TRAFFIC" udp 10.77.2.2 5000 50 300
tries() { [ "$(count_of '"agent_proof": true' "$WORK/badproof")" -ge 3 ]; }
wait_for 15 tries
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
if tries && [ "$(count_of '"stats"' "$WORK/badproof")" = 0 ] &&
	grep -q "the server did not prove it holds the agent secret" "$WORK/agent-badproof"; then
	ok "${NAMES[1]} ($(count_of '"agent_proof"' "$WORK/badproof") handshakes, no STATS)"
else
	not_ok "${NAMES[1]}" "$(tr '\n' ' ' <"$WORK/badproof" | head -c 600)"
	sed 's/^/#   /' "$WORK/agent-badproof" | tail -5
fi
kill "$V3_PID" 2>/dev/null
# Its counts stay pinned for the next agent: the good server gets them below.

v3_server 18095 "$WORK/badack" badack
run_agent "$WORK/badack" "$WORK/agent-badack" 18095
first=$(python3 -c '
import json, sys
print(min((json.loads(l)["stats"] for l in open(sys.argv[1]) if "stats" in l), default=0))' "$WORK/badack")
resent=$(grep '"stats"' "$WORK/badack" | grep -c "\"stats\": $first,")
if grep -q "ACK with a wrong MAC" "$WORK/agent-badack" && [ "$resent" -ge 2 ] &&
	grep "\"stats\": $first," "$WORK/badack" | grep -q '"connection": 2' &&
	[ "$(udp_bytes "$WORK/badack")" = "$(want_bytes)" ]; then
	ok "${NAMES[2]} (report $first sent $resent times, $(udp_bytes "$WORK/badack") UDP bytes)"
else
	not_ok "${NAMES[2]}" "$(tr '\n' ' ' <"$WORK/badack" | head -c 600); nftables $(want_bytes)"
	sed 's/^/#   /' "$WORK/agent-badack" | tail -5
fi
