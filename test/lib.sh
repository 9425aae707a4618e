# test/lib.sh: helpers for shell tests (source it). Results are TAP-style lines for test/run.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AGENT=$TOP/kubezonnet-agent
SERVER=${KZN_SERVER:-$TOP/kubezonnet-server}
# Stand-in agents (wire_agent.py, hostile_peer.py, agentsim) connect from 127.0.0.1, not from
# the addresses of the nodes they name: the servers they talk to take any address
# (test/server_trust.sh tests the check itself).
ANY_ADDRESS=--no-agent-address-check

ok() { echo "ok - $*"; }
not_ok() {
	local name=$1
	shift
	echo "not ok - $name"
	[ $# -gt 0 ] && echo "#   $*"
	return 0
}
skip() { echo "ok - $1 # SKIP $2"; }

# check NAME COMMAND...: ok if the command succeeds, not ok (with its output) otherwise.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		not_ok "$name" "command failed: $*"
		printf '%s\n' "$out" | sed 's/^/#   /' | head -20
	fi
}

# check_eq NAME GOT WANT
check_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi
}

# skip_unless_root NAME...: prints a skip line for each NAME and exits 0 when not root.
skip_unless_root() {
	if [ "$(id -u)" != 0 ]; then
		for n in "$@"; do skip "$n" "needs root"; done
		exit 0
	fi
}

# The real API responses the Kubernetes tests serve (see ../shared/fixtures/k8s/SOURCES.md).
FIX=$TOP/../shared/fixtures/k8s
# skip_unless_fixtures NAME...: skips every named test and exits when they are missing.
skip_unless_fixtures() {
	[ -d "$FIX" ] && return 0
	for n in "$@"; do skip "$n" "fixtures not found at $FIX"; done
	exit 0
}

# demo_begin: for a test of make demo: WORK (a scratch directory), the current directory TOP,
# and at exit the demo stopped and WORK removed.
demo_begin() {
	WORK=$(mktemp -d)
	trap 'demo/demo.sh stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
	cd "$TOP" || exit 1
}

# demo_run REPORT OUT VAR=VALUE...: make demo with those variables, its report (DEMO_REPORT) to
# REPORT and what it prints to OUT; returns its exit status.
demo_run() {
	local report=$1 out=$2
	shift 2
	make -s demo "$@" DEMO_REPORT="$report" >"$out" 2>&1
}

# demo_verdict FILE NAME TEST: reports the verdict NAME of test/demo_verdicts.py's output.
demo_verdict() {
	local line v msg
	line=$(grep "^$2 " "$1")
	read -r _ v msg <<<"$line"
	if [ "$v" = ok ]; then ok "$3 ($msg)"; else not_ok "$3" "${msg:-no report}"; fi
}

# wait_for SECONDS COMMAND...: polls the command every 0.1 s until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.1
	done
}

# A unique prefix for namespaces and links, removed by netns_cleanup on exit.
NS_PREFIX="kzt$$"
netns_cleanup() {
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns delete "$ns" 2>/dev/null
	done
}

# ---- network-namespace scenarios (root only) ----

# bpffs_setup mounts a private bpf filesystem for pins (ip netns exec remounts /sys, so
# /sys/fs/bpf cannot be used) and sets BPFFS.
BPFFS=
bpffs_setup() {
	BPFFS=$(mktemp -d /tmp/kzt-bpffs.XXXXXX)
	mount -t bpf bpf "$BPFFS"
}

# ---- the socket-level hook (agent --hook cgroup) ----
# KZN_HOOK=cgroup (test/*_cgroup.sh set it, then run a test written for the default hook):
# scenario_begin mounts a cgroup2 hierarchy of the test's own; ipv4_topology_setup routes the
# pods in BPF (hostroute_on: the node's netfilter never sees their packets), gives the node a
# cgroup (NODE_CGROUP) and each pod one below it, where in_pod runs the pod's processes;
# agent_start counts at NODE_CGROUP; nft_setup's counters move into the pods' output chains.
KZN_HOOK=${KZN_HOOK:-netfilter}
CGROUP_MNT= CGROUP_TOP= NODE_CGROUP=
declare -A POD_CGROUP=()
# The agent's links, as pinned under --pin-path.
if [ "$KZN_HOOK" = cgroup ]; then AGENT_LINK_PINS="link_cgroup"; else AGENT_LINK_PINS="link_ipv4 link_ipv6"; fi
HOSTROUTE_OBJ=$TOP/build/test/hostroute.bpf.o
CONNECT4_OBJ=$TOP/build/test/connect4.bpf.o

# test_bpf_build: builds the BPF programs the tests load besides the agent's (Makefile: TEST_BPF).
test_bpf_build() {
	make --no-print-directory -s -C "$TOP" build/test/hostroute.bpf.o build/test/connect4.bpf.o >&2
}

# cgroup_setup: a cgroup2 mount (ip netns exec hides /sys/fs/cgroup; one under /tmp stays
# visible in every namespace) at CGROUP_MNT, and this test's directory CGROUP_TOP in it. The
# hierarchy is the host's (there is one cgroup v2 hierarchy): only CGROUP_TOP is ours.
cgroup_setup() {
	CGROUP_MNT=$(mktemp -d /tmp/kzt-cgroup.XXXXXX)
	mount -t cgroup2 none "$CGROUP_MNT" || { rmdir "$CGROUP_MNT"; CGROUP_MNT=; return 1; }
	CGROUP_TOP=$CGROUP_MNT/$NS_PREFIX
	mkdir "$CGROUP_TOP"
}

# cgroup_add PATH: creates the cgroup CGROUP_TOP/PATH and prints its directory.
cgroup_add() {
	mkdir -p "$CGROUP_TOP/$1" && echo "$CGROUP_TOP/$1"
}

# pod_cgroup NS DIR: in_pod runs NS's commands in the cgroup DIR.
pod_cgroup() { POD_CGROUP[$1]=$2; }

# cgroup_cleanup: kills what is left in the test's cgroups, removes them and the mount.
cgroup_cleanup() {
	[ -n "$CGROUP_MNT" ] || return 0
	if [ -d "$CGROUP_TOP" ]; then
		echo 1 >"$CGROUP_TOP/cgroup.kill" 2>/dev/null
		wait_for 5 grep -q "populated 0" "$CGROUP_TOP/cgroup.events"
		find "$CGROUP_TOP" -depth -type d -exec rmdir {} \; 2>/dev/null
	fi
	# Lazily if busy: never leave the hierarchy mounted under a directory someone may remove.
	umount "$CGROUP_MNT" 2>/dev/null || umount -l "$CGROUP_MNT"
	mountpoint -q "$CGROUP_MNT" || rmdir "$CGROUP_MNT"
	CGROUP_MNT=
}

# hostroute_on NS DEV...: host routing in BPF (test/hostroute.bpf.c) at tc ingress of each
# DEV of the node NS: what the node would forward goes straight out of the route's device,
# past the node's netfilter.
hostroute_on() {
	local ns=$1 dev
	shift
	for dev in "$@"; do
		ip netns exec "$ns" tc qdisc add dev "$dev" clsact &&
			ip netns exec "$ns" tc filter add dev "$dev" ingress bpf direct-action \
				obj "$HOSTROUTE_OBJ" sec tc || return 1
	done
}

# scenario_begin NAME...: starts a root scenario: without root the named tests skip; on exit
# everything is cleaned up (scenario_cleanup). Sets WORK (a scratch directory), TRAFFIC
# (test/traffic.py) and BPFFS (a bpf filesystem of the test's own).
scenario_begin() {
	skip_unless_root "$@"
	trap scenario_cleanup EXIT
	WORK=$(mktemp -d)
	TRAFFIC=$TOP/test/traffic.py
	bpffs_setup
	if [ "$KZN_HOOK" = cgroup ]; then
		test_bpf_build || { not_ok "$1" "could not build the test's BPF programs"; exit 1; }
		cgroup_setup || { not_ok "$1" "could not mount a cgroup2 hierarchy"; exit 1; }
	fi
}

PIDS=()
# bg CMD...: runs a command in the background and remembers it for cleanup.
bg() {
	"$@" &
	PIDS+=($!)
}

scenario_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	netns_cleanup
	cgroup_cleanup
	if [ -n "$BPFFS" ]; then
		umount "$BPFFS" 2>/dev/null
		rmdir "$BPFFS" 2>/dev/null
	fi
	[ -n "${WORK:-}" ] && rm -rf "$WORK"
}

# topology_setup: a "node" namespace routing between two "pod" namespaces, IPv4 and IPv6:
#   ${NS_PREFIX}pod1 10.77.1.2 fd77:1::2 --- ${NS_PREFIX}node --- ${NS_PREFIX}pod2 10.77.2.2 fd77:2::2
# Sets NODE, POD1, POD2 (namespace names).
topology_setup() {
	NODE=${NS_PREFIX}node POD1=${NS_PREFIX}pod1 POD2=${NS_PREFIX}pod2
	ip netns add "$NODE"
	ip -n "$NODE" link set lo up
	ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	local i
	for i in 1 2; do
		local pod=${NS_PREFIX}pod$i veth=${NS_PREFIX}v$i
		ip netns add "$pod"
		ip link add "$veth" netns "$NODE" type veth peer name eth0 netns "$pod"
		ip -n "$NODE" addr add 10.77.$i.1/24 dev "$veth"
		ip -n "$NODE" addr add fd77:$i::1/64 dev "$veth" nodad
		ip -n "$NODE" link set "$veth" up
		ip -n "$pod" addr add 10.77.$i.2/24 dev eth0
		ip -n "$pod" addr add fd77:$i::2/64 dev eth0 nodad
		ip -n "$pod" link set lo up
		ip -n "$pod" link set eth0 up
		ip -n "$pod" route add default via 10.77.$i.1
		ip -n "$pod" -6 route add default via fd77:$i::1
	done
}

# ipv4_topology_setup: topology_setup with offloads off, IPv6 off and the nftables counters,
# for the loss tests: the loss counters cover every family, and IPv6 neighbour discovery on
# the veths would add packets at moments no test controls. With KZN_HOOK=cgroup also the
# cgroups (NODE_CGROUP, one a pod below it) and host routing in BPF.
ipv4_topology_setup() {
	local ns
	topology_setup
	offload off
	for ns in "$NODE" "$POD1" "$POD2"; do
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	done
	cgroup_pods_setup
	nft_setup
}

# cgroup_pods_setup: with KZN_HOOK=cgroup, the topology's cgroups (NODE_CGROUP, one a pod
# below it) and host routing in BPF; nothing otherwise.
cgroup_pods_setup() {
	[ "$KZN_HOOK" = cgroup ] || return 0
	NODE_CGROUP=$(cgroup_add node)
	pod_cgroup "$POD1" "$(cgroup_add node/pod1)"
	pod_cgroup "$POD2" "$(cgroup_add node/pod2)"
	hostroute_on "$NODE" ${NS_PREFIX}v1 ${NS_PREFIX}v2 ||
		{ not_ok "host routing in BPF" "tc could not attach $HOSTROUTE_OBJ"; exit 1; }
}

# in_pod NS CMD...: run a command in a namespace, and in the pod's cgroup if it has one
# (pod_cgroup).
in_pod() {
	local ns=$1
	shift
	if [ -n "${POD_CGROUP[$ns]:-}" ]; then
		ip netns exec "$ns" sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "${POD_CGROUP[$ns]}" "$@"
	else
		ip netns exec "$ns" "$@"
	fi
}

# offload OFF|ON: TSO, GSO and GRO on every veth of the topology.
offload() {
	local state=${1,,} i
	for i in 1 2; do
		ip netns exec "$NODE" ethtool -K ${NS_PREFIX}v$i tso "$state" gso "$state" gro "$state" 2>/dev/null
		ip netns exec ${NS_PREFIX}pod$i ethtool -K eth0 tso "$state" gso "$state" gro "$state" 2>/dev/null
	done
	return 0
}

SINK_PORT=18081
# sink_start OUT: the server as a wire.h sink in the node namespace, records to OUT.
sink_start() {
	ip netns exec "$NODE" "$SERVER" --agent-listen 127.0.0.1:$SINK_PORT --dump-records \
		>>"$1" 2>>"$1.log" &
	SINK_PID=$!
	PIDS+=($SINK_PID)
	wait_for 5 grep -q listening "$1.log"
}

# agent_start LOG ARGS...: the agent in the node namespace, reporting to the sink; returns once
# this agent (not an earlier one logging to LOG) has attached. With KZN_HOOK=cgroup it counts
# at the node's cgroup (--hook cgroup --cgroup NODE_CGROUP); KZN_AGENT_ARGS: more flags.
agent_start() {
	local log=$1 lines
	shift
	lines=$(cat "$log" 2>/dev/null | wc -l)
	local hook=() more=()
	[ "$KZN_HOOK" = cgroup ] && hook=(--hook cgroup --cgroup "$NODE_CGROUP")
	read -ra more <<<"${KZN_AGENT_ARGS:-}"
	ip netns exec "$NODE" "$AGENT" --server 127.0.0.1:$SINK_PORT --node node-1 \
		--pin-path "$BPFFS/kubezonnet" "${hook[@]}" "${more[@]}" "$@" >>"$log" 2>&1 &
	AGENT_PID=$!
	PIDS+=($AGENT_PID)
	wait_for 10 eval "tail -n +$((lines + 1)) '$log' | grep -qE 'attached to|counting continues'"
}

# nft_setup: counters in the node's postrouting chain (next to the agent's 99) for each
# pod-to-pod direction and protocol; nft_count SRC DST PROTO prints "bytes packets". Priority 98:
# the kernel refuses a BPF hook at the same priority as another hook, and nothing between 98
# and 99 changes a packet. With KZN_HOOK=cgroup the node's netfilter sees no pod packet (host
# routing in BPF), so the same counters are in a netdev ingress chain on each pod's eth0
# instead (NFT_FAMILY netdev): what the other pod's packets are when they arrive, one count a
# wire packet with GRO off (a pod's own output or egress chain would see a TCP or fragmented
# datagram's skb before the stack cuts it). There the all-IPv4 counter takes TCP and UDP only,
# as the cgroup hook does: the ICMP a pod's kernel sends (echo replies, port unreachable)
# comes from the kernel's own sockets, which are in no pod's cgroup; and nft_echo SRC DST
# prints the echo requests of the ICMP.
if [ "$KZN_HOOK" = cgroup ]; then NFT_FAMILY=netdev; else NFT_FAMILY=inet; fi
nft_setup() {
	local ns
	if [ "$KZN_HOOK" = cgroup ]; then
		for ns in "$POD1" "$POD2"; do
			nft_counters "$ns" "hook ingress device eth0 priority 0" "meta l4proto { tcp, udp }" \
				"$(for p in "10.77.1.2 10.77.2.2" "10.77.2.2 10.77.1.2"; do
					set -- $p
					echo "ip saddr $1 ip daddr $2 icmp type echo-request counter comment \"echo $1 $2\""
				done
				for p in "fd77:1::2 fd77:2::2" "fd77:2::2 fd77:1::2"; do
					set -- $p
					echo "ip6 saddr $1 ip6 daddr $2 icmpv6 type echo-request counter comment \"echo $1 $2\""
				done)"
		done
	else
		nft_counters "$NODE" "hook postrouting priority 98" 'oifname != "lo"' ""
	fi
}

# nft_reset: the counters afresh (nft 1.0.6 cannot reset anonymous rule counters).
nft_reset() {
	local ns
	for ns in $(nft_namespaces); do ip netns exec "$ns" nft delete table $NFT_FAMILY kzt; done
	nft_setup
}

# nft_namespaces: the namespaces holding nft_setup's counters.
nft_namespaces() {
	if [ "$KZN_HOOK" = cgroup ]; then echo "$POD1" "$POD2"; else echo "$NODE"; fi
}

# nft_counters NS HOOK MATCH MORE: the counters of nft_setup in chain post of table NFT_FAMILY
# kzt of NS, at HOOK; MATCH narrows the all-IPv4 counter; MORE: rules to add.
nft_counters() {
	ip netns exec "$1" nft -f - <<NFT
table $NFT_FAMILY kzt {
	chain post {
		type filter $2; policy accept;
		ip saddr 10.77.1.2 ip daddr 10.77.2.2 meta l4proto udp counter
		ip saddr 10.77.1.2 ip daddr 10.77.2.2 meta l4proto tcp counter
		ip saddr 10.77.1.2 ip daddr 10.77.2.2 meta l4proto icmp counter
		ip saddr 10.77.2.2 ip daddr 10.77.1.2 meta l4proto udp counter
		ip saddr 10.77.2.2 ip daddr 10.77.1.2 meta l4proto tcp counter
		ip saddr 10.77.2.2 ip daddr 10.77.1.2 meta l4proto icmp counter
		ip6 saddr fd77:1::2 ip6 daddr fd77:2::2 meta l4proto udp counter
		ip6 saddr fd77:1::2 ip6 daddr fd77:2::2 meta l4proto tcp counter
		ip6 saddr fd77:1::2 ip6 daddr fd77:2::2 meta l4proto ipv6-icmp counter
		ip6 saddr fd77:2::2 ip6 daddr fd77:1::2 meta l4proto udp counter
		ip6 saddr fd77:2::2 ip6 daddr fd77:1::2 meta l4proto tcp counter
		ip6 saddr fd77:2::2 ip6 daddr fd77:1::2 meta l4proto ipv6-icmp counter
		meta protocol ip $3 counter comment "all-ipv4"
		$4
	}
}
NFT
}

# nft_chains: nft_setup's chains as JSON, one line a namespace.
nft_chains() {
	local ns
	for ns in $(nft_namespaces); do
		ip netns exec "$ns" nft -j list chain $NFT_FAMILY kzt post | tr -d '\n'
		echo
	done
}

nft_count() {
	nft_chains | python3 -c '
import json, sys, ipaddress
src, dst, proto = sys.argv[1:4]
b = p = 0
for line in sys.stdin:
  for item in json.loads(line)["nftables"]:
    rule = item.get("rule")
    if not rule: continue
    m = {}
    counter = None
    for e in rule["expr"]:
        if "match" in e:
            left = e["match"]["left"]
            key = left.get("payload", {}).get("field") or left.get("meta", {}).get("key")
            m[key] = e["match"]["right"]
        if "counter" in e: counter = e["counter"]
    if m.get("saddr") == src and m.get("daddr") == dst and m.get("l4proto") == proto:
        b += counter["bytes"]; p += counter["packets"]
print(b, p)
' "$@"
}

# nft_comment COMMENT: "bytes packets" of nft_setup's counters with that comment.
nft_comment() {
	nft_chains | python3 -c '
import json, sys
b = p = 0
for line in sys.stdin:
  for item in json.loads(line)["nftables"]:
    rule = item.get("rule")
    if rule and rule.get("comment") == sys.argv[1]:
        c = [e["counter"] for e in rule["expr"] if "counter" in e][0]
        b += c["bytes"]; p += c["packets"]
print(b, p)
' "$1"
}
# nft_count_all: "bytes packets" of all IPv4 traffic leaving the node, loopback aside (with
# KZN_HOOK=cgroup: the TCP and UDP arriving at the pods).
nft_count_all() { nft_comment all-ipv4; }
# nft_echo SRC DST (KZN_HOOK=cgroup): "bytes packets" of the ICMP echo requests from SRC to DST.
nft_echo() { nft_comment "echo $1 $2"; }

# sink_count_all OUT: "bytes packets" of every IPv4 record off loopback, plus all reported loss.
sink_count_all() {
	python3 - "$1" <<'PY'
import json, sys
b = p = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["type"] == "report":
        b += r["lost_map_full_bytes"] + r["lost_other_bytes"]
        p += r["lost_map_full_packets"] + r["lost_other_packets"]
    elif r["family"] == 4 and not r["src"].startswith("127.") and not r["dst"].startswith("127."):
        b += r["bytes"]; p += r["packets"]
print(b, p)
PY
}

# sink_udp OUT: the pod1-to-pod2 UDP "bytes packets" in OUT since BASE ("bytes packets",
# taken with sink_count) was taken; totals_match OUT: they equal nftables' count since then.
BASE="0 0"
sink_udp() {
	local b p
	read -r b p < <(sink_count "$1" 10.77.1.2 10.77.2.2 udp)
	echo "$((b - ${BASE% *})) $((p - ${BASE#* }))"
}
totals_match() { [ "$(sink_udp "$1")" = "$(nft_count 10.77.1.2 10.77.2.2 udp)" ]; }

# sink_count OUT SRC DST PROTO [PORT]: "bytes packets" the sink received for that traffic.
sink_count() {
	python3 - "$@" <<'PY'
import json, sys
out, src, dst, proto = sys.argv[1:5]
port = int(sys.argv[5]) if len(sys.argv) > 5 else None
protos = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58}
b = p = 0
for line in open(out):
    r = json.loads(line)
    if r["type"] != "record": continue
    if r["src"] == src and r["dst"] == dst and r["protocol"] == protos[proto] and (port is None or r["port"] == port):
        b += r["bytes"]; p += r["packets"]
print(b, p)
PY
}

# ---- the two-zone end-to-end cluster (server_e2e.sh, containers.sh) ----

# lan_port NS IP IP6 TAG: an interface eth0 in NS on the bridge br0 of the namespace $LAN.
lan_port() {
	ip link add "${NS_PREFIX}l$4" netns "$LAN" type veth peer name eth0 netns "$1"
	ip -n "$LAN" link set "${NS_PREFIX}l$4" master br0 up
	ip -n "$1" addr add "$2/24" dev eth0
	ip -n "$1" addr add "$3/64" dev eth0 nodad
	ip -n "$1" link set eth0 up
	ip netns exec "$1" ethtool -K eth0 tso off gso off gro off 2>/dev/null
	ip netns exec "$LAN" ethtool -K "${NS_PREFIX}l$4" tso off gso off gro off 2>/dev/null
}

# e2e_pod NS NODE-NS INDEX: a pod namespace 10.77.INDEX.2 (fd77:INDEX::2) behind its node.
e2e_pod() {
	local veth=${NS_PREFIX}v$3
	ip link add "$veth" netns "$2" type veth peer name eth0 netns "$1"
	ip -n "$2" addr add 10.77.$3.1/24 dev "$veth"
	ip -n "$2" addr add fd77:$3::1/64 dev "$veth" nodad
	ip -n "$2" link set "$veth" up
	ip -n "$1" addr add 10.77.$3.2/24 dev eth0
	ip -n "$1" addr add fd77:$3::2/64 dev eth0 nodad
	ip -n "$1" link set eth0 up
	ip -n "$1" route add default via 10.77.$3.1
	ip -n "$1" -6 route add default via fd77:$3::1
	ip netns exec "$2" ethtool -K "$veth" tso off gso off gro off 2>/dev/null
	ip netns exec "$1" ethtool -K eth0 tso off gso off gro off 2>/dev/null
}

# E2E_TOPOLOGY: the two-zone cluster of e2e_pods_setup as a topology file (README.md,
# "Topology file").
E2E_TOPOLOGY='{"nodes": [
  {"name": "node-a", "zone": "zone-a", "region": "r1", "ips": ["10.88.0.1", "fd88::1"]},
  {"name": "node-b", "zone": "zone-b", "region": "r1", "ips": ["10.88.0.2", "fd88::2"]}],
 "pods": [
  {"namespace": "shop", "name": "pod1", "node": "node-a", "workload": "web", "workload_kind": "Deployment", "ips": ["10.77.1.2", "fd77:1::2"]},
  {"namespace": "shop", "name": "pod2", "node": "node-a", "workload": "web", "workload_kind": "Deployment", "ips": ["10.77.2.2", "fd77:2::2"]},
  {"namespace": "data", "name": "pod3", "node": "node-b", "workload": "db", "workload_kind": "StatefulSet", "ips": ["10.77.3.2", "fd77:3::2"]}]}'

# e2e_nodes_setup: the namespaces A, B (two routing nodes, linked at 10.88.0.1 and .2, fd88::1
# and ::2) and P1, P2, P3 (the pods, for e2e_pods_setup). Needs A, B, P1, P2, P3 set.
e2e_nodes_setup() {
	for ns in "$A" "$B" "$P1" "$P2" "$P3"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	for ns in "$A" "$B"; do
		ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	done
	ip link add ${NS_PREFIX}ab netns "$A" type veth peer name ${NS_PREFIX}ba netns "$B"
	ip -n "$A" addr add 10.88.0.1/24 dev ${NS_PREFIX}ab
	ip -n "$B" addr add 10.88.0.2/24 dev ${NS_PREFIX}ba
	ip -n "$A" addr add fd88::1/64 dev ${NS_PREFIX}ab nodad
	ip -n "$B" addr add fd88::2/64 dev ${NS_PREFIX}ba nodad
	ip -n "$A" link set ${NS_PREFIX}ab up
	ip -n "$B" link set ${NS_PREFIX}ba up
}

# e2e_pods_setup: pod1 and pod2 behind node A (10.88.0.1), pod3 behind node B (10.88.0.2),
# the routes between them, and nftables counters in each node's postrouting chain (priority
# 98, beside the agent's 99) for pod1 to pod3 and back, IPv4 and IPv6. Needs A, B, P1, P2, P3
# (namespaces, the nodes already linked at 10.88.0.1 and .2, fd88::1 and ::2).
e2e_pods_setup() {
	local ns
	e2e_pod "$P1" "$A" 1
	e2e_pod "$P2" "$A" 2
	e2e_pod "$P3" "$B" 3
	ip -n "$A" route add 10.77.3.0/24 via 10.88.0.2
	ip -n "$A" -6 route add fd77:3::/64 via fd88::2
	ip -n "$B" route add 10.77.0.0/16 via 10.88.0.1
	ip -n "$B" -6 route add fd77::/16 via fd88::1
	for ns in "$A" "$B"; do
		ip netns exec "$ns" nft -f - <<'NFT'
table inet kzt {
	chain post {
		type filter hook postrouting priority 98; policy accept;
		ip saddr 10.77.1.2 ip daddr 10.77.3.2 counter comment "pod1-pod3"
		ip6 saddr fd77:1::2 ip6 daddr fd77:3::2 counter comment "pod1-pod3-v6"
		ip saddr 10.77.3.2 ip daddr 10.77.1.2 counter comment "pod3-pod1"
		ip6 saddr fd77:3::2 ip6 daddr fd77:1::2 counter comment "pod3-pod1-v6"
	}
}
NFT
	done
}

# nft_bytes NS COMMENT: the bytes of the counter with that comment.
nft_bytes() {
	ip netns exec "$1" nft -j list chain inet kzt post | python3 -c '
import json, sys
for item in json.load(sys.stdin)["nftables"]:
    r = item.get("rule")
    if r and r.get("comment") == sys.argv[1]:
        print([e["counter"] for e in r["expr"] if "counter" in e][0]["bytes"])' "$2"
}
