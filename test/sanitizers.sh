#!/usr/bin/env bash
# The unit tests and the server tests again, built with AddressSanitizer (LeakSanitizer at
# every exit) and UndefinedBehaviorSanitizer (make asan: build/asan/); then every way the
# server gives up at start, and one end-to-end run of it without and with the Kubernetes
# source, each of which must end with the expected exit status and no report.
#
# Every sanitizer report is fatal and is written to a file of its own (log_path), so a report
# fails its test by name even where the test would only have seen the server die. One line per
# unit test, per server script and per run here, prefixed "asan: ".
#
# Every unit test but bpf_test (it loads the BPF program) and every test/server_*.sh: the
# server_e2e ones (root) put the sanitized server behind the real agent. As root the server
# scripts run KZN_ASAN_JOBS (3) at a time beside the unit tests and the runs here, each in a
# network namespace of its own (unshare --net, its loopback alone), so that no port or
# address one uses can meet another's or those of the runs here; then server_peers alone
# (ALONE below). Without root, one at a time before the runs here. The lines come in the
# same order either way. About two and a half minutes as root.
# KZN_ASAN_SCRIPTS="server_peers ..." runs only those scripts.
. "$(dirname "$0")/lib.sh"
cd "$TOP" || exit 1
ASAN=$TOP/build/asan
SERVER_SCRIPTS=()
for f in test/server_*.sh; do SERVER_SCRIPTS+=("$(basename "$f" .sh)"); done
[ -n "${KZN_ASAN_SCRIPTS:-}" ] && read -ra SERVER_SCRIPTS <<<"$KZN_ASAN_SCRIPTS"

if ! make -s asan >build/asan-build.log 2>&1; then
	not_ok "asan: build" "see build/asan-build.log"
	tail -5 build/asan-build.log | sed 's/^/#   /'
	exit 1
fi
REPORTS=$(mktemp -d) # the sanitizers' reports, one file per process that reported
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	# the server scripts still running (their timeout passes SIGTERM on: they clean up)
	for p in "$WORK"/*.pid; do [ -e "$p" ] && kill -TERM "$(cat "$p")" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$WORK" "$REPORTS"
}
trap cleanup EXIT
failed=0
# problem TEXT: a step of an end-to-end run did not do what it should; the run fails, as a
# leak check of a server that was never driven proves nothing.
problems=()
problem() { problems+=("$*"); }

# sanitize NAME LEAKS: the options for a process whose reports are REPORTS/NAME.PID; LEAKS 1
# runs LeakSanitizer at exit.
sanitize() {
	export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=$2:log_path=$REPORTS/$1"
	export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/$1"
}

# reported NAME: true (printing the start of each report) when a process under NAME reported.
reported() {
	local f found=1
	for f in "$REPORTS/$1".*; do
		[ -e "$f" ] || continue
		found=0
		echo "#   sanitizer report $(basename "$f"):"
		grep -E 'ERROR|SUMMARY|runtime error|leak of|^    #[0-9]' "$f" | head -25 | sed 's/^/#     /'
	done
	return $found
}

# verdict NAME RC OUT: one line for a test that ran sanitized with output OUT (TAP lines).
verdict() {
	local name=$1 rc=$2 out=$3 p s f
	p=$(grep -cE '^ok - ' "$out")
	s=$(grep -cE '^ok - .*# SKIP' "$out")
	f=$(grep -cE '^not ok - ' "$out")
	if reported "$name" || [ "$rc" != 0 ] || [ "$f" != 0 ]; then
		not_ok "asan: $name" "exit $rc, $((p - s)) passed, $f failed, $s skipped"
		if [ "$f" != 0 ]; then
			grep -E -A3 '^not ok - ' "$out" | head -30 | sed 's/^/#   /'
		else
			tail -10 "$out" | sed 's/^/#   /'
		fi
		failed=1
	elif [ "$p" = "$s" ]; then
		skip "asan: $name" "$(grep -m1 -oE '# SKIP .*' "$out" | cut -c8-)"
	elif [ "$s" != 0 ]; then
		ok "asan: $name ($((p - s)) passed, $s skipped)"
	else
		ok "asan: $name ($p passed)"
	fi
}

# ---- the server scripts against the sanitized server, leaks included: they stop it with
# SIGTERM, and it exits through its one way out. Started here, reported after the unit tests.
JOBS=${KZN_ASAN_JOBS:-3}
ISOLATE=(unshare --net sh -c 'ip link set lo up && exec "$@"' isolated)
if [ "$(id -u)" != 0 ] || ! "${ISOLATE[@]}" true 2>/dev/null; then
	ISOLATE=() JOBS=1
fi

# run_script NAME: test/NAME.sh against the sanitized server, its output in WORK/NAME.out, its
# exit status in WORK/NAME.rc.
run_script() {
	(sanitize "$1" 1 && KZN_SERVER=$ASAN/kubezonnet-server KZN_SANITIZED=1 \
		exec timeout 300 "${ISOLATE[@]}" bash "test/$1.sh") >"$WORK/$1.out" 2>&1 &
	echo $! >"$WORK/$1.pid"
	wait $!
	echo $? >"$WORK/$1.rc"
	rm -f "$WORK/$1.pid"
}

# ALONE: the scripts that time the server under a load of their own making and so run with
# nothing beside them. server_peers wants /healthz within the liveness timeout while the
# server inflates zlib bombs, and 1,100 connections taken within 5 s: beside the others it
# missed both (1.6 s, 724 connections).
ALONE=(server_peers)
alone() { [[ " ${ALONE[*]} " == *" $1 "* ]]; }

# run_scripts shared|alone|all: those scripts, JOBS at a time (those ALONE one at a time). In
# a shell of its own: it counts every job as one of its scripts.
run_scripts() {
	local s jobs=$JOBS
	[ "$1" = shared ] || jobs=1
	for s in "${SERVER_SCRIPTS[@]}"; do
		case $1 in
		shared) alone "$s" && continue ;;
		alone) alone "$s" || continue ;;
		esac
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
		run_script "$s" &
	done
	wait
}

POOL=
if [ ${#ISOLATE[@]} != 0 ]; then
	run_scripts shared &
	POOL=$!
fi

# ---- the unit tests, leaks included
for t in "$ASAN"/test/*_test; do
	name=$(basename "$t")
	(sanitize "$name" 1 && exec timeout 120 "$t") >"$WORK/$name.out" 2>&1
	verdict "$name" $? "$WORK/$name.out"
done

[ -z "$POOL" ] && (run_scripts all) # without a namespace of their own: before the runs below

# ---- the runs here: their lines wait in WORK/runs.out until the scripts' are out.
exec 3>&1 >"$WORK/runs.out"

BASE=$((10000 + $$ % 1900 * 4))
PORT=$BASE HTTP=$((BASE + 1)) API=$((BASE + 2)) HTTP2=$((BASE + 3))

# ---- every way the server gives up at start: the exit status its usage promises (1, or 2 for
# a bad flag), nothing leaked, and the flags' numbers read without undefined behaviour.
echo '{"nodes": [' >"$WORK/broken.json"
listen="--agent-listen 127.0.0.1:$PORT --http-listen 127.0.0.1:$HTTP"
startup_failed=()
n=0
while read -r want args; do
	n=$((n + 1))
	# shellcheck disable=SC2086 # the arguments are words
	(sanitize "start-$n" 1 && exec timeout 10 "$ASAN/kubezonnet-server" $args) >/dev/null 2>&1
	rc=$?
	if reported "start-$n" >"$WORK/start.txt" || [ "$rc" != "$want" ]; then
		startup_failed+=("exit $rc, want $want: kubezonnet-server $args")
		# the report in brief: what, and where
		while read -r line; do startup_failed+=("  $line"); done < <(grep -E 'runtime error|SUMMARY|#1 ' "$WORK/start.txt" | sed 's/^#  *//' | head -3)
	fi
done <<EOT
1 --agent-listen 127.0.0.1:99999 --http-listen 127.0.0.1:$HTTP
1 --agent-listen 127.0.0.1:$PORT --http-listen 127.0.0.1:$PORT
1 --topology $WORK/broken.json $listen
1 --topology $WORK/missing.json $listen
2 --kube-ca /etc/hostname $listen
2 --kube-api ftp://x $listen
2 --kube-api https://127.0.0.1:1 --kube-ca $WORK/broken.json $listen
2 --kube-api http://127.0.0.1:1 --kube-token-file $WORK/missing $listen
2 --pod-retention nan $listen
2 --kube-timeout nan --kube-api http://127.0.0.1:1 $listen
EOT
if [ ${#startup_failed[@]} = 0 ]; then
	ok "asan: server start-up failures: exit status, no leak, no report ($n cases)"
else
	not_ok "asan: server start-up failures: exit status, no leak, no report" "of $n cases:"
	for f in "${startup_failed[@]}"; do echo "#   $f"; done
	failed=1
fi

# ---- end to end under LeakSanitizer: agents (version 1 and 2, zlib frames, duplicates, bulk),
# malformed frames of every kind, scrapes with and without gzip, topology reloads (a good one,
# a broken one, a series past its retention), connections still open at SIGTERM; then the
# server must exit 0 with no report.
exec 2>>"$WORK/drive.log" # the drivers' complaints, shown when a run fails
url=http://127.0.0.1:$HTTP
agent() { python3 test/wire_agent.py "$@"; }

topology() { # topology ZONE-OF-N2 [WITH-P3]
	local p3=', {"namespace": "other", "name": "p3", "node": "n3", "ips": ["10.0.0.3"]}'
	[ -n "${2:-}" ] || p3=
	cat >"$WORK/topology.json" <<EOT
{"nodes": [{"name": "n1", "zone": "a", "region": "r", "ips": ["10.6.0.1"]},
           {"name": "n2", "zone": "$1", "region": "r", "ips": ["10.6.0.2", "fd06::2"]},
           {"name": "n3", "zone": "a", "region": "r"}],
 "pods": [{"namespace": "ns", "name": "p1", "node": "n1", "workload": "web", "workload_kind": "Deployment",
           "ips": ["10.0.0.1", "fd00::1"]},
          {"namespace": "ns", "name": "p2", "node": "n2", "workload": "db", "workload_kind": "StatefulSet",
           "ips": ["10.0.0.2", "fd00::2"]}$p3],
 "external": [{"name": "internet", "cidr": "0.0.0.0/0"}, {"name": "vpc", "cidr": "10.200.0.0/16", "zone": "b"}]}
EOT
}

# hostile PORT: every kind of malformed frame, each on its own connection.
hostile() {
	python3 - "$1" <<'PY'
import socket, struct, sys, zlib
sys.path.insert(0, "test")
from wire_agent import Agent, frame, addr16, MAGIC, HELLO, STATS, ERROR, FLAG_ZLIB
port = int(sys.argv[1])
def hello(version=1, magic=MAGIC, node=b"n1", instance=99):
    return frame(HELLO, struct.pack(">IHQH", magic, version, instance, len(node)) + node + struct.pack(">H", 4) + b"test")
v1 = Agent(1, (0, 0), False)
s16, fam = addr16("10.0.0.1")
d16, _ = addr16("10.0.0.2")
rec = v1.record(fam, 17, 53, s16, d16, 100, 1, 0)
stats = v1.stats(1, 1, rec)
payload = stats[8:]
def z(body, declared=None):
    return frame(STATS, struct.pack(">I", len(body) if declared is None else declared) + zlib.compress(body), FLAG_ZLIB)
cases = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                  # not the protocol: a huge length
    struct.pack(">IHH", 2, HELLO, 0),                       # length below type and flags
    frame(9, b""),                                          # unknown type
    hello(magic=0x12345678),
    hello(version=99),
    hello(node=b"Not_A-Valid..Name"),
    stats,                                                  # STATS before HELLO
    hello() + frame(STATS, payload, FLAG_ZLIB),             # zlib flag, not zlib
    hello() + z(payload, declared=0xFFFFFFF0),              # absurd uncompressed length
    hello() + z(payload, declared=len(payload) - 5),        # more than declared
    hello() + z(payload, declared=len(payload) + 5),        # less than declared
    hello() + frame(STATS, struct.pack(">I", len(payload)) + zlib.compress(payload)[:-6], FLAG_ZLIB),
    hello() + frame(STATS, payload[:-4]),                   # records cut short
    hello() + frame(STATS, payload[:56] + struct.pack(">I", 1 << 30) + rec),  # count too big
    hello() + v1.stats(0, 1, rec),                          # sequence 0
    hello() + frame(STATS, payload, 0x0100),                # unknown flag
    hello() + hello(),                                      # HELLO twice
    hello() + frame(ERROR, struct.pack(">HH", 1, 3) + b"bye"),
    hello() + frame(ERROR, struct.pack(">HH", 1, 2) + b"\xff\xfe"),
    hello() + struct.pack(">IHH", 1 << 20, STATS, 0) + b"\0" * 1000,  # cut mid-frame
    hello()[:9],                                            # cut mid-HELLO
]
for c in cases:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(c)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
PY
}

# hold AGENT-PORT HTTP-PORT: connections left open until the server stops: an agent past its
# HELLO with half a frame sent, one before its HELLO, an HTTP request half sent, an idle
# keep-alive connection after a response.
hold() {
	python3 - "$1" "$2" <<'PY' &
import socket, struct, sys, time
sys.path.insert(0, "test")
from wire_agent import frame, HELLO, MAGIC
port, http = int(sys.argv[1]), int(sys.argv[2])
conns = [socket.create_connection(("127.0.0.1", p)) for p in (port, port, http, http)]
node = b"n3"
conns[0].sendall(frame(HELLO, struct.pack(">IHQH", MAGIC, 1, 5, len(node)) + node + struct.pack(">H", 4) + b"test") + b"\0\0\0\x40\0\x02\0\0" + b"\0" * 20)
conns[1].sendall(b"\0\0")
conns[2].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
conns[3].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
conns[3].recv(1 << 16)
print("held", flush=True)
time.sleep(60)
PY
	HOLD=$!
	PIDS+=("$HOLD")
}

scrape() { # scrape URL: every HTTP path and method the server answers, and some it refuses
	local u=$1
	curl -sf -o /dev/null "$u/metrics" &&
		curl -sf --compressed -o /dev/null "$u/metrics" &&
		curl -sf -o /dev/null -H 'Accept-Encoding: gzip, deflate' "$u/metrics" &&
		curl -sf -o /dev/null "$u/healthz" &&
		curl -s -o /dev/null "$u/readyz" &&
		curl -sf -I -o /dev/null "$u/metrics" &&
		curl -s -o /dev/null "$u/nope" &&
		curl -s -o /dev/null -X POST -d x "$u/metrics" &&
		curl -sf "$u/metrics" "$u/healthz" "$u/metrics?x=1" >/dev/null && # one keep-alive connection
		python3 - "${u##*:}" <<'PY'
import socket, sys
port = int(sys.argv[1])
for req in (b"BREW /pot HTCPCP/1.0\r\n\r\n", b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n",
            b"\x00\xff\r\n\r\n", b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET /metrics HTTP/1.0\r\n\r\n"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
PY
}

# stop_server NAME PID TEST: SIGTERM, then the exit status (0 wanted) and the reports.
stop_server() {
	local name=$1 pid=$2 rc
	kill -TERM "$pid"
	timeout 30 tail --pid="$pid" -f /dev/null
	wait "$pid"
	rc=$?
	{
		kill -9 "$HOLD"
		wait "$HOLD"
	} 2>/dev/null
	if reported "$name" >"$WORK/$name.reports" || [ "$rc" != 0 ] || [ ${#problems[@]} != 0 ]; then
		not_ok "asan: $3" "exit $rc, ${#problems[@]} steps failed"
		for p in "${problems[@]}"; do echo "#   step failed: $p"; done
		cat "$WORK/$name.reports"
		echo "#   the server's log ends:"
		tail -5 "$WORK/$name.log" | sed 's/^/#     /'
		[ -s "$WORK/drive.log" ] && echo "#   and the drivers' stderr:" && tail -5 "$WORK/drive.log" | sed 's/^/#     /'
		: >"$WORK/drive.log"
		failed=1
	else
		ok "asan: $3"
	fi
	problems=()
}

topology b 1
(sanitize e2e 1 && exec "$ASAN/kubezonnet-server" $ANY_ADDRESS --topology "$WORK/topology.json" --http-listen 127.0.0.1:$HTTP \
	--agent-listen 127.0.0.1:$PORT --flow-logs all --pod-retention 1s >"$WORK/flows" 2>"$WORK/e2e.log") &
srv=$!
PIDS+=("$srv")
wait_for 10 grep -q listening "$WORK/e2e.log" || problem "the server did not start"
{
	agent 127.0.0.1 $PORT n1 1 1 10.0.0.1 10.0.0.2 1000 2 fd00::1 fd00::2 500 3 10.0.0.1 9.9.9.9 10
	agent 127.0.0.1 $PORT n1 1 2 10.0.0.1 10.0.0.2 1000 4 10.0.0.1 10.200.1.1 10 # a duplicate
	agent --zlib 127.0.0.1 $PORT n2 2 1 10.0.0.2 10.0.0.1 700 2 10.0.0.2 10.0.0.3 300
	agent --protocol 2 --zlib --malformed 3 300 127.0.0.1 $PORT n3 3 1 10.0.0.3 10.0.0.2 900/100 2 fd00::1 fd06::2 50
	agent --protocol 2 127.0.0.1 $PORT n3 4 1 10.6.0.1 10.6.0.2 10/2
	agent --zlib 127.0.0.1 $PORT n1 5 --bulk 5 500 10.0.0.1 10.0.0.2 100
} >"$WORK/acks" 2>&1 || problem "an agent failed: $(tail -1 "$WORK/acks")"
hostile $PORT
scrape "$url" || problem "a scrape failed"
topology a # n2 moves zone, p3 is gone: its series start their retention
kill -HUP $srv
wait_for 5 grep -q "topology.*2 pods" "$WORK/e2e.log" || problem "no reload"
agent 127.0.0.1 $PORT n1 6 1 10.0.0.1 10.0.0.2 1000 >/dev/null || problem "an agent after the reload failed"
echo '{"nodes": [' >"$WORK/topology.json"
kill -HUP $srv
wait_for 5 grep -q "keeping the previous one" "$WORK/e2e.log" || problem "no failed reload"
sleep 1.5 # past p3's retention: its series are swept
topology b 1
kill -HUP $srv
wait_for 5 grep -q "topology.*3 pods" "$WORK/e2e.log" || problem "no second reload"
agent --zlib 127.0.0.1 $PORT n3 7 1 10.0.0.3 10.0.0.1 5 >/dev/null || problem "an agent after the reloads failed"
scrape "$url" || problem "a scrape failed"
hold $PORT $HTTP >"$WORK/held"
wait_for 5 grep -q held "$WORK/held" || problem "the held connections did not connect"
stop_server e2e $srv "server end to end under LeakSanitizer: exit 0, no leak"

# The same against the stand-in Kubernetes API (its lists, the expired continue token, the
# watches that end and the in-stream ERROR 410 that forces a relist), with a topology file.
k8s_test="server with --kube-api end to end under LeakSanitizer: exit 0, no leak"
if [ -d "$FIX" ]; then
	python3 test/fake_apiserver.py $API "$FIX" "$WORK/requests" &
	PIDS+=($!)
	wait_for 5 python3 -c "import socket; socket.create_connection(('127.0.0.1', $API), 1)"
	(sanitize e2e-k8s 1 && exec "$ASAN/kubezonnet-server" $ANY_ADDRESS --kube-api http://127.0.0.1:$API --topology "$WORK/topology.json" \
		--http-listen 127.0.0.1:$HTTP2 --agent-listen 127.0.0.1:$PORT --flow-logs all >"$WORK/flows2" 2>"$WORK/e2e-k8s.log") &
	srv=$!
	PIDS+=("$srv")
	relisted() { [ "$(grep -c '^/api/v1/pods?limit=500' "$WORK/requests")" -ge 2 ]; }
	ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP2/readyz")" = 200 ]; }
	wait_for 15 relisted || problem "no relist"
	wait_for 15 ready || problem "not ready"
	sleep 1.5 # the index is rebuilt at most once a second after a change
	agent --zlib 127.0.0.1 $PORT kind-worker2 9 1 fd00:10:244:1::3 172.18.0.2 4242 2 fd00:10:244:1::3 10.0.0.1 10 >/dev/null ||
		problem "the agent failed"
	scrape "http://127.0.0.1:$HTTP2" || problem "a scrape failed"
	kill -HUP $srv # the topology again: merged into the next index
	reloaded() { [ "$(grep -c 'added to what the Kubernetes API knows' "$WORK/e2e-k8s.log")" -ge 2 ]; }
	wait_for 5 reloaded || problem "no reload"
	sleep 1.5 # and the index rebuilt with it
	hostile $PORT
	hold $PORT $HTTP2 >"$WORK/held2"
	wait_for 5 grep -q held "$WORK/held2" || problem "the held connections did not connect"
	stop_server e2e-k8s $srv "$k8s_test"
else
	skip "asan: $k8s_test" "fixtures not found at $FIX"
fi

# A server with an agent secret: the handshake, the MACs (OpenSSL's HMAC) and a rotation that
# closes a session, under LeakSanitizer.
secret_test="server with an agent secret under LeakSanitizer: exit 0, no leak"
printf 'sanitizer-secret-0123456789\n' >"$WORK/secret"
printf 'sanitizer-other-secret-abcdef\n' >"$WORK/other"
topology b 1
(sanitize e2e-secret 1 && exec "$ASAN/kubezonnet-server" $ANY_ADDRESS --topology "$WORK/topology.json" \
	--agent-secret-file "$WORK/secret" --http-listen 127.0.0.1:$HTTP --agent-listen 127.0.0.1:$PORT \
	>/dev/null 2>"$WORK/e2e-secret.log") &
srv=$!
PIDS+=("$srv")
wait_for 10 grep -q listening "$WORK/e2e-secret.log" || problem "the server did not start"
agent --secret "$WORK/secret" --protocol 3 127.0.0.1 $PORT n1 11 1 10.0.0.1 10.0.0.2 1000 2 10.0.0.1 10.0.0.2 5 >/dev/null ||
	problem "the agent with the secret failed"
agent --secret "$WORK/other" 127.0.0.1 $PORT n1 12 1 10.0.0.1 10.0.0.2 1000 >/dev/null 2>&1 &&
	problem "an agent with another secret was accepted"
agent --secret "$WORK/secret" --bad-mac 127.0.0.1 $PORT n1 13 1 10.0.0.1 10.0.0.2 1000 >/dev/null 2>&1 &&
	problem "a frame with a wrong MAC was accepted"
cp "$WORK/other" "$WORK/secret.tmp" && mv "$WORK/secret.tmp" "$WORK/secret"
wait_for 5 grep -q "read again" "$WORK/e2e-secret.log" || problem "the secret was not read again"
agent --secret "$WORK/other" 127.0.0.1 $PORT n1 14 1 10.0.0.1 10.0.0.2 7 >/dev/null || problem "the new secret failed"
hostile $PORT
stop_server e2e-secret $srv "$secret_test"

exec 1>&3 3>&-
if [ -n "$POOL" ]; then
	wait "$POOL"
	(run_scripts alone) # a subshell: its jobs are the scripts only
fi
for script in "${SERVER_SCRIPTS[@]}"; do
	verdict "$script" "$(cat "$WORK/$script.rc" 2>/dev/null || echo '(none)')" "$WORK/$script.out"
done
cat "$WORK/runs.out"
exit $failed
