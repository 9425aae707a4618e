#!/usr/bin/env bash
# make demo DEMO_OVERLAY=vxlan: the simulated cluster carries pod traffic in a VXLAN overlay
# (flannel.1, UDP 8472); every pod's cross-zone bytes equal the nftables counters of its
# packets on their way into the tunnel plus 50 bytes of encapsulation each, the noisy talker
# is still first, and the same-zone pod still shows nothing.
. "$(dirname "$0")/lib.sh"
NAMES=("demo overlay: every pod's cross-zone bytes equal nftables plus the encapsulation"
	"demo overlay: the noisy talker is first" "demo overlay: same-zone-only pod shows no cross-zone bytes")
skip_unless_root "${NAMES[@]}"
demo_begin
demo_run "$WORK/report.json" "$WORK/out" DEMO_OVERLAY=vxlan DEMO_SECONDS=20
rc=$?
if [ $rc != 0 ] && grep -q "no vxlan support" "$WORK/out"; then
	for n in "${NAMES[@]}"; do skip "$n" "this kernel cannot make VXLAN devices"; done
	exit 0
fi
[ $rc = 0 ] || tail -5 "$WORK/out" | sed 's/^/#   /'
python3 "$TOP/test/demo_verdicts.py" "$WORK/report.json" >"$WORK/verdicts" 2>&1
demo_verdict "$WORK/verdicts" exact "${NAMES[0]}"
demo_verdict "$WORK/verdicts" top "${NAMES[1]}"
demo_verdict "$WORK/verdicts" same "${NAMES[2]}"
