#!/usr/bin/env bash
# The server with more agents than the old fixed limit of 1,024: SCALE_AGENTS (default 1,200)
# simulated agents (bench/agentsim, one connection each, all connected at once) each send
# SCALE_REPORTS compressed reports of SCALE_RECORDS records. Then, while every agent is still
# connected: kubezonnet_agents_connected is SCALE_AGENTS, no frame was refused, and every
# per-pod cross-zone byte total and every node's kubezonnet_records_received_total equal what
# the agents had acknowledged, as computed here in Python from the topology file and the
# simulator's record plan (bench/agentsim.c, its opening comment), not by the server's code.
. "$(dirname "$0")/lib.sh"

N=${SCALE_AGENTS:-1200}
RECORDS=${SCALE_RECORDS:-100}
REPORTS=${SCALE_REPORTS:-3}
PERIOD=2
PODS=2
SIM=$TOP/build/bench/agentsim
NAMES=("scale: $N agents connected at once" "scale: every agent's reports acknowledged"
	"scale: no frame refused" "scale: records received per node exact"
	"scale: per-pod cross-zone bytes exact")

if [ ! -x "$SIM" ]; then
	for n in "${NAMES[@]}"; do not_ok "$n" "$SIM missing (make unit-tests builds it)"; done
	exit 0
fi
# One descriptor per agent in the server and in the simulator, plus HTTP and spare.
want=$((N + 1024)) hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
	for n in "${NAMES[@]}"; do skip "$n" "needs $want descriptors, ulimit -Hn is $hard"; done
	exit 0
fi
[ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ] && ulimit -n "$want"
# The server sizes its agent table from --max-agents where it has the flag.
MAX_AGENTS=()
"$SERVER" --help 2>/dev/null | grep -q -- --max-agents && MAX_AGENTS=(--max-agents "$N")

WORK=$(mktemp -d)
SIM_PID='' SRV=''
cleanup() {
	[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$((20000 + $$ % 12000)) # below 32768: not an ephemeral port another socket may hold
HTTP=$((PORT + 1))

"$SIM" --agents "$N" --pods-per-node $PODS --write-topology "$WORK/topology.json"
"$SERVER" $ANY_ADDRESS --topology "$WORK/topology.json" --flow-logs none "${MAX_AGENTS[@]}" \
	--agent-listen 127.0.0.1:$PORT --http-listen 127.0.0.1:$HTTP 2>"$WORK/log" &
SRV=$!
if ! wait_for 10 grep -q listening "$WORK/log"; then
	for n in "${NAMES[@]}"; do not_ok "$n" "the server did not start: $(tail -1 "$WORK/log")"; done
	exit 0
fi
echo "# $N agents x $REPORTS reports x $RECORDS records, every ${PERIOD}s; server ${MAX_AGENTS[*]:-(no --max-agents flag)}"
# --hold: the agents stay connected while the metrics are read; the deadline ends a run in
# which some agents never get in.
"$SIM" --agents "$N" --pods-per-node $PODS --records "$RECORDS" --period $PERIOD \
	--reports "$REPORTS" --deadline $((PERIOD * (REPORTS + 2) + 12)) --hold 60 \
	--agent-addr 127.0.0.1:$PORT --http-addr 127.0.0.1:$HTTP --acked "$WORK/acked" \
	--output kv >"$WORK/sim" 2>"$WORK/sim.err" &
SIM_PID=$!
wait_for $((PERIOD * (REPORTS + 2) + 30)) test -s "$WORK/acked"
sleep 0.5 # a refused agent may be between two attempts: let the gauge settle
curl -s "http://127.0.0.1:$HTTP/metrics" >"$WORK/metrics"
sim() { awk -v k="$1" '$1 == k { print $2 }' "$WORK/sim"; }
metric_sum() { awk -v k="$1" '$1 == k || index($1, k "{") == 1 { s += $2 } END { printf "%d\n", s }' "$WORK/metrics"; }

check_eq "${NAMES[0]}" "$(metric_sum kubezonnet_agents_connected)" "$N"
done_=$(sim agents_done)
if [ "$done_" = "$N" ]; then
	ok "${NAMES[1]}"
else
	not_ok "${NAMES[1]}" "${done_:-?} of $N agents had all $REPORTS reports acknowledged;" \
		"ERROR frames 'too many connections': $(sim errors_overloaded), other errors: $(sim errors_other)," \
		"reconnections: $(sim reconnects)"
fi
rejected=$(grep '^kubezonnet_frames_rejected_total' "$WORK/metrics" | tr '\n' ' ')
if [ "$(metric_sum kubezonnet_frames_rejected_total)" = 0 ] && [ "$(sim errors_other)" = 0 ] &&
	[ "$(sim errors_overloaded)" = 0 ]; then
	ok "${NAMES[2]}"
else
	not_ok "${NAMES[2]}" "server: ${rejected:-none}; simulator: $(sim errors_overloaded) ERROR" \
		"'too many connections', $(sim errors_other) other errors"
fi

# The expected totals, from the topology file and the record plan.
python3 - "$WORK/topology.json" "$WORK/acked" "$WORK/metrics" "$RECORDS" "$PODS" \
	>"$WORK/verdict" 2>&1 <<'PY'
import collections, ipaddress, json, re, sys

topology, acked, metrics = sys.argv[1:4]
R, P = int(sys.argv[4]), int(sys.argv[5])
topo = json.load(open(topology))
zone = {n["name"]: n["zone"] for n in topo["nodes"]}
pod_at = {}
for p in topo["pods"]:
    for ip in p["ips"]:
        pod_at[ip] = (p["namespace"], p["name"], p["node"])
seqs = [int(l.split()[1]) for l in open(acked)]
N = len(seqs)

def pod_ip(node, j):  # the plan: pod j of node i is 10.0.1.0 + i * P + j
    return str(ipaddress.IPv4Address(0x0A000100 + node * P + j))

want_bytes = collections.Counter()
want_records = collections.Counter()
for i, last in enumerate(seqs):
    if last == 0:
        continue
    want_records["simnode-%05d" % i] += R * last
    for k in range(R):
        j = k % P
        d = (i + 1 + (k // P) % (N - 1)) % N
        src, dst = pod_at[pod_ip(i, j)], pod_at[pod_ip(d, j)]
        if zone[src[2]] == zone[dst[2]]:
            continue
        for s in range(1, last + 1):
            want_bytes[src[:2]] += 64 + (i * 2654435761 + s * 40503 + k * 2246822519) % 1000003

got_bytes, got_records = collections.Counter(), collections.Counter()
line = re.compile(r'^(\w+)\{(.*)\} (\S+)$')
for l in open(metrics):
    m = line.match(l.strip())
    if not m:
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
    if m.group(1) == "pod_cross_zone_network_traffic_bytes_total":
        got_bytes[(labels["namespace"], labels["pod"])] += int(float(m.group(3)))
    elif m.group(1) == "kubezonnet_records_received_total":
        got_records[labels["node"]] += int(float(m.group(3)))

def verdict(name, want, got, what):
    keys = set(want) | set(got)
    bad = sorted(k for k in keys if want[k] != got[k])
    if bad:
        print("%s bad %d of %d %s differ, e.g. %s: want %d, got %d" % (
            name, len(bad), len(keys), what, bad[0], want[bad[0]], got[bad[0]]))
    else:
        print("%s ok %d %s, %d in all" % (name, len(keys), what, sum(want.values())))

verdict("records", want_records, got_records, "nodes' records")
verdict("bytes", want_bytes, got_bytes, "pods' cross-zone bytes")
PY
for v in records:3 bytes:4; do
	read -r _ verdict msg < <(grep "^${v%:*} " "$WORK/verdict")
	name=${NAMES[${v#*:}]}
	if [ "$verdict" = ok ]; then ok "$name ($msg)"; else not_ok "$name" "${msg:-$(tail -3 "$WORK/verdict")}"; fi
done
echo "# simulator: $(grep -E '^(connected_max|reports_acked|records_acked|errors_overloaded|reconnects|ack_p99_ms) ' "$WORK/sim" | tr '\n' ' ')"
