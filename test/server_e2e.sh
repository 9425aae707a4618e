#!/usr/bin/env bash
# End to end, as root: three pods behind two nodes in two zones, a real agent per node, the
# server fed by a topology file. The oracle is nftables counters in each node's postrouting
# chain. Then a real Prometheus scrapes the server and answers the README's query, curl checks
# the HTTP behaviour, promtool checks the exposition, and a hostile peer costs nobody else.
#
#   zone-a: node-a (10.88.0.1)  pod1 10.77.1.2 fd77:1::2   pod2 10.77.2.2
#   zone-b: node-b (10.88.0.2)  pod3 10.77.3.2 fd77:3::2
#
# With E2E_KUBE=1 (test/server_e2e_k8s.sh) the same cluster comes from the Kubernetes API
# instead: test/topology_to_k8s.py turns the topology into Node and Pod objects (owner
# references, podIPs, zone labels) that test/fake_apiserver.py serves, and the server lists
# and watches them; the traffic checks run, the HTTP and Prometheus ones are left to the
# topology run.
. "$(dirname "$0")/lib.sh"
E=e2e
[ -n "$E2E_KUBE" ] && E="e2e kube-api"

NAMES=("$E: pod1 cross-zone bytes equal nftables" "$E: pod3 cross-zone bytes equal nftables"
	"$E: same-zone traffic adds nothing to cross-zone counters" "$E: workload and zone metrics"
	"$E: promtool check metrics" "$E: flow logs name both pods"
	"$E: the server runs sandboxed" "$E: the agents run sandboxed")
[ -z "$E2E_KUBE" ] && NAMES+=("e2e: a node not known yet is refused, and its agent gets in once the topology (SIGHUP) has it"
	"e2e: the agents prove the shared secret (wire protocol 3)"
	"e2e: secret rotation: every agent reconnects with the new secret, nothing lost")
[ -z "$E2E_KUBE" ] && NAMES+=("http: keep-alive" "http: HEAD" "http: 404" "http: 405" "http: gzip" "http: readyz"
	"hostile agent peer: rejected and counted, others unaffected"
	"prometheus: topk(20, rate(pod_cross_zone_network_traffic_bytes_total[5m]))"
	"rules on live data: namespace_workload_workload_kind:workload_cross_zone_network_traffic_bytes:rate5m"
	"rules on live data: src_zone_dst_zone:zone_network_traffic_bytes:rate5m"
	"rules on live data: namespace_workload_workload_kind:kubezonnet_cross_zone_cost_dollars:rate5m"
	"rules on live data: namespace_pod:pod_cross_zone_network_traffic_bytes:rate5m")
scenario_begin "${NAMES[@]}"

A=${NS_PREFIX}node-a B=${NS_PREFIX}node-b
P1=${NS_PREFIX}pod1 P2=${NS_PREFIX}pod2 P3=${NS_PREFIX}pod3
e2e_nodes_setup
ip netns exec "$A" ethtool -K ${NS_PREFIX}ab tso off gso off gro off 2>/dev/null
ip netns exec "$B" ethtool -K ${NS_PREFIX}ba tso off gso off gro off 2>/dev/null
e2e_pods_setup

echo "$E2E_TOPOLOGY" >"$WORK/topology.json"
SOURCE=(--topology "$WORK/topology.json")
SECRET=()
if [ -z "$E2E_KUBE" ]; then
	# The topology run: node-b is not in the file yet (an agent faster than the cluster's
	# source of nodes), and a shared secret, one file for the server and both agents as one
	# Kubernetes Secret mounted in all three pods would be.
	python3 -c '
import json, sys
t = json.loads(sys.argv[1])
t["nodes"] = [n for n in t["nodes"] if n["name"] != "node-b"]
t["pods"] = [p for p in t["pods"] if p["node"] != "node-b"]
print(json.dumps(t))' "$E2E_TOPOLOGY" >"$WORK/topology.json"
	printf 'e2e-first-secret-0123456789\n' >"$WORK/secret"
	SECRET=(--agent-secret-file "$WORK/secret")
fi
if [ -n "$E2E_KUBE" ]; then
	python3 "$TOP/test/topology_to_k8s.py" "$WORK/topology.json" "$WORK/k8s"
	ip netns exec "$A" python3 "$TOP/test/fake_apiserver.py" 18090 "$FIX" \
		"$WORK/api-requests" --lists "$WORK/k8s" 2>"$WORK/api.log" &
	PIDS+=($!)
	wait_for 5 ip netns exec "$A" python3 -c "import socket; socket.create_connection(('127.0.0.1', 18090), 1)"
	SOURCE=(--kube-api http://127.0.0.1:18090)
fi
ip netns exec "$A" "$SERVER" "${SOURCE[@]}" "${SECRET[@]}" --http-listen 127.0.0.1:18080 \
	--agent-listen :18081 >"$WORK/flows" 2>"$WORK/server.log" &
PIDS+=($!)
SERVER_PID=$!
wait_for 5 grep -q listening "$WORK/server.log" || { sed 's/^/#   /' "$WORK/server.log"; exit 1; }
if [ -n "$E2E_KUBE" ]; then
	wait_for 10 grep -q "ready" "$WORK/server.log" || { sed 's/^/#   /' "$WORK/server.log"; exit 1; }
fi
for n in a b; do
	ns=${NS_PREFIX}node-$n
	ip netns exec "$ns" "$AGENT" --server 10.88.0.1:18081 --node node-$n --interval 1s \
		"${SECRET[@]}" --pin-path "$BPFFS/kzn-$n" >"$WORK/agent-$n" 2>&1 &
	PIDS+=($!)
	wait_for 10 grep -q "connected to" "$WORK/agent-$n" || { sed 's/^/#   /' "$WORK/agent-$n"; exit 1; }
	AGENT_PIDS+=($!)
done

if [ -z "$E2E_KUBE" ]; then
	# node-b's agent is refused (retry) until the topology has its node, then gets in.
	wait_for 10 grep -q "server error 6: node node-b is not known" "$WORK/agent-b"
	refused=$(grep -c "server error 6" "$WORK/agent-b")
	echo "$E2E_TOPOLOGY" >"$WORK/topology.json"
	kill -HUP "$SERVER_PID"
	if wait_for 20 grep -q "connected: node node-b.*secret proved" "$WORK/server.log"; then
		ok "e2e: a node not known yet is refused ($refused times), and its agent gets in once the topology (SIGHUP) has it"
	else
		not_ok "e2e: a node not known yet is refused, and its agent gets in once the topology (SIGHUP) has it" \
			"$(tail -3 "$WORK/agent-b")"
	fi
	if grep -q "connected: node node-a, .*protocol 3, netfilter hook, secret proved" "$WORK/server.log"; then
		ok "e2e: the agents prove the shared secret (wire protocol 3)"
	else
		not_ok "e2e: the agents prove the shared secret (wire protocol 3)" "$(grep connected "$WORK/server.log")"
	fi
	# Rotation as the README says: the new secret first and the old one second (the server
	# takes both; an agent proves the first when it next connects), then the new one alone
	# (the server ends the sessions proved with the old one; the agents come back with the
	# new). The traffic below is counted across it, to the byte.
	printf 'e2e-second-secret-abcdefghij\ne2e-first-secret-0123456789\n' >"$WORK/secret.tmp"
	mv "$WORK/secret.tmp" "$WORK/secret"
	wait_for 5 grep -q "read again: 2 secrets" "$WORK/server.log"
	printf 'e2e-second-secret-abcdefghij\n' >"$WORK/secret.tmp"
	mv "$WORK/secret.tmp" "$WORK/secret"
	rotated() { [ "$(grep -c "connected: node node-.*secret proved" "$WORK/server.log")" -ge 4 ]; }
	if wait_for 20 rotated && grep -q "2 sessions proved with a removed one closed" "$WORK/server.log" &&
		grep -q "agent secret file .* read again" "$WORK/agent-a"; then
		ROTATED=1
	else
		ROTATED=0
		echo "# $(grep -E 'secret|connected' "$WORK/server.log" | tail -6)"
	fi
fi

# Both processes run sandboxed (sandbox.h): no capabilities left, no_new_privs, a seccomp
# filter (none under AddressSanitizer, whose runtime needs calls of its own).
sandboxed() { # sandboxed PID: its status says no capabilities, NoNewPrivs 1, Seccomp 2
	awk '/^CapEff:/ { c = $2 } /^NoNewPrivs:/ { n = $2 } /^Seccomp:/ { f = $2 }
		END { exit !(c == "0000000000000000" && n == 1 && f == 2) }' "/proc/$1/status"
}
if [ -n "${KZN_SANITIZED:-}" ]; then
	skip "$E: the server runs sandboxed" "no seccomp filter under AddressSanitizer"
elif sandboxed "$SERVER_PID"; then
	ok "$E: the server runs sandboxed (CapEff 0, NoNewPrivs 1, Seccomp 2)"
else
	not_ok "$E: the server runs sandboxed" "$(grep -E '^(CapEff|NoNewPrivs|Seccomp):' "/proc/$SERVER_PID/status" | tr '\n' ' ')"
fi
if sandboxed "${AGENT_PIDS[0]}" && sandboxed "${AGENT_PIDS[1]}"; then
	ok "$E: the agents run sandboxed (CapEff 0, NoNewPrivs 1, Seccomp 2)"
else
	not_ok "$E: the agents run sandboxed" "$(grep -E '^(CapEff|NoNewPrivs|Seccomp):' "/proc/${AGENT_PIDS[0]}/status" | tr '\n' ' ')"
fi

metrics() { in_pod "$A" curl -s http://127.0.0.1:18080/metrics; }
# metric NAME LABELS: the value of one series ('' if absent).
metric() { metrics | awk -v want="$1{$2}" '$1 == want { print $2 }'; }

# Traffic: pod1 <-> pod3 across zones (UDP, TCP, ICMP, IPv4 and IPv6), pod1 -> pod2 in zone.
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.3.2 5000 400 700 4
in_pod "$P1" python3 "$TRAFFIC" udp fd77:3::2 5000 300 900 2
in_pod "$P3" python3 "$TRAFFIC" udp 10.77.1.2 6000 200 300
in_pod "$P1" ping -q -c 20 -i 0.01 -s 300 10.77.3.2 >/dev/null
in_pod "$P3" python3 "$TRAFFIC" tcp-sink 8080 >"$WORK/tcp" &
receiver=$!
wait_for 5 grep -q listening "$WORK/tcp"
in_pod "$P1" python3 "$TRAFFIC" tcp fd77:3::2 8080 2000000 >/dev/null
wait $receiver
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.2.2 7000 500 1200 3

want1=$(($(nft_bytes "$A" pod1-pod3) + $(nft_bytes "$A" pod1-pod3-v6)))
want3=$(($(nft_bytes "$B" pod3-pod1) + $(nft_bytes "$B" pod3-pod1-v6)))
pod_metric() { metric pod_cross_zone_network_traffic_bytes_total "namespace=\"$1\",pod=\"$2\""; }
same_zone() { metric zone_network_traffic_bytes_total 'src_zone="zone-a",dst_zone="zone-a"'; }
# Settled: both pods' cross-zone bytes, and the same-zone traffic sent last (its report may
# come an interval after theirs).
settled() {
	[ "$(pod_metric shop pod1)" = "$want1" ] && [ "$(pod_metric data pod3)" = "$want3" ] &&
		[ "$(same_zone)" -ge $((500 * 1228)) ] 2>/dev/null
}
wait_for 20 settled
got1=$(pod_metric shop pod1)
got3=$(pod_metric data pod3)
check_eq "$E: pod1 cross-zone bytes equal nftables" "$got1" "$want1"
check_eq "$E: pod3 cross-zone bytes equal nftables" "$got3" "$want3"
got2=$(pod_metric shop pod2)
if [ -z "$got2" ] || [ "$got2" = 0 ]; then
	same=$(metric zone_network_traffic_bytes_total 'src_zone="zone-a",dst_zone="zone-a"')
	if [ -n "$same" ] && [ "$same" -ge $((500 * 1228)) ]; then
		ok "$E: same-zone traffic adds nothing to cross-zone counters (zone-a to zone-a: $same bytes)"
	else
		not_ok "$E: same-zone traffic adds nothing to cross-zone counters" "zone-a to zone-a is '$same'"
	fi
else
	not_ok "$E: same-zone traffic adds nothing to cross-zone counters" "pod2 has $got2 cross-zone bytes"
fi
wl=$(metric workload_cross_zone_network_traffic_bytes_total 'namespace="shop",workload="web",workload_kind="Deployment",direction="sent"')
zab=$(metric zone_network_traffic_bytes_total 'src_zone="zone-a",dst_zone="zone-b"')
if [ "$wl" = "$want1" ] && [ -n "$zab" ] && [ "$zab" -ge "$want1" ]; then
	ok "$E: workload and zone metrics (web sent $wl, zone-a to zone-b $zab)"
else
	not_ok "$E: workload and zone metrics" "workload web sent '$wl' (want $want1), zone-a to zone-b '$zab'"
fi
if [ -z "$E2E_KUBE" ]; then
	if [ "$ROTATED" = 1 ] && [ "$got1" = "$want1" ] && [ "$got3" = "$want3" ]; then
		ok "e2e: secret rotation: every agent reconnects with the new secret, nothing lost"
	else
		not_ok "e2e: secret rotation: every agent reconnects with the new secret, nothing lost" \
			"rotated=$ROTATED pod1 $got1/$want1 pod3 $got3/$want3"
	fi
fi
metrics >"$WORK/metrics.txt"
check "$E: promtool check metrics" bash -c "out=\$(promtool check metrics <'$WORK/metrics.txt' 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
if grep -q '"class":"cross_zone"' "$WORK/flows" && grep '"pod":"pod1"' "$WORK/flows" | grep -q '"pod":"pod3"'; then
	ok "$E: flow logs name both pods"
else
	not_ok "$E: flow logs name both pods" "$(head -c 300 "$WORK/flows")"
fi

[ -n "$E2E_KUBE" ] && exit 0

# HTTP behaviour, with curl as the client.
url=http://127.0.0.1:18080
out=$(in_pod "$A" curl -sv "$url/healthz" "$url/healthz" 2>&1)
if echo "$out" | grep -qiE "Re-using existing connection|reusing connection"; then ok "http: keep-alive"; else not_ok "http: keep-alive" "second request opened a new connection"; fi
head=$(in_pod "$A" curl -sI "$url/metrics")
if echo "$head" | grep -q "^HTTP/1.1 200" && echo "$head" | grep -qi "^Content-Length: [1-9]" &&
	[ -z "$(in_pod "$A" curl -s -X HEAD --max-time 2 "$url/metrics" 2>/dev/null)" ]; then
	ok "http: HEAD"
else
	not_ok "http: HEAD" "$head"
fi
check_eq "http: 404" "$(in_pod "$A" curl -s -o /dev/null -w '%{http_code}' "$url/nope")" 404
check_eq "http: 405" "$(in_pod "$A" curl -s -o /dev/null -w '%{http_code}' -X POST "$url/metrics")" 405
enc=$(in_pod "$A" curl -s -H 'Accept-Encoding: gzip' -D - -o "$WORK/m.gz" "$url/metrics" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" { print $2 }')
if [ "$enc" = gzip ] && gunzip -c "$WORK/m.gz" | grep -q pod_cross_zone_network_traffic_bytes_total; then
	ok "http: gzip ($(stat -c %s "$WORK/m.gz") bytes for $(gunzip -c "$WORK/m.gz" | wc -c))"
else
	not_ok "http: gzip" "Content-Encoding '$enc'"
fi
check_eq "http: readyz" "$(in_pod "$A" curl -s "$url/readyz")" ok

# A hostile peer: garbage, an oversized length, a HELLO with a bad node name. Each connection
# is refused and counted; the agents keep reporting.
before=$(metric kubezonnet_reports_total 'result="stored"')
in_pod "$A" python3 - <<'PY'
import socket, struct
def send(b):
    s = socket.create_connection(("127.0.0.1", 18081), timeout=5)
    s.sendall(b)
    try:
        s.recv(1024)
    except OSError:
        pass
    s.close()
send(b"GET / HTTP/1.1\r\n\r\n" * 10)
send(struct.pack(">IHH", 0xFFFFFFF0, 2, 0))
node = b"Bad_Node"
send(struct.pack(">IHHIHQH", 4 + 18 + len(node) + 1, 1, 0, 0x4B5A4E54, 1, 7, len(node)) + node + struct.pack(">H", 1) + b"1")
PY
sleep 3
after=$(metric kubezonnet_reports_total 'result="stored"')
rejected=$(metrics | awk '/^kubezonnet_frames_rejected_total/ { n += $2 } END { print n + 0 }')
if [ "$rejected" -ge 3 ] && [ "$after" -gt "$before" ] && kill -0 "${PIDS[0]}" 2>/dev/null; then
	ok "hostile agent peer: rejected and counted, others unaffected ($rejected rejected; reports $before -> $after)"
else
	not_ok "hostile agent peer: rejected and counted, others unaffected" "rejected '$rejected', reports $before -> $after"
fi

# A real Prometheus scrapes the server and answers the README's query.
cat >"$WORK/prometheus.yml" <<'EOF'
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: kubezonnet
    static_configs:
      - targets: ["127.0.0.1:18080"]
EOF
ip netns exec "$A" prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
	--web.listen-address=127.0.0.1:19090 >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
query='topk(20, rate(pod_cross_zone_network_traffic_bytes_total[5m]))'
answer() { in_pod "$A" curl -s --data-urlencode "query=$query" http://127.0.0.1:19090/api/v1/query; }
pods_in_answer() { answer | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(" ".join(sorted(x["metric"]["pod"] for x in r if float(x["value"][1]) > 0)))' 2>/dev/null; }
has_both() { pods_in_answer | grep -q "pod1" && pods_in_answer | grep -q "pod3"; }
# Keep both pods sending so that rate() has increases to see.
in_pod "$P1" python3 "$TRAFFIC" udp-flood 10.77.3.2 8 1 >/dev/null &
flood=$!
in_pod "$P3" python3 "$TRAFFIC" udp-flood 10.77.1.2 8 1 >/dev/null &
flood3=$!
if wait_for 40 has_both; then
	ok "prometheus: $query (pods: $(pods_in_answer))"
else
	not_ok "prometheus: $query" "answer: $(answer | head -c 300)"
	tail -5 "$WORK/prometheus.log" | sed 's/^/#   /'
fi
# The main recording rules of deploy/prometheus-rules.yaml return data on this scrape.
in_pod "$A" python3 "$TOP/test/rules/promql.py" live http://127.0.0.1:19090
wait $flood $flood3
