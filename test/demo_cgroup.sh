#!/usr/bin/env bash
# make demo DEMO_HOOK=cgroup: the agents count at the socket level, each on its node's cgroup,
# which holds that node's pods' processes: every pod's cross-zone bytes equal the nftables
# counters inside the nodes (which the pods' packets still pass here), the noisy talker is
# first, the same-zone pod shows nothing, and the agents say they count on the cgroup hook.
. "$(dirname "$0")/lib.sh"
NAMES=("demo cgroup hook: every pod's cross-zone bytes equal nftables"
	"demo cgroup hook: the noisy talker is first" "demo cgroup hook: same-zone-only pod shows no cross-zone bytes"
	"demo cgroup hook: the agents count on the cgroup hook, the server knows it"
	"demo cgroup hook over VXLAN: every pod's cross-zone bytes equal nftables, without the tunnel's")
skip_unless_root "${NAMES[@]}"
demo_begin
demo_run "$WORK/report.json" "$WORK/out" DEMO_HOOK=cgroup DEMO_SECONDS=12
rc=$?
[ $rc = 0 ] || tail -5 "$WORK/out" | sed 's/^/#   /'
python3 "$TOP/test/demo_verdicts.py" "$WORK/report.json" >"$WORK/verdicts" 2>&1
demo_verdict "$WORK/verdicts" exact "${NAMES[0]}"
demo_verdict "$WORK/verdicts" top "${NAMES[1]}"
demo_verdict "$WORK/verdicts" same "${NAMES[2]}"
if grep -q "the agents count at the socket level: 6 of 6 on their node's cgroup" "$WORK/out"; then
	ok "${NAMES[3]}"
else
	not_ok "${NAMES[3]}" "$(grep -i hook "$WORK/out" | head -3)"
fi
# The same over the VXLAN overlay: the pods' packets before the tunnel, so nftables' counts of
# them on their way into flannel.1 with no encapsulation added.
demo_run "$WORK/vxlan.json" "$WORK/vxlan" DEMO_HOOK=cgroup DEMO_OVERLAY=vxlan DEMO_SECONDS=10
if [ $? != 0 ] && grep -q "no vxlan support" "$WORK/vxlan"; then
	skip "${NAMES[4]}" "this kernel cannot make VXLAN devices"
else
	python3 "$TOP/test/demo_verdicts.py" "$WORK/vxlan.json" >"$WORK/vxlan-verdicts" 2>&1
	demo_verdict "$WORK/vxlan-verdicts" exact "${NAMES[4]}"
fi
