#!/usr/bin/env bash
# The server's memory with 100,000 pods on 1,000 nodes indexed (target: under 64 MiB RSS): the
# lists of bench/gen_k8s.py served by the stand-in API server (test/fake_apiserver.py
# --lists), then 100 MODIFIED events so that the index is rebuilt once (an old and a new index
# live together for a moment). Baseline: the same server with no endpoint source.
cd "$(dirname "$0")/.." || exit 1
DIR=build/bench/k8s
[ -s $DIR/podlist.json ] && [ -s $DIR/events.jsonl ] || python3 bench/gen_k8s.py $DIR 100000 1000 || exit 0
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
API=$((26000 + $$ % 5000)) # below 32768: not an ephemeral port another socket may hold
python3 test/fake_apiserver.py $API ../shared/fixtures/k8s "$WORK/req" --lists $DIR &
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$API/" && break; sleep 0.1; done
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
./kubezonnet-server --http-listen 127.0.0.1:$((API + 1)) --agent-listen 127.0.0.1:$((API + 2)) \
	--flow-logs none 2>/dev/null &
idle=$!
./kubezonnet-server --kube-api http://127.0.0.1:$API --http-listen 127.0.0.1:$((API + 3)) \
	--agent-listen 127.0.0.1:$((API + 4)) --flow-logs none 2>"$WORK/log" &
srv=$!
t0=$(date +%s.%N)
pods() { curl -s "http://127.0.0.1:$((API + 3))/metrics" | awk '$1 == "kubezonnet_endpoints{kind=\"pod\"}" { print $2 }'; }
for _ in $(seq 600); do [ "$(pods)" = 98000 ] && break; sleep 0.2; done
t1=$(date +%s.%N)
# Wait for the events and the rebuild they cause, then a little longer.
for _ in $(seq 100); do [ "$(curl -s "http://127.0.0.1:$((API + 3))/metrics" | awk '$1 == "kubezonnet_kube_watch_events_total{resource=\"pods\"}" { print $2 }')" = 100 ] && break; sleep 0.2; done
sleep 2
rss=$(kib $srv VmRSS) hwm=$(kib $srv VmHWM) base=$(kib $idle VmRSS)
if [ "$(pods)" != 98000 ]; then
	echo "k8s_rss: the server did not index the pods: $(tail -3 "$WORK/log")" >&2
	exit 0
fi
row() { printf '%-44s %14.1f %-12s %-26s %14.1f %7.2fx\n' "$1" "$2" "$3" "$4" "$5" "$(awk -v a="$2" -v b="$5" 'BEGIN { print (b ? a / b : 0) }')"; }
row "k8s: server RSS, 100k pods on 1k nodes" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" MiB "idle server" "$(awk -v k="$base" 'BEGIN { print k / 1024 }')"
row "k8s: server peak RSS (VmHWM)" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" MiB "target" 64
printf '%-44s %14.1f %-12s %-26s %14s %8s\n' "k8s: first list to ready, 100k pods" \
	"$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" s - - -
