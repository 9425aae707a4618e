#!/usr/bin/env bash
# The image's size and file count (targets: under 8 MB compressed, under 15 files), read back
# from an archive image/build.py writes here (the Makefile's arguments, a scratch file).
# Baseline: the two binaries alone. The figures are exact: the build is deterministic, so the
# median of any number of builds is the one build's figure.
cd "$(dirname "$0")/.." || exit 1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if ! SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0) python3 image/build.py \
	--out "$WORK/image.tar" --name kubezonnet:bench --version bench \
	kubezonnet-agent kubezonnet-server >/dev/null 2>"$WORK/log"; then
	printf '%-44s (skipped: image/build.py failed: %s)\n' "image: size" "$(tail -1 "$WORK/log")"
	exit 0
fi
row() { printf '%-44s %14.1f %-12s %-26s %14.1f %7.2fx\n' "$@" "$(awk -v a="$2" -v b="$5" 'BEGIN { print b ? a / b : 0 }')"; }
# "compressed unpacked files": the layers as pulled, their files' bytes, their regular files
# and links (not directories).
read -r compressed unpacked files < <(python3 - "$WORK/image.tar" <<'PY'
import json, sys, tarfile
outer = tarfile.open(sys.argv[1])
manifest = json.load(outer.extractfile("manifest.json"))[0]
compressed = unpacked = files = 0
for path in manifest["Layers"]:
    compressed += outer.getmember(path).size
    with tarfile.open(fileobj=outer.extractfile(path), mode="r:gz") as layer:
        for m in layer:
            if not m.isdir():
                files += 1
                unpacked += m.size
print(compressed, unpacked, files)
PY
)
binaries=$(stat -c %s kubezonnet-agent kubezonnet-server | awk '{ s += $1 } END { print s }')
mb() { awk -v b="$1" 'BEGIN { print b / 1e6 }'; }
row "image: size, compressed layers (pulled)" "$(mb "$compressed")" MB "the two binaries" "$(mb "$binaries")"
row "image: size, unpacked" "$(mb "$unpacked")" MB "the two binaries" "$(mb "$binaries")"
row "image: files" "$files" files "the two binaries" 2
