#!/usr/bin/env bash
# A service account token is rotated by swapping its file (the kubelet does it about hourly):
# the server must send the new token within a minute or so, without any 401 to prompt it.
# The stand-in API server ends every watch after 5 s, so the server makes a request every few
# seconds; the test swaps the token file once the server is ready and waits for the new token
# to arrive (at most a minute after the last read, plus one watch). About 70 s.
. "$(dirname "$0")/lib.sh"
NAME="k8s: a rotated token file is read again within a minute"
skip_unless_fixtures "$NAME"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
API=$((15000 + $$ % 5000))
mkdir -p "$WORK/lists"
cp "$FIX/nodelist_kind_no_zone_labels_podcidrs_sonobuoy.json" "$WORK/lists/nodelist.json"
cp "$FIX/podlist_dualstack_and_ipv6_primary_derived.json" "$WORK/lists/podlist.json"
python3 "$TOP/test/fake_apiserver.py" $API "$FIX" "$WORK/requests" --lists "$WORK/lists" \
	--watch-seconds 5 --token-log "$WORK/tokens" &
wait_for 5 python3 -c "import socket; socket.create_connection(('127.0.0.1', $API), 1)"
echo first-token >"$WORK/token"
"$SERVER" --kube-api http://127.0.0.1:$API --kube-token-file "$WORK/token" \
	--http-listen 127.0.0.1:$((API + 1)) --agent-listen 127.0.0.1:$((API + 2)) --flow-logs none 2>"$WORK/log" &
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((API + 1))/readyz")" = 200 ]; }
wait_for 10 ready
echo second-token >"$WORK/token.new" && mv "$WORK/token.new" "$WORK/token"
t0=$SECONDS
rotated() { grep -q '^second-token$' "$WORK/tokens"; }
wait_for 80 rotated
took=$((SECONDS - t0))
others=$(grep -cvE '^(first|second)-token$' "$WORK/tokens")
after=$(awk '/^second-token$/ { s = 1 } s && /^first-token$/ { n++ } END { print n + 0 }' "$WORK/tokens")
if rotated && [ "$took" -le 75 ] && [ "$others" = 0 ] && [ "$after" = 0 ]; then
	ok "$NAME (after ${took} s; $(grep -c . "$WORK/tokens") requests)"
else
	not_ok "$NAME" "new token after ${took} s (want <= 75), $others requests with another token, $after with the old one after the new"
fi
