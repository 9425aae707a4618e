#!/usr/bin/env bash
# The server under many agents (bench/agentsim: one process, one connection per simulated
# agent, loopback): 5,000 agents each reporting 1,000 compressed records every 10 s, then also
# 10 concurrent keep-alive scrapers of /metrics (gzip), each asking once a second; the baseline
# is the same run with 100 agents. The server is the release build at the tree's top, with
# --flow-logs none and the simulated cluster as its --topology (3 zones, 2 pods a node).
#
# Each run: the agents connect, then one period of warm-up (series created), SCALE_INGEST
# periods of reports alone, SCALE_SCRAPE periods of reports and scrapers. The server's CPU time
# (/proc/PID/task/*/schedstat, ns; /proc/PID/stat where that is missing) is sampled every
# period next to the reports acknowledged in it; CPU figures are medians over the periods of
# their phase (and over SCALE_ROUNDS alternating rounds). /metrics p50 and p99 are over every
# scrape of the run; RSS is read at its end, every agent still connected. Targets: /metrics
# p99 under 200 ms; CPU per report with 5,000 connections within 1.5 times the figure with 100;
# no frame rejected (the server's kubezonnet_frames_rejected_total and every ERROR frame the
# agents saw) and no record lost (records the agents sent minus the server's
# kubezonnet_records_received_total), in both runs.
#
# A server without --max-agents (before the fixed 1,024-agent table went) is measured with
# 1,000 agents instead of 5,000, and the rows say so. SCALE_AGENTS sets the larger count
# (then used as given), SCALE_SERVER another server binary to measure.
cd "$(dirname "$0")/.." || exit 1
SIM=build/bench/agentsim SERVER=${SCALE_SERVER:-./kubezonnet-server}
BIG=${SCALE_AGENTS:-5000} SMALL=100 RECORDS=1000 PERIOD=${SCALE_PERIOD:-10}
SCRAPERS=10 SCRAPE_INTERVAL=1 INGEST=${SCALE_INGEST:-3} SCRAPE=${SCALE_SCRAPE:-3}
ROUNDS=${SCALE_ROUNDS:-1}
what="scale: server with many agents"
skipped() { printf '%-44s (skipped: %s)\n' "$what" "$1"; exit 0; }
if [ ! -x $SIM ] || [ ! -x "$SERVER" ]; then skipped "needs $SIM and $SERVER (make bench builds them)"; fi
command -v curl >/dev/null || skipped "needs curl"
MAX_AGENTS=0
$SERVER --help 2>/dev/null | grep -q -- --max-agents && MAX_AGENTS=1
if [ $MAX_AGENTS = 0 ] && [ -z "${SCALE_AGENTS:-}" ]; then
	echo "# $SERVER has no --max-agents (a fixed table of 1,024 agents): measuring 1,000 agents, not $BIG" >&2
	BIG=1000
fi
want=$((BIG + 1024)) hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$hard" -ge $want ] || skipped "needs $want descriptors, ulimit -Hn is $hard"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $want ] || ulimit -n $want

WORK=$(mktemp -d /tmp/kzt-scale.XXXXXX)
SRV=
cleanup() {
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$((24000 + $$ % 8000)) # below the ephemeral range (32768 up), where TIME_WAIT sockets sit
HTTP=$((PORT + 1))
thousands() { echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); else print 0 }'; }

# run N ROUND: one run with N agents; appends its figures to $WORK/N.*
run() {
	local n=$1 out=$WORK/$1.$2 srv_args=()
	[ $MAX_AGENTS = 1 ] && srv_args=(--max-agents "$n")
	# agentsim connects from 127.0.0.1, not from the simulated nodes' addresses
	$SERVER --help 2>/dev/null | grep -q -- --no-agent-address-check && srv_args+=(--no-agent-address-check)
	$SIM --agents "$n" --write-topology "$WORK/topology-$n.json" || return 1
	$SERVER --topology "$WORK/topology-$n.json" --flow-logs none "${srv_args[@]}" \
		--agent-listen 127.0.0.1:$PORT --http-listen 127.0.0.1:$HTTP 2>"$out.log" &
	SRV=$!
	for _ in $(seq 100); do grep -q listening "$out.log" && break; sleep 0.1; done
	if ! kill -0 $SRV 2>/dev/null; then
		echo "# the server did not start:" >&2
		sed 's/^/#   /' "$out.log" >&2
		return 1
	fi
	$SIM --agents "$n" --records $RECORDS --period "$PERIOD" \
		--duration $((PERIOD * (1 + INGEST + SCRAPE))) --scrapers $SCRAPERS \
		--scrape-interval $SCRAPE_INTERVAL --scrape-delay $((PERIOD * (1 + INGEST))) \
		--agent-addr 127.0.0.1:$PORT --http-addr 127.0.0.1:$HTTP --server-pid $SRV \
		--output kv >"$out.sim" 2>"$out.err"
	# The server reuses a /metrics rendering for up to 1 s (ten times what it cost): one made
	# while the last reports came in would miss some of them.
	sleep 1.1
	curl -sS "http://127.0.0.1:$HTTP/metrics" >"$out.metrics" 2>"$out.curl" ||
		echo "# /metrics after the run: $(cat "$out.curl")" >&2
	kill $SRV
	wait $SRV 2>/dev/null
	SRV=
	sim() { awk -v k="$1" '$1 == k { print $2 }' "$out.sim"; }
	msum() { awk -v k="$1" 'index($1, k) == 1 { s += $2 } END { printf "%d\n", s }' "$out.metrics"; }
	# Reports alone, the warm-up period (sample 1) aside: CPU per report (us), records/CPU-s.
	awk '$1 == "sample" && $3 == "ingest" && $2 > 1 && $6 > 0 { print $5 / $6 / 1000 }' "$out.sim" >>"$WORK/$n.cpu_report"
	awk '$1 == "sample" && $3 == "ingest" && $2 > 1 && $5 > 0 { print $7 / ($5 / 1e9) }' "$out.sim" >>"$WORK/$n.rec_cpu"
	awk '$1 == "sample" && $3 == "scrape" && $5 > 0 { print $7 / ($5 / 1e9) }' "$out.sim" >>"$WORK/$n.rec_cpu_scrape"
	sim scrape_p50_ms >>"$WORK/$n.p50"
	awk '$1 == "server_rss_kb" { print $2 / 1024 }' "$out.sim" >>"$WORK/$n.rss"
	sim scrape_p99_ms >>"$WORK/$n.p99"
	echo $(($(msum kubezonnet_frames_rejected_total) + $(sim errors_other) + $(sim errors_overloaded))) >>"$WORK/rejected"
	local lost=$(($(sim records_sent) - $(msum kubezonnet_records_received_total)))
	echo $lost >>"$WORK/lost"
	if [ "$lost" != 0 ]; then
		# Keep what tells where they went: the server's log and last /metrics, agentsim's output.
		local keep
		keep=$(mktemp -d /tmp/kzt-scale-lost.XXXXXX)
		cp "$out".* "$keep/"
		echo "# $n agents: $lost records sent but not in kubezonnet_records_received_total" \
			"($(grep -c '^kubezonnet_records_received_total' "$out.metrics") node series;" \
			"$(grep '^kubezonnet_reports_total' "$out.metrics" | tr '\n' ' '));" \
			"the run's files are in $keep" >&2
	fi
	echo "# $n agents (round $2): $(grep -E '^(connected_max|reports_acked|records_sent|reports_late|reconnects|ack_p50_ms|ack_p99_ms|scrapes|scrape_errors|scrape_p50_ms|scrape_p99_ms|scrape_max_ms|scrape_bytes|cpu_source|server_rss_kb|server_rss_max_kb) ' "$out.sim" | tr '\n' ' ')" >&2
}
for r in $(seq "$ROUNDS"); do
	run $SMALL "$r" || skipped "agentsim failed: $(tail -1 "$WORK/$SMALL.$r.err")"
	run "$BIG" "$r" || skipped "agentsim failed: $(tail -1 "$WORK/$BIG.$r.err")"
done

B=$(thousands "$BIG")
m() { median <"$WORK/$1"; }
# row NAME VALUE UNIT BASELINE BASE_VALUE [TARGET-TEXT MET]
row() {
	local ratio target="  (no target: reported)"
	ratio=$(awk -v a="$2" -v b="$5" 'BEGIN { print (b ? a / b : 0) }')
	[ $# -ge 7 ] && target="  target $6: $7"
	printf '%-44s %14.1f %-12s %-26s %14.1f %7.2fx%s\n' "$1" "$2" "$3" "$4" "$5" "$ratio" "$target"
}
met() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "NOT MET"; fi; }
cpu_big=$(m "$BIG.cpu_report") cpu_small=$(m $SMALL.cpu_report)
p99=$(awk '{ print $1 }' "$WORK/$BIG.p99" | median)
rejected=$(awk '{ s += $1 } END { print s + 0 }' "$WORK/rejected")
lost=$(awk '{ s += $1 } END { print s + 0 }' "$WORK/lost")
row "scale: records/CPU-s, $B agents" "$(m "$BIG.rec_cpu")" records/CPUs "$SMALL agents" "$(m $SMALL.rec_cpu)"
row "scale: records/CPU-s, $B agents + scrapers" "$(m "$BIG.rec_cpu_scrape")" records/CPUs "$B agents, no scrapers" "$(m "$BIG.rec_cpu")"
row "scale: /metrics p50, $B agents, 10 scrapers" "$(m "$BIG.p50")" ms "$SMALL agents" "$(m $SMALL.p50)"
row "scale: /metrics p99, $B agents, 10 scrapers" "$p99" ms "target" 200 "p99 < 200 ms" "$(met "$p99 < 200")"
row "scale: server RSS, $B agents connected" "$(m "$BIG.rss")" MiB "$SMALL agents" "$(m $SMALL.rss)"
row "scale: CPU per report, $B agents" "$cpu_big" us "CPU per report, $SMALL agents" "$cpu_small" \
	"ratio <= 1.5" "$(met "$cpu_big <= 1.5 * $cpu_small")"
row "scale: frames rejected, $SMALL and $B agents" "$rejected" frames "target" 0 "0" "$(met "$rejected == 0")"
row "scale: records lost, $SMALL and $B agents" "$lost" records "target" 0 "0" "$(met "$lost == 0")"
