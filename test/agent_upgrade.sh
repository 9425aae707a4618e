#!/usr/bin/env bash
# Restarts and upgrades lose nothing and count nothing twice, against nftables counters in the
# node namespace, with traffic flowing all along: the agent stopped with SIGTERM (what a
# DaemonSet rolling update does) and started again seconds later, once with the server
# reachable and once while the server's agent port drops every packet; and an upgrade to a
# changed program (built here from a modified copy of the source, as a new release would be)
# and back again; and rolling updates that turn --per-cpu-counts on and off, which keep the
# kind of flow maps already pinned.
. "$(dirname "$0")/lib.sh"

NAMES=("SIGTERM and restart, server reachable: nothing lost, nothing counted twice"
	"SIGTERM and restart while the agent port drops every packet: nothing lost"
	"upgrade to a changed program and back, mid-traffic: nothing lost, links kept"
	"upgrade: the counting program is swapped in place, not re-attached"
	"SIGTERM, restart with --per-cpu-counts on one-count maps: kept so, nothing lost"
	"SIGTERM, restart without --per-cpu-counts on per-CPU maps: kept so, nothing lost")
scenario_begin "${NAMES[@]}"
ipv4_topology_setup

# A new release: the same source with one constant of the program changed (a different
# program tag), built into its own directory.
VARIANT=$WORK/variant
mkdir -p "$VARIANT"
cp -r "$TOP/Makefile" "$TOP"/*.c "$TOP"/*.h "$TOP/bpf" "$VARIANT/"
rm -f "$VARIANT/server.c" "$VARIANT/ingest.c"
sed -i 's/^#define KZN_IPV6_EXT_MAX 6$/#define KZN_IPV6_EXT_MAX 5/' "$VARIANT/bpf/kubezonnet.h"
grep -q 'KZN_IPV6_EXT_MAX 5' "$VARIANT/bpf/kubezonnet.h" || not_ok "${NAMES[2]}" "could not change the variant's program"
make -s -C "$VARIANT" kubezonnet-agent >"$WORK/variant.log" 2>&1 || {
	not_ok "${NAMES[2]}" "building the variant failed"
	sed 's/^/#   /' "$WORK/variant.log" | tail -5
}

# begin: quiet traffic, every count shipped, fresh nftables counters and a new BASE.
begin() {
	wait_for 20 totals_match "$WORK/sink"
	nft_reset
	BASE=$(sink_count "$WORK/sink" 10.77.1.2 10.77.2.2 udp)
	# About 200 packets a second on new flows, for SECONDS.
	in_pod "$POD1" python3 "$TRAFFIC" udp-flood 10.77.2.2 "$1" 1 >/dev/null &
	SENDER=$!
}

# verdict NAME: the sink caught up with nftables within 40 s after the traffic ended.
verdict() {
	wait "$SENDER"
	wait_for 40 totals_match "$WORK/sink"
	local got want
	got=$(sink_udp "$WORK/sink")
	want=$(nft_count 10.77.1.2 10.77.2.2 udp)
	if [ "$got" = "$want" ] && [ "${want% *}" -gt 0 ]; then
		ok "$1 (UDP $got bytes packets)"
	else
		not_ok "$1" "agent reported '$got' (bytes packets), nftables counted '$want'"
		tail -8 "$WORK/agent" | sed 's/^/#   /'
	fi
}

stop_agent() {
	kill -TERM "$AGENT_PID"
	wait "$AGENT_PID"
}

# links: the ids of the links pinned by the agents of this test.
links() {
	local f
	for f in $AGENT_LINK_PINS; do
		bpftool -j link show pinned "$BPFFS/kubezonnet/$f" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
	done | tr '\n' ' '
}

sink_start "$WORK/sink"
agent_start "$WORK/agent" --interval 1s

# 1. SIGTERM, two seconds without an agent, a new agent.
begin 8
sleep 2
stop_agent
sleep 2
agent_start "$WORK/agent" --interval 1s
verdict "${NAMES[0]}"

# 2. The same while the agent port drops every packet: the last report cannot be
# acknowledged, stays pinned, and the new agent sends it once the port is open again.
begin 14
sleep 2
ip netns exec "$NODE" nft -f - <<'NFT'
table inet kzt_cut {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp dport 18081 drop
	}
}
NFT
sleep 1
stop_agent
agent_start "$WORK/agent" --interval 1s
sleep 3
ip netns exec "$NODE" nft delete table inet kzt_cut
verdict "${NAMES[1]}"
grep -q "stays pinned" "$WORK/agent" ||
	not_ok "${NAMES[1]}: the last report stayed pinned" "no 'stays pinned' line in the agent's log"

# 3. Upgrade to the variant mid-traffic, then back.
begin 10
before=$(links)
sleep 2
stop_agent
AGENT=$VARIANT/kubezonnet-agent agent_start "$WORK/agent" --interval 1s
sleep 3
stop_agent
agent_start "$WORK/agent" --interval 1s
verdict "${NAMES[2]}"
upgrades=$(grep -c "upgrading the counting program in place" "$WORK/agent")
if [ "$upgrades" = 2 ] && [ "$(links)" = "$before" ] && [ -n "$before" ]; then
	ok "${NAMES[3]} (links $before)"
else
	not_ok "${NAMES[3]}" "$upgrades in-place upgrades (want 2), links $before then $(links)"
fi

# 5. A rolling update that turns --per-cpu-counts on, and one that turns it off: the maps
# pinned stay of their kind (changing it would lose what they hold), the agent says so, the
# program goes on counting into them and nothing is lost. Which hook counts plays no part:
# the cgroup run (agent_upgrade_cgroup.sh) leaves this to the default run.
# kind_kept NAME WANT: the new agent said it kept the pinned kind WANT and attached with it.
kind_kept() {
	local name=$1 want=$2 attach got_per_cpu=no want_per_cpu=no
	attach=$(grep -E 'attached to|counting continues' "$WORK/agent" | tail -1)
	[[ "$attach" == *"(counts per CPU)"* ]] && got_per_cpu=yes
	[ "$want" = "counts per CPU" ] && want_per_cpu=yes
	if ! grep -q "hold $want: keeping them so" "$WORK/agent"; then
		not_ok "$name: the pinned kind kept" "no 'hold $want: keeping them so' line"
	elif [ "$got_per_cpu" != "$want_per_cpu" ]; then
		not_ok "$name: the pinned kind kept" "the agent attached with: $attach"
	fi
}
if [ "${KZN_HOOK:-}" = cgroup ]; then
	skip "${NAMES[4]}" "the same with either hook: agent_upgrade.sh runs it"
	skip "${NAMES[5]}" "the same with either hook: agent_upgrade.sh runs it"
	stop_agent
	exit 0
fi
begin 8
sleep 2
stop_agent
agent_start "$WORK/agent" --interval 1s --per-cpu-counts
verdict "${NAMES[4]}"
kind_kept "${NAMES[4]}" "one count a flow"
# Per-CPU maps from the start: every count shipped, the pins removed, an agent with the flag.
wait_for 20 totals_match "$WORK/sink"
stop_agent
ip netns exec "$NODE" "$AGENT" --uninstall --pin-path "$BPFFS/kubezonnet" >>"$WORK/agent" 2>&1
agent_start "$WORK/agent" --interval 1s --per-cpu-counts
begin 8
sleep 2
stop_agent
agent_start "$WORK/agent" --interval 1s
verdict "${NAMES[5]}"
kind_kept "${NAMES[5]}" "counts per CPU"
stop_agent
