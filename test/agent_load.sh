#!/usr/bin/env bash
# The agent's flags, its static linking, and the life cycle of its embedded BPF program:
# it attaches to netfilter POSTROUTING for IPv4 and IPv6 in a fresh network namespace, pins
# its maps and links, and on SIGTERM detaches and removes the pins once all is acknowledged.
. "$(dirname "$0")/lib.sh"

check "agent --help exits 0" "$AGENT" --help
"$AGENT" --no-such-flag >/dev/null 2>&1
check_eq "agent rejects an unknown flag with exit 2" "$?" 2
"$AGENT" --server 127.0.0.1:1 --interval 0s >/dev/null 2>&1
check_eq "agent rejects a bad --interval with exit 2" "$?" 2
"$AGENT" --server 127.0.0.1:1 --map-entries 12 >/dev/null 2>&1
check_eq "agent rejects a bad --map-entries with exit 2" "$?" 2
NODE_NAME=Not_A_Node "$AGENT" --server 127.0.0.1:1 >/dev/null 2>&1
check_eq "agent rejects an invalid node name with exit 2" "$?" 2
env -u KUBEZONNET_SERVER "$AGENT" >/dev/null 2>&1
check_eq "agent without --server exits 2" "$?" 2
check "agent binary links only glibc libraries" \
	bash -c "! ldd '$AGENT' | grep -vE 'linux-vdso|ld-linux|lib(c|m|pthread|dl|rt)\\.so'"

skip_unless_root "agent attaches in a network namespace" "agent pins maps and links" \
	"agent detaches on SIGTERM and removes its pins"
PATH=$PATH:/usr/sbin
trap scenario_cleanup EXIT
WORK=$(mktemp -d)
bpffs_setup
NODE=${NS_PREFIX}node
ip netns add "$NODE"
ip -n "$NODE" link set lo up
sink_start "$WORK/sink"
if agent_start "$WORK/agent"; then
	ids=$(bpftool -j prog show | python3 -c '
import json, sys
print(" ".join(str(p["id"]) for p in json.load(sys.stdin) if p.get("name") == "kzn_postrouting"))')
	n=$(bpftool -j link show | python3 -c "
import json, sys
ids = set(int(i) for i in '$ids'.split())
print(sorted(l.get('pf') for l in json.load(sys.stdin)
             if l.get('type') == 'netfilter' and l.get('prog_id') in ids and l.get('hook') == 4))")
	check_eq "agent attaches in a network namespace" "$n" "[2, 10]"
	pins=$(ls "$BPFFS/kubezonnet" | tr '\n' ' ')
	check_eq "agent pins maps and links" "$pins" \
		"kzn_active kzn_flows_a kzn_flows_b kzn_grace kzn_loss kzn_state link_ipv4 link_ipv6 "
else
	not_ok "agent attaches in a network namespace" "no 'attached' line"
	sed 's/^/#   /' "$WORK/agent"
fi
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
rc=$?
progs_left() { bpftool -j prog show | python3 -c '
import json, sys
print(sum(1 for p in json.load(sys.stdin) if p.get("name") == "kzn_postrouting"))'; }
no_progs_left() { [ "$(progs_left)" = 0 ]; }
# The kernel frees a program after an RCU grace period: allow it a few seconds.
wait_for 5 no_progs_left
left=$(progs_left)
if [ "$rc" = 0 ] && [ "$left" = 0 ] && [ ! -e "$BPFFS/kubezonnet" ]; then
	ok "agent detaches on SIGTERM and removes its pins"
else
	not_ok "agent detaches on SIGTERM and removes its pins" "exit $rc, $left programs left, pins: $(ls "$BPFFS")"
	sed 's/^/#   /' "$WORK/agent"
fi
