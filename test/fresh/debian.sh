#!/usr/bin/env bash
# test/fresh/debian.sh: does the README's promise hold on a fresh Debian machine? "make demo"
# and "make test" work as root, installing what they need through "make deps".
#
# It builds a minimal Debian root (debootstrap --variant=minbase, from the mirror of this
# machine's own apt source, read at run time), copies a clone of this repository's HEAD into
# it as /root/kubezonnet (and ../shared next to it, for the fixtures), enters it with chroot
# in a mount namespace of its own (/proc, /sys, /dev and a fresh /run), and runs as root:
#
#   the README's one prerequisite    apt-get update && apt-get install -y make
#   the README's two commands        make demo DEMO_SECONDS=30     make test
#
# and then, for the container image work that "make deps" also provides for, a podman run
# (runc, cgroupfs) of a tiny image built there. It ends with the "N passed, N failed,
# N skipped" line of make test and one verdict line; it exits non-zero on any failure.
#
# Not part of "make test" (it takes as long as make test and make demo together, plus a few
# minutes), hence not directly in test/. Run it as root, on a machine with debootstrap:
#
#   test/fresh/debian.sh          the whole check
#   test/fresh/debian.sh shell    a root shell (or: shell CMD...) in the root the last check
#                                 left, with the same mounts; nothing stays mounted after
#
# Environment:
#   KZN_FRESH_DIR=/var/tmp/kzn-fresh   where the base root (cached), the root of the last run
#                                      (kept for inspection) and the logs live
#   KZN_FRESH_SUITE=bookworm           the Debian release (trixie works the same way; untried)
#   KZN_FRESH_REBUILD=1                debootstrap again instead of using the cached base
#   KZN_FRESH_UNCOMMITTED=1            also apply the working tree's uncommitted changes to
#                                      tracked files (to check them before a commit); or a
#                                      list of paths: only theirs ("deps.sh")
#   KZN_FRESH_PODMAN=0                 skip the podman check
#
# The root shares this machine's kernel, network namespace, processes and CPUs: do not run a
# demo or tests on the machine itself meanwhile (the demo's links have fixed names, test/demo.sh
# looks for stray agents and servers machine-wide, and the timing-sensitive tests compete for
# the CPUs).
set -euo pipefail

SELF=$(readlink -f "$0")
TOP=$(cd "$(dirname "$SELF")/../.." && pwd)
DIR=${KZN_FRESH_DIR:-/var/tmp/kzn-fresh}
SUITE=${KZN_FRESH_SUITE:-bookworm}
BASE=$DIR/base-$SUITE
ROOT=$DIR/root
LOGS=$DIR/logs
PREREQ="apt-get update && apt-get install -y make"
KEYRING_DEFAULT=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "fresh: $*" >&2; }
die() {
	say "$*"
	exit 1
}

# ---- inside the mount namespace (the script runs itself again under unshare) ----

mounted=()
mount_root() {
	# The root a mount point of its own, as on a machine ("ip netns exec" remounts "/").
	mount --bind "$ROOT" "$ROOT" && mounted+=("$ROOT")
	mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc")
	mount --rbind /sys "$ROOT/sys" && mounted+=("$ROOT/sys")
	mount --rbind /dev "$ROOT/dev" && mounted+=("$ROOT/dev")
	# A fresh /run, as a booted machine has: ip netns keeps its namespaces there.
	mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$ROOT/run" && mounted+=("$ROOT/run")
	mkdir -p "$ROOT/run/lock"
}

# unmount_root: ends what still runs in the root (everything there was started by this
# script), then unmounts in reverse order.
unmount_root() {
	local pid root i
	for pid in /proc/[0-9]*; do
		root=$(readlink "$pid/root" 2>/dev/null) || continue
		[ "$root" = "$ROOT" ] && kill -9 "${pid#/proc/}" 2>/dev/null
	done
	sleep 0.2
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -R "${mounted[i]}" 2>/dev/null || umount -R -l "${mounted[i]}"
	done
	mounted=()
}

# in_root COMMAND: runs a bash command line in the root as root, with the environment of a
# login on a fresh machine (nothing inherited from this one).
in_root() {
	chroot "$ROOT" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash \
		TERM="${TERM:-dumb}" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		/bin/bash -c "cd /root/kubezonnet 2>/dev/null || cd /root; $1" </dev/null
}

# step NAME LOG COMMAND: runs a command in the root, output to a log; prints how it went.
step() {
	local name=$1 log=$2 start=$SECONDS rc=0
	say "$name ... (log: $log)"
	in_root "$3" >"$log" 2>&1 || rc=$?
	say "$name: exit $rc ($((SECONDS - start))s)"
	echo "$name $rc" >>"$LOGS/steps"
	return 0
}

# The podman check: a static "hello" built in the root, imported as a one-file image and run
# the way the image tests will run it: as root, with runc and cgroupfs.
PODMAN_CHECK=$(
	cat <<'EOF'
set -e
work=$(mktemp -d)
printf '#include <stdio.h>\nint main(void) { puts("hello from kubezonnet-fresh"); return 0; }\n' >"$work/hello.c"
gcc -static -O2 -o "$work/hello" "$work/hello.c"
# Without CAP_SYS_RESOURCE (some sandboxes) podman cannot apply its default ulimits.
cap=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
if [ $((0x$cap >> 24 & 1)) = 0 ]; then
	printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
	export CONTAINERS_CONF=$work/containers.conf
	echo "no CAP_SYS_RESOURCE: CONTAINERS_CONF without default ulimits"
fi
podman() { command podman --runtime runc --cgroup-manager cgroupfs "$@"; }
tar -C "$work" -cf "$work/image.tar" hello
podman import --change 'CMD=["/hello"]' "$work/image.tar" localhost/kzn-fresh-hello:1
# No network: the root shares this machine's network namespace, whose firewall is not ours.
out=$(podman run --rm --network none localhost/kzn-fresh-hello:1)
echo "$out"
podman rmi localhost/kzn-fresh-hello:1
rm -rf "$work"
[ "$out" = "hello from kubezonnet-fresh" ]
EOF
)

inner() {
	trap unmount_root EXIT
	trap 'exit 130' INT TERM HUP
	mount --make-rprivate /
	mount_root
	if [ "${1:-}" = shell ]; then
		shift
		local rc=0
		if [ $# -gt 0 ]; then
			in_root "$*" || rc=$?
		else
			chroot "$ROOT" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
				PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -l || rc=$?
		fi
		return $rc
	fi
	step prerequisite "$LOGS/prereq.log" "$PREREQ"
	step "make demo" "$LOGS/demo.log" "make demo DEMO_SECONDS=30"
	step "make test" "$LOGS/test.log" "make test"
	if [ "${KZN_FRESH_PODMAN:-1}" != 0 ]; then
		step "podman run" "$LOGS/podman.log" "$PODMAN_CHECK"
	fi
}

if [ "${1:-}" = __inner ]; then
	shift
	inner "$@"
	exit
fi

# ---- outside: the base root, the copy, then the run in a mount namespace ----

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
for t in debootstrap unshare chroot flock git; do
	command -v "$t" >/dev/null || die "needs '$t' (apt-get install debootstrap util-linux git)"
done

# debian_mirror prints "URI KEYRING" of this machine's own Debian apt source, main component
# (KEYRING may be empty), as make deps derives its backports source; the same mirror serves
# bookworm.
debian_mirror() { (. /etc/os-release && "$TOP/deps.sh" --debian-source "$VERSION_CODENAME"); }

mounts_under() { awk -v r="$1" '$5 == r || index($5, r "/") == 1' /proc/self/mountinfo; }

mkdir -p "$DIR" "$LOGS"
# One user of the root at a time: leaving, each ends every process that runs in it.
exec 9>"$DIR/.lock"
flock -n 9 || die "$ROOT is in use by another check or shell (lock: $DIR/.lock)"
if [ "$#" -eq 0 ]; then
	# Another demo or agent test on this machine would share our network and CPUs.
	if ip netns list 2>/dev/null | grep -qE '^(kzt|kzd-)'; then
		say "warning: kubezonnet test or demo namespaces exist on this machine (ip netns list);"
		say "warning: running alongside them makes the timing-sensitive tests unreliable"
	fi
	if [ -n "$(mounts_under "$ROOT")" ]; then
		die "something is mounted under $ROOT (another check running?): $(mounts_under "$ROOT" | awk '{print $5}' | tr '\n' ' ')"
	fi

	if [ "${KZN_FRESH_REBUILD:-0}" = 1 ] || [ ! -f "$BASE/.complete" ]; then
		src=$(debian_mirror) || die "no Debian apt source with the main component found"
		uri=${src%% *} key=${src#* }
		[ "$key" = "$src" ] || [ -z "$key" ] && key=$KEYRING_DEFAULT
		say "debootstrap --variant=minbase $SUITE from $uri (log: $LOGS/debootstrap.log)"
		rm -rf "$BASE.tmp"
		debootstrap --variant=minbase --keyring="$key" "$SUITE" "$BASE.tmp" "$uri" \
			>"$LOGS/debootstrap.log" 2>&1 || die "debootstrap failed: see $LOGS/debootstrap.log"
		# Every installed machine has these; debootstrap writes neither.
		printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$BASE.tmp/etc/hosts"
		echo kzn-fresh >"$BASE.tmp/etc/hostname"
		touch "$BASE.tmp/.complete"
		rm -rf "$BASE"
		mv "$BASE.tmp" "$BASE"
	fi

	say "fresh root $ROOT from $BASE"
	rm -rf "$ROOT"
	cp -a "$BASE" "$ROOT"
	# The machine's resolver and its local CA certificates (a network that intercepts TLS
	# needs its CA; ca-certificates takes it in when make deps installs it), as any machine on
	# this network has them.
	cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
	if [ -d /usr/local/share/ca-certificates ]; then
		cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
	fi
	git clone --quiet --no-hardlinks "$TOP" "$ROOT/root/kubezonnet"
	uncommitted=${KZN_FRESH_UNCOMMITTED:-0}
	if [ "$uncommitted" != 0 ]; then
		[ "$uncommitted" = 1 ] && uncommitted=.
		# shellcheck disable=SC2086 # a list of paths
		git -C "$TOP" diff --binary HEAD -- $uncommitted |
			git -C "$ROOT/root/kubezonnet" apply --binary --allow-empty
	fi
	[ -d "$TOP/../shared" ] && cp -a "$TOP/../shared" "$ROOT/root/shared"
	rev=$(git -C "$ROOT/root/kubezonnet" rev-parse --short HEAD)
	say "repository at $rev$([ "$uncommitted" != 0 ] && echo " plus uncommitted changes to: $uncommitted")"
	rm -f "$LOGS/steps" "$LOGS"/{prereq,demo,test,podman}.log
fi
[ -d "$ROOT/root" ] || die "no root at $ROOT: run the check first"

export ROOT LOGS
rc=0
unshare --mount --propagation private -- "$SELF" __inner "$@" || rc=$?
[ -z "$(mounts_under "$ROOT")" ] || die "left mounted: $(mounts_under "$ROOT" | awk '{print $5}' | tr '\n' ' ')"
[ "$#" -eq 0 ] || exit $rc

# ---- the verdict ----
echo
failed=0
while read -r line; do
	code=${line##* } name=${line% *}
	printf 'fresh %s: %-13s exit %s\n' "$SUITE" "$name" "$code"
	[ "$code" = 0 ] || failed=1
done <"$LOGS/steps"
if [ -f "$LOGS/demo.log" ]; then
	echo "make demo, last lines:"
	tail -n 5 "$LOGS/demo.log" | sed 's/^/  /'
fi
if [ -f "$LOGS/test.log" ]; then
	sed -n '/^Failures:/,/^$/p' "$LOGS/test.log"
	if grep -q '# SKIP' "$LOGS/test.log"; then
		echo "skipped in make test:"
		grep '# SKIP' "$LOGS/test.log" | sed 's/^ok - /  /'
	fi
	result=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$LOGS/test.log" | tail -n 1)
	echo "make test: ${result:-no result line (see $LOGS/test.log)}"
	[ -n "$result" ] || failed=1
fi
steps=$(awk '{ $NF = ""; printf "%s%s", sep, $0; sep = "," }' "$LOGS/steps" | sed 's/ ,/,/g; s/ $//')
if [ "$failed" = 0 ]; then
	echo "verdict: PASS: on a fresh Debian $SUITE root: $steps (logs: $LOGS)"
else
	echo "verdict: FAIL: on a fresh Debian $SUITE root, see above and $LOGS (root kept at $ROOT)"
	exit 1
fi
