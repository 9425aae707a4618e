#!/usr/bin/env bash
# Hostile load on both ports at once (issue #12), while four honest agents report: on each
# port 1,000 connections that send a byte a second and 1,000 idle ones, garbage, truncated and
# oversized frames, a HELLO storm. /metrics keeps answering within 100 ms, the honest agents'
# totals are exact, and each kind of rejection is counted.
. "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d)
trap 'kill $SPID 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
AP=18590 HP=18591
url=http://127.0.0.1:$HP
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 5000 ]; then
	skip "hostile load" "needs 5,000 file descriptors (hard limit $(ulimit -Hn))"
	exit 0
fi
python3 - >"$WORK/topology.json" <<'PY'
import json
nodes = [{"name": "n%d" % n, "zone": "a", "region": "r"} for n in range(1, 5)]
nodes.append({"name": "m1", "zone": "b", "region": "r"})
pods = [{"namespace": "ns", "name": "p%d" % n, "node": "n%d" % n, "ips": ["10.0.%d.1" % n]} for n in range(1, 5)]
pods += [{"namespace": "ns", "name": "q%d" % n, "node": "m1", "ips": ["10.0.%d.2" % n]} for n in range(1, 5)]
print(json.dumps({"nodes": nodes, "pods": pods}))
PY
"$SERVER" $ANY_ADDRESS --topology "$WORK/topology.json" --agent-listen 127.0.0.1:$AP --http-listen 127.0.0.1:$HP \
	--flow-logs none 2>"$WORK/log" &
SPID=$!
wait_for 5 grep -q listening "$WORK/log" || { not_ok "hostile load: server starts" "$(cat "$WORK/log")"; exit 1; }

python3 "$TOP/test/hostile_peer.py" storm $AP $HP 20 >"$WORK/storm"
val() { sed -n "s/^$1=//p" "$WORK/storm"; }
sed 's/^/# /' "$WORK/storm"
metric() { curl -s "$url/metrics" | awk -v want="$1" '$1 == want { print $2 }'; }

check_eq "hostile load: 4,000 attacking connections opened" "$(val opened)" 4000
max=$(val scrape_max_ms) n=$(val scrapes)
if [ "${n:-0}" -ge 50 ] && [ "$(val scrape_failed)" = 0 ] && [ "${max:-999999}" -lt 100 ]; then
	ok "hostile load: /metrics answered every time within 100 ms ($n scrapes, median $(val scrape_p50_ms) ms, slowest $max ms)"
else
	not_ok "hostile load: /metrics answered every time within 100 ms" "$n scrapes, $(val scrape_failed) failed, median $(val scrape_p50_ms) ms, slowest $max ms"
fi
check_eq "hostile load: every honest report acknowledged" "$(val honest_unacked)" 0
exact=1
for n in 1 2 3 4; do
	want=$(($(val honest_$n) * 10 * (1000 + n)))
	got=$(metric "pod_cross_zone_network_traffic_bytes_total{namespace=\"ns\",pod=\"p$n\"}")
	[ "$got" = "$want" ] || { exact=0; echo "# p$n: got '$got', want $want"; }
done
if [ $exact = 1 ] && [ "$(val honest_reports)" -ge 40 ]; then
	ok "hostile load: the honest agents' totals are exact ($(val honest_reports) reports)"
else
	not_ok "hostile load: the honest agents' totals are exact"
fi
rejected=$(curl -s "$url/metrics" | grep -E '^kubezonnet_(frames_rejected_total|agent_connections_closed_total|http_rejected_total)')
echo "$rejected" | sed 's/^/# /'
for want in 'frames_rejected_total{reason="too_big"}' 'frames_rejected_total{reason="type"}' \
	'frames_rejected_total{reason="compression"}' 'agent_connections_closed_total{reason="hello_timeout"}' \
	'http_rejected_total{reason="bad_request"}' 'http_rejected_total{reason="evicted"}'; do
	if echo "$rejected" | grep -qF "kubezonnet_$want"; then
		ok "hostile load: counted: $want"
	else
		not_ok "hostile load: counted: $want"
	fi
done
check "hostile load: the server is still there" kill -0 $SPID
kill $SPID
wait $SPID
check_eq "hostile load: and exits 0 on SIGTERM" "$?" 0
