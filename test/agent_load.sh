#!/usr/bin/env bash
# The agent's flags, its static linking, and the life cycle of its embedded BPF program:
# it attaches to netfilter POSTROUTING for IPv4 and IPv6 in a fresh network namespace, pins
# its maps and links; on SIGTERM it ships a last report and leaves the program counting and
# everything pinned (a rolling update's next agent takes over); --uninstall detaches and
# removes the pins.
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

check "agent --uninstall of nothing pinned exits 0" "$AGENT" --uninstall --pin-path /tmp/kzt-nothing-$$/kubezonnet
"$AGENT" --pause --server 127.0.0.1:1 >/dev/null 2>&1
check_eq "agent --pause without --uninstall or --mount-bpffs exits 2" "$?" 2
out=$("$AGENT" --server 127.0.0.1:1 --pin-path /tmp/kzt-no-bpffs-$$/kubezonnet 2>&1)
rc=$?
if [ $rc = 1 ] && [[ $out == *"is not a bpf filesystem"*"mount-bpffs"* ]]; then
	ok "agent without a bpf filesystem names the missing mount"
else
	not_ok "agent without a bpf filesystem names the missing mount" "exit $rc: $out"
fi

NAMES=("agent attaches in a network namespace" "agent pins maps and links"
	"agent on SIGTERM: last report acknowledged, program still attached, pins kept"
	"agent restarted after SIGTERM continues on the same links and instance"
	"agent --uninstall detaches and removes every pin"
	"agent --mount-bpffs mounts a bpf filesystem once")
skip_unless_root "${NAMES[@]}"
PATH=$PATH:/usr/sbin
trap scenario_cleanup EXIT
WORK=$(mktemp -d)
bpffs_setup
NODE=${NS_PREFIX}node
ip netns add "$NODE"
ip -n "$NODE" link set lo up
sink_start "$WORK/sink"
# pinned_links: "ID:PF" of the links this test's agent pinned, e.g. "12:2 13:10".
pinned_links() {
	local f
	for f in link_ipv4 link_ipv6; do
		bpftool -j link show pinned "$BPFFS/kubezonnet/$f" 2>/dev/null |
			python3 -c 'import json, sys; l = json.load(sys.stdin); print("%d:%d" % (l["id"], l["pf"]))'
	done | tr '\n' ' '
}
# live_links IDS: those of the link ids (as "ID:PF") still attached at POSTROUTING, priority 99.
live_links() { bpftool -j link show | python3 -c "
import json, sys
ids = set(int(i.split(':')[0]) for i in '$1'.split())
print(' '.join('%d:%d' % (l['id'], l['pf']) for l in json.load(sys.stdin)
               if l['id'] in ids and l.get('type') == 'netfilter' and l.get('hook') == 4 and l.get('prio') == 99))"; }
links=
if agent_start "$WORK/agent"; then
	links=$(pinned_links)
	check_eq "${NAMES[0]}" "$(live_links "$links" | sed 's/[0-9]*://g')" "2 10"
	pins=$(ls "$BPFFS/kubezonnet" | tr '\n' ' ')
	check_eq "${NAMES[1]}" "$pins" \
		"kzn_active kzn_flows_a kzn_flows_b kzn_grace kzn_loss kzn_progs kzn_socket_progs kzn_state kzn_tunnel_devs link_ipv4 link_ipv6 "
else
	not_ok "${NAMES[0]}" "no 'attached' line"
	sed 's/^/#   /' "$WORK/agent"
fi
instance=$(grep -o 'instance [0-9a-f]*' "$WORK/agent" | head -1)
sleep 1
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
rc=$?
if [ "$rc" = 0 ] && grep -q "last report acknowledged" "$WORK/agent" && [ -n "$links" ] &&
	[ "$(live_links "$links")" = "${links% }" ] && [ "$(pinned_links)" = "$links" ]; then
	ok "${NAMES[2]}"
else
	not_ok "${NAMES[2]}" "exit $rc, links '$links', now '$(live_links "$links")', pins: $(ls "$BPFFS/kubezonnet")"
	sed 's/^/#   /' "$WORK/agent"
fi
: >"$WORK/agent2"
agent_start "$WORK/agent2"
if grep -q "counting continues" "$WORK/agent2" && grep -q "$instance" "$WORK/agent2" &&
	[ "$(pinned_links)" = "$links" ]; then
	ok "${NAMES[3]}"
else
	not_ok "${NAMES[3]}" "links '$links', now '$(pinned_links)', want $instance"
	sed 's/^/#   /' "$WORK/agent2"
fi
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
ip netns exec "$NODE" "$AGENT" --uninstall --pin-path "$BPFFS/kubezonnet" >"$WORK/uninstall" 2>&1
rc=$?
no_links() { [ -z "$(live_links "$links")" ]; }
# The kernel releases a link after an RCU grace period: allow it a few seconds.
wait_for 5 no_links
if [ "$rc" = 0 ] && [ -n "$links" ] && no_links && [ ! -e "$BPFFS/kubezonnet" ]; then
	ok "${NAMES[4]}"
else
	not_ok "${NAMES[4]}" "exit $rc, links left '$(live_links "$links")', pins: $(ls "$BPFFS")"
	sed 's/^/#   /' "$WORK/uninstall"
fi

# --mount-bpffs, in a private mount namespace: mounts on a directory that has none, and
# leaves an existing one alone.
mnt=$WORK/mnt
out=$(unshare --mount --propagation private bash -c "
	'$AGENT' --mount-bpffs --pin-path '$mnt/kubezonnet' &&
	stat -f -c %T '$mnt' &&
	'$AGENT' --mount-bpffs --pin-path '$mnt/kubezonnet'" 2>&1)
if [[ $out == *"mounted a bpf filesystem on $mnt"*"bpf_fs"*"is a bpf filesystem already"* ]]; then
	ok "${NAMES[5]}"
else
	not_ok "${NAMES[5]}" "$out"
fi
