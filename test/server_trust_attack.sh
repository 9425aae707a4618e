#!/usr/bin/env bash
# Hostile peers against the trust checks of commit 9fdb1fa (test/trust_attack.py): two
# servers with a topology, one with --agent-secret-file (wire version 3) on 127.0.0.1:19500,
# one without secret listening on [::]:19510 (IPv4-mapped peers). Nodes are loopback
# addresses (127.0.0.2 and on: any 127/8 address is a source on Linux). Honest wire_agent.py
# sessions report throughout; at the end exactly their reports must be counted, both servers
# must be alive, and neither may have hit its seccomp filter.
. "$(dirname "$0")/lib.sh"

AP=19500 AH=19501 BP=19510 BH=19511
WORK=$(mktemp -d)
APID= BPID=
cleanup() {
	[ -n "$APID" ] && kill "$APID" 2>/dev/null
	[ -n "$BPID" ] && kill "$BPID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

topology() {
	cat <<'EOF'
{"nodes": [
  {"name": "n1", "zone": "a", "region": "r", "ips": ["127.0.0.2"], "pod_cidrs": ["127.0.10.0/24"]},
  {"name": "n2", "zone": "b", "region": "r", "ips": ["127.0.0.3"]},
  {"name": "n3", "zone": "a", "region": "r", "ips": ["127.0.0.4"]},
  {"name": "n4", "zone": "a", "region": "r", "ips": ["127.0.0.5"]}],
 "pods": [
  {"namespace": "ns", "name": "pa", "node": "n1", "ips": ["10.1.0.1"]},
  {"namespace": "ns", "name": "pb", "node": "n2", "ips": ["10.2.0.1"]},
  {"namespace": "ns", "name": "pc", "node": "n3", "ips": ["10.3.0.1"]},
  {"namespace": "ns", "name": "pd", "node": "n4", "ips": ["10.4.0.1"]},
  {"namespace": "ns", "name": "evil", "node": "n1", "ips": ["127.0.10.5"]}]}
EOF
}
topology >"$WORK/topology-a.json"
topology >"$WORK/topology-b.json"
echo "honest-secret-0123456789abcdef" >"$WORK/honest"
echo "leaked-secret-abcdefghijklmnop" >"$WORK/leaked"
cat "$WORK/honest" "$WORK/leaked" >"$WORK/secrets"

"$SERVER" --topology "$WORK/topology-a.json" --agent-secret-file "$WORK/secrets" \
	--agent-listen 127.0.0.1:$AP --http-listen 127.0.0.1:$AH --flow-logs none 2>"$WORK/a.log" &
APID=$!
"$SERVER" --topology "$WORK/topology-b.json" --agent-listen "[::]:$BP" \
	--http-listen 127.0.0.1:$BH --flow-logs none 2>"$WORK/b.log" &
BPID=$!
if ! wait_for 5 grep -q listening "$WORK/a.log" || ! wait_for 5 grep -q listening "$WORK/b.log"; then
	not_ok "trust attack: both servers start" "$(tail -3 "$WORK/a.log" "$WORK/b.log")"
	exit 0
fi

timeout 50 python3 "$TOP/test/trust_attack.py" --port $AP --http $AH --server-pid "$APID" \
	--secret-file "$WORK/secrets" --honest-secret "$WORK/honest" --leaked-secret "$WORK/leaked" \
	--plain-port $BP --plain-http $BH --plain-topology "$WORK/topology-b.json" \
	--plain-pid "$BPID" --wire-agent "$TOP/test/wire_agent.py" --work "$WORK"
rc=$?
check_eq "trust attack: trust_attack.py ran to its end" "$rc" 0

for s in a b; do
	pid=$APID
	[ $s = b ] && pid=$BPID
	if kill -0 "$pid" 2>/dev/null; then
		ok "trust attack: server $s is still running"
	else
		not_ok "trust attack: server $s is still running" "$(tail -3 "$WORK/$s.log")"
	fi
	if grep -q "forbidden system call" "$WORK/$s.log"; then
		not_ok "trust attack: server $s never hit its seccomp filter" "$(grep -m1 "forbidden system call" "$WORK/$s.log")"
	else
		ok "trust attack: server $s never hit its seccomp filter"
	fi
	if grep -qiE "sanitizer|runtime error|double free|corrupted" "$WORK/$s.log"; then
		not_ok "trust attack: server $s logged no memory error" "$(grep -m3 -iE "sanitizer|runtime error" "$WORK/$s.log")"
	else
		ok "trust attack: server $s logged no memory error"
	fi
done
# A clean stop: reports taken are counted, the process exits 0.
kill -TERM "$APID" "$BPID"
for s in a b; do
	pid=$APID
	[ $s = b ] && pid=$BPID
	wait "$pid"
	check_eq "trust attack: server $s stops cleanly on SIGTERM" "$?" 0
done
APID= BPID=
