#!/usr/bin/env bash
# make demo DEMO_K8S=1: the simulated cluster's pods and nodes come from a stand-in
# Kubernetes API server over HTTPS; the server lists them, and the numbers its table shows
# equal nftables counters inside the simulated nodes, as with the topology file.
. "$(dirname "$0")/lib.sh"
NAMES=("demo k8s: the server lists pods and nodes from the API server"
	"demo k8s: every pod's cross-zone bytes equal nftables")
skip_unless_root "${NAMES[@]}"
demo_begin
demo_run "$WORK/report.json" "$WORK/out" DEMO_K8S=1 DEMO_SECONDS=20
rc=$?
if [ $rc = 0 ] && grep -q "kubernetes: listed 6 nodes and 8 pods; ready" "$WORK/out"; then
	ok "demo k8s: the server lists pods and nodes from the API server"
else
	not_ok "demo k8s: the server lists pods and nodes from the API server" "exit $rc"
	tail -5 "$WORK/out" | sed 's/^/#   /'
fi
python3 "$TOP/test/demo_verdicts.py" "$WORK/report.json" >"$WORK/verdicts" 2>&1
demo_verdict "$WORK/verdicts" exact "demo k8s: every pod's cross-zone bytes equal nftables"
