# test/lib.sh: helpers for shell tests (source it). Results are TAP-style lines for test/run.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AGENT=$TOP/kubezonnet-agent
SERVER=$TOP/kubezonnet-server

ok() { echo "ok - $*"; }
not_ok() {
	local name=$1
	shift
	echo "not ok - $name"
	[ $# -gt 0 ] && echo "#   $*"
	return 0
}
skip() { echo "ok - $1 # SKIP $2"; }

# check NAME COMMAND...: ok if the command succeeds, not ok (with its output) otherwise.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		not_ok "$name" "command failed: $*"
		printf '%s\n' "$out" | sed 's/^/#   /' | head -20
	fi
}

# check_eq NAME GOT WANT
check_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi
}

# skip_unless_root NAME...: prints a skip line for each NAME and exits 0 when not root.
skip_unless_root() {
	if [ "$(id -u)" != 0 ]; then
		for n in "$@"; do skip "$n" "needs root"; done
		exit 0
	fi
}

# wait_for SECONDS COMMAND...: polls the command every 0.1 s until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.1
	done
}

# A unique prefix for namespaces and links, removed by netns_cleanup on exit.
NS_PREFIX="kzt$$"
netns_cleanup() {
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns delete "$ns" 2>/dev/null
	done
}
