#!/usr/bin/env bash
# The OCI image (make image, image/build.py): what it holds is derived here independently
# (readelf, ldd, dpkg, openssl) and compared with the layers' tar listings; both binaries run in
# it under podman as 65532 on a read-only root; two builds give one digest; skopeo reads its
# labels; umoci unpacks it; make image-push reaches a registry (Debian's docker-registry, on
# 127.0.0.1, when installed).
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/test/lib.sh"
. "$TOP/test/podman.lib.sh"

TESTS=("image: make image writes the archive" "image: files are exactly the planned ones"
	"image: binaries (stripped) and libc are the build's and the system's" "image: CA bundle is the package's alone"
	"image: two builds give one digest" "image: labels, user, architecture"
	"image: docker manifest.json and index.json annotations" "image: umoci unpacks it, owners fixed"
	"image: podman loads it under its name and digest" "image: agent --version as 65532, read-only"
	"image: server --version as 65532, read-only" "image: server serves as 65532 on a read-only root"
	"image: make image-push to a local registry")
for tool in skopeo umoci readelf; do
	if ! command -v $tool >/dev/null 2>&1; then
		for n in "${TESTS[@]}"; do skip "$n" "needs $tool (make deps)"; done
		exit 0
	fi
done
podman_setup "${TESTS[@]}"
WORK=$(mktemp -d)
REG_PID=
cleanup() {
	[ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null
	pm rm -f kzt-image-server >/dev/null 2>&1
	podman_cleanup
	rm -rf "$WORK"
}
trap cleanup EXIT
export LC_ALL=C

NAME=kubezonnet:image-test
SRC=https://example.invalid/kubezonnet
ARCHIVE=$WORK/one.tar
mk() { make --no-print-directory -s -C "$TOP" "$@"; }
# The Makefile takes SOURCE_DATE_EPOCH from the environment if set, else the commit time.
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$TOP" log -1 --format=%ct)}
VERSION=$(mk --eval 'print-version: ; @echo $(VERSION)' print-version)

# ---- the archive, from the Makefile (the binaries are built already: make test builds them)
if mk image IMAGE=$NAME IMAGE_SOURCE=$SRC IMAGE_ARCHIVE="$ARCHIVE" >"$WORK/make.log" 2>&1 && [ -s "$ARCHIVE" ]; then
	ok "image: make image writes the archive ($(stat -c %s "$ARCHIVE") bytes)"
else
	not_ok "image: make image writes the archive" "$(tail -5 "$WORK/make.log")"
	exit 1
fi
mkdir "$WORK/arc" && tar -xf "$ARCHIVE" -C "$WORK/arc"
# layers LIST: the layer blobs in order, from the OCI manifest the index names.
manifest_digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/arc/index.json")
layers=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join(l["digest"].split(":")[1] for l in m["layers"]))' \
	"$WORK/arc/blobs/sha256/${manifest_digest#sha256:}")

# ---- the file list, derived here, against the layers' own listings
interp=$(readelf -l "$AGENT" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
libs=$(ldd "$AGENT" "$SERVER" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
pkgs=$(for f in $interp $libs; do dpkg-query -S "$f" 2>/dev/null || dpkg-query -S "$(readlink -f "$f")"; done |
	sed 's/[:,].*//' | sort -u)
ssldir=$(openssl version -d 2>/dev/null | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')
{
	printf '%s\n' /kubezonnet-agent /kubezonnet-server /etc/passwd /etc/group /etc/nsswitch.conf \
		/etc/ssl/certs/ca-certificates.crt /usr/share/doc/kubezonnet/LICENSE \
		/usr/share/doc/ca-certificates/copyright "$interp" $libs
	[ -n "$ssldir" ] && echo "$ssldir/cert.pem"
	for p in $pkgs; do echo "/usr/share/doc/$p/copyright"; done
} | sed 's|^/||' | sort -u >"$WORK/want"
for l in $layers; do tar -tzvf "$WORK/arc/blobs/sha256/$l"; done >"$WORK/layers.tv"
awk '$1 !~ /^d/ { print $6 }' "$WORK/layers.tv" | sort >"$WORK/got"
if diff "$WORK/want" "$WORK/got" >"$WORK/diff"; then
	ok "image: files are exactly the planned ones ($(wc -l <"$WORK/got") files)"
else
	not_ok "image: files are exactly the planned ones" "< wanted, > in the image: $(tr '\n' ' ' <"$WORK/diff")"
fi

# ---- umoci: an independent unpacker; owners and modes as meant
rm -rf "$WORK/oci" "$WORK/bundle"
if skopeo copy -q "oci-archive:$ARCHIVE" "oci:$WORK/oci:t" >"$WORK/umoci.log" 2>&1 &&
	umoci unpack --image "$WORK/oci:t" "$WORK/bundle" >>"$WORK/umoci.log" 2>&1; then
	R=$WORK/bundle/rootfs
	owners=$(cd "$R" && find . -mindepth 1 -printf '%U:%G %p\n' | grep -v '^0:0 ' | tr '\n' ' ')
	if [ "$owners" = "65532:65532 ./home/nonroot " ] && [ "$(stat -c %a "$R/kubezonnet-agent")" = 755 ]; then
		ok "image: umoci unpacks it, owners fixed"
	else
		not_ok "image: umoci unpacks it, owners fixed" "not root-owned: $owners"
	fi
	bad=
	# The binaries as built, less symbols and debug information.
	strip --strip-all -o "$WORK/agent.stripped" "$AGENT"
	strip --strip-all -o "$WORK/server.stripped" "$SERVER"
	cmp -s "$R/kubezonnet-agent" "$WORK/agent.stripped" || bad+=" kubezonnet-agent"
	cmp -s "$R/kubezonnet-server" "$WORK/server.stripped" || bad+=" kubezonnet-server"
	for f in $interp $libs; do cmp -s "$R$f" "$f" || bad+=" $f"; done
	check_eq "image: binaries (stripped) and libc are the build's and the system's" "${bad:-none differ}" "none differ"
	# Every certificate comes from the package; none added on this machine (/usr/local/share).
	n_pkg=$(dpkg-query -L ca-certificates | grep -c '^/usr/share/ca-certificates/.*\.crt$')
	n_img=$(grep -c 'BEGIN CERTIFICATE' "$R/etc/ssl/certs/ca-certificates.crt")
	local_in=0
	for c in /usr/local/share/ca-certificates/*.crt; do
		[ -f "$c" ] || continue
		key=$(grep -v -- '-----' "$c" | head -2 | tail -1)
		[ -n "$key" ] && grep -qF -- "$key" "$R/etc/ssl/certs/ca-certificates.crt" && local_in=$((local_in + 1))
	done
	check_eq "image: CA bundle is the package's alone" "$n_img certificates, $local_in local" "$n_pkg certificates, 0 local"
else
	not_ok "image: umoci unpacks it, owners fixed" "$(tail -3 "$WORK/umoci.log")"
	skip "image: binaries (stripped) and libc are the build's and the system's" "umoci failed"
	skip "image: CA bundle is the package's alone" "umoci failed"
fi

# ---- a second build from copies (other directory, other mtimes and permissions), same inputs
mkdir "$WORK/copy"
cp "$AGENT" "$SERVER" "$TOP/LICENSE" "$WORK/copy/" && chmod 700 "$WORK/copy"/* && touch -d @0 "$WORK/copy/LICENSE"
(cd "$WORK/copy" && SOURCE_DATE_EPOCH=$EPOCH python3 "$TOP/image/build.py" \
	--out "$WORK/two.tar" --name "$NAME" --version "$VERSION" --revision "$(git -C "$TOP" rev-parse HEAD)" \
	--source "$SRC" --license LICENSE kubezonnet-agent kubezonnet-server >/dev/null 2>&1)
d1=$(skopeo inspect --format '{{.Digest}}' "oci-archive:$ARCHIVE" 2>&1)
d2=$(skopeo inspect --format '{{.Digest}}' "oci-archive:$WORK/two.tar" 2>&1)
if [ "$d1" = "$d2" ] && [ "$d1" = "$manifest_digest" ] && cmp -s "$ARCHIVE" "$WORK/two.tar"; then
	ok "image: two builds give one digest ($d1)"
else
	not_ok "image: two builds give one digest" "first $d1, second $d2, index $manifest_digest"
fi

# ---- labels, user and architecture, as skopeo reads the config
skopeo inspect --config "oci-archive:$ARCHIVE" >"$WORK/config.json" 2>&1
want_arch=$(dpkg --print-architecture | sed 's/^i386$/386/; s/^armhf$/arm/; s/^ppc64el$/ppc64le/')
want_created=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
got=$(python3 - "$WORK/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
l = c["config"].get("Labels", {})
k = "org.opencontainers.image."
print(c["config"].get("User"), c["architecture"], c["os"], c["created"], l.get(k + "created"), l.get(k + "version"),
      l.get(k + "revision"), l.get(k + "source"), l.get(k + "licenses"), c["config"].get("Entrypoint"), c["config"].get("Cmd"))
PY
)
want="65532:65532 $want_arch linux $want_created $want_created $VERSION $(git -C "$TOP" rev-parse HEAD) $SRC Apache-2.0 None ['/kubezonnet-server']"
check_eq "image: labels, user, architecture" "$got" "$want"

# ---- the docker-save manifest.json next to the OCI layout, and the names containerd reads
got=$(python3 - "$WORK/arc" "$NAME" <<'PY'
import hashlib, json, os, sys
arc, name = sys.argv[1:3]
index = json.load(open(os.path.join(arc, "index.json")))
d = json.load(open(os.path.join(arc, "manifest.json")))[0]
m = json.load(open(os.path.join(arc, "blobs/sha256", index["manifests"][0]["digest"].split(":")[1])))
problems = []
for path in [d["Config"]] + d["Layers"]:
    if hashlib.sha256(open(os.path.join(arc, path), "rb").read()).hexdigest() != os.path.basename(path):
        problems.append("digest of " + path)
if d["Config"].split("/")[-1] != m["config"]["digest"].split(":")[1]: problems.append("config differs")
if [p.split("/")[-1] for p in d["Layers"]] != [l["digest"].split(":")[1] for l in m["layers"]]: problems.append("layers differ")
if d["RepoTags"] != [name]: problems.append("RepoTags %s" % d["RepoTags"])
a = index["manifests"][0]["annotations"]
if a.get("io.containerd.image.name") != "docker.io/library/" + name: problems.append("containerd name %s" % a)
if a.get("org.opencontainers.image.ref.name") != name.split(":")[1]: problems.append("ref.name %s" % a)
if json.load(open(os.path.join(arc, "oci-layout"))) != {"imageLayoutVersion": "1.0.0"}: problems.append("oci-layout")
print(", ".join(problems) or "consistent")
PY
)
check_eq "image: docker manifest.json and index.json annotations" "$got" consistent

# ---- podman: load, run both binaries as the image's user on a read-only root
loaded=$(podman_load "$ARCHIVE" 2>"$WORK/load.log")
got=$(pm image inspect --format '{{.Digest}} {{.Config.User}}' "$NAME" 2>&1)
if [ -n "$loaded" ] && [ "$got" = "$manifest_digest 65532:65532" ]; then
	ok "image: podman loads it under its name and digest ($loaded)"
else
	not_ok "image: podman loads it under its name and digest" "loaded '$loaded': $got $(cat "$WORK/load.log")"
fi
for b in agent server; do
	want=$("$TOP/kubezonnet-$b" --version 2>&1)
	got=$(podman_run "$NAME" "/kubezonnet-$b" --version 2>&1)
	check_eq "image: $b --version as 65532, read-only" "$got" "$want"
done
# The server itself, started as the image says (its Cmd, its user; defaults :8080 and :8081 in a
# network namespace of its own): the process's uids and gids, read by the host from /proc.
pm run -d --name kzt-image-server --read-only --network none --cap-drop all "$NAME" >/dev/null 2>"$WORK/run.log"
pid=$(pm inspect --format '{{.State.Pid}}' kzt-image-server 2>/dev/null)
server_listening() { pm logs kzt-image-server 2>&1 | grep -q listening; }
listening=no
wait_for 5 server_listening && listening=yes
uids=$([ -n "$pid" ] && awk '/^Uid:/ { print $2, $3 } /^Gid:/ { print $2, $3 }' "/proc/$pid/status" 2>/dev/null | tr '\n' ' ')
state=$(pm inspect --format '{{.State.Status}}' kzt-image-server 2>&1)
# /healthz from inside the container's network namespace (the image has no curl of its own).
healthz=$([ -n "$pid" ] && nsenter -t "$pid" -n curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/healthz)
check_eq "image: server serves as 65532 on a read-only root" "$state, listening $listening, /healthz ${healthz:-none}, uid/gid $uids" \
	"running, listening yes, /healthz 200, uid/gid 65532 65532 65532 65532 "
pm rm -f kzt-image-server >/dev/null 2>&1

# ---- make image-push to Debian's docker-registry on 127.0.0.1
if ! command -v docker-registry >/dev/null 2>&1; then
	skip "image: make image-push to a local registry" "needs docker-registry (Debian package)"
	exit 0
fi
PORT=$((25000 + $$ % 5000)) # below 32768: not an ephemeral port another socket may hold
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: 127.0.0.1:$PORT}
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
wait_for 10 curl -sf "http://127.0.0.1:$PORT/v2/"
ref=127.0.0.1:$PORT/kubezonnet/kubezonnet:push-test
if mk image-push IMAGE="$ref" IMAGE_SOURCE=$SRC IMAGE_ARCHIVE="$WORK/push.tar" \
	IMAGE_PUSH_FLAGS=--dest-tls-verify=false >"$WORK/push.log" 2>&1; then
	got=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$ref" 2>&1)
	# The tag lives in index.json only: the pushed manifest is the one built under another name.
	check_eq "image: make image-push to a local registry" "$got" "$manifest_digest"
else
	not_ok "image: make image-push to a local registry" "$(tail -5 "$WORK/push.log")"
fi
