#!/usr/bin/env bash
# Issue #12's holes, one regression test each as they close: a listen port out of range is
# refused (getaddrinfo would take 99999 modulo 65536); a peer's ERROR message reaches the log
# escaped (a newline in it cannot forge a log line, nor an escape sequence reach a terminal);
# a connection that has not sent its HELLO cannot make the server hold megabytes for it.
. "$(dirname "$0")/lib.sh"

for spec in 127.0.0.1:99999 127.0.0.1:0 127.0.0.1:-1 127.0.0.1:80x; do
	out=$(timeout 5 "$SERVER" --agent-listen "$spec" --http-listen 127.0.0.1:18599 2>&1)
	rc=$?
	if [ $rc != 0 ] && [[ $out == *"want a port from 1 to 65535"* ]]; then
		ok "server refuses --agent-listen $spec"
	else
		not_ok "server refuses --agent-listen $spec" "exit $rc: $(echo "$out" | tail -1)"
	fi
done

WORK=$(mktemp -d)
trap 'kill $SPID 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
"$SERVER" --agent-listen 127.0.0.1:18598 --http-listen 127.0.0.1:18599 --flow-logs none 2>"$WORK/log" &
SPID=$!
wait_for 5 grep -q listening "$WORK/log"
python3 - <<'PY'
import socket, struct
def frame(t, payload):
    return struct.pack(">IHH", 4 + len(payload), t, 0) + payload
node, version = b"node-1", b"test"
hello = struct.pack(">IHQ", 0x4b5a4e54, 1, 7) + struct.pack(">H", len(node)) + node + struct.pack(">H", len(version)) + version
msg = b"bye\n2026-11-27T00:00:00Z kubezonnet-server: FORGED line\x1b[31m"
s = socket.create_connection(("127.0.0.1", 18598))
s.sendall(frame(1, hello) + frame(4, struct.pack(">HH", 1, len(msg)) + msg))
s.settimeout(5)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
PY
wait_for 5 grep -q "sent error" "$WORK/log"
if grep -q "sent error 1: bye\\\\x0a2026" "$WORK/log" && ! grep -q "^2026-11-27T00:00:00Z" "$WORK/log" &&
	! grep -q $'\x1b' "$WORK/log"; then
	ok "server: a peer's ERROR message is logged escaped, on one line"
else
	not_ok "server: a peer's ERROR message is logged escaped, on one line" "$(grep -a -A1 'sent error' "$WORK/log" | head -2)"
fi

# Eight connections announce a 16 MiB HELLO and send 16 MiB: the server refuses each at its
# header (a HELLO is at most a few hundred bytes) and its peak memory stays small (it grew by
# 128 MiB before).
python3 - <<'PY'
import socket, threading
def flood():
    try:
        s = socket.create_connection(("127.0.0.1", 18598))
        s.sendall(bytes.fromhex("0010000000010000") + bytes(1 << 20) * 16)
    except OSError:
        pass  # refused at its header: the server closed the connection
threads = [threading.Thread(target=flood) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
PY
peak=$(awk '/^VmHWM/ { print $2 }' "/proc/$SPID/status")
rejected=$(curl -s http://127.0.0.1:18599/metrics | awk '/^kubezonnet_frames_rejected_total\{reason="too_big"\}/ { print $2 }')
if [ "${peak:-999999}" -lt 40000 ] && [ "${rejected:-0}" -ge 8 ]; then
	ok "server: eight 16 MiB HELLOs are refused at their header (peak RSS $((peak / 1024)) MiB; $rejected rejected)"
else
	not_ok "server: eight 16 MiB HELLOs are refused at their header" "peak RSS ${peak} kB, rejected '${rejected}'"
fi
