#!/bin/sh
# make deps: install what kubezonnet needs to build and test, from Debian packages only.
#
# Idempotent and silent when everything is present. On a release whose libbpf-dev is older
# than 1.3 (Debian 12), libbpf-dev, libbpf1 and bpftool come from that release's backports
# suite, which is derived from the system's own Debian apt source (same URI and keyring), and
# pinned so that nothing else is taken from it. No mirror host name is written here.
set -eu

# Beyond the obvious: procps (sysctl, pgrep, ps), netbase (/etc/protocols: nftables names
# protocols such as ipv6-icmp with it), git (the image's date and revision come from the
# commit), ca-certificates and binutils (the image's CA bundle; strip); podman, runc, conmon, a container network stack, skopeo, umoci and docker-registry
# build, run and push the container image (runc: crun refuses hybrid cgroups); nodejs and npm
# run the manifest schema validation.
PACKAGES="gcc make libc6-dev clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev libssl-dev
pkg-config iproute2 iputils-ping nftables curl openssl python3 prometheus ethtool iperf3
libclang-rt-dev python3-yaml procps netbase git ca-certificates binutils
podman runc conmon containernetworking-plugins skopeo umoci docker-registry nodejs npm"
BACKPORTED="libbpf-dev libbpf1 bpftool"
MIN_LIBBPF="1:1.3"
MIN_BPFTOOL="7.3"
SOURCES=/etc/apt/sources.list.d/kubezonnet-backports.sources
PIN=/etc/apt/preferences.d/kubezonnet-backports

say() { echo "make deps: $*" >&2; }

installed_version() {
	dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null |
		awk '$3 == "installed" { print $4 }'
}

# missing_packages prints every package that is absent or too old.
missing_packages() {
	for p in $PACKAGES; do
		# Node.js from elsewhere (NodeSource's nodejs bundles npm, and conflicts with
		# Debian's npm) serves as well as Debian's.
		case $p in
		nodejs) command -v node >/dev/null && continue ;;
		npm) command -v npm >/dev/null && continue ;;
		esac
		v=$(installed_version "$p")
		if [ -z "$v" ]; then
			echo "$p"
		elif [ "$p" = libbpf-dev ] && ! dpkg --compare-versions "$v" ge "$MIN_LIBBPF"; then
			echo "$p"
		elif [ "$p" = bpftool ] && ! dpkg --compare-versions "$v" ge "$MIN_BPFTOOL"; then
			echo "$p"
		fi
	done
}

# debian_source prints "URI KEYRING" of the system's apt source for suite $1, main component.
# It reads deb822 .sources files first, then one-line sources.list entries.
debian_source() {
	suite=$1
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && [ "$f" != "$SOURCES" ] || continue
		awk -v suite="$suite" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
				    (" " comps " ") ~ / main / && uri != "" && !done) {
					split(uri, u, " "); print u[1], key; done = 1
				}
				types = suites = comps = uri = key = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^#/ { next }
			{ field = $1; sub(/:$/, "", field); $1 = ""; sub(/^ /, "") }
			field == "Types" { types = $0 }
			field == "Suites" { suites = $0 }
			field == "Components" { comps = $0 }
			field == "URIs" { uri = $0 }
			field == "Signed-By" { key = $0 }
			END { flush() }' "$f"
	done | head -n 1 | grep . && return 0
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk -v suite="$suite" '
			$1 != "deb" { next }
			{ key = ""; i = 2 }
			$2 ~ /^\[/ {
				while (i <= NF) {
					if ($i ~ /^\[?signed-by=/) { key = $i; sub(/^\[?signed-by=/, "", key); sub(/\]$/, "", key) }
					if ($i ~ /\]$/) { i++; break }
					i++
				}
			}
			$(i + 1) == suite { for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i, key; exit } }'
}

# deps.sh --debian-source SUITE: prints "URI KEYRING" and exits (test/fresh/debian.sh).
if [ "${1:-}" = --debian-source ]; then
	debian_source "${2:?deps.sh --debian-source SUITE}"
	exit
fi

add_backports() {
	codename=$1
	[ -f "$SOURCES" ] && return 0
	src=$(debian_source "$codename")
	if [ -z "$src" ]; then
		say "no apt source for '$codename main' found to derive '$codename-backports' from"
		exit 1
	fi
	uri=${src%% *}
	key=${src#* }
	[ "$key" = "$src" ] && key=
	say "adding $codename-backports from $uri (pinned to: $BACKPORTED)"
	{
		echo "# Written by kubezonnet's 'make deps', derived from the system's $codename source."
		echo "Types: deb"
		printf 'URIs: %s\n' "$uri"
		echo "Suites: $codename-backports"
		echo "Components: main"
		[ -n "$key" ] && echo "Signed-By: $key"
	} >"$SOURCES"
	{
		echo "# Only these packages come from $codename-backports (kubezonnet 'make deps')."
		echo "Package: $BACKPORTED"
		echo "Pin: release n=$codename-backports"
		echo "Pin-Priority: 990"
	} >"$PIN"
}

missing=$(missing_packages | tr '\n' ' ')
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	say "missing or too old: $missing"
	say "run 'make deps' as root (or install them with apt-get)"
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
say "installing: $missing"
apt-get update -qq
candidate=$(apt-cache policy libbpf-dev | awk '/Candidate:/ { print $2 }')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ] ||
	! dpkg --compare-versions "$candidate" ge "$MIN_LIBBPF"; then
	. /etc/os-release
	add_backports "${VERSION_CODENAME:?cannot tell the Debian release from /etc/os-release}"
	apt-get update -qq
fi
log=$(mktemp)
# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! apt-get install -y -q --no-install-recommends $missing >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	say "apt-get install failed"
	exit 1
fi
rm -f "$log"
still=$(missing_packages | tr '\n' ' ')
if [ -n "$still" ]; then
	say "still missing after install: $still"
	exit 1
fi
say "done"
