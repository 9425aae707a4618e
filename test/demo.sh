#!/usr/bin/env bash
# make demo, non-interactively: after a crashed demo (kill -9) it cleans up first; it runs
# about 30 s; the numbers its table showed equal nftables counters inside the simulated
# nodes; the noisy talker is first; a pod with only same-zone traffic shows no cross-zone
# bytes; and teardown leaves no namespace, link, mount or process behind. Also: without
# root it says so and leaves nothing.
. "$(dirname "$0")/lib.sh"

NAMES=("demo: refuses without root, leaves nothing" "demo: Ctrl-C tears everything down"
	"demo: cleans up after a crashed demo"
	"demo: every pod's cross-zone bytes equal nftables" "demo: the noisy talker is first"
	"demo: same-zone-only pod shows no cross-zone bytes" "demo: teardown leaves nothing")
skip_unless_root "${NAMES[@]}"
demo_begin
snapshot() {
	{
		ip netns list | awk '{print $1}' | sort
		ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
		grep kubezonnet /proc/mounts
		pgrep -af 'kubezonnet-(agent|server)|demo/traffic.py|demo/table.py' | grep -v pgrep
	} 2>/dev/null
}
snapshot >"$WORK/before"

out=$(setpriv --reuid=65534 --regid=65534 --clear-groups demo/demo.sh 2>&1)
rc=$?
snapshot >"$WORK/nonroot"
if [ $rc -ne 0 ] && echo "$out" | grep -q "needs root" && diff -q "$WORK/before" "$WORK/nonroot" >/dev/null; then
	ok "demo: refuses without root, leaves nothing"
else
	not_ok "demo: refuses without root, leaves nothing" "exit $rc: $out"
fi

# Ctrl-C: SIGINT to the demo's process group, as a terminal sends it.
python3 - "$WORK/ctrlc" <<'PY' >"$WORK/ctrlc.rc"
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, not ignored
log = open(sys.argv[1], "w")
p = subprocess.Popen(["demo/demo.sh"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
for _ in range(120):
    if "ready:" in open(sys.argv[1]).read():
        break
    time.sleep(0.5)
time.sleep(3)
os.killpg(p.pid, signal.SIGINT)
print(p.wait(timeout=60))
PY
snapshot >"$WORK/after-ctrlc"
if grep -q "ready:" "$WORK/ctrlc" && [ "$(cat "$WORK/ctrlc.rc")" = 130 ] &&
	diff -q "$WORK/before" "$WORK/after-ctrlc" >/dev/null; then
	ok "demo: Ctrl-C tears everything down"
else
	not_ok "demo: Ctrl-C tears everything down" "exit $(cat "$WORK/ctrlc.rc"); left: $(diff "$WORK/before" "$WORK/after-ctrlc" | tr '\n' ' ')"
fi

# A demo killed with -9 mid-run leaves namespaces and processes behind...
setsid demo/demo.sh >"$WORK/crashed" 2>&1 &
crashed=$!
wait_for 60 grep -q "ready:" "$WORK/crashed"
kill -9 $crashed
wait $crashed 2>/dev/null
# ...which the next one cleans up before it starts.
demo_run "$WORK/report.json" "$WORK/out" DEMO_SECONDS=30
rc=$?
if [ $rc = 0 ] && grep -q "cleaning up what an earlier demo left" "$WORK/out"; then
	ok "demo: cleans up after a crashed demo"
else
	not_ok "demo: cleans up after a crashed demo" "exit $rc"
	tail -20 "$WORK/out" | sed 's/^/#   /'
fi
sed -n '/^kubezonnet demo/,/^Totals/p' "$WORK/out" | sed 's/^/#   /'

python3 "$TOP/test/demo_verdicts.py" "$WORK/report.json" >"$WORK/verdicts"
demo_verdict "$WORK/verdicts" exact "demo: every pod's cross-zone bytes equal nftables"
demo_verdict "$WORK/verdicts" top "demo: the noisy talker is first"
demo_verdict "$WORK/verdicts" same "demo: same-zone-only pod shows no cross-zone bytes"

snapshot >"$WORK/after"
if diff "$WORK/before" "$WORK/after" >"$WORK/diff"; then
	ok "demo: teardown leaves nothing"
else
	not_ok "demo: teardown leaves nothing" "$(tr '\n' ' ' <"$WORK/diff")"
fi
