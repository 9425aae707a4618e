#!/usr/bin/env bash
# Forwarded small-UDP packets per second through a node namespace (veth in, veth out), with
# no program, the empty program, ours, ours before issue #15 and a lower bound (one add per
# flow, bench/floor.bpf.c) at POSTROUTING, alternating, with 256 and 4,096 flows taking turns.
# Each rate is the median of 7 runs of 2 s, counted at the receiver's interface; a program's
# ratio is the median of its per-round ratios to the empty program's run beside it, so that
# the machine's drift between rounds cancels out. Then the same traffic with the kernel timing
# each program run (BPF_ENABLE_STATS, 5 runs of 1 s each): what each costs over the empty
# program in nanoseconds per packet, a far finer figure than a rate that moves by a few
# percent from one run to the next. Last, those costs as rates: the CPU time a forwarded packet
# takes with the empty program (all of it on the sender's CPU: veth hands packets on within that
# CPU) against the same plus what the kernel timed; and each program's rate against the bound's,
# the least any per-flow counter costs.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/test/lib.sh"
# row WHAT VALUE UNIT BASELINE BASE_VALUE [RATIO]: the ratio is VALUE/BASE_VALUE unless given.
row() {
	printf '%-44s %14.1f %-12s %-26s %14.1f %7.2fx\n' "$1" "$2" "$3" "$4" "$5" \
		"${6:-$(awk -v a="$2" -v b="$5" 'BEGIN { print b ? a / b : 0 }')}"
}
if [ "$(id -u)" != 0 ]; then
	printf '%-44s (skipped: needs root)\n' "veth: forwarded packets per second"
	exit 0
fi
# A run that fails (a program that does not attach, a run that forwards nothing) leaves its
# reason in FAILED: the figures it would have given are missing, and the table says so instead
# of printing ratios without them.
FAILED=$(mktemp)
trap 'rm -f "$FAILED"; scenario_cleanup' EXIT
failed() { echo "$*" >>"$FAILED"; }
topology_setup
# The receiver drops what arrives (no socket, no ICMP replies) so that only the forward path
# is measured.
ip netns exec "$POD2" sysctl -qw net.ipv4.icmp_ratelimit=1000000 net.ipv4.icmp_ratemask=0
ip netns exec "$POD2" nft add table ip sink
ip netns exec "$POD2" nft add chain ip sink in '{ type filter hook prerouting priority -300; policy drop; }'

rx() { ip netns exec "$POD2" cat /sys/class/net/eth0/statistics/rx_packets; }
# busy: CPU 0's time at work (user, nice, system, irq, softirq; not idle, iowait or steal), in
# clock ticks.
busy() { awk '$1 == "cpu0" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
HZ=$(getconf CLK_TCK)
# measure FLOWS SECONDS: packets per second forwarded to the receiver, and CPU 0's nanoseconds
# of work per forwarded packet.
measure() {
	local before after b0 b1
	before=$(rx) b0=$(busy)
	ip netns exec "$POD1" taskset -c 0 "$TOP/build/bench/udpflood" 10.77.2.2 "$1" "$2" >/dev/null
	after=$(rx) b1=$(busy)
	if [ "$after" -le "$before" ]; then
		failed "no packet forwarded in $2 s with $1 flows"
		return 1
	fi
	echo "$(((after - before) / $2)) $(((b1 - b0) * 1000000000 / HZ / (after - before)))"
}
# with_prog PROG FLOWS [stats]: measure's two figures with PROG attached (none: no program);
# with stats, the kernel's mean nanoseconds per run of PROG instead.
with_prog() {
	local prog=$1 flows=$2 stats=${3:-} pid out
	if [ "$prog" = none ]; then
		measure "$flows" 2
		return
	fi
	out=$(mktemp)
	ip netns exec "$NODE" "$TOP/build/bench/bpf_bench" attach "$prog" $stats >"$out" 2>&1 &
	pid=$!
	# Attached, or gone (a program that did not load).
	wait_for 10 sh -c 'grep -q attached "$1" || ! kill -0 "$2"' - "$out" "$pid"
	if ! grep -q attached "$out"; then
		failed "$prog did not attach: $(tail -1 "$out")"
	elif [ -n "$stats" ]; then
		measure "$flows" 1 >/dev/null
	else
		measure "$flows" 2
	fi
	kill -TERM $pid 2>/dev/null
	wait $pid 2>/dev/null
	[ -n "$stats" ] && awk '/ns\/packet/ { print $1 }' "$out"
	rm -f "$out"
}
median() { tr ' ' '\n' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# ratios A B: each A[i]/B[i] (two space-separated lists).
ratios() { awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x); split(b, y); for (i = 1; i <= n; i++) print (y[i] ? x[i] / y[i] : 0) }'; }

# The program before issue #15 (bench/bpf_bench.c), where make bench could build it from git.
progs="ours one-add"
[ -e "$TOP/build/before.skel.h" ] && progs="ours before one-add"
declare -A name=([ours]="kubezonnet" [before]="before #15" [one-add]="bound (one add per flow)")
# rate_row WHAT T A B BASELINE: (T + B) / (T + A), the rate of a packet that takes T ns plus A
# against one that takes T plus B, next to the target 0.97 and whether it is met.
rate_row() {
	awk -v what="$1" -v t="$2" -v a="$3" -v b="$4" -v base="$5" 'BEGIN { r = (t + b) / (t + a)
		printf "%-44s %14.3f %-12s %-26s %14.3f %7.2fx  target >= 0.97: %s\n", what, r, "x", base,
			0.97, r / 0.97, (r >= 0.97 ? "met" : "NOT MET") }'
}
for flows in 256 4096; do
	declare -A rate=() ns=()
	cpu=""
	for r in 1 2 3 4 5 6 7; do
		for p in none empty $progs; do
			read -r pps nspp < <(with_prog "$p" $flows)
			rate[$p]+=" $pps"
			[ "$p" = empty ] && cpu+=" $nspp"
		done
	done
	for r in 1 2 3 4 5; do
		for p in empty $progs; do
			ns[$p]+=" $(with_prog "$p" $flows stats)"
		done
	done
	if [ -s "$FAILED" ]; then
		printf '%-44s (failed: %s)\n' "veth: $flows flows" "$(sort -u "$FAILED" | head -3 | paste -sd ';')"
		exit 0
	fi
	e=$(echo ${rate[empty]} | median)
	row "veth: $flows flows, empty program" "$e" "packets/s" "no program" "$(echo ${rate[none]} | median)" \
		"$(ratios "${rate[empty]}" "${rate[none]}" | median)"
	for p in $progs; do
		row "veth: $flows flows, ${name[$p]}" "$(echo ${rate[$p]} | median)" "packets/s" "empty program" "$e" \
			"$(ratios "${rate[$p]}" "${rate[empty]}" | median)"
	done
	# In the kernel: each program's cost over the empty program, per packet.
	en=$(echo ${ns[empty]} | median)
	over() { awk -v a="$(echo ${ns[$1]} | median)" -v e="$en" 'BEGIN { print a - e }'; }
	bound=$(over one-add)
	printf '%-44s %14.1f %-12s %-26s %14s %8s\n' "veth: $flows flows, empty program (kernel)" "$en" "ns/packet" \
		"(its clock reads included)" - -
	for p in $progs; do
		[ "$p" = one-add ] && continue
		row "veth: $flows flows, ${name[$p]} (kernel)" "$(over "$p")" "ns over empty" "one add per flow" "$bound"
	done
	# As rates: a packet's CPU time with the empty program, T, against T plus a program's cost
	# over it (target 0.97); and against the bound's T plus its cost (the target again, for what
	# a program costs beyond the one memory access every per-flow counter pays).
	t=$(echo $cpu | median)
	printf '%-44s %14.1f %-12s %-26s %14s %8s\n' "veth: $flows flows, CPU per forwarded packet" "$t" \
		"ns/packet" "(the empty program)" - -
	for p in $progs; do
		rate_row "veth: $flows flows, ${name[$p]%% (*}, rate (kernel)" "$t" "$(over "$p")" 0 \
			"empty program (target)"
		[ "$p" = one-add ] ||
			rate_row "veth: $flows flows, ${name[$p]%% (*}, rate vs bound" "$t" "$(over "$p")" "$bound" \
				"the bound (target)"
	done
done
