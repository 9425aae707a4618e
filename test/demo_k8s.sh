#!/usr/bin/env bash
# make demo DEMO_K8S=1: the simulated cluster's pods and nodes come from a stand-in
# Kubernetes API server over HTTPS; the server lists them, and the numbers its table shows
# equal nftables counters inside the simulated nodes, as with the topology file.
. "$(dirname "$0")/lib.sh"
NAMES=("demo k8s: the server lists pods and nodes from the API server"
	"demo k8s: every pod's cross-zone bytes equal nftables")
skip_unless_root "${NAMES[@]}"
WORK=$(mktemp -d)
trap 'demo/demo.sh stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
cd "$TOP" || exit 1
make -s demo DEMO_K8S=1 DEMO_SECONDS=20 DEMO_REPORT="$WORK/report.json" >"$WORK/out" 2>&1
rc=$?
if [ $rc = 0 ] && grep -q "kubernetes: listed 6 nodes and 8 pods; ready" "$WORK/out"; then
	ok "demo k8s: the server lists pods and nodes from the API server"
else
	not_ok "demo k8s: the server lists pods and nodes from the API server" "exit $rc"
	tail -5 "$WORK/out" | sed 's/^/#   /'
fi
verdict=$(python3 - "$WORK/report.json" <<'PY' 2>&1
import json, sys
r = json.load(open(sys.argv[1]))
pods, oracle = r["pods"], r["oracle"]
bad = [f"{p}: table {pods.get(p, 0):.0f}, nftables {o}" for p, o in oracle.items() if pods.get(p, 0) != o]
sent = [p for p, o in oracle.items() if o > 0]
print("ok" if not bad and len(sent) >= 5 else "bad", "; ".join(bad) or f"{len(sent)} pods sending across zones")
PY
)
case $verdict in
ok*) ok "demo k8s: every pod's cross-zone bytes equal nftables (${verdict#ok })" ;;
*) not_ok "demo k8s: every pod's cross-zone bytes equal nftables" "$verdict" ;;
esac
