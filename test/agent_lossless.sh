#!/usr/bin/env bash
# Nothing lost, nothing counted twice, against nftables counters in the node namespace:
# a flow map too small for the traffic (counted plus lost equals the total), drains every
# 100 ms while two CPUs create new flows, thousands of flows in one report, kill -9 of the
# agent mid-traffic, and the server unreachable for 30 s.
. "$(dirname "$0")/lib.sh"

NAMES=("full map: counted plus lost equals the total, loss reported"
	"concurrency: 100 ms drains while both CPUs add new flows for 20 s"
	"many flows: 5,000 flows from both CPUs in one report, every byte and packet"
	"restart: kill -9 mid-traffic, then start again"
	"server unreachable for 30 s: nothing lost, nothing counted twice")
scenario_begin "${NAMES[@]}"
ipv4_topology_setup

stop_agent() { kill -TERM "$AGENT_PID"; wait "$AGENT_PID"; }

# start_agent ARGS...: an agent with a log of its own ($ALOG: $WORK/agent.1, .2, ...); the
# test stops unless it attached, so the traffic never starts before the program is on the
# hook. (Starting it early was this test's own bug: with a Python that starts faster than
# the agent attaches, such as Debian's /usr/bin/python3 rather than a pyenv shim, nftables
# counted the first datagrams that no agent had yet seen: 30 packets in scenario 2.)
AGENTS=0
start_agent() {
	AGENTS=$((AGENTS + 1))
	ALOG=$WORK/agent.$AGENTS
	if ! agent_start "$ALOG" "$@" || ! kill -0 "$AGENT_PID" 2>/dev/null; then
		not_ok "agent $AGENTS attached within 10 s" "kubezonnet-agent $*"
		sed 's/^/#   /' "$ALOG"
		exit 1
	fi
}

# sink_loss OUT: the "bytes packets" of loss all reports in OUT declared.
sink_loss() {
	python3 - "$1" <<'PY'
import json, sys
b = p = 0
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue  # a line the sink is still writing
    if r["type"] == "report":
        b += r["lost_map_full_bytes"] + r["lost_other_bytes"]
        p += r["lost_map_full_packets"] + r["lost_other_packets"]
print(b, p)
PY
}

# verdict NAME OUT: ok when the sink caught up with nftables within 60 s, still equals it two
# seconds later (no late report counted twice), and no report declared any loss (65,536
# entries are far more than these scenarios' flows: any loss here breaks the claim).
verdict() {
	local name=$1 out=$2 got want loss
	if wait_for 60 totals_match "$out" && sleep 2 && wait_for 5 totals_match "$out" &&
		[ "$(nft_count 10.77.1.2 10.77.2.2 udp)" != "0 0" ] && [ "$(sink_loss "$out")" = "0 0" ]; then
		ok "$name (UDP $(sink_udp "$out") bytes packets)"
	else
		got=$(sink_udp "$out")
		want=$(nft_count 10.77.1.2 10.77.2.2 udp)
		loss=$(sink_loss "$out")
		not_ok "$name" "agent reported '$got' (bytes packets), nftables counted '$want'; loss declared '$loss'"
		tail -5 "$ALOG" | sed 's/^/#   /'
	fi
}

# nft 1.0.6 cannot reset anonymous rule counters: start the table afresh.
reset_counters() { nft_reset; }

# 1. A 1,024-flow map and 3,000 flows in one interval.
sink_start "$WORK/sink1"
start_agent --interval 3s --map-entries 1024
in_pod "$POD1" python3 "$TRAFFIC" udp 10.77.2.2 1000 6000 100 3000
sleep 4
stop_agent
# The server acknowledges a report before its --dump-records lines reach the file: the agent
# can be gone before they are written.
full_map_match() { [ "$(sink_count_all "$WORK/sink1")" = "$(nft_count_all)" ]; }
wait_for 10 full_map_match
got=$(sink_count_all "$WORK/sink1")
want=$(nft_count_all)
lost=$(python3 -c 'import json,sys; print(sum(json.loads(l).get("lost_map_full_packets",0) for l in open(sys.argv[1])))' "$WORK/sink1")
if [ "$got" = "$want" ] && [ "$lost" -gt 0 ] && grep -q "loss:" "$ALOG"; then
	ok "${NAMES[0]} ($want bytes packets; $lost packets lost)"
else
	not_ok "${NAMES[0]}" "counted plus lost '$got', nftables '$want', lost packets '$lost'"
	grep loss "$ALOG" | sed 's/^/#   /'
fi
# The small map stays pinned after SIGTERM (the program counts on): remove it, so that the
# next scenarios start with maps of the default size.
ip netns exec "$NODE" "$AGENT" --uninstall --pin-path "$BPFFS/kubezonnet" >>"$ALOG" 2>&1
kill -9 "$SINK_PID"
wait "$SINK_PID" 2>/dev/null

# 2. Two senders, one per CPU, on the same new flows, with a drain every 100 ms.
reset_counters
sink_start "$WORK/sink2"
start_agent --interval 100ms
cpus=$(nproc)
in_pod "$POD1" taskset -c 0 python3 "$TRAFFIC" udp-flood 10.77.2.2 20 5 >/dev/null &
s1=$!
in_pod "$POD1" taskset -c $((cpus > 1 ? 1 : 0)) python3 "$TRAFFIC" udp-flood 10.77.2.2 20 5 >/dev/null &
s2=$!
wait $s1 $s2
verdict "${NAMES[1]}" "$WORK/sink2"
reports=$(grep -c '"type":"report"' "$WORK/sink2")
[ "$reports" -lt 100 ] && not_ok "${NAMES[1]}: drained often" "only $reports reports in 20 s"
stop_agent
kill -9 "$SINK_PID"
wait "$SINK_PID" 2>/dev/null

# 3. 5,000 flows in one interval, each sent from both CPUs: one report holds them all. With
# --per-cpu-counts the agent reads the frozen map AGENT_PERCPU_BATCH (1,024) flows at a time,
# so this report takes several reads, the last one short; the other scenarios' reports hold
# at most 1,024 flows (one read).
reset_counters
sink_start "$WORK/sink5"
start_agent --interval 3s
in_pod "$POD1" taskset -c 0 python3 "$TRAFFIC" udp 10.77.2.2 1000 10000 100 5000 &
s1=$!
in_pod "$POD1" taskset -c $((cpus > 1 ? 1 : 0)) python3 "$TRAFFIC" udp 10.77.2.2 1000 10000 100 5000 &
s2=$!
wait $s1 $s2
verdict "${NAMES[2]}" "$WORK/sink5"
most=$(grep -o '"records":[0-9]*' "$WORK/sink5" | cut -d: -f2 | sort -n | tail -1)
[ "${most:-0}" -gt 3072 ] ||
	not_ok "${NAMES[2]}: one report held more than three reads' worth of flows" "the largest report had ${most:-0} records"
stop_agent
kill -9 "$SINK_PID"
wait "$SINK_PID" 2>/dev/null

# 4. kill -9 mid-traffic; the pinned program keeps counting until the new agent takes over.
reset_counters
sink_start "$WORK/sink3"
start_agent --interval 1s
in_pod "$POD1" python3 "$TRAFFIC" udp-flood 10.77.2.2 6 2 >/dev/null &
s1=$!
sleep 2
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
sleep 1
start_agent --interval 1s
wait $s1
verdict "${NAMES[3]}" "$WORK/sink3"
grep -q "counting continues" "$ALOG" || not_ok "${NAMES[3]}: links reused" "no 'counting continues' line"

# With KZN_AGENT_ARGS=--per-cpu-counts (agent_lossless_percpu.sh): every agent above counted
# per CPU. Each has a log of its own: all of them are read, not only the last ($ALOG).
if [[ " ${KZN_AGENT_ARGS:-} " == *" --per-cpu-counts "* ]]; then
	check_eq "per-CPU counts: every agent started here counted per CPU" \
		"$(cat "$WORK"/agent.[0-9]* | grep -E 'attached to|counting continues' | grep -c 'counts per CPU')" "$AGENTS"
fi

# 5. The server's replies dropped for 35 s: it stores a report but its ACK never arrives, so
# the agent times out (30 s), reconnects once the path is back and resends; the server must
# acknowledge the resent report without counting it again. The hook and the kind of counts
# play no part in it: with the cgroup hook (agent_lossless_cgroup.sh) or per-CPU counts
# (agent_lossless_percpu.sh) it is left to the default run, 40 s saved.
if [ "${KZN_HOOK:-}" = cgroup ] || [ -n "${KZN_AGENT_ARGS:-}" ]; then
	skip "${NAMES[4]}" "the same with either hook and either kind of counts: agent_lossless.sh runs it"
	stop_agent
	exit 0
fi
wait_for 10 totals_match "$WORK/sink3"
reset_counters
BASE=$(sink_count "$WORK/sink3" 10.77.1.2 10.77.2.2 udp)
in_pod "$POD1" python3 "$TRAFFIC" udp-flood 10.77.2.2 40 2 >/dev/null &
s1=$!
sleep 2
ip netns exec "$NODE" nft -f - <<'NFT'
table inet kzt_cut {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp sport 18081 drop
	}
}
NFT
sleep 35
ip netns exec "$NODE" nft delete table inet kzt_cut
wait $s1
verdict "${NAMES[4]}" "$WORK/sink3"
grep -q "already stored" "$WORK/sink3.log" ||
	not_ok "${NAMES[4]}: a report was resent and deduplicated" "no duplicate seen by the server"
stop_agent
