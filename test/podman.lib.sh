# test/podman.lib.sh: a throwaway podman for container tests (source it after test/lib.sh; it
# is not executable on purpose: test/run runs every executable test/*.sh).
#
# Everything lives in one scratch directory (store, run state, locks' tmpdir, containers.conf),
# never in the system's store, and is removed by podman_cleanup. The flags work around this
# kind of machine: crun refuses hybrid cgroups (so runc and cgroupfs), and a sandbox without
# CAP_SYS_RESOURCE cannot apply podman's default ulimits (so none).
#
#   podman_setup NAME...     skips the named tests and exits 0 without root or podman
#   pm ARGS...               podman with the scratch store and flags
#   podman_load ARCHIVE      loads an image archive; prints the name it was loaded as
#   podman_run IMAGE ARGS... a container as the image's user: read-only rootfs, no network,
#                            no capabilities; removed when it exits
#   podman_cleanup           removes containers, images and the scratch directory
# shellcheck shell=bash

PODMAN_DIR=
PODMAN_FLAGS=()

podman_setup() {
	if [ "$(id -u)" != 0 ]; then
		for n in "$@"; do skip "$n" "needs root"; done
		exit 0
	fi
	if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
		for n in "$@"; do skip "$n" "needs podman and runc (make deps)"; done
		exit 0
	fi
	PODMAN_DIR=$(mktemp -d /tmp/kzt-podman.XXXXXX)
	mkdir -p "$PODMAN_DIR/root" "$PODMAN_DIR/runroot" "$PODMAN_DIR/tmp"
	cat >"$PODMAN_DIR/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
EOF
	export CONTAINERS_CONF=$PODMAN_DIR/containers.conf
	# vfs: no overlay mounts to leave behind; the images here are a few megabytes.
	PODMAN_FLAGS=(--root "$PODMAN_DIR/root" --runroot "$PODMAN_DIR/runroot" --tmpdir "$PODMAN_DIR/tmp"
		--storage-driver vfs --runtime runc --cgroup-manager cgroupfs --events-backend file)
}

pm() { podman "${PODMAN_FLAGS[@]}" "$@"; }

podman_load() {
	pm load -q -i "$1" | sed -n 's/^Loaded image[^:]*: //p' | tail -1
}

podman_run() {
	local image=$1
	shift
	pm run --rm --read-only --network none --cap-drop all --security-opt no-new-privileges \
		"$image" "$@"
}

podman_cleanup() {
	[ -n "$PODMAN_DIR" ] || return 0
	pm rm -af >/dev/null 2>&1
	pm rmi -af >/dev/null 2>&1
	rm -rf "$PODMAN_DIR"
	PODMAN_DIR=
}
