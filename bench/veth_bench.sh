#!/usr/bin/env bash
# Forwarded small-UDP packets per second through a node namespace (veth in, veth out), with
# no program, the empty program, ours and ours before issue #15 at POSTROUTING, alternating,
# with 256 and 4,096 flows. Each figure is the median of 7 runs of 2 s, counted at the
# receiver's interface.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/test/lib.sh"
row() { printf '%-44s %14.1f %-12s %-26s %14.1f %7.2fx\n' "$@" "$(awk -v a="$2" -v b="$5" 'BEGIN { print b ? a / b : 0 }')"; }
if [ "$(id -u)" != 0 ]; then
	printf '%-44s (skipped: needs root)\n' "veth: forwarded packets per second"
	exit 0
fi
trap scenario_cleanup EXIT
topology_setup
# The receiver drops what arrives (no socket, no ICMP replies) so that only the forward path
# is measured.
ip netns exec "$POD2" sysctl -qw net.ipv4.icmp_ratelimit=1000000 net.ipv4.icmp_ratemask=0
ip netns exec "$POD2" nft add table ip sink
ip netns exec "$POD2" nft add chain ip sink in '{ type filter hook prerouting priority -300; policy drop; }'

rx() { ip netns exec "$POD2" cat /sys/class/net/eth0/statistics/rx_packets; }
measure() {
	local flows=$1 before after
	before=$(rx)
	ip netns exec "$POD1" taskset -c 0 "$TOP/build/bench/udpflood" 10.77.2.2 "$flows" 2 >/dev/null
	after=$(rx)
	echo $(((after - before) / 2))
}
with_prog() {
	local prog=$1 flows=$2 pid out
	if [ "$prog" = none ]; then
		measure "$flows"
		return
	fi
	out=$(mktemp)
	ip netns exec "$NODE" "$TOP/build/bench/bpf_bench" attach "$prog" >"$out" 2>&1 &
	pid=$!
	wait_for 10 grep -q attached "$out"
	measure "$flows"
	kill -TERM $pid
	wait $pid 2>/dev/null
	rm -f "$out"
}
median() { tr ' ' '\n' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# The program before issue #15 (bench/bpf_bench.c), where make bench could build it from git.
BEFORE=
[ -e "$TOP/build/before.skel.h" ] && BEFORE=1
for flows in 256 4096; do
	none=() empty=() ours=() before=()
	for r in 1 2 3 4 5 6 7; do
		none+=("$(with_prog none $flows)")
		empty+=("$(with_prog empty $flows)")
		ours+=("$(with_prog ours $flows)")
		[ -n "$BEFORE" ] && before+=("$(with_prog before $flows)")
	done
	n=$(echo "${none[@]}" | median) e=$(echo "${empty[@]}" | median) o=$(echo "${ours[@]}" | median)
	row "veth: $flows flows, empty program" "$e" "packets/s" "no program" "$n"
	row "veth: $flows flows, kubezonnet" "$o" "packets/s" "empty program" "$e"
	[ -n "$BEFORE" ] && row "veth: $flows flows, before #15" "$(echo "${before[@]}" | median)" "packets/s" "empty program" "$e"
done
