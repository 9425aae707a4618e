#!/usr/bin/env bash
# Overlay networks (README.md, "Overlay networks"): two nodes in two zones on a LAN, their
# pods routed to each other through a kernel tunnel device, as flannel and Calico do: VXLAN
# on port 8472 (IPv4 and IPv6 pods), and IP in IPv4 with IPv6 in IPv4 (sit). The oracles are
# nftables counters in each node's postrouting chain: on the LAN (the outer packets, told
# apart by the inner addresses read at fixed offsets behind the outer headers) and on the
# tunnel device (the inner packets). By the rule, a pod's cross-zone bytes are its outer
# packets' bytes (inner bytes plus the encapsulation per packet), no node is charged for
# tunnelled bytes, and a node's own traffic (host network) is still the node's.
#
# With KZN_HOOK=cgroup (test/overlay_cgroup.sh) each agent counts at its node's cgroup, where
# the node's host network processes run, each pod's in a cgroup below it: the socket-level
# hook sees the pods' packets before the tunnel, so a pod's cross-zone bytes are its inner
# packets' (the tunnel device's counters) less the ICMP its kernel sent (port unreachable,
# echo replies: the kernel's own sockets, in no pod's cgroup), no encapsulation is reported,
# and a node's host traffic is what its processes sent, without the tunnel's headers.
. "$(dirname "$0")/lib.sh"

MODES=(vxlan ipip)
# SEEN: the packets of a pod the hook counts; ENCAP_NAME: what the encapsulation series holds.
SEEN="its outer packets'" ENCAP_NAME="holds the outer headers' bytes, per zone pair"
if [ "$KZN_HOOK" = cgroup ]; then
	SEEN="its inner packets' less its kernel's ICMP" ENCAP_NAME="stays at zero: the hook sees no outer packet"
fi
NAMES=()
for m in "${MODES[@]}"; do
	NAMES+=("overlay $m: pod1's cross-zone bytes are $SEEN"
		"overlay $m: pod3's cross-zone bytes are $SEEN"
		"overlay $m: outer bytes are inner bytes plus the encapsulation per packet"
		"overlay $m: the encapsulation series $ENCAP_NAME"
		"overlay $m: no node is charged for pods' tunnelled bytes; host network traffic is the node's, tunnelled or not")
done
scenario_begin "${NAMES[@]}"

# scenario MODE: builds the cluster, sends, and checks; everything of it is gone afterwards.
scenario() {
	local mode=$1 n
	LAN=${NS_PREFIX}lan A=${NS_PREFIX}node-a B=${NS_PREFIX}node-b S=${NS_PREFIX}srv
	P1=${NS_PREFIX}pod1 P3=${NS_PREFIX}pod3
	for ns in "$LAN" "$A" "$B" "$S" "$P1" "$P3"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	ip -n "$LAN" link add br0 type bridge && ip -n "$LAN" link set br0 up
	lan_port "$A" 10.88.0.1 fd88::1 a
	lan_port "$B" 10.88.0.2 fd88::2 b
	lan_port "$S" 10.88.0.10 fd88::10 s
	for ns in "$A" "$B"; do
		ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	done
	e2e_pod "$P1" "$A" 1
	e2e_pod "$P3" "$B" 3
	local hook_a=() hook_b=()
	if [ "$KZN_HOOK" = cgroup ]; then
		hook_a=(--hook cgroup --cgroup "$(cgroup_add node-a)")
		hook_b=(--hook cgroup --cgroup "$(cgroup_add node-b)")
		pod_cgroup "$A" "$CGROUP_TOP/node-a"
		pod_cgroup "$B" "$CGROUP_TOP/node-b"
		pod_cgroup "$P1" "$(cgroup_add node-a/pod1)"
		pod_cgroup "$P3" "$(cgroup_add node-b/pod3)"
	fi

	# The tunnel between the nodes, and the routes to the other node's pods through it.
	# OUTER_V4/OUTER_V6: nftables matches for an outer packet whose inner source and
	# destination are two pods (raw payload behind the transport header: @th,OFFSET,LENGTH);
	# TUN4/TUN6: the devices the inner IPv4 and IPv6 packets leave by; ENCAP: the bytes each
	# outer packet adds.
	tunnel() { # NS LOCAL REMOTE MY-INDEX OTHER-INDEX
		local ns=$1 l=$2 r=$3 me=$4 other=$5
		case $mode in
		vxlan)
			ip -n "$ns" link add kzvx type vxlan id 42 dstport 8472 local "$l" remote "$r" dev eth0
			ip -n "$ns" addr add 10.99.0.$me/24 dev kzvx
			ip -n "$ns" addr add fd99::$me/64 dev kzvx nodad
			ip -n "$ns" link set kzvx up
			ip netns exec "$ns" ethtool -K kzvx tso off gso off gro off 2>/dev/null
			ip -n "$ns" route add 10.77.$other.0/24 via 10.99.0.$other dev kzvx
			ip -n "$ns" -6 route add fd77:$other::/64 via fd99::$other dev kzvx
			;;
		ipip)
			ip -n "$ns" link add kztun type ipip local "$l" remote "$r"
			ip -n "$ns" link add kzsit type sit local "$l" remote "$r"
			ip -n "$ns" link set kztun up
			ip -n "$ns" link set kzsit up
			ip -n "$ns" route add 10.77.$other.0/24 dev kztun
			ip -n "$ns" -6 route add fd77:$other::/64 dev kzsit
			;;
		esac
	}
	tunnel "$A" 10.88.0.1 10.88.0.2 1 3
	tunnel "$B" 10.88.0.2 10.88.0.1 3 1
	# The pods' MTU is the tunnel's, as a CNI sets it: no pod packet is too big for the tunnel
	# (the node would drop it, after a socket-level hook counted it, and send back an ICMP).
	local mtu
	case $mode in vxlan) mtu=1450 ;; ipip) mtu=1480 ;; esac
	ip -n "$P1" link set eth0 mtu $mtu
	ip -n "$P3" link set eth0 mtu $mtu
	case $mode in
	vxlan) # UDP 8, VXLAN 8, Ethernet 14: the inner IP header starts 30 bytes behind UDP's
		outer4() { echo "udp dport 8472 @th,336,32 $1 @th,368,32 $2"; }
		outer6() { echo "udp dport 8472 @th,304,128 $1 @th,432,128 $2"; }
		TUN4=kzvx TUN6=kzvx ENCAP4=50 ENCAP6=50
		# The host network's packets into the tunnel leave from kzvx's own address.
		HOST1=0x0a630001 HOST3=0x0a630003 ;;
	ipip) # the inner header is the outer one's payload
		outer4() { echo "ip protocol 4 @th,96,32 $1 @th,128,32 $2"; }
		outer6() { echo "ip protocol 41 @th,64,128 $1 @th,192,128 $2"; }
		TUN4=kztun TUN6=kzsit ENCAP4=20 ENCAP6=20
		HOST1=0x0a580001 HOST3=0x0a580002 ;;
	esac
	# Neighbours through the tunnel resolved first: a packet queued for an unresolved neighbour
	# passes the hook on its way into the tunnel device and may then be dropped.
	in_pod "$P1" ping -q -c 2 -i 0.2 10.77.3.2 >/dev/null
	in_pod "$P1" ping -6 -q -c 2 -i 0.2 fd77:3::2 >/dev/null
	local p1=0x0a4d0102 p3=0x0a4d0302 p16=0xfd770001000000000000000000000002 p36=0xfd770003000000000000000000000002
	for n in 1 3; do
		local ns=$A src=$p1 dst=$p3 s6=$p16 d6=$p36 me=10.88.0.1 peer=10.88.0.2 i=1 o=3 hostsrc=$HOST1
		[ $n = 3 ] && ns=$B src=$p3 dst=$p1 s6=$p36 d6=$p16 me=10.88.0.2 peer=10.88.0.1 i=3 o=1 hostsrc=$HOST3
		ip netns exec "$ns" nft -f - <<NFT
table inet kzt {
	chain post {
		type filter hook postrouting priority 98; policy accept;
		oifname "eth0" $(outer4 $src $dst) counter comment "outer4"
		oifname "eth0" $(outer6 $s6 $d6) counter comment "outer6"
		oifname "$TUN4" ip saddr 10.77.$i.2 ip daddr 10.77.$o.2 counter comment "inner4"
		oifname "$TUN6" ip6 saddr fd77:$i::2 ip6 daddr fd77:$o::2 counter comment "inner6"
		oifname "$TUN4" ip saddr 10.77.$i.2 ip daddr 10.77.$o.2 icmp type != echo-request counter comment "kernel4"
		oifname "$TUN6" ip6 saddr fd77:$i::2 ip6 daddr fd77:$o::2 icmpv6 type != echo-request counter comment "kernel6"
		oifname "eth0" $(outer4 $hostsrc $dst) counter comment "host-tunnel"
		oifname "eth0" ip saddr $me ip daddr $peer udp dport 8472 accept
		oifname "eth0" ip saddr $me ip daddr $peer meta l4proto != { 4, 41 } counter comment "host"
		oifname "eth0" ip saddr $me ip daddr $peer meta l4proto icmp counter comment "host-kernel"
	}
}
NFT
	done

	cat >"$WORK/topology.json" <<EOF
{"nodes": [
  {"name": "node-a", "zone": "zone-a", "region": "r1", "ips": ["10.88.0.1"]},
  {"name": "node-b", "zone": "zone-b", "region": "r1", "ips": ["10.88.0.2"]}],
 "pods": [
  {"namespace": "shop", "name": "pod1", "node": "node-a", "workload": "web", "workload_kind": "Deployment", "ips": ["10.77.1.2", "fd77:1::2"]},
  {"namespace": "data", "name": "pod3", "node": "node-b", "workload": "db", "workload_kind": "StatefulSet", "ips": ["10.77.3.2", "fd77:3::2"]}]}
EOF
	# The server's own address is in no zone, so the agents' reports to it are not
	# cross-zone: a node's cross-zone bytes are then exactly its host network traffic.
	bg ip netns exec "$S" "$SERVER" --topology "$WORK/topology.json" --http-listen 127.0.0.1:18080 \
		--agent-listen 10.88.0.10:18081 --flow-logs none 2>"$WORK/server-$mode.log"
	wait_for 5 grep -q listening "$WORK/server-$mode.log"
	for n in a b; do
		local ns=$A hook=("${hook_a[@]}")
		[ $n = b ] && ns=$B hook=("${hook_b[@]}")
		bg ip netns exec "$ns" "$AGENT" --server 10.88.0.10:18081 --node node-$n --interval 1s \
			--pin-path "$BPFFS/$mode-$n" "${hook[@]}" >"$WORK/agent-$mode-$n" 2>&1
		wait_for 10 grep -q "attached to" "$WORK/agent-$mode-$n"
	done

	# pod1 <-> pod3 through the tunnel (UDP, TCP, ICMP; IPv4 and IPv6), and host traffic.
	in_pod "$P1" python3 "$TRAFFIC" udp 10.77.3.2 5000 300 700 4
	in_pod "$P1" python3 "$TRAFFIC" udp fd77:3::2 5000 200 900 2
	in_pod "$P3" python3 "$TRAFFIC" udp 10.77.1.2 6000 150 300
	in_pod "$P1" ping -q -c 20 -i 0.01 -s 300 10.77.3.2 >/dev/null
	in_pod "$P3" python3 "$TRAFFIC" tcp-sink 8080 >"$WORK/sink-$mode" &
	local receiver=$!
	wait_for 5 grep -q listening "$WORK/sink-$mode"
	in_pod "$P1" python3 "$TRAFFIC" tcp 10.77.3.2 8080 300000 >/dev/null
	wait $receiver
	in_pod "$A" python3 "$TRAFFIC" udp 10.88.0.2 9999 100 500
	in_pod "$A" python3 "$TRAFFIC" udp 10.77.3.2 9998 50 400 # host network to a pod, tunnelled

	counter() { # NS COMMENT FIELD
		ip netns exec "$1" nft -j list chain inet kzt post | python3 -c '
import json, sys
for item in json.load(sys.stdin)["nftables"]:
    r = item.get("rule")
    if r and r.get("comment") == sys.argv[1]:
        print([e["counter"] for e in r["expr"] if "counter" in e][0][sys.argv[2]])' "$2" "$3"
	}
	metric() { in_pod "$S" curl -s http://127.0.0.1:18080/metrics | awk -v want="$1{$2}" '$1 == want { print $2 }'; }
	pod() { metric pod_cross_zone_network_traffic_bytes_total "namespace=\"$1\",pod=\"$2\""; }
	# seen NS: the bytes of the node's pod the hook counts: its outer packets at netfilter; at the
	# socket-level hook its inner packets (on the tunnel device) less the ICMP its kernel sent.
	seen() {
		if [ "$KZN_HOOK" = cgroup ]; then
			echo $(($(counter "$1" inner4 bytes) + $(counter "$1" inner6 bytes) -
				$(counter "$1" kernel4 bytes) - $(counter "$1" kernel6 bytes)))
		else
			echo $(($(counter "$1" outer4 bytes) + $(counter "$1" outer6 bytes)))
		fi
	}
	# host NS: the node's host network bytes, tunnelled or not: at the socket-level hook without
	# the tunnel's headers and the ICMP its kernel sent.
	host() {
		local h=$(($(counter "$1" host bytes) + $(counter "$1" host-tunnel bytes)))
		[ "$KZN_HOOK" = cgroup ] &&
			h=$((h - $(counter "$1" host-kernel bytes) - ENCAP4 * $(counter "$1" host-tunnel packets)))
		[ "$h" != 0 ] && echo "$h"
	}
	settled() {
		[ "$(pod shop pod1)" = "$(seen "$A")" ] && [ "$(pod data pod3)" = "$(seen "$B")" ] &&
			[ "$(pod _node_ node-a)" = "$(host "$A")" ] && [ "$(pod _node_ node-b)" = "$(host "$B")" ]
	}
	wait_for 20 settled
	local w1 w3 hosta hostb
	w1=$(seen "$A") w3=$(seen "$B") hosta=$(host "$A") hostb=$(host "$B")
	check_eq "overlay $mode: pod1's cross-zone bytes are $SEEN" "$(pod shop pod1)" "$w1"
	check_eq "overlay $mode: pod3's cross-zone bytes are $SEEN" "$(pod data pod3)" "$w3"
	# The rule, from the other side: inner bytes on the tunnel device plus ENCAP a packet.
	local inner=0 ns tag
	for ns in "$A" "$B"; do
		for tag in 4 6; do
			local e=$ENCAP4
			[ $tag = 6 ] && e=$ENCAP6
			inner=$((inner + $(counter "$ns" inner$tag bytes) + e * $(counter "$ns" inner$tag packets)))
		done
	done
	check_eq "overlay $mode: outer bytes are inner bytes plus the encapsulation per packet" "$inner" \
		"$(($(counter "$A" outer4 bytes) + $(counter "$A" outer6 bytes) + $(counter "$B" outer4 bytes) + $(counter "$B" outer6 bytes)))"

	# kubezonnet_encapsulation_bytes_total: what each zone's tunnel added to its pods' packets.
	local ea eb
	ea=$(metric kubezonnet_encapsulation_bytes_total 'src_zone="zone-a",dst_zone="zone-b"')
	eb=$(metric kubezonnet_encapsulation_bytes_total 'src_zone="zone-b",dst_zone="zone-a"')
	local wa wb
	wa=$((ENCAP4 * ($(counter "$A" inner4 packets) + $(counter "$A" host-tunnel packets)) +
		ENCAP6 * $(counter "$A" inner6 packets)))
	wb=$((ENCAP4 * ($(counter "$B" inner4 packets) + $(counter "$B" host-tunnel packets)) +
		ENCAP6 * $(counter "$B" inner6 packets)))
	[ "$KZN_HOOK" = cgroup ] && wa=0 wb=0
	check_eq "overlay $mode: the encapsulation series $ENCAP_NAME" "$ea $eb" "$wa $wb"
	local na nb
	na=$(pod _node_ node-a)
	nb=$(pod _node_ node-b)
	local tunnelled=$((428 + ENCAP4)) # a host packet to a pod through the tunnel
	[ "$KZN_HOOK" = cgroup ] && tunnelled=428
	if [ "$na" = "$hosta" ] && [ "$nb" = "$hostb" ] && [ "${hosta:-0}" -ge $((52800 + 50 * tunnelled)) ] && [ "$w1" -gt 300000 ]; then
		ok "overlay $mode: no node is charged for pods' tunnelled bytes; host network traffic is the node's, tunnelled or not (node-a $na, node-b ${nb:-0}: their host traffic)"
	else
		not_ok "overlay $mode: no node is charged for pods' tunnelled bytes; host network traffic is the node's, tunnelled or not" \
			"node-a '$na' (host traffic $hosta), node-b '${nb:-none}' (host traffic ${hostb:-none})"
		grep -h "tunnel" "$WORK"/agent-$mode-* | sed 's/^/#   /'
	fi

	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	PIDS=()
	netns_cleanup
}

# supported MODE: whether this kernel can make the mode's tunnel devices.
supported() {
	local ns=${NS_PREFIX}probe rc=0
	ip netns add "$ns"
	case $1 in
	vxlan) ip -n "$ns" link add name kzprobe type vxlan id 1 dstport 8472 2>/dev/null || rc=1 ;;
	ipip) { ip -n "$ns" link add name kzprobe type ipip && ip -n "$ns" link add name kzprobe6 type sit; } 2>/dev/null || rc=1 ;;
	esac
	ip netns delete "$ns"
	return $rc
}
for m in "${MODES[@]}"; do
	if supported "$m"; then
		scenario "$m"
	else
		for n in "${NAMES[@]}"; do
			[[ $n == "overlay $m:"* ]] && skip "$n" "this kernel cannot make $m tunnel devices (module not built or not loadable)"
		done
	fi
done
