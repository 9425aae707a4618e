#!/usr/bin/env bash
# make demo: the whole product on one Linux machine, with no cluster. Network namespaces
# make a simulated cluster of three zones with two nodes each; every node routes for its pods
# and runs a real kubezonnet-agent; the server gets a topology file written here; Python
# services talk to each other like real ones, some across zones, one very noisily. The table
# on screen is read from the server's /metrics.
#
#   demo/demo.sh          run until Ctrl-C, then tear everything down
#   demo/demo.sh stop     tear down a running (or crashed) demo from another terminal
#
# DEMO_SECONDS=N runs N seconds without a live table, prints the final table and tears down.
# DEMO_REPORT=FILE also writes the final numbers, with nftables counters from inside the
# nodes as an independent oracle, as JSON (for the test).
# DEMO_K8S=1: the server lists and watches the pods and nodes from a stand-in Kubernetes API
# server over HTTPS (test/fake_apiserver.py) instead of reading the topology file.
# DEMO_OVERLAY=vxlan: the nodes carry pod traffic in a VXLAN overlay, as flannel does.
# DEMO_HOOK=cgroup: the agents count at the socket level (--hook cgroup), each attached to
# its node's cgroup, which holds that node's pods' processes.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
STATE=/run/kubezonnet-demo
PREFIX=kzd-
URL=http://10.90.255.2:8080/metrics
INTERVAL=2s

say() { printf '%s\n' "demo: $*" >&2; }
die() {
	say "$*"
	exit 1
}

# ---- teardown: idempotent, and works on what a crashed demo left ----
teardown() {
	local ns pid
	pkill -f "$TOP/demo/table.py" 2>/dev/null
	# Agents first, gently, while the server still runs: they ship their last interval. The
	# programs they leave counting go with the bpf filesystem unmounted below.
	pkill -TERM -f "kubezonnet-agent .*--pin-path $STATE/" 2>/dev/null
	for _ in $(seq 80); do
		pgrep -f "kubezonnet-agent .*--pin-path $STATE/" >/dev/null || break
		sleep 0.1
	done
	[ -f "$STATE/pids" ] && while read -r pid; do kill "$pid" 2>/dev/null; done <"$STATE/pids"
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX" || true); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns delete "$ns" 2>/dev/null
	done
	ip link delete ${PREFIX}host 2>/dev/null
	if mountpoint -q "$STATE/bpf" 2>/dev/null; then
		umount "$STATE/bpf"
	fi
	if mountpoint -q "$STATE/cgroup" 2>/dev/null; then
		rmdir "$STATE"/cgroup/node-* 2>/dev/null
		umount "$STATE/cgroup"
	fi
	rm -rf "$STATE"
	return 0
}

if [ "${1:-}" = stop ]; then
	[ "$(id -u)" = 0 ] || die "stopping the demo needs root: sudo make demo-stop"
	teardown
	say "stopped; nothing left behind"
	exit 0
fi

# ---- preflight: say what is missing before touching anything ----
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, BPF): run 'sudo make demo'"
kernel=$(uname -r)
major=${kernel%%.*} rest=${kernel#*.}
minor=${rest%%.*}
if [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "${minor%%[!0-9]*}" -lt 4 ]; }; then
	die "needs Linux 6.4 or newer for BPF netfilter links; this kernel is $kernel"
fi
[ -r /sys/kernel/btf/vmlinux ] || die "needs kernel BTF (/sys/kernel/btf/vmlinux): a kernel built with CONFIG_DEBUG_INFO_BTF=y"
for t in ip nft ethtool python3 curl; do
	command -v "$t" >/dev/null || die "needs '$t': run 'make deps'"
done
[ -x "$TOP/kubezonnet-agent" ] && [ -x "$TOP/kubezonnet-server" ] || die "binaries missing: run 'make'"

if [ -d "$STATE" ] || ip netns list 2>/dev/null | grep -q "^$PREFIX"; then
	say "cleaning up what an earlier demo left"
	teardown
fi
trap 'teardown; exit 130' INT TERM HUP
# Set-up stops at the first failure, says where, and leaves nothing behind.
set -e
trap 'rc=$?; say "setup failed at line $LINENO (exit $rc); cleaning up"; teardown; exit 1' ERR

mkdir -p "$STATE/bpf" "$STATE/log"
mount -t bpf bpf "$STATE/bpf" || die "cannot mount a bpf filesystem (no BPF support?)"
HOOK=()
if [ "${DEMO_HOOK:-}" = cgroup ]; then
	# A cgroup v2 hierarchy of the demo's own (this mount outlives ip netns exec's private
	# /sys), one cgroup per node.
	mkdir -p "$STATE/cgroup"
	mount -t cgroup2 none "$STATE/cgroup" || die "cannot mount a cgroup v2 hierarchy"
	HOOK=(--hook cgroup)
fi

# run_in NS LOG CMD...: start in the background in its own session (the terminal's Ctrl-C
# goes to this script, whose teardown stops everything in order), and remember the pid.
run_in() {
	local ns=$1 log=$2
	shift 2
	setsid ip netns exec "$ns" "$@" >>"$STATE/log/$log" 2>&1 </dev/null &
	echo $! >>"$STATE/pids"
}

# run_pod POD LOG CMD...: run_in for a process of pod POD, in its namespace; with
# DEMO_HOOK=cgroup, inside its node's cgroup, where its node's agent counts what its sockets
# send.
run_pod() {
	local ns node=${POD_NODE[$1]} log=$2
	ns=$(podns "$1" || :) # podns ends with a failed test
	shift 2
	if [ "${DEMO_HOOK:-}" = cgroup ] && [ -n "$node" ]; then
		run_in "$ns" "$log" sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' \
			"$STATE/cgroup/node-$node" "$@"
	else
		run_in "$ns" "$log" "$@"
	fi
}

# ---- the fabric: one namespace bridging the nodes, and a link to this host ----
say "setting up: fabric"
net=${PREFIX}net
ip netns add "$net"
ip -n "$net" link set lo up
ip -n "$net" link add br0 type bridge
ip -n "$net" addr add 10.90.0.254/24 dev br0
ip -n "$net" link set br0 up
ip link add ${PREFIX}host type veth peer name uplink netns "$net"
ip addr add 10.90.255.1/30 dev ${PREFIX}host
ip link set ${PREFIX}host up
ip -n "$net" addr add 10.90.255.2/30 dev uplink
ip -n "$net" link set uplink up

# zone of each node, and the pods: name node workload kind service-port
NODES=(a1 a2 b1 b2 c1 c2)
declare -A ZONE=([a1]=zone-a [a2]=zone-a [b1]=zone-b [b2]=zone-b [c1]=zone-c [c2]=zone-c)
PODS=(
	"shop frontend-7c9d8-a1 a1 frontend Deployment"
	"shop frontend-7c9d8-b1 b1 frontend Deployment"
	"shop frontend-7c9d8-c1 c1 frontend Deployment"
	"shop api-5f6b7-a2 a2 api Deployment"
	"shop api-5f6b7-b2 b2 api Deployment"
	"shop cache-0 b1 cache StatefulSet"
	"data db-0 c2 db StatefulSet"
	"batch report-29000000-x7k2q a1 report CronJob"
)
declare -A NODE_IP POD_IP POD_NODE
i=0
for n in "${NODES[@]}"; do
	i=$((i + 1))
	say "setting up: node $n (${ZONE[$n]}) $i/${#NODES[@]}"
	ns=$PREFIX$n
	[ "${DEMO_HOOK:-}" = cgroup ] && mkdir "$STATE/cgroup/node-$n"
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	# IPv4 only: no IPv6 neighbour discovery chatter in the table.
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1
	ip link add "${PREFIX}$n" netns "$net" type veth peer name eth0 netns "$ns"
	ip -n "$net" link set "${PREFIX}$n" master br0 up
	NODE_IP[$n]=10.90.0.$i
	ip -n "$ns" addr add "${NODE_IP[$n]}/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip netns exec "$ns" ethtool -K eth0 tso off gso off gro off 2>/dev/null
done
i=0
k=0
for p in "${PODS[@]}"; do
	read -r pns name node wl kind <<<"$p"
	k=$((k + 1))
	idx=$(printf '%s\n' "${NODES[@]}" | grep -n "^$node$" | cut -d: -f1)
	ns=${PREFIX}p$k
	POD_NODE[$name]=$node
	POD_IP[$name]=10.91.$idx.$((10 + k))
	if [ "${DEMO_HOOK:-}" = cgroup ]; then
		# Made from inside its node's cgroup: the namespace's own kernel sockets (the TCP
		# ACKs and resets of closed connections, ICMP) then belong to that cgroup too.
		sh -c 'echo $$ >"$0/cgroup.procs" && exec ip netns add "$1"' \
			"$STATE/cgroup/node-$node" "$ns"
	else
		ip netns add "$ns"
	fi
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip link add "${PREFIX}p$k" netns "$PREFIX$node" type veth peer name eth0 netns "$ns"
	ip -n "$PREFIX$node" addr add "10.91.$idx.1/32" dev "${PREFIX}p$k" 2>/dev/null || true
	ip -n "$PREFIX$node" link set "${PREFIX}p$k" up
	ip -n "$PREFIX$node" route add "${POD_IP[$name]}/32" dev "${PREFIX}p$k"
	ip -n "$ns" addr add "${POD_IP[$name]}/32" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add 10.91.$idx.1 dev eth0
	ip -n "$ns" route add default via 10.91.$idx.1
	ip netns exec "$PREFIX$node" ethtool -K "${PREFIX}p$k" tso off gso off gro off 2>/dev/null
	ip netns exec "$ns" ethtool -K eth0 tso off gso off gro off 2>/dev/null
done
# Every node reaches every other node's pods through that node; with DEMO_OVERLAY=vxlan
# through a VXLAN overlay as flannel builds it (a flannel.1 device per node, UDP 8472, the
# other nodes' pod subnets routed to it, static neighbour and forwarding entries).
ENCAP=0
if [ "${DEMO_OVERLAY:-}" = vxlan ]; then
	say "setting up: a VXLAN overlay (flannel.1, UDP 8472)"
	ENCAP=50 # outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14: bytes on the wire a packet
	i=0
	for n in "${NODES[@]}"; do
		i=$((i + 1))
		ns=$PREFIX$n
		ip -n "$ns" link add flannel.1 type vxlan id 1 dstport 8472 local "${NODE_IP[$n]}" dev eth0 nolearning ||
			die "cannot make a VXLAN device (no vxlan support in this kernel?)"
		ip -n "$ns" link set flannel.1 address 02:00:00:00:00:0$i mtu 1450
		ip -n "$ns" addr add 10.91.$i.0/32 dev flannel.1
		ip -n "$ns" link set flannel.1 up
		ip netns exec "$ns" ethtool -K flannel.1 tso off gso off gro off 2>/dev/null
	done
	for p in $(ip netns list | awk '{print $1}' | grep "^${PREFIX}p"); do
		ip -n "$p" link set eth0 mtu 1450
	done
fi
i=0
for n in "${NODES[@]}"; do
	i=$((i + 1))
	j=0
	for m in "${NODES[@]}"; do
		j=$((j + 1))
		[ "$n" = "$m" ] && continue
		if [ $ENCAP = 0 ]; then
			ip -n "$PREFIX$n" route add "10.91.$j.0/24" via "${NODE_IP[$m]}"
		else
			ip -n "$PREFIX$n" route add "10.91.$j.0/24" via 10.91.$j.0 dev flannel.1 onlink
			ip -n "$PREFIX$n" neigh add 10.91.$j.0 lladdr 02:00:00:00:00:0$j dev flannel.1 nud permanent
			bridge -n "$PREFIX$n" fdb append 02:00:00:00:00:0$j dev flannel.1 dst "${NODE_IP[$m]}"
		fi
	done
done

# ---- the topology the server reads ----
{
	echo '{"nodes": ['
	sep=
	for n in "${NODES[@]}"; do
		printf '%s  {"name": "node-%s", "zone": "%s", "region": "demo-1", "ips": ["%s"]}' "$sep" "$n" "${ZONE[$n]}" "${NODE_IP[$n]}"
		sep=$',\n'
	done
	echo '], "pods": ['
	sep=
	for p in "${PODS[@]}"; do
		read -r pns name node wl kind <<<"$p"
		printf '%s  {"namespace": "%s", "name": "%s", "node": "node-%s", "workload": "%s", "workload_kind": "%s", "ips": ["%s"]}' \
			"$sep" "$pns" "$name" "$node" "$wl" "$kind" "${POD_IP[$name]}"
		sep=$',\n'
	done
	echo '],'
	echo ' "external": [{"name": "control-plane", "cidr": "10.90.0.254/32", "zone": "zone-a", "region": "demo-1"}]}'
} >"$STATE/topology.json"

# ---- the oracle: nftables counters in each node, per pod, of bytes to other zones ----
for n in "${NODES[@]}"; do
	rules=
	for p in "${PODS[@]}"; do
		read -r pns name node wl kind <<<"$p"
		[ "$node" = "$n" ] || continue
		others=
		for q in "${PODS[@]}"; do
			read -r _ qname qnode _ _ <<<"$q"
			[ "${ZONE[$qnode]}" != "${ZONE[$n]}" ] && others="$others${others:+, }${POD_IP[$qname]}"
		done
		rules="$rules
		ip saddr ${POD_IP[$name]} ip daddr { $others } counter comment \"$pns/$name\""
	done
	ip netns exec "$PREFIX$n" nft -f - <<EOF
table ip kzd_oracle {
	chain post {
		type filter hook postrouting priority 98; policy accept;$rules
	}
}
EOF
done

# ---- kubezonnet ----
say "setting up: kubezonnet-server and 6 agents"
SOURCE=(--topology "$STATE/topology.json")
if [ "${DEMO_K8S:-}" = 1 ]; then
	# The same cluster as Kubernetes objects, served over HTTPS by a stand-in API server
	# with a throwaway CA and a bearer token; the server lists and watches them.
	say "setting up: a stand-in Kubernetes API server (DEMO_K8S=1)"
	k8s=$STATE/k8s
	mkdir -p "$k8s"
	python3 "$TOP/test/topology_to_k8s.py" "$STATE/topology.json" "$k8s/lists" || die "cannot write the Kubernetes objects"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$k8s/ca.key" \
		-out "$k8s/ca.crt" -days 1 -subj /CN=kubezonnet-demo-ca >/dev/null 2>&1 &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$k8s/api.key" \
			-out "$k8s/api.csr" -subj /CN=kube-apiserver >/dev/null 2>&1 &&
		printf 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n' >"$k8s/ext" &&
		openssl x509 -req -in "$k8s/api.csr" -CA "$k8s/ca.crt" -CAkey "$k8s/ca.key" -CAcreateserial \
			-days 1 -out "$k8s/api.crt" -extfile "$k8s/ext" >/dev/null 2>&1 ||
		die "openssl could not make the demo's certificates"
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$k8s/token"
	run_in "$net" apiserver.log python3 "$TOP/test/fake_apiserver.py" 6443 "$k8s" "$STATE/log/api-requests" \
		--lists "$k8s/lists" --tls "$k8s/api.crt" "$k8s/api.key" --token "$(cat "$k8s/token")"
	for _ in $(seq 50); do
		ip netns exec "$net" python3 -c "import socket; socket.create_connection(('127.0.0.1', 6443), 1)" 2>/dev/null && break
		sleep 0.1
	done
	SOURCE=(--kube-api https://127.0.0.1:6443 --kube-ca "$k8s/ca.crt" --kube-token-file "$k8s/token")
fi
run_in "$net" server.log "$TOP/kubezonnet-server" "${SOURCE[@]}" \
	--http-listen :8080 --agent-listen :8081 --flow-logs none
for n in "${NODES[@]}"; do
	run_in "$PREFIX$n" "agent-$n.log" "$TOP/kubezonnet-agent" --server 10.90.0.254:8081 \
		--node "node-$n" --interval "$INTERVAL" --pin-path "$STATE/bpf/$n" \
		"${HOOK[@]}" ${HOOK[0]:+--cgroup "$STATE/cgroup/node-$n"}
done
for n in "${NODES[@]}"; do
	for _ in $(seq 100); do
		grep -q "connected to" "$STATE/log/agent-$n.log" 2>/dev/null && break
		sleep 0.1
	done
	if ! grep -q "connected to" "$STATE/log/agent-$n.log" 2>/dev/null; then
		say "the agent on node-$n did not start:"
		sed 's/^/  /' "$STATE/log/agent-$n.log" >&2
		trap - ERR
		set +e
		teardown
		die "kubezonnet could not load its BPF program here (see above); nothing left behind"
	fi
done
if [ "${DEMO_HOOK:-}" = cgroup ]; then
	hooked=$(grep -l "attached to the socket-level hook" "$STATE"/log/agent-*.log 2>/dev/null | wc -l)
	say "the agents count at the socket level: $hooked of ${#NODES[@]} on their node's cgroup"
fi

if [ "${DEMO_K8S:-}" = 1 ]; then
	for _ in $(seq 100); do
		grep -q "kubernetes: listed" "$STATE/log/server.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q "kubernetes: listed" "$STATE/log/server.log" 2>/dev/null ||
		die "the server did not list the stand-in API server: $(tail -3 "$STATE/log/server.log")"
	say "$(grep -m1 -o "kubernetes: listed.*" "$STATE/log/server.log") (from https://127.0.0.1:6443)"
fi

# ---- traffic: services and their callers ----
say "setting up: traffic"
podns() { # podns NAME: the namespace of pod NAME
	local k=0 p
	for p in "${PODS[@]}"; do
		k=$((k + 1))
		read -r _ name _ _ _ <<<"$p"
		[ "$name" = "$1" ] && echo "${PREFIX}p$k"
	done
}
T=$TOP/demo/traffic.py
for svc in api-5f6b7-a2 api-5f6b7-b2 db-0 cache-0; do
	run_pod $svc "traffic.log" python3 "$T" serve 8080
done
sleep 0.5
api="${POD_IP[api-5f6b7-a2]}:8080 ${POD_IP[api-5f6b7-b2]}:8080"
for f in frontend-7c9d8-a1 frontend-7c9d8-b1 frontend-7c9d8-c1; do
	# shellcheck disable=SC2086 # two targets
	run_pod $f "traffic.log" python3 "$T" call 20 300 4000 $api
done
for a in api-5f6b7-a2 api-5f6b7-b2; do
	run_pod $a "traffic.log" python3 "$T" call 20 500 16000 "${POD_IP[db-0]}:8080"
done
run_pod api-5f6b7-b2 "traffic.log" python3 "$T" call 30 100 1000 "${POD_IP[cache-0]}:8080"
# The noisy one: a nightly report job uploading to the database across zones.
run_pod report-29000000-x7k2q "traffic.log" python3 "$T" call 40 60000 100 "${POD_IP[db-0]}:8080"
trap - ERR
set +e
ip link show ${PREFIX}host >/dev/null 2>&1 || die "the host link to the demo is gone"

# oracle: JSON {"ns/pod": bytes} from every node's counters. Over the overlay they count the
# pods' packets on their way into flannel.1: each leaves the node ENCAP bytes longer, which
# the netfilter hook charges to the pods and the cgroup hook, before the tunnel, does not see.
oracle() {
	for n in "${NODES[@]}"; do
		ip netns exec "$PREFIX$n" nft -j list chain ip kzd_oracle post
	done | python3 -c '
import json, sys
out, encap = {}, int(sys.argv[1])
for doc in sys.stdin.read().replace("}{", "}\n{").splitlines():
    for item in json.loads(doc)["nftables"]:
        r = item.get("rule")
        if r and "comment" in r:
            c = [e["counter"] for e in r["expr"] if "counter" in e][0]
            out[r["comment"]] = c["bytes"] + encap * c["packets"]
print(json.dumps(out))' "$([ "${DEMO_HOOK:-}" = cgroup ] && echo 0 || echo "$ENCAP")"
}

if [ -n "${DEMO_SECONDS:-}" ]; then
	say "running for $DEMO_SECONDS s; metrics at $URL"
	end=$((SECONDS + DEMO_SECONDS))
	while [ $SECONDS -lt $end ]; do
		sleep 1
	done
	# Stop the traffic, let the agents ship their last interval, then show the totals. The
	# clients first, which close their connections and wait for the servers to close theirs:
	# a connection whose process is gone ends with an ACK from the kernel's own socket, which
	# the cgroup hook does not count (see the README, "Which hook").
	traffic() { ps -eo pid,args | awk -v what="$1" '$0 ~ "demo/traffic.py " what && !/awk/ { print $1 }'; }
	traffic call | xargs -r kill 2>/dev/null
	for _ in $(seq 30); do
		[ -z "$(traffic call)" ] && break
		sleep 0.1
	done
	traffic serve | xargs -r kill 2>/dev/null
	sleep 6
	report=${DEMO_REPORT:-}
	python3 "$TOP/demo/table.py" "$URL" --final "$DEMO_SECONDS" ${report:+--report "$report.table"}
	if [ -n "$report" ]; then
		python3 - "$report.table" "$(oracle)" "$report" <<'PY'
import json, sys
table = json.load(open(sys.argv[1]))
table["oracle"] = json.loads(sys.argv[2])
json.dump(table, open(sys.argv[3], "w"), indent=1)
PY
		rm -f "$report.table"
	fi
	teardown
	say "done; nothing left behind"
	exit 0
fi

say "ready: the table refreshes every 2 s; metrics at $URL; Ctrl-C (or 'make demo-stop') to finish"
python3 "$TOP/demo/table.py" "$URL"
teardown
