#!/usr/bin/env bash
# A service account token is rotated by swapping its file (the kubelet does it about hourly):
# the server must send the new token at its next request, without any 401 to prompt it and
# without waiting for its once-a-minute read. The stand-in API server ends every watch after
# 2 s, so the server makes a request every second or two. Three rotations, each while the
# server is ready: the kubelet's (the token a symlink through ..data, which is swapped to a new
# directory), a new file renamed over the path, and the file written in place with a token of
# the same length (only its modification time tells). Each new token must arrive within 10 s
# (the minute's read is 60 s away), no request may carry an older token after it, and none
# another token. About 15 s.
. "$(dirname "$0")/lib.sh"
NAMES=("k8s: a rotated token is sent at the next request: the kubelet's symlink swap"
	"k8s: a rotated token is sent at the next request: a file renamed over it"
	"k8s: a rotated token is sent at the next request: the file written in place")
skip_unless_fixtures "${NAMES[@]}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
API=$((15000 + $$ % 5000))
mkdir -p "$WORK/lists"
cp "$FIX/nodelist_kind_no_zone_labels_podcidrs_sonobuoy.json" "$WORK/lists/nodelist.json"
cp "$FIX/podlist_dualstack_and_ipv6_primary_derived.json" "$WORK/lists/podlist.json"
python3 "$TOP/test/fake_apiserver.py" $API "$FIX" "$WORK/requests" --lists "$WORK/lists" \
	--watch-seconds 2 --token-log "$WORK/tokens" &
wait_for 5 python3 -c "import socket; socket.create_connection(('127.0.0.1', $API), 1)"
# A projected service account volume as the kubelet writes it: token -> ..data/token,
# ..data -> ..1 (a directory per version).
SA=$WORK/sa
mkdir -p "$SA/..1"
echo token-1 >"$SA/..1/token"
ln -s ..1 "$SA/..data"
ln -s ..data/token "$SA/token"
"$SERVER" --kube-api http://127.0.0.1:$API --kube-token-file "$SA/token" \
	--http-listen 127.0.0.1:$((API + 1)) --agent-listen 127.0.0.1:$((API + 2)) --flow-logs none 2>"$WORK/log" &
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((API + 1))/readyz")" = 200 ]; }
wait_for 10 ready

# rotated N NAME: token-N arrives within 10 s of the rotation just made, and the log so far
# holds only token-1 to token-N, in that order.
rotated() {
	local t0=$SECONDS took others order
	wait_for 15 grep -qx "token-$1" "$WORK/tokens"
	took=$((SECONDS - t0))
	others=$(grep -cvE "^token-[1-$1]\$" "$WORK/tokens")
	order=$(awk -F- '$2 < last { n++ } { if ($2 > last) last = $2 } END { print n + 0 }' "$WORK/tokens")
	if grep -qx "token-$1" "$WORK/tokens" && [ "$took" -le 10 ] && [ "$others" = 0 ] && [ "$order" = 0 ]; then
		ok "$2 (after $took s; $(grep -c . "$WORK/tokens") requests so far)"
	else
		not_ok "$2" "token-$1 after $took s (want <= 10), $others requests with another token, $order with an older one after a newer"
		echo "#   tokens sent, in order: $(uniq -c "$WORK/tokens" | awk '{ printf "%s (x%s) ", $2, $1 }')"
	fi
}

mkdir "$SA/..2"
echo token-2 >"$SA/..2/token"
ln -s ..2 "$SA/..data_tmp" && mv -T "$SA/..data_tmp" "$SA/..data"
rotated 2 "${NAMES[0]}"

echo token-3 >"$SA/token.new" && mv "$SA/token.new" "$SA/token"
rotated 3 "${NAMES[1]}"

echo token-4 >"$SA/token"
rotated 4 "${NAMES[2]}"
