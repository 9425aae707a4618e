#!/usr/bin/env bash
# The real binaries' seccomp filters are in force (issue #13): with
# KUBEZONNET_SANDBOX_SELFTEST (sandbox.h) each makes, right after installing its filter, a
# call outside its allow list (mknodat), which must end it with one log line naming the call
# and status 159; or a call on the kill list (execve), which must kill it with SIGSYS before
# any handler runs. The server as any user; the agent as root, attached in a namespace of its
# own. test/sandbox_test.c checks the same for the filter code itself.
. "$(dirname "$0")/lib.sh"

NAMES=("sandbox: the agent's forbidden call ends it with its line and status 159"
	"sandbox: the agent's execve kills it with SIGSYS")
if [ -n "${KZN_SANITIZED:-}" ]; then
	skip "sandbox: the real binaries' filters" "a sanitized build installs no filter"
	exit 0
fi

# selftest WHAT CMD...: runs CMD with the self-test, prints "exit N" or "signal N", then its
# stderr's last line.
selftest() {
	local what=$1
	shift
	KUBEZONNET_SANDBOX_SELFTEST=$what timeout 20 python3 -c '
import subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
lines = p.stderr.decode(errors="replace").strip().splitlines() or [""]
print(("exit %d" % p.returncode) if p.returncode >= 0 else ("signal %d" % -p.returncode))
print(lines[-1])' "$@"
}
SIGSYS=$(kill -l SIGSYS)
PORT=$((26000 + $$ % 4000))
SRV=("$SERVER" --http-listen 127.0.0.1:$PORT --agent-listen 127.0.0.1:$((PORT + 1)))

out=$(selftest forbidden "${SRV[@]}")
check "sandbox: the server's forbidden call ends it with its line and status 159" \
	grep -qzE '^exit 159
kubezonnet-server: forbidden system call [0-9]+ \(the sandbox allows only' <<<"$out"
echo "$out" | sed 's/^/# /'
out=$(selftest kill "${SRV[@]}")
check_eq "sandbox: the server's execve kills it with SIGSYS" "$(head -1 <<<"$out")" "signal $SIGSYS"

scenario_begin "${NAMES[@]}"
NS=${NS_PREFIX}sbx
ip netns add "$NS"
ip -n "$NS" link set lo up
AG=(ip netns exec "$NS" "$AGENT" --server 127.0.0.1:1 --node sandbox-test --pin-path "$BPFFS/kzn")
out=$(selftest forbidden "${AG[@]}")
check "${NAMES[0]}" grep -qzE '^exit 159
kubezonnet-agent: forbidden system call [0-9]+ \(the sandbox allows only' <<<"$out"
echo "$out" | sed 's/^/# /'
out=$(selftest kill "${AG[@]}")
check_eq "${NAMES[1]}" "$(head -1 <<<"$out")" "signal $SIGSYS"
ip netns exec "$NS" "$AGENT" --uninstall --pin-path "$BPFFS/kzn" >/dev/null 2>&1
