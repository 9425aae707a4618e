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
python3 "$TOP/test/demo_verdicts.py" "$WORK/report.json" >"$WORK/verdicts" 2>&1
demo_verdict "$WORK/verdicts" exact "demo k8s: every pod's cross-zone bytes equal nftables"
