#!/usr/bin/env bash
# The agent loads its embedded BPF program and attaches it to netfilter POSTROUTING for IPv4
# and IPv6 in a fresh network namespace, then detaches cleanly on SIGTERM.
. "$(dirname "$0")/lib.sh"

check "agent --help exits 0" "$AGENT" --help
"$AGENT" --no-such-flag >/dev/null 2>&1
check_eq "agent rejects an unknown flag with exit 2" "$?" 2
check "agent binary links only glibc libraries" \
	bash -c "! ldd '$AGENT' | grep -vE 'linux-vdso|ld-linux|lib(c|m|pthread|dl|rt)\\.so'"

skip_unless_root "agent attaches in a network namespace" "agent detaches on SIGTERM"
if ! command -v bpftool >/dev/null && [ ! -x /usr/sbin/bpftool ]; then
	skip "agent attaches in a network namespace" "bpftool not installed (make deps)"
	exit 0
fi
PATH=$PATH:/usr/sbin
trap netns_cleanup EXIT
ns=${NS_PREFIX}load
ip netns add "$ns"
log=$(mktemp)
ip netns exec "$ns" "$AGENT" >"$log" 2>&1 &
pid=$!

if wait_for 10 grep -q attached "$log"; then
	ids=$(bpftool -j prog show | python3 -c '
import json, sys
print(" ".join(str(p["id"]) for p in json.load(sys.stdin) if p.get("name") == "kzn_postrouting"))')
	n=$(bpftool -j link show | python3 -c "
import json, sys
ids = set(int(i) for i in '$ids'.split())
print(sorted(l.get('pf') for l in json.load(sys.stdin)
             if l.get('type') == 'netfilter' and l.get('prog_id') in ids and l.get('hook') == 4))")
	check_eq "agent attaches in a network namespace" "$n" "[2, 10]"
else
	not_ok "agent attaches in a network namespace" "no 'attached' line"
	sed 's/^/#   /' "$log"
fi
kill -TERM $pid
wait $pid
rc=$?
progs_left() { bpftool -j prog show | python3 -c '
import json, sys
print(sum(1 for p in json.load(sys.stdin) if p.get("name") == "kzn_postrouting"))'; }
# The kernel frees a program after an RCU grace period: allow it a few seconds.
no_progs_left() { [ "$(progs_left)" = 0 ]; }
wait_for 5 no_progs_left
left=$(progs_left)
if [ "$rc" = 0 ] && [ "$left" = 0 ]; then
	ok "agent detaches on SIGTERM"
else
	not_ok "agent detaches on SIGTERM" "exit $rc, $left programs left"
	sed 's/^/#   /' "$log"
fi
rm -f "$log"
