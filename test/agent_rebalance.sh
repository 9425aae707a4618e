#!/usr/bin/env bash
# One server per zone (deploy/per-zone): the agent reaches "its" server through a Service
# address that kube-proxy translates (here: an nftables DNAT of the same kind). When that
# server goes down, the agent's reports go to the other server; when it is back, --rebalance
# brings the agent home. Across both servers, every byte nftables counted is reported once.
. "$(dirname "$0")/lib.sh"

NAMES=("per zone: the home server down, reports go to the other, nothing lost or counted twice"
	"per zone: --rebalance brings the agent back to its home server")
scenario_begin "${NAMES[@]}"
ipv4_topology_setup

# The Service: 10.99.0.1:8081, translated to the home server (port 18081) or the other (18082).
service_to() {
	ip netns exec "$NODE" nft delete table ip kzt_svc 2>/dev/null
	ip netns exec "$NODE" nft -f - <<NFT
table ip kzt_svc {
	chain out {
		type nat hook output priority -100; policy accept;
		ip daddr 10.99.0.1 tcp dport 8081 dnat to 10.77.1.1:$1
	}
}
NFT
}
ip -n "$NODE" addr add 10.99.0.1/32 dev lo
server() { # server PORT OUT
	ip netns exec "$NODE" "$SERVER" --agent-listen 10.77.1.1:"$1" --http-listen 127.0.0.1:$(($1 + 1000)) \
		--dump-records >>"$2" 2>>"$2.log" &
	PIDS+=($!)
	SERVER_PID=$!
	wait_for 5 grep -q listening "$2.log"
}
HOME_OUT=$WORK/home OTHER_OUT=$WORK/other
server 18082 "$OTHER_OUT"
server 18081 "$HOME_OUT"
home_pid=$SERVER_PID
service_to 18081

ip netns exec "$NODE" "$AGENT" --server 10.99.0.1:8081 --node node-1 --interval 300ms \
	--rebalance 2s --pin-path "$BPFFS/kubezonnet" >>"$WORK/agent" 2>&1 &
AGENT_PID=$!
PIDS+=($AGENT_PID)
wait_for 10 grep -q "attached to" "$WORK/agent"

# both_udp: pod1-to-pod2 UDP "bytes packets" reported to the two servers together.
both_udp() {
	local b1 p1 b2 p2
	read -r b1 p1 < <(sink_count "$HOME_OUT" 10.77.1.2 10.77.2.2 udp)
	read -r b2 p2 < <(sink_count "$OTHER_OUT" 10.77.1.2 10.77.2.2 udp)
	echo "$((b1 + b2)) $((p1 + p2))"
}
both_match() { [ "$(both_udp)" = "$(nft_count 10.77.1.2 10.77.2.2 udp)" ]; }
# records_after OUT LINE: whether OUT holds pod1-to-pod2 records past its first LINE lines.
records_after() { tail -n +"$(($2 + 1))" "$1" | grep -q '"src":"10.77.1.2","dst":"10.77.2.2"'; }

in_pod "$POD1" python3 "$TRAFFIC" udp 10.77.2.2 5000 300 200 10
wait_for 10 both_match
# The home server goes down (its endpoint leaves the Service), while the node is quiet.
kill -TERM "$home_pid"
wait "$home_pid" 2>/dev/null
service_to 18082
other_lines=$(wc -l <"$OTHER_OUT")
in_pod "$POD1" python3 "$TRAFFIC" udp 10.77.2.2 5000 300 200 10
wait_for 20 both_match
if both_match && records_after "$OTHER_OUT" "$other_lines"; then
	ok "${NAMES[0]} (UDP $(both_udp) bytes packets)"
else
	not_ok "${NAMES[0]}" "servers got '$(both_udp)', nftables '$(nft_count 10.77.1.2 10.77.2.2 udp)'"
	tail -5 "$WORK/agent" | sed 's/^/#   /'
fi

# The home server is back: the agent keeps its working connection to the other one until
# --rebalance (2 s here, about) makes it connect anew, and the Service sends it home.
server 18081 "$HOME_OUT"
service_to 18081
home_lines=$(wc -l <"$HOME_OUT")
sleep 4
in_pod "$POD1" python3 "$TRAFFIC" udp 10.77.2.2 5000 300 200 10
wait_for 20 both_match
if both_match && records_after "$HOME_OUT" "$home_lines" && grep -q "rebalance" "$WORK/agent"; then
	ok "${NAMES[1]} (UDP $(both_udp) bytes packets)"
else
	not_ok "${NAMES[1]}" "servers got '$(both_udp)', nftables '$(nft_count 10.77.1.2 10.77.2.2 udp)'"
	tail -5 "$WORK/agent" | sed 's/^/#   /'
fi
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
