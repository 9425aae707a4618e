#!/usr/bin/env bash
# Exactness against an independent oracle: nftables counters in the node's postrouting chain
# count the same forwarded traffic the agent counts. UDP, ICMP and TCP (offloads off), IPv4
# and IPv6, both directions: reported bytes and packets equal the counters exactly. Then IP
# fragments (non-first fragments under port 0, never read as ports) and a TCP bulk transfer
# with TSO/GSO on (bytes as on the wire, never below nftables' one-header-per-super-packet).
#
# With KZN_HOOK=cgroup (test/agent_exact_cgroup.sh) the same traffic and the same checks, with
# the agent at the socket-level hook of the node's cgroup and the pods routed in BPF past the
# node's netfilter: the counters are on each pod's eth0 (netdev egress), and what the hook
# cannot see is checked as not counted: ICMP echo replies come from the kernel's own socket,
# not the pod's; a datagram's fragments all count under its port, read before it is cut.
. "$(dirname "$0")/lib.sh"

NAMES=("exact: UDP IPv4" "exact: UDP IPv6" "exact: ICMP IPv4" "exact: ICMP IPv6"
	"exact: TCP IPv4, offloads off" "exact: TCP IPv6, offloads off"
	"exact: IPv4 fragments" "exact: IPv6 fragments"
	"GSO: TCP IPv4 bytes are wire bytes" "GSO: TCP IPv6 bytes are wire bytes")
scenario_begin "${NAMES[@]}"
topology_setup
cgroup_pods_setup
offload off
nft_setup
sink_start "$WORK/sink"
agent_start "$WORK/agent" --interval 1s || { sed 's/^/#   /' "$WORK/agent"; exit 1; }

# With KZN_AGENT_ARGS=--per-cpu-counts (test/agent_exact_percpu.sh): the flow maps the agent
# pinned are per-CPU hashes, so what follows proves the per-CPU sums.
if [[ " ${KZN_AGENT_ARGS:-} " == *" --per-cpu-counts "* ]]; then
	type=$(bpftool -j map show pinned "$BPFFS/kubezonnet/kzn_flows_a" | python3 -c 'import json, sys; print(json.load(sys.stdin)["type"])')
	check_eq "per-CPU counts: the pinned flow maps hold a value a CPU" "$type" percpu_hash
fi

# flow_check NAME SRC DST PROTO NFT WANT WHAT: nftables counted NFT ("bytes packets", some) of
# that traffic, and the sink's total for it is WANT; WHAT says what was compared.
flow_check() {
	local got
	got=$(sink_count "$WORK/sink" "$2" "$3" "$4")
	if [ -n "$5" ] && [ "$5" != "0 0" ] && [ "$got" = "$6" ]; then
		ok "$1 ($2 > $3 $4$7: $got)"
	else
		not_ok "$1 ($2 > $3 $4$7)" "agent reported '$got' (bytes packets), want '$6'; nftables counted '$5'"
	fi
}
# compare NAME SRC DST PROTO: the sink's total for that traffic equals the nftables counter.
compare() {
	local want
	want=$(nft_count "$2" "$3" "$4")
	flow_check "$@" "$want" "$want" ""
}
# kernel_sent NAME SRC DST PROTO (KZN_HOOK=cgroup): the kernel sent that traffic from a socket of
# its own, which the socket-level hook does not see: nftables counted it, the agent nothing.
kernel_sent() { flow_check "$@" "$(nft_count "$2" "$3" "$4")" "0 0" ", the kernel's replies"; }
# echo_compare NAME SRC DST PROTO (KZN_HOOK=cgroup): the agent's ICMP equals the echo requests
# (ping's socket); the port unreachable errors the pod's kernel sends are not counted.
echo_compare() {
	local want
	want=$(nft_echo "$2" "$3")
	flow_check "$@" "$want" "$want" ", the echo requests"
}
if [ "$KZN_HOOK" = cgroup ]; then
	icmp_requests=echo_compare icmp_replies=kernel_sent
else
	icmp_requests=compare icmp_replies=compare
fi

# Offloads off: every skb is one wire packet.
for v in 4 6; do
	if [ $v = 4 ]; then a=10.77.1.2 b=10.77.2.2 icmp=icmp; else a=fd77:1::2 b=fd77:2::2 icmp=ipv6-icmp; fi
	in_pod "$POD1" python3 "$TRAFFIC" udp "$b" 5353 300 100 7
	in_pod "$POD2" python3 "$TRAFFIC" udp "$a" 9000 200 1000 3
	in_pod "$POD1" ping -$v -q -c 20 -i 0.01 -s 500 "$b" >/dev/null
	in_pod "$POD2" python3 "$TRAFFIC" tcp-sink 8080 >"$WORK/tcp$v" &
	receiver=$!
	wait_for 5 grep -q listening "$WORK/tcp$v"
	in_pod "$POD1" python3 "$TRAFFIC" tcp "$b" 8080 3000000 >/dev/null
	wait $receiver
done
# Fragments: 4000-byte datagrams over a 1500-byte MTU.
in_pod "$POD1" python3 "$TRAFFIC" udp 10.77.2.2 7000 50 4000
in_pod "$POD1" python3 "$TRAFFIC" udp fd77:2::2 7000 50 4000

sleep 3
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"

compare "exact: UDP IPv4" 10.77.1.2 10.77.2.2 udp
compare "exact: UDP IPv4" 10.77.2.2 10.77.1.2 udp
compare "exact: UDP IPv6" fd77:1::2 fd77:2::2 udp
compare "exact: UDP IPv6" fd77:2::2 fd77:1::2 udp
$icmp_requests "exact: ICMP IPv4" 10.77.1.2 10.77.2.2 icmp
$icmp_replies "exact: ICMP IPv4" 10.77.2.2 10.77.1.2 icmp
$icmp_requests "exact: ICMP IPv6" fd77:1::2 fd77:2::2 ipv6-icmp
$icmp_replies "exact: ICMP IPv6" fd77:2::2 fd77:1::2 ipv6-icmp
compare "exact: TCP IPv4, offloads off" 10.77.1.2 10.77.2.2 tcp
compare "exact: TCP IPv4, offloads off" 10.77.2.2 10.77.1.2 tcp
compare "exact: TCP IPv6, offloads off" fd77:1::2 fd77:2::2 tcp
compare "exact: TCP IPv6, offloads off" fd77:2::2 fd77:1::2 tcp

# Fragments: port 0 holds exactly the non-first fragments (1 per 1480-byte step after the
# first), the datagram's port holds the first ones; all of it is in the UDP totals above. The
# socket-level hook sees each datagram before it is cut: all its fragments count under its port.
frag_check() {
	local name=$1 src=$2 dst=$3 per=$4 got0 gotp first=50 rest=$((50 * $4))
	got0=$(sink_count "$WORK/sink" "$src" "$dst" udp 0)
	gotp=$(sink_count "$WORK/sink" "$src" "$dst" udp 7000)
	[ "$KZN_HOOK" = cgroup ] && first=$((50 + rest)) rest=0
	if [ "${got0#* }" = $rest ] && [ "${gotp#* }" = $first ]; then
		ok "$name (first fragments on port 7000: $gotp; others on port 0: $got0)"
	else
		not_ok "$name" "port 7000: '$gotp', port 0: '$got0' (bytes packets); want $first and $rest packets"
	fi
}
frag_check "exact: IPv4 fragments" 10.77.1.2 10.77.2.2 2
frag_check "exact: IPv6 fragments" fd77:1::2 fd77:2::2 2

# GSO on: a bulk transfer in fresh flows (new port), counted as the wire carries it.
: >"$WORK/sink2"
kill -9 "$SINK_PID"
wait "$SINK_PID" 2>/dev/null
sink_start "$WORK/sink2"
nft_reset
offload on
agent_start "$WORK/agent" --interval 1s || { sed 's/^/#   /' "$WORK/agent"; exit 1; }
for v in 4 6; do
	if [ $v = 4 ]; then a=10.77.1.2 b=10.77.2.2 l3=20; else a=fd77:1::2 b=fd77:2::2 l3=40; fi
	in_pod "$POD2" python3 "$TRAFFIC" tcp-sink 8443 >"$WORK/gso$v" &
	receiver=$!
	wait_for 5 grep -q listening "$WORK/gso$v"
	read -r payload mss < <(in_pod "$POD1" python3 "$TRAFFIC" tcp "$b" 8443 50000000)
	wait $receiver
	sleep 2
	read -r bytes packets < <(sink_count "$WORK/sink2" "$a" "$b" tcp 8443)
	read -r nft_bytes nft_packets < <(nft_count "$a" "$b" tcp)
	# Each wire segment carries at most mss payload bytes plus its L3 header and a TCP header
	# with timestamps (32 bytes; the socket's mss already excludes the options). The payload
	# that crossed, retransmissions included, is what nftables counted less one set of headers
	# per skb it saw; the wire segments are that payload divided by the mss.
	python3 - "$payload" "$mss" "$l3" "$bytes" "$packets" "$nft_bytes" "$nft_packets" <<'PY' >"$WORK/gso-verdict$v"
import math, sys
payload, mss, l3, got, pkts, nft, nftp = map(int, sys.argv[1:])
hdr = l3 + 32
crossed = nft - nftp * hdr
segments = math.ceil(crossed / mss)
want = crossed + segments * hdr
err = abs(got - want) / want
print(f"{'ok' if err <= 0.001 and got >= nft and crossed >= payload else 'bad'} got {got} bytes "
      f"in {pkts} packets, want {want} ({crossed} payload bytes crossed for {payload} sent, "
      f"{segments} segments of mss {mss}), error {err:.4%}; nftables {nft} bytes in {nftp} skbs")
PY
	verdict=$(cat "$WORK/gso-verdict$v")
	if [ "${verdict%% *}" = ok ]; then
		ok "GSO: TCP IPv$v bytes are wire bytes (${verdict#ok })"
	else
		not_ok "GSO: TCP IPv$v bytes are wire bytes" "${verdict#bad }"
	fi
done
