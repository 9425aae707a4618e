#!/usr/bin/env bash
# Wire protocol version 2 at the server, without BPF: the independent Python agent
# (test/wire_agent.py --protocol 2) sends records carrying encapsulation bytes and reports
# tunnel-malformed packets; the server's metrics, flow logs and --dump-records lines must show
# exactly those numbers, counted where the record counts, while a version 1 agent on the same
# server still works. A record with more encapsulation than bytes, a STATS frame in the other
# version's layout and an unknown version are each refused with their own reason.
. "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$((28000 + $$ % 4000)) # below 32768: not an ephemeral port another socket may hold
HTTP=$((PORT + 1))
url=http://127.0.0.1:$HTTP
agent() { python3 "$TOP/test/wire_agent.py" "$@"; }

# p1 on n1 (zone a) sends to p2 on n2 (zone b) and to p3 on n3 (zone a).
cat >"$WORK/topology.json" <<EOT
{"nodes": [{"name": "n1", "zone": "a", "region": "r"}, {"name": "n2", "zone": "b", "region": "r"},
           {"name": "n3", "zone": "a", "region": "r"}],
 "pods": [{"namespace": "ns", "name": "p1", "node": "n1", "ips": ["10.0.0.1"]},
          {"namespace": "ns", "name": "p2", "node": "n2", "ips": ["10.0.0.2"]},
          {"namespace": "ns", "name": "p3", "node": "n3", "ips": ["10.0.0.3"]}]}
EOT
"$SERVER" $ANY_ADDRESS --topology "$WORK/topology.json" --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$PORT \
	--flow-logs all >"$WORK/flows" 2>"$WORK/log" &
SRV=$!
wait_for 5 grep -q listening "$WORK/log" || { sed 's/^/#   /' "$WORK/log"; exit 1; }
metric() { curl -s "$url/metrics" | awk -v want="$1{$2}" '$1 == want { print $2 }'; }
encap() { metric kubezonnet_encapsulation_bytes_total "src_zone=\"$1\",dst_zone=\"$2\""; }
zone() { metric zone_network_traffic_bytes_total "src_zone=\"$1\",dst_zone=\"$2\""; }
malformed() { echo "$(metric kubezonnet_agent_tunnel_malformed_packets_total "node=\"$1\"")/$(metric kubezonnet_agent_tunnel_malformed_bytes_total "node=\"$1\"")"; }
rejected() { metric kubezonnet_frames_rejected_total "reason=\"$1\""; }

# Version 2 from n1: two reports, 7 malformed packets (700 bytes) in each.
acked=$(agent --protocol 2 --malformed 7 700 127.0.0.1 $PORT n1 101 1 10.0.0.1 10.0.0.2 1000/100 2 10.0.0.1 10.0.0.3 500/50)
check_eq "v2: reports acknowledged" "$acked" "1 2"
# The same instance resends 2 (its ACK was lost), then sends 3 compressed.
acked=$(agent --protocol 2 --malformed 7 700 --zlib 127.0.0.1 $PORT n1 101 2 10.0.0.1 10.0.0.3 500/50 3 10.0.0.1 10.0.0.2 2000/300)
check_eq "v2: a resent report and a compressed one acknowledged" "$acked" "2 3"
check_eq "v2: cross-zone encapsulation bytes are the records' sum" "$(encap a b)" 400
check_eq "v2: same-zone encapsulation bytes are the records' sum" "$(encap a a)" 50
check_eq "v2: zone bytes, encapsulation included, unchanged in meaning" "$(zone a b)/$(zone a a)" 3000/500
check_eq "v2: pod bytes attributed as in version 1" \
	"$(metric pod_cross_zone_network_traffic_bytes_total 'namespace="ns",pod="p1"')" 3000
check_eq "v2: tunnel-malformed packets/bytes per node, the resent report not twice" "$(malformed n1)" 21/2100
# The receiving node's copy of the same packets adds no encapsulation bytes (nor bytes), but
# its own malformed counters are its own.
acked=$(agent --protocol 2 --malformed 1 10 127.0.0.1 $PORT n2 102 1 10.0.0.1 10.0.0.2 1000/100)
check_eq "v2: the receiving node's copy is acknowledged" "$acked" 1
check_eq "v2: the receiving node's copy adds no encapsulation bytes" "$(encap a b)/$(zone a b)" 400/3000
check_eq "v2: the receiving node's malformed counters" "$(malformed n2)" 1/10

# Version 1 on the same server: bytes counted, no encapsulation, no malformed series.
acked=$(agent 127.0.0.1 $PORT n3 103 1 10.0.0.3 10.0.0.2 400)
check_eq "v1: an agent of version 1 still acknowledged" "$acked" 1
check_eq "v1: its bytes counted, with no encapsulation bytes" "$(zone a b)/$(encap a b)" 3400/400
check_eq "v1: no tunnel-malformed series for a version 1 agent" "$(malformed n3)" /
acked=$(agent --zlib 127.0.0.1 $PORT n3 103 2 10.0.0.3 10.0.0.2 600)
check_eq "v1: compressed reports still acknowledged" "$acked" 2
check_eq "v1: compressed reports counted" "$(zone a b)/$(encap a b)" 4000/400
grep -q "node n1, instance 0000000000000065, version test, protocol 2" "$WORK/log"
check_eq "log: the server names the protocol version of each agent" "$?" 0

# Refusals, each closing only the connection that sent it, with its own reason.
out=$(agent --protocol 2 127.0.0.1 $PORT n1 104 1 10.0.0.1 10.0.0.2 100/101 2>&1)
check_eq "v2: encapsulation bytes above bytes refused" "$out" "server error 1: record encapsulation bytes above its bytes"
check_eq "v2: ... counted under reason encap_bytes" "$(rejected encap_bytes)" 1
out=$(agent --protocol 2 127.0.0.1 $PORT n1 104 1 10.0.0.1 10.0.0.2 100/100)
check_eq "v2: encapsulation bytes equal to bytes accepted" "$out" 1
check_eq "v2: ... and nothing of the refused report counted" "$(zone a b)/$(encap a b)" 4100/500
out=$(agent --protocol 2 --stats-layout 1 127.0.0.1 $PORT n1 105 1 10.0.0.1 10.0.0.2 100 2>&1)
check_eq "v2: a version 1 STATS frame after a version 2 HELLO refused" "$out" "server error 1: payload length does not match contents"
out=$(agent --protocol 1 --stats-layout 2 127.0.0.1 $PORT n1 106 1 10.0.0.1 10.0.0.2 100 2>&1)
check_eq "v1: a version 2 STATS frame after a version 1 HELLO refused" "$out" "server error 1: payload length does not match contents"
check_eq "v1/v2: layout mismatches counted under reason length" "$(rejected length)" 2
out=$(agent --protocol 4 --stats-layout 2 127.0.0.1 $PORT n1 107 1 10.0.0.1 10.0.0.2 100 2>&1)
check_eq "v4: an unknown version refused with the version code" "$out" "server error 2: unsupported protocol version"
check_eq "v4: ... counted under reason version" "$(rejected version)" 1
check_eq "refusals: nothing of them counted" "$(zone a b)/$(encap a b)" 4100/500

curl -s "$url/metrics" >"$WORK/metrics"
for family in kubezonnet_encapsulation_bytes_total kubezonnet_agent_tunnel_malformed_packets_total \
	kubezonnet_agent_tunnel_malformed_bytes_total; do
	check_eq "metrics: $family is a counter" "$(grep -c "^# TYPE $family counter$" "$WORK/metrics")" 1
done
if command -v promtool >/dev/null; then
	out=$(promtool check metrics <"$WORK/metrics" 2>&1)
	check_eq "metrics: promtool check metrics prints nothing" "$out" ""
else
	skip "metrics: promtool check metrics prints nothing" "promtool not installed"
fi

# Flow logs (all): encap_bytes on every line, 0 from the version 1 agent.
flows() {
	python3 - "$WORK/flows" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    f = json.loads(line)
    print(f["node"], f["bytes"], f["packets"], f["encap_bytes"], f["src"]["pod"], f["dst"]["pod"])
PY
}
want_flows="n1 1000 1 100 p1 p2
n1 500 1 50 p1 p3
n1 2000 1 300 p1 p2
n3 400 1 0 p3 p2
n3 600 1 0 p3 p2
n1 100 1 100 p1 p2"
have_all_flows() { [ "$(flows | wc -l)" -ge 6 ]; }
wait_for 5 have_all_flows
check_eq "flow logs: encap_bytes on each line, 0 from version 1" "$(flows)" "$want_flows"

# Version 3: the agent's hook and its status, per node. n2's agent on the cgroup hook says it
# is blind (its devices sent 1000 bytes each interval); then, on the netfilter hook, it sees.
acked=$(agent --protocol 3 --hook 2 --device-bytes 1000 --blind 127.0.0.1 $PORT n2 301 1 10.0.0.2 10.0.0.1 10 2 10.0.0.2 10.0.0.1 10)
check_eq "v3: reports with the hook's status acknowledged" "$acked" "1 2"
check_eq "v3: the node's device bytes summed; its cgroup hook blind" \
	"$(metric kubezonnet_agent_device_sent_bytes_total 'node="n2"')/$(metric kubezonnet_agent_hook_blind 'node="n2",hook="cgroup"')" \
	2000/1
acked=$(agent --protocol 3 --hook 1 --device-bytes 5 127.0.0.1 $PORT n2 302 1 10.0.0.2 10.0.0.1 10)
check_eq "v3: on the netfilter hook and seeing: not blind, and the cgroup hook's 1 gone" \
	"$acked/$(metric kubezonnet_agent_hook_blind 'node="n2",hook="netfilter"')/$(metric kubezonnet_agent_hook_blind 'node="n2",hook="cgroup"')" \
	1/0/0
out=$(agent --protocol 3 --hook 3 127.0.0.1 $PORT n2 303 1 10.0.0.2 10.0.0.1 10 2>&1)
check_eq "v3: an unknown hook is refused" "$out" "server error 1: unknown hook"
kill $SRV
wait $SRV 2>/dev/null

# --dump-records: encap_bytes per record, the malformed counters per report, old keys kept.
P2=$((PORT + 2))
"$SERVER" $ANY_ADDRESS --topology "$WORK/topology.json" --http-listen 127.0.0.1:$((P2 + 1)) --agent-listen 127.0.0.1:$P2 \
	--dump-records >"$WORK/dump" 2>"$WORK/dump.log" &
DUMP=$!
wait_for 5 grep -q listening "$WORK/dump.log"
agent --protocol 2 --malformed 7 700 127.0.0.1 $P2 n1 201 1 10.0.0.1 10.0.0.2 1000/100 2 fd00::1 fd00::2 500/50 >/dev/null
agent 127.0.0.1 $P2 n3 202 1 10.0.0.3 10.0.0.2 400 >/dev/null
dump() {
	python3 - "$WORK/dump" <<'PY'
import json, sys
report_keys = {"type", "node", "instance", "sequence", "start_ns", "end_ns", "records",
               "lost_map_full_packets", "lost_map_full_bytes", "lost_other_packets", "lost_other_bytes"}
record_keys = {"type", "node", "sequence", "family", "protocol", "port", "src", "dst", "bytes", "packets"}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["type"] == "report":
        missing = report_keys - set(d)
        print("report", d["node"], d["sequence"], d["tunnel_malformed_packets"], d["tunnel_malformed_bytes"], *sorted(missing))
    else:
        missing = record_keys - set(d)
        print("record", d["node"], d["sequence"], d["src"], d["bytes"], d["encap_bytes"], *sorted(missing))
PY
}
want_dump="report n1 1 7 700
record n1 1 10.0.0.1 1000 100
report n1 2 7 700
record n1 2 fd00::1 500 50
report n3 1 0 0
record n3 1 10.0.0.3 400 0"
have_dump() { [ "$(dump | wc -l)" -ge 6 ]; }
wait_for 5 have_dump
check_eq "dump-records: encap_bytes and tunnel_malformed_* beside every old key" "$(dump)" "$want_dump"
kill $DUMP
