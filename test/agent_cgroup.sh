#!/usr/bin/env bash
# The socket-level hook (agent --hook cgroup) on nodes whose netfilter never sees a pod's
# packet: two nodes route their pods in BPF (test/hostroute.bpf.c at tc ingress of each pod's
# veth and of the uplink: bpf_fib_lookup, then bpf_redirect_neigh), as Cilium and Calico's
# eBPF data plane do. Each node has a cgroup holding its pods' processes (one cgroup a pod,
# below the node's) and its own agent.
#
#   node-a (10.88.0.1, zone-a): pod1 10.77.1.2 fd77:1::2, pod2 10.77.2.2 fd77:2::2
#   node-b (10.88.0.2, zone-b): pod3 10.77.3.2 fd77:3::2
#
# The oracles are nftables counters in the pods' own namespaces: an output chain (what the
# pod sends, one count a skb, so a GSO packet once) and a netdev ingress chain on eth0 (what
# arrives, one count a packet on the wire: the pods send GSO packets, every node device has
# TSO off, so they are cut on their way out of the node, and GRO is off everywhere, so
# nothing merges them again). Wire bytes are IP bytes, as the agent counts them. The node's
# postrouting and forward chains prove that the node's netfilter sees no pod packet.
#
# In order: node-a's agent at netfilter POSTROUTING counts the pods while the stack routes
# them and nothing once BPF does; then a cgroup agent a node (UDP and TCP, IPv4 and IPv6, TCP
# and UDP GSO, each agent exactly its own pods), with a connect-time Service load balancer
# (test/connect4.bpf.c) on node-a's cgroup; then IP fragments; then one agent switched from
# --hook netfilter to cgroup on the same pins on an empty cgroup (where it says it is blind),
# and restarted with another --cgroup.
. "$(dirname "$0")/lib.sh"

NAMES=("host routing: the nodes' netfilter sees pod packets without it and none with it"
	"netfilter hook under host routing: nothing of the pods is counted"
	"switching --hook: the netfilter links an earlier agent pinned are detached"
	"cgroup hook: UDP IPv4, both directions, exact"
	"cgroup hook: UDP IPv6 exact"
	"cgroup hook: TCP IPv4 with GSO: wire bytes and packets exact"
	"cgroup hook: TCP IPv6 with GSO: wire bytes and packets exact"
	"cgroup hook: UDP GSO (UDP_SEGMENT): wire bytes and packets exact"
	"two nodes: each agent counts exactly its own pods' bytes, nothing of the other node's"
	"socket load balancing: the agent counts the backend pod, never the Service address"
	"socket load balancing: the server attributes the bytes to the backend pod"
	"cgroup hook: IPv4 fragments counted as the wire carries them"
	"cgroup hook: IPv6 fragments counted as the wire carries them"
	"restart with another --cgroup: the new cgroup is counted"
	"cgroup hook on a cgroup without the pods: the agent says it is blind (log, report)"
	"netfilter hook under host routing: the agent says it is blind (log, report, the server's metric)")
scenario_begin "${NAMES[@]}"
test_bpf_build || { not_ok "${NAMES[0]}" "could not build test/hostroute.bpf.c and test/connect4.bpf.c"; exit 1; }
cgroup_setup || { not_ok "${NAMES[0]}" "could not mount a cgroup2 hierarchy"; exit 1; }

A=${NS_PREFIX}node-a B=${NS_PREFIX}node-b
P1=${NS_PREFIX}pod1 P2=${NS_PREFIX}pod2 P3=${NS_PREFIX}pod3
declare -A NODE_NS=([a]=$A [b]=$B)
POD_NS=("" "$P1" "$P2" "$P3")
e2e_nodes_setup
e2e_pods_setup
# Offloads: the pods send GSO packets (TSO and GSO on, UDP GSO too); the node's devices cut
# them (TSO, GSO and UDP segmentation off); nobody merges (GRO off).
for i in 1 2 3; do
	ip netns exec "${POD_NS[$i]}" ethtool -K eth0 tso on gso on gro off tx-udp-segmentation on 2>/dev/null
done
for dev in "$A ${NS_PREFIX}v1" "$A ${NS_PREFIX}v2" "$A ${NS_PREFIX}ab" "$B ${NS_PREFIX}v3" "$B ${NS_PREFIX}ba"; do
	set -- $dev
	ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx-udp-segmentation off 2>/dev/null
done

# The cgroups: one a node, one a pod below its node's.
CG_A=$(cgroup_add node-a) CG_B=$(cgroup_add node-b)
pod_cgroup "$P1" "$(cgroup_add node-a/pod1)"
pod_cgroup "$P2" "$(cgroup_add node-a/pod2)"
pod_cgroup "$P3" "$(cgroup_add node-b/pod3)"

# node_counters NS: counters in the node's postrouting chain (priority 98, beside the agent's
# 99) and forward chain for every packet from or to a pod address; the node's own neighbour
# discovery towards the pods aside. node_pod_packets NS: their sum.
node_counters() {
	ip netns exec "$1" nft delete table inet kzt 2>/dev/null
	ip netns exec "$1" nft -f - <<'NFT'
table inet kzt {
	chain post {
		type filter hook postrouting priority 98; policy accept;
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } return
		ip saddr 10.77.0.0/16 counter comment "pods"
		ip daddr 10.77.0.0/16 counter comment "pods"
		ip6 saddr fd77::/16 counter comment "pods"
		ip6 daddr fd77::/16 counter comment "pods"
	}
	chain routed {
		type filter hook forward priority 0; policy accept;
		counter comment "pods"
	}
}
NFT
}
node_pod_packets() {
	ip netns exec "$1" nft -j list table inet kzt | python3 -c '
import json, sys
print(sum(e["counter"]["packets"] for i in json.load(sys.stdin)["nftables"] if "rule" in i
          and i["rule"].get("comment") == "pods" for e in i["rule"]["expr"] if "counter" in e))'
}

# pod_counters I: in pod I's namespace, an output chain counting what it sends to each other
# pod (and to the Service range), and a netdev ingress chain on eth0 counting what arrives
# from each; each counter's comment is its key: "out|in SRC DST PROTO".
pod_counters() {
	local i=$1 j p out="" in=""
	for j in 1 2 3; do
		[ "$j" = "$i" ] && continue
		for p in udp tcp; do
			out+="ip daddr 10.77.$j.2 meta l4proto $p counter comment \"out 10.77.$i.2 10.77.$j.2 $p\";"
			out+="ip6 daddr fd77:$j::2 meta l4proto $p counter comment \"out fd77:$i::2 fd77:$j::2 $p\";"
			in+="ip saddr 10.77.$j.2 meta l4proto $p counter comment \"in 10.77.$j.2 10.77.$i.2 $p\";"
			in+="ip6 saddr fd77:$j::2 meta l4proto $p counter comment \"in fd77:$j::2 fd77:$i::2 $p\";"
		done
	done
	ip netns exec "${POD_NS[$i]}" nft -f - <<NFT
table inet kzt {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr 10.96.0.0/12 counter comment "out 10.77.$i.2 service any"
		$out
	}
}
table netdev kzt {
	chain in {
		type filter hook ingress device eth0 priority 0; policy accept;
		$in
	}
}
NFT
}
for i in 1 2 3; do pod_counters $i; done
node_counters "$A"
node_counters "$B"

# counters FILE: every pod's counters, one JSON line a pod.
counters() {
	local i
	for i in 1 2 3; do
		ip netns exec "${POD_NS[$i]}" nft -j list ruleset | tr -d '\n'
		echo
	done >"$1"
}

# tally.py: the agents' records (the server's --dump-records lines in OUT after line SKIP,
# of one node) against the pods' counters (NOW less BASE, two files of counters).
#   flow OUT SKIP NODE NOW BASE SRC DST PROTO [PORT]: "agent-bytes agent-packets out-bytes
#       out-packets wire-bytes wire-packets" of that traffic (PORT: the agent's records of it)
#   own OUT SKIP NODE NOW BASE SRC...: "ok SUMMARY" when the node's records come only from
#       the SRC addresses and equal, flow by flow, what the wire carried from them; else "bad ..."
cat >"$WORK/tally.py" <<'PY'
import json, sys

PROTOS = {6: "tcp", 17: "udp"}


def counters(path):
    c = {}
    for line in open(path):
        if not line.strip():
            continue
        for item in json.loads(line)["nftables"]:
            r = item.get("rule")
            if r and "comment" in r:
                n = [e["counter"] for e in r["expr"] if "counter" in e][0]
                c[r["comment"]] = (n["bytes"], n["packets"])
    return c


def delta(now, base, key):
    b, p = now.get(key, (0, 0))
    b0, p0 = base.get(key, (0, 0))
    return b - b0, p - p0


def records(path, skip, node, port=None):
    flows = {}
    for i, line in enumerate(open(path)):
        if i < skip:
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line the server is still writing
        if r.get("type") != "record" or r["node"] != node:
            continue
        if port is not None and r["port"] != port:
            continue
        k = (r["src"], r["dst"], PROTOS.get(r["protocol"], str(r["protocol"])))
        b, p = flows.get(k, (0, 0))
        flows[k] = (b + r["bytes"], p + r["packets"])
    return flows


cmd, out, skip, node, now, base = sys.argv[1:7]
skip = int(skip)
now, base = counters(now), counters(base)
if cmd == "flow":
    src, dst, proto = sys.argv[7:10]
    port = int(sys.argv[10]) if len(sys.argv) > 10 else None
    a = records(out, skip, node, port).get((src, dst, proto), (0, 0))
    o = delta(now, base, f"out {src} {dst} {proto}")
    w = delta(now, base, f"in {src} {dst} {proto}")
    print(*a, *o, *w)
elif cmd == "own":
    srcs = set(sys.argv[7:])
    agent = records(out, skip, node)
    wire = {}
    for key in now:
        kind, src, dst, proto = key.split()
        if kind == "in" and src in srcs:
            d = delta(now, base, key)
            if d != (0, 0):
                wire[(src, dst, proto)] = d
    bad = [f"{k}: agent {agent.get(k)}, wire {wire.get(k)}" for k in sorted(set(agent) | set(wire))
           if agent.get(k) != wire.get(k)]
    foreign = [k for k in agent if k[0] not in srcs]
    if bad or foreign or not wire:
        print("bad", "; ".join(bad), "; records of other sources:", foreign)
    else:
        print(f"ok {len(wire)} flows, {sum(b for b, _ in wire.values())} bytes "
              f"in {sum(p for _, p in wire.values())} packets")
PY
tally() { python3 "$WORK/tally.py" "$@"; }

# The server, in node-a, with the cluster's topology: it attributes (metrics) and prints every
# record it gets (--dump-records, which turns its flow logs off) for the checks against the
# counters.
echo "$E2E_TOPOLOGY" >"$WORK/topology.json"
ip netns exec "$A" "$SERVER" --topology "$WORK/topology.json" --agent-listen :18081 \
	--http-listen 127.0.0.1:18080 --dump-records >"$WORK/out" 2>"$WORK/server.log" &
PIDS+=($!)
wait_for 5 grep -q listening "$WORK/server.log" || { sed 's/^/#   /' "$WORK/server.log"; exit 1; }

# agent_on N PINS LOG ARGS...: node-N's agent (N: a or b), pins at $BPFFS/PINS, reporting to
# the server every second; returns once it attached. Sets AGENT_PID_a or _b.
agent_on() {
	local n=$1 pins=$2 log=$3 lines
	shift 3
	lines=$(cat "$log" 2>/dev/null | wc -l)
	ip netns exec "${NODE_NS[$n]}" "$AGENT" --server 10.88.0.1:18081 --node node-$n \
		--interval 1s --pin-path "$BPFFS/$pins" "$@" >>"$log" 2>&1 &
	PIDS+=($!)
	printf -v "AGENT_PID_$n" %s $!
	wait_for 10 eval "tail -n +$((lines + 1)) '$log' | grep -qE 'attached to|counting continues'" || {
		not_ok "agent of node-$n attached within 10 s" "kubezonnet-agent $*"
		sed 's/^/#   /' "$log"
		exit 1
	}
}
# agent_stop N: SIGTERM, and the last report acknowledged.
agent_stop() {
	local pid=AGENT_PID_$1
	kill -TERM "${!pid}"
	wait "${!pid}"
}

# 1 and 2. Routing by the stack, then in BPF, under node-a's agent at netfilter POSTROUTING
# (pinned apart: its links go on counting node-a's own traffic after it stopped).
agent_on a netfilter "$WORK/agent-a"
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.2.2 5001 100 300
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.3.2 5001 100 300
counters "$WORK/c0"
seen() { [ "$(tally flow "$WORK/out" 0 node-a "$WORK/c0" /dev/null 10.77.1.2 10.77.2.2 udp 5001 | cut -d' ' -f2)" = 100 ]; }
wait_for 10 seen
control=$(tally flow "$WORK/out" 0 node-a "$WORK/c0" /dev/null 10.77.1.2 10.77.2.2 udp 5001)
before_a=$(node_pod_packets "$A") before_b=$(node_pod_packets "$B")

hostroute_on "$A" ${NS_PREFIX}v1 ${NS_PREFIX}v2 ${NS_PREFIX}ab || { not_ok "${NAMES[0]}" "tc could not attach $HOSTROUTE_OBJ"; exit 1; }
hostroute_on "$B" ${NS_PREFIX}v3 ${NS_PREFIX}ba || { not_ok "${NAMES[0]}" "tc could not attach $HOSTROUTE_OBJ"; exit 1; }
node_counters "$A"
node_counters "$B"
counters "$WORK/c1"
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.2.2 5002 100 300
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.3.2 5002 100 300
sleep 3
counters "$WORK/c2"
read -r nb np ob op wb wp < <(tally flow "$WORK/out" 0 node-a "$WORK/c2" "$WORK/c1" 10.77.1.2 10.77.2.2 udp 5002)
if [ "$(cut -d' ' -f1-2 <<<"$control")" = "32800 100" ] && [ "$np" = 0 ] && [ "$op" = 100 ] && [ "$wp" = 100 ]; then
	ok "${NAMES[1]} (routed by the stack: $control; in BPF: $nb $np, while the pods' chains counted $ob $op sent, $wb $wp received)"
else
	not_ok "${NAMES[1]}" "routed by the stack: agent, out, wire '$control' (want 32800 100 first); in BPF: agent '$nb $np', out '$ob $op', wire '$wb $wp' (want 0 packets, 100, 100)"
fi
netfilter_links=$(for f in link_ipv4 link_ipv6; do
	bpftool -j link show pinned "$BPFFS/netfilter/$f" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
done | tr '\n' ' ')
agent_stop a
sleep 1 # the server acknowledges a report before it prints its records

# 2b. No silent zero: the netfilter agent again, judging every 2 s, while pod1 sends (send_until)
# to pod3 through node-a's uplink in BPF: the hook sees almost none of what the node's devices
# send, and the agent says so in its log and in its reports (the server's
# kubezonnet_agent_hook_blind). The pods' traffic in the scenarios below is not counted here.
agent_on a netfilter "$WORK/agent-blind" --blind-after 2s
blind_metric() {
	ip netns exec "$A" curl -s http://127.0.0.1:18080/metrics |
		awk '$1 == "kubezonnet_agent_hook_blind{node=\"node-a\",hook=\"netfilter\"}" { print $2 }'
}
blind() { grep -q "the netfilter hook counted .* run the agent with --hook cgroup" "$WORK/agent-blind" && [ "$(blind_metric)" = 1 ]; }
# send_until CHECK PORT: about 1 MB a round from pod1 to pod3 until CHECK holds (30 rounds at
# most): however slowly this machine sends, some 2 s window of the agent's sees over 1 MiB.
send_until() {
	for _ in $(seq 30); do
		in_pod "$P1" python3 "$TRAFFIC" udp 10.77.3.2 "$2" 800 1200
		"$1" && return 0
		sleep 0.3
	done
	return 1
}
send_until blind 5003
if wait_for 10 blind; then
	ok "${NAMES[$((${#NAMES[@]} - 1))]} ($(grep -o 'the netfilter hook counted [0-9]* bytes in [0-9]* s while the node.s devices sent [0-9]*' "$WORK/agent-blind" | head -1))"
else
	not_ok "${NAMES[$((${#NAMES[@]} - 1))]}" "metric '$(blind_metric)'; $(tail -3 "$WORK/agent-blind" | tr '\n' ' ')"
fi
agent_stop a
sleep 1

# 3. The cgroup hook, one agent a node; what the server prints from here on is theirs.
SKIP=$(wc -l <"$WORK/out")
counters "$WORK/base"
unknown_metric() {
	ip netns exec "$A" curl -s http://127.0.0.1:18080/metrics |
		awk '/^kubezonnet_unknown_bytes_total/ { s += $2 } END { print s + 0 }'
}
unknown_before=$(unknown_metric)
agent_on a node-a "$WORK/agent-a" --hook cgroup --cgroup "$CG_A"
agent_on b node-b "$WORK/agent-b" --hook cgroup --cgroup "$CG_B"

# The Service load balancer at connect() and sendmsg() of node-a's sockets.
# (No pinmaps: libbpf turns the dots of a map's pin path into underscores, and mktemp's
# directory names have one.)
bpftool prog loadall "$CONNECT4_OBJ" "$BPFFS/lb" &&
	bpftool cgroup attach "$CG_A" connect4 pinned "$BPFFS/lb/service_connect4" &&
	bpftool cgroup attach "$CG_A" sendmsg4 pinned "$BPFFS/lb/service_sendmsg4" ||
	not_ok "${NAMES[9]}" "could not load and attach $CONNECT4_OBJ"

# tcp_transfer SRC-POD DST PORT BYTES [SINK-POD SINK-PORT]: a TCP transfer to a sink.
tcp_transfer() {
	local sink_ns=${POD_NS[${5:-3}]} sink_port=${6:-$3} receiver
	in_pod "$sink_ns" python3 "$TRAFFIC" tcp-sink "$sink_port" >"$WORK/tcp-$sink_port" &
	receiver=$!
	wait_for 5 grep -q listening "$WORK/tcp-$sink_port"
	in_pod "${POD_NS[$1]}" python3 "$TRAFFIC" tcp "$2" "$3" "$4" >/dev/null || kill "$receiver"
	wait $receiver
}
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.2.2 5353 200 300
in_pod "$P1" python3 "$TRAFFIC" udp fd77:2::2 5353 200 300
in_pod "$P2" python3 "$TRAFFIC" udp 10.77.1.2 9000 100 1000
tcp_transfer 1 10.77.3.2 8443 20000000
tcp_transfer 1 fd77:3::2 8444 20000000
tcp_transfer 2 10.96.0.10 80 5000000 3 8080
in_pod "$P3" python3 "$TRAFFIC" udp-gso 10.77.1.2 6000 50 14000 1400

counters "$WORK/now"
caught_up() {
	[ "$(tally own "$WORK/out" "$SKIP" node-a "$WORK/now" "$WORK/base" 10.77.1.2 fd77:1::2 10.77.2.2 fd77:2::2 | cut -c1-2)" = ok ] &&
		[ "$(tally own "$WORK/out" "$SKIP" node-b "$WORK/now" "$WORK/base" 10.77.3.2 fd77:3::2 | cut -c1-2)" = ok ]
}
wait_for 15 caught_up
sleep 2 # nothing may come after

# drops: the devices that dropped packets (a drop between the sender and the receiver's
# chain would make the wire count short of what was sent).
drops() {
	local ns
	for ns in "$A" "$B" "$P1" "$P2" "$P3"; do
		ip -n "$ns" -j -s link | python3 -c '
import json, sys
for l in json.load(sys.stdin):
    s = l.get("stats64", {})
    d = (s.get("rx", {}).get("dropped", 0), s.get("tx", {}).get("dropped", 0))
    if d != (0, 0): print("#   %s %s: dropped rx %d tx %d" % (sys.argv[1], l["ifname"], *d))' "$ns"
	done
}

# exact NAME SRC DST PROTO NODE [GSO]: the agent's count equals what the wire carried (the
# receiver's ingress chain); without GSO that is also what the sender's output chain counted,
# with GSO the sender's chain counted fewer, larger skbs (so the pods did send GSO packets).
exact() {
	local name=$1 gso=${6:-}
	read -r ab ap ob op wb wp < <(tally flow "$WORK/out" "$SKIP" "$5" "$WORK/now" "$WORK/base" "$2" "$3" "$4")
	local sender_ok=0
	if [ -z "$gso" ]; then
		[ "$ob $op" = "$wb $wp" ] && sender_ok=1
	else
		[ "$op" -lt "$wp" ] && sender_ok=1
	fi
	if [ "$ap" -gt 0 ] && [ "$ab $ap" = "$wb $wp" ] && [ $sender_ok = 1 ]; then
		ok "$name ($2 > $3 $4: $ab bytes $ap packets; the sender's chain $ob $op)"
	else
		not_ok "$name ($2 > $3 $4)" "agent '$ab $ap', sender's output chain '$ob $op', wire '$wb $wp' (bytes packets)"
		drops
	fi
}

exact "${NAMES[3]}" 10.77.1.2 10.77.2.2 udp node-a
exact "${NAMES[3]}" 10.77.2.2 10.77.1.2 udp node-a
exact "${NAMES[4]}" fd77:1::2 fd77:2::2 udp node-a
exact "${NAMES[5]}" 10.77.1.2 10.77.3.2 tcp node-a gso
exact "${NAMES[5]}: the receiver's ACKs" 10.77.3.2 10.77.1.2 tcp node-b
exact "${NAMES[6]}" fd77:1::2 fd77:3::2 tcp node-a gso
exact "${NAMES[6]}: the receiver's ACKs" fd77:3::2 fd77:1::2 tcp node-b
exact "${NAMES[7]}" 10.77.3.2 10.77.1.2 udp node-b gso

# 2c. Every record of each agent is its own pods', and all their traffic is there.
for n in a b; do
	if [ $n = a ]; then srcs="10.77.1.2 fd77:1::2 10.77.2.2 fd77:2::2"; else srcs="10.77.3.2 fd77:3::2"; fi
	verdict=$(tally own "$WORK/out" "$SKIP" node-$n "$WORK/now" "$WORK/base" $srcs)
	if [ "${verdict%% *}" = ok ]; then
		ok "${NAMES[8]} (node-$n: ${verdict#ok })"
	else
		not_ok "${NAMES[8]} (node-$n)" "${verdict#bad }"
	fi
done

# 1. The nodes' netfilter saw none of it.
after_a=$(node_pod_packets "$A") after_b=$(node_pod_packets "$B")
read -r _ _ _ _ _ pod_packets < <(tally flow "$WORK/out" "$SKIP" node-a "$WORK/now" "$WORK/base" 10.77.1.2 10.77.3.2 tcp)
if [ "$before_a" -gt 0 ] && [ "$before_b" -gt 0 ] && [ "$after_a" = 0 ] && [ "$after_b" = 0 ] && [ "$pod_packets" -gt 0 ]; then
	ok "${NAMES[0]} (pod packets at node-a and node-b's postrouting and forward chains: $before_a and $before_b routed by the stack, 0 and 0 in BPF)"
else
	not_ok "${NAMES[0]}" "pod packets the nodes' netfilter counted: $before_a and $before_b routed by the stack (want more than 0), $after_a and $after_b in BPF (want 0)"
fi

# 2d. The Service: pod2 connected to 10.96.0.10:80, a connection to pod3:8080.
read -r ab ap ob op wb wp < <(tally flow "$WORK/out" "$SKIP" node-a "$WORK/now" "$WORK/base" 10.77.2.2 10.77.3.2 tcp 8080)
read -r _ _ sb sp _ _ < <(tally flow "$WORK/out" "$SKIP" node-a "$WORK/now" "$WORK/base" 10.77.2.2 service any)
translated=$(bpftool -j prog show pinned "$BPFFS/lb/service_connect4" 2>/dev/null |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["map_ids"][0])' 2>/dev/null |
	xargs -r -I{} bpftool -j map dump id {} |
	python3 -c 'import json, sys; print(int.from_bytes(bytes(int(b, 16) for b in json.load(sys.stdin)[0]["value"]), "little"))' 2>/dev/null)
vip_records=$(grep -c '"10\.96\.0\.10"' "$WORK/out")
received=$(tail -1 "$WORK/tcp-8080")
if [ "${translated:-0}" -ge 1 ] && [ "$vip_records" = 0 ] && [ "$sp" = 0 ] && [ "$ap" -gt 0 ] &&
	[ "$ab $ap" = "$wb $wp" ] && [ "$received" = 5000000 ]; then
	ok "${NAMES[9]} (10.96.0.10:80 became 10.77.3.2:8080 at connect ($translated translated); records 10.77.2.2 > 10.77.3.2 port 8080: $ab bytes $ap packets, as the wire)"
else
	not_ok "${NAMES[9]}" "translated '$translated', records naming 10.96.0.10: $vip_records, packets to 10.96.0.0/12 in pod2's chain: '$sp', port 8080 records '$ab $ap', wire '$wb $wp', sink got '$received' of 5000000"
fi
# pod2's only cross-zone traffic is that connection: its series is the backend's bytes, and
# no byte went to an unknown destination since the cgroup hook took over (as an untranslated
# Service address would).
metrics=$(ip netns exec "$A" curl -s http://127.0.0.1:18080/metrics)
pod2_bytes=$(awk '/^pod_cross_zone_network_traffic_bytes_total\{.*pod="pod2"/ { print $2 }' <<<"$metrics")
unknown=$(($(unknown_metric) - unknown_before))
if [ -n "$pod2_bytes" ] && [ "$pod2_bytes" = "$ab" ] && [ "$unknown" = 0 ]; then
	ok "${NAMES[10]} (pod_cross_zone_network_traffic_bytes_total{pod=\"pod2\"} $pod2_bytes: the backend's bytes, in zone-b; unknown bytes 0)"
else
	not_ok "${NAMES[10]}" "pod2's cross-zone bytes '$pod2_bytes' (want $ab), unknown bytes since the cgroup hook took over '$unknown' (want 0)"
	grep -E '^(pod_cross_zone_network_traffic_bytes_total|kubezonnet_unknown_bytes_total)' <<<"$metrics" | sed 's/^/#   /'
fi

# Fragments: 4000-byte datagrams over a 1500-byte MTU leave pod3 as three packets each.
cp "$WORK/now" "$WORK/base"
SKIP=$(wc -l <"$WORK/out")
in_pod "$P3" python3 "$TRAFFIC" udp 10.77.2.2 7000 50 4000
in_pod "$P3" python3 "$TRAFFIC" udp fd77:2::2 7000 50 4000
counters "$WORK/now"
frag_seen() { [ "$(tally flow "$WORK/out" "$SKIP" node-b "$WORK/now" "$WORK/base" fd77:3::2 fd77:2::2 udp | cut -d' ' -f2)" -ge 50 ]; }
wait_for 10 frag_seen
sleep 2
for v in 4 6; do
	if [ $v = 4 ]; then s=10.77.3.2 d=10.77.2.2 name=${NAMES[11]}; else s=fd77:3::2 d=fd77:2::2 name=${NAMES[12]}; fi
	read -r ab ap ob op wb wp < <(tally flow "$WORK/out" "$SKIP" node-b "$WORK/now" "$WORK/base" $s $d udp)
	if [ "$ap" -gt 0 ] && [ "$ab $ap" = "$wb $wp" ]; then
		ok "$name ($ab bytes $ap packets)"
	else
		not_ok "$name" "agent '$ab $ap', wire '$wb $wp', the sender's output chain '$ob $op' (bytes packets): the hook runs before the kernel fragments"
	fi
done

# A cgroup agent where the netfilter agent was pinned (a node switched with --hook), with a
# sink of its own, on an empty cgroup; then restarted there with pod1's cgroup as --cgroup.
agent_stop a
agent_stop b
CG_EMPTY=$(cgroup_add empty)
ip netns exec "$A" "$SERVER" --agent-listen 127.0.0.1:18084 --dump-records >"$WORK/probe" 2>"$WORK/probe.log" &
PIDS+=($!)
wait_for 5 grep -q listening "$WORK/probe.log"
probe() {
	local lines
	lines=$(cat "$WORK/probe-agent" 2>/dev/null | wc -l)
	ip netns exec "$A" "$AGENT" --server 127.0.0.1:18084 --node node-a --interval 1s \
		--pin-path "$BPFFS/netfilter" --hook cgroup --cgroup "$@" >>"$WORK/probe-agent" 2>&1 &
	PIDS+=($!)
	PROBE_PID=$!
	wait_for 10 eval "tail -n +$((lines + 1)) '$WORK/probe-agent' | grep -qE 'attached to|counting continues'"
}
probe "$CG_EMPTY" --blind-after 2s
live_netfilter_links() { bpftool -j link show | python3 -c "
import json, sys
ids = set(int(i) for i in '$netfilter_links'.split())
print(' '.join(str(l['id']) for l in json.load(sys.stdin) if l['id'] in ids))"; }
no_netfilter_links() { [ -z "$(live_netfilter_links)" ]; }
wait_for 5 no_netfilter_links
pins=$(ls "$BPFFS/netfilter" | grep '^link_' | tr '\n' ' ')
if [ -n "$netfilter_links" ] && no_netfilter_links && [ "$pins" = "link_cgroup " ] &&
	grep -q "detached the netfilter hook" "$WORK/probe-agent"; then
	ok "${NAMES[2]} (links $netfilter_links gone; pinned now: $pins)"
else
	not_ok "${NAMES[2]}" "netfilter links '$netfilter_links', still attached '$(live_netfilter_links)', link pins '$pins'"
	sed 's/^/#   /' "$WORK/probe-agent"
fi
# No silent zero in cgroup mode: the pods send through node-a's devices what the empty
# cgroup's hook never sees; the agent logs it and its reports say blind.
probe_blind() {
	grep -q "the cgroup hook counted .* --cgroup likely does not hold the pods' cgroups" "$WORK/probe-agent" &&
		grep -q '"hook":"cgroup",.*"blind":true' "$WORK/probe"
}
send_until probe_blind 5004
if wait_for 10 probe_blind; then
	ok "${NAMES[14]} ($(grep -o 'the cgroup hook counted [0-9]* bytes in [0-9]* s while the node.s devices sent [0-9]*' "$WORK/probe-agent" | head -1))"
else
	not_ok "${NAMES[14]}" "$(grep -c '"blind":true' "$WORK/probe") blind reports; $(tail -3 "$WORK/probe-agent" | tr '\n' ' ')"
fi
kill -TERM "$PROBE_PID"
wait "$PROBE_PID"
probe "${POD_CGROUP[$P1]}"
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.2.2 5999 100 200
probe_seen() { [ "$(sink_count "$WORK/probe" 10.77.1.2 10.77.2.2 udp 5999)" = "22800 100" ]; }
if wait_for 5 probe_seen; then
	ok "${NAMES[13]} (22800 bytes 100 packets)"
else
	not_ok "${NAMES[13]}" "the agent reported '$(sink_count "$WORK/probe" 10.77.1.2 10.77.2.2 udp 5999)' (want 22800 100) and logged: $(tail -n +3 "$WORK/probe-agent" | grep -oE '(counting continues|attached to)[^;]*' | tail -1)"
fi
kill -TERM "$PROBE_PID"
wait "$PROBE_PID"
