#!/usr/bin/env bash
# The server's Kubernetes source against a stand-in API server (test/fake_apiserver.py)
# serving real API responses: paginated lists, an expired continue token (HTTP 410), watch
# streams split at odd chunk boundaries, bookmarks, an in-stream ERROR 410 that must trigger
# a relist, and a watch that ends and must be resumed from its last resourceVersion.
. "$(dirname "$0")/lib.sh"
NAMES=("k8s: not ready before the first lists, ready after" "k8s: relist after an expired continue token"
	"k8s: relist after an in-stream ERROR 410" "k8s: watch resumed from its last resourceVersion"
	"k8s: the index follows the lists and events" "k8s: attribution with Kubernetes names"
	"k8s: only list and watch of pods and nodes" "k8s: a topology file adds external networks and machines")
skip_unless_fixtures "${NAMES[@]}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
API=$((21000 + $$ % 9000))
HTTP=$((API + 1))
AG=$((API + 2))
python3 "$TOP/test/fake_apiserver.py" $API "$FIX" "$WORK/requests" &
wait_for 5 python3 -c "import socket; socket.create_connection(('127.0.0.1', $API), 1)"
"$SERVER" $ANY_ADDRESS --kube-api http://127.0.0.1:$API --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$AG \
	--flow-logs none 2>"$WORK/log" &
url=http://127.0.0.1:$HTTP
metric() { curl -s "$url/metrics" | awk -v want="$1{$2}" '$1 == want { print $2 }'; }
pods_are() { [ "$(metric kubezonnet_endpoints 'kind="pod"')" = "$1" ]; }

# Ready only once both kinds are listed (the node list needs two attempts).
first=$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")
relisted() { [ "$(grep -c '^/api/v1/pods?limit=500' "$WORK/requests")" -ge 2 ]; }
wait_for 15 relisted
sleep 2.5 # the index is rebuilt at most once a second after a change
wait_for 15 pods_are 2
second=$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")
if [ "$second" = 200 ] && { [ "$first" = 503 ] || [ "$first" = 000 ]; }; then
	ok "k8s: not ready before the first lists, ready after"
elif [ "$second" = 200 ]; then
	ok "k8s: not ready before the first lists, ready after (the first probe came after the lists: $first)"
else
	not_ok "k8s: not ready before the first lists, ready after" "readyz $first then $second"
fi
# The first list reads the cache (resourceVersion=0) in pages; after the expired continue
# token, one full list without pages.
if grep -q '^/api/v1/nodes?limit=500&resourceVersion=0$' "$WORK/requests" &&
	grep -q 'nodes?limit=500&continue=page2' "$WORK/requests" &&
	grep -q '^/api/v1/nodes?resourceVersion=0$' "$WORK/requests"; then
	ok "k8s: relist after an expired continue token (in full, without pages)"
else
	not_ok "k8s: relist after an expired continue token" "$(tr '\n' ' ' <"$WORK/requests")"
fi
pod_lists=$(grep -c '^/api/v1/pods?limit=500' "$WORK/requests")
check_eq "k8s: relist after an in-stream ERROR 410" "$pod_lists" 2
if grep -q 'nodes?watch=1&resourceVersion=1900&allowWatchBookmarks=true' "$WORK/requests"; then
	ok "k8s: watch resumed from its last resourceVersion (1900, the bookmark's)"
else
	not_ok "k8s: watch resumed from its last resourceVersion" "$(grep watch "$WORK/requests" | tr '\n' ' ')"
fi
# After the relist: the two dual-stack pods (the kube-system ones are gone); nodes: the
# control plane and kind-worker (kind-worker2 was deleted, and comes back in zone unknown
# for the pods that still name it).
nodes=$(metric kubezonnet_endpoints 'kind="node"')
pods=$(metric kubezonnet_endpoints 'kind="pod"')
check_eq "k8s: the index follows the lists and events" "$pods pods, $nodes nodes" "2 pods, 3 nodes"
# A record from the dual-stack pod (kind-worker2, zone unknown) to kind-worker (zone-b, set by
# the MODIFIED event) is cross-zone and named after the pod.
acked=$(python3 "$TOP/test/wire_agent.py" 127.0.0.1 $AG kind-worker2 9 1 fd00:10:244:1::3 172.18.0.2 4242 2>&1)
[ "$acked" = 1 ] || echo "#   the test agent: $acked"
check_eq "k8s: attribution with Kubernetes names" \
	"$(metric pod_cross_zone_network_traffic_bytes_total 'namespace="sonobuoy",pod="sonobuoy-dualstack"')" 4242
# RBAC: every request was a GET (the stand-in answers nothing else) of the pods or nodes
# collection, a list or a watch: list and watch on pods and nodes are all the server needs.
others=$(grep -vE '^/api/v1/(pods|nodes)(\?|$)' "$WORK/requests" | head -3)
if [ -z "$others" ] && [ "$(wc -l <"$WORK/requests")" -ge 6 ]; then
	ok "k8s: only list and watch of pods and nodes ($(wc -l <"$WORK/requests") requests)"
else
	not_ok "k8s: only list and watch of pods and nodes" "$others"
fi

# --kube-api with --topology: the file adds what the API does not know (an external network,
# a machine outside the cluster); an address both know keeps the API's answer.
cat >"$WORK/extra.json" <<'JSON'
{"nodes": [{"name": "vm-1", "zone": "zone-z", "ips": ["192.0.2.50"]},
           {"name": "impostor", "zone": "zone-z", "ips": ["172.18.0.2"]}],
 "external": [{"name": "internet", "cidr": "0.0.0.0/0"}]}
JSON
"$SERVER" $ANY_ADDRESS --kube-api http://127.0.0.1:$API --topology "$WORK/extra.json" --http-listen 127.0.0.1:$((API + 3)) \
	--agent-listen 127.0.0.1:$((API + 4)) --flow-logs all >"$WORK/flows2" 2>"$WORK/log2" &
url=http://127.0.0.1:$((API + 3))
ready2() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ]; }
wait_for 15 ready2
python3 "$TOP/test/wire_agent.py" 127.0.0.1 $((API + 4)) kind-worker2 11 1 fd00:10:244:1::3 9.9.9.9 100 \
	2 fd00:10:244:1::3 192.0.2.50 200 3 fd00:10:244:1::3 172.18.0.2 300 >/dev/null 2>&1
flows() { [ "$(wc -l <"$WORK/flows2")" -ge 3 ]; }
wait_for 5 flows
got=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)["dst"]
    print(d["ip"], d["kind"], d.get("name"), d.get("zone") if d.get("name") == "vm-1" else "")' "$WORK/flows2" | tr '\n' ';')
check_eq "k8s: a topology file adds external networks and machines" "$got" \
	"9.9.9.9 external internet ;192.0.2.50 node vm-1 zone-z;172.18.0.2 node kind-worker ;"
