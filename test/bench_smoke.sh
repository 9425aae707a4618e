#!/usr/bin/env bash
# The benchmarks that compile the agent's and the server's own code (bench/drain_bench.c
# includes agent.c; server_bench and wire_bench link the server's modules) still build and
# measure what they say: every row a figure, none "failed" or skipped for a reason other than
# needing root. Their figures are not judged here (that is make bench's job): a benchmark that
# stops measuring must not go unnoticed until someone reads its table. drain_bench once built
# no frame at all for several releases ("encode a report ...: out of memory", no drain rows),
# after the agent's reports began to carry a wire version. About 15 s.
cd "$(dirname "$0")/.." || exit 1
. test/lib.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for b in drain wire server; do
	name="bench: ${b}_bench builds and prints its rows"
	if [ "$b" = drain ] && [ "$(id -u)" != 0 ]; then
		skip "$name" "drain_bench needs root (BPF maps)"
		continue
	fi
	if ! make -s "build/bench/${b}_bench" >"$log" 2>&1; then
		not_ok "$name" "make build/bench/${b}_bench failed: $(tail -1 "$log")"
		continue
	fi
	out=$("build/bench/${b}_bench" 2>&1)
	rc=$?
	# A row: a name, then a number, a unit, a baseline, a number (or -) and a ratio (or -).
	rows=$(grep -cE '^[a-z].* [0-9]+\.[0-9] ' <<<"$out")
	bad=$(grep -iE 'failed|skipped|out of memory|(^| )-?(nan|inf)( |$)' <<<"$out" | head -3)
	if [ $rc -ne 0 ]; then
		not_ok "$name" "exited $rc: $(tail -1 <<<"$out")"
	elif [ -n "$bad" ]; then
		not_ok "$name" "$bad"
	elif [ "$rows" -lt 2 ]; then
		not_ok "$name" "$rows rows: $(head -3 <<<"$out")"
	else
		ok "$name ($rows rows)"
	fi
done
