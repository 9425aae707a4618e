#!/usr/bin/env bash
# The agent speaks wire protocol version 3 (its hook and the hook's status); a server from
# before version 3 refuses that HELLO with a version ERROR, and the agent then reports in
# version 2 (records with encapsulation bytes), and to one from before version 2 in version 1,
# losing nothing. The old servers here are Python ones written from the README's description
# of versions 1 and 2 (they accept only those versions, and 52- or 60-byte records).
. "$(dirname "$0")/lib.sh"

NAMES=("agent: a server of versions 1 and 2 refuses 3 and gets 2: records of 60 bytes"
	"agent: a server that refuses version 2 gets version 1, every byte still reported")
scenario_begin "${NAMES[@]}"
ipv4_topology_setup

# old_server PORT OUT [VERSIONS]: a server accepting the given versions ("1" or "1,2"); one
# JSON line per HELLO and per STATS frame (version, record size, the pod1-to-pod2 UDP bytes).
old_server() {
	ip netns exec "$NODE" python3 - "$@" <<'PY' &
import json, socket, struct, sys, zlib
port, out, versions = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1), [int(v) for v in sys.argv[3].split(",")]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(4)
out.write('{"listening": true}\n')

def frames(c):
    buf = b""
    while True:
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            more = c.recv(65536)
            if not more:
                return
            buf += more
        n = struct.unpack(">I", buf[:4])[0]
        yield struct.unpack(">HH", buf[4:8]) + (buf[8:4 + n],)
        buf = buf[4 + n:]

while True:
    c, _ = s.accept()
    version = 0
    for ftype, flags, payload in frames(c):
        if ftype == 1:  # HELLO: magic, version
            version = struct.unpack(">H", payload[4:6])[0]
            out.write(json.dumps({"hello": version}) + "\n")
            if version not in versions:
                msg = b"unsupported protocol version"
                c.sendall(struct.pack(">IHHHH", 4 + 4 + len(msg), 4, 0, 2, len(msg)) + msg)
                break
        elif ftype == 2:  # STATS
            if flags & 1:
                payload = zlib.decompress(payload[4:])
            seq = struct.unpack(">Q", payload[:8])[0]
            fixed = 60 if version == 1 else 76
            count = struct.unpack(">I", payload[fixed - 4:fixed])[0] if version == 1 else struct.unpack(">I", payload[56:60])[0]
            size = (len(payload) - fixed) // count if count else 0
            udp = 0
            for i in range(count):
                r = payload[fixed + i * size:fixed + (i + 1) * size]
                if r[1] == 17 and r[16:20] == bytes([10, 77, 1, 2]) and r[32:36] == bytes([10, 77, 2, 2]):
                    udp += struct.unpack(">Q", r[36:44])[0]
            out.write(json.dumps({"stats": seq, "version": version, "record_size": size, "udp": udp}) + "\n")
            c.sendall(struct.pack(">IHHQ", 12, 3, 0, seq))
    c.close()
PY
	OLD_SERVER_PID=$!
	PIDS+=($!)
	wait_for 5 grep -q listening "$2"
}
udp_bytes() { python3 -c '
import json, sys
print(sum(json.loads(l).get("udp", 0) for l in open(sys.argv[1])))' "$1"; }
want_bytes() { nft_count 10.77.1.2 10.77.2.2 udp | cut -d" " -f1; }

run_agent() { # OUT LOG PORT
	ip netns exec "$NODE" "$AGENT" --server 127.0.0.1:"$3" --node node-1 --interval 300ms \
		--pin-path "$BPFFS/kubezonnet" >>"$2" 2>&1 &
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

old_server 18099 "$WORK/v2" 1,2
run_agent "$WORK/v2" "$WORK/agent2" 18099
if grep -q '"hello": 3' "$WORK/v2" && grep -q '"hello": 2' "$WORK/v2" &&
	grep -q '"record_size": 60' "$WORK/v2" &&
	[ "$(udp_bytes "$WORK/v2")" = "$(want_bytes)" ]; then
	ok "${NAMES[0]}"
else
	not_ok "${NAMES[0]}" "$(tr '\n' ' ' <"$WORK/v2" | head -c 400)"
fi
kill "$OLD_SERVER_PID" 2>/dev/null

ip netns exec "$NODE" nft delete table inet kzt
nft_setup
old_server 18098 "$WORK/v1" 1
run_agent "$WORK/v1" "$WORK/agent1" 18098
if grep -q '"hello": 2' "$WORK/v1" && grep -q '"hello": 1' "$WORK/v1" &&
	! grep -q '"record_size": 60' "$WORK/v1" && grep -q '"record_size": 52' "$WORK/v1" &&
	[ "$(udp_bytes "$WORK/v1")" = "$(want_bytes)" ] && grep -q "does not speak wire protocol version 2: reporting in version 1" "$WORK/agent1"; then
	ok "${NAMES[1]} ($(udp_bytes "$WORK/v1") UDP bytes)"
else
	not_ok "${NAMES[1]}" "server saw: $(tr '\n' ' ' <"$WORK/v1" | head -c 400); UDP bytes $(udp_bytes "$WORK/v1"), nftables $(want_bytes)"
	sed 's/^/#   /' "$WORK/agent1" | tail -5
fi
