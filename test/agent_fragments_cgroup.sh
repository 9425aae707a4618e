#!/usr/bin/env bash
# The socket-level hook (agent --hook cgroup) counts a datagram above its device's MTU as the
# fragments the kernel cuts it into after the hook: exact against nftables counters on the
# receiving pod's eth0 (netdev ingress, GRO off), where the fragments arrive one by one.
# - IPv6 with a routing header and destination options after it: the fragments repeat only
#   the part before the destination options (the kernel's unfragmentable part).
# - IPv4 under an MTU below IPv6's minimum (1,000 bytes), and under 576 bytes, where the last
#   fragment carries up to the MTU and the others a multiple of 8 bytes.
KZN_HOOK=cgroup
. "$(dirname "$0")/lib.sh"

NAMES=("fragments: IPv6, routing header and destination options"
	"fragments: IPv4, MTU 1000" "fragments: IPv4, MTU 576, a full last fragment")
scenario_begin "${NAMES[@]}"
topology_setup
cgroup_pods_setup
offload off
# Every packet between the pods, whatever its headers, as it arrives at pod2.
ip netns exec "$POD2" nft -f - <<'NFT'
table netdev kzf {
	chain in {
		type filter hook ingress device eth0 priority 0; policy accept;
		ip saddr 10.77.1.2 ip daddr 10.77.2.2 counter comment "v4"
		ip6 saddr fd77:1::2 ip6 daddr fd77:2::2 counter comment "v6"
	}
}
NFT
sink_start "$WORK/sink"
agent_start "$WORK/agent" --interval 1s || { sed 's/^/#   /' "$WORK/agent"; exit 1; }

# wire COMMENT: "bytes packets" of pod2's counter.
wire() {
	ip netns exec "$POD2" nft -j list chain netdev kzf in | python3 -c '
import json, sys
for item in json.load(sys.stdin)["nftables"]:
    r = item.get("rule")
    if r and r.get("comment") == sys.argv[1]:
        c = [e["counter"] for e in r["expr"] if "counter" in e][0]
        print(c["bytes"], c["packets"])' "$1"
}
# agent_total SRC DST: "bytes packets" the sink holds for SRC to DST, every protocol and port.
agent_total() {
	python3 - "$WORK/sink" "$1" "$2" <<'PY'
import json, sys
b = p = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["type"] == "record" and r["src"] == sys.argv[2] and r["dst"] == sys.argv[3]:
        b += r["bytes"]; p += r["packets"]
print(b, p)
PY
}
minus() { echo "$((${1% *} - ${2% *})) $((${1#* } - ${2#* }))"; }
# scenario NAME SRC DST COMMENT TRAFFIC...: the agent's count of what TRAFFIC (run in pod1) sent
# equals what arrived at pod2.
scenario() {
	local name=$1 src=$2 dst=$3 c=$4 a0 w0 a w
	shift 4
	a0=$(agent_total "$src" "$dst") w0=$(wire "$c")
	in_pod "$POD1" python3 "$TRAFFIC" "$@"
	sleep 2.5
	a=$(minus "$(agent_total "$src" "$dst")" "$a0") w=$(minus "$(wire "$c")" "$w0")
	if [ "$a" = "$w" ] && [ "${w#* }" != 0 ]; then
		ok "$name (bytes packets: $a)"
	else
		not_ok "$name" "agent reported '$a' (bytes packets), pod2 received '$w'"
	fi
}

# 4,000 bytes: three fragments of 1,500 bytes or less, each 56 bytes of headers before the
# fragment header (IPv6 and the routing header), not 72.
scenario "${NAMES[0]}" fd77:1::2 fd77:2::2 v6 udp6-ext fd77:2::2 7000 20 4000
ip -n "$POD1" link set eth0 mtu 1000
# 1,128 bytes: two fragments (the hook used to count those below 1,280 bytes as one packet).
scenario "${NAMES[1]}" 10.77.1.2 10.77.2.2 v4 udp 10.77.2.2 7000 20 1100
ip -n "$POD1" link set eth0 mtu 576
# 1,680 bytes: 552 + 552 + 556 bytes of payload, three fragments (not four of at most 552).
scenario "${NAMES[2]}" 10.77.1.2 10.77.2.2 v4 udp 10.77.2.2 7000 20 1652
