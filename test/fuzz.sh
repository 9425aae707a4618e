#!/usr/bin/env bash
# Every parser (wire, JSON, HTTP, chunked bodies, topology, Kubernetes watch events) under libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer, for
# FUZZ_SECONDS each (default 10), seeded with the unit tests' inputs and the k8s fixtures.
# A crash, a leak or a sanitizer report fails the test and leaves the input in build/fuzz/.
# The fuzzers are built and run as many at a time as there are CPUs (each still runs for
# FUZZ_SECONDS); their lines come in the same order either way.
. "$(dirname "$0")/lib.sh"
cd "$TOP" || exit 1
seconds=${FUZZ_SECONDS:-10}
TARGETS="wire json http chunked topology k8s"
jobs=$(nproc 2>/dev/null || echo 1)
if ! make -s -j"$jobs" fuzz >build/fuzz-build.log 2>&1; then
	if grep -q "fuzzer" build/fuzz-build.log; then
		for t in $TARGETS; do skip "fuzz: $t" "libFuzzer not available (make deps installs libclang-rt-dev)"; done
		exit 0
	fi
	not_ok "fuzz: build" "$(tail -5 build/fuzz-build.log)"
	exit 1
fi
mkdir -p build/fuzz/seeds-json build/fuzz/seeds-topology build/fuzz/seeds-http build/fuzz/seeds-chunked build/fuzz/seeds-wire build/fuzz/seeds-k8s
cp ../shared/fixtures/k8s/*.json build/fuzz/seeds-json/ 2>/dev/null
cp deploy/topology.example.json build/fuzz/seeds-topology/
(cd build/fuzz/seeds-k8s && split -l 1 ../../../../shared/fixtures/k8s/watch_events_pods_recreated_bookmark_410_derived.jsonl pods- && split -l 1 ../../../../shared/fixtures/k8s/watch_events_nodes_zone_label_added_deleted_derived.jsonl nodes-) 2>/dev/null
cp ../shared/fixtures/k8s/watch_events_*.jsonl build/fuzz/seeds-k8s/ 2>/dev/null
printf 'GET /metrics HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n' >build/fuzz/seeds-http/get
# Two bytes that choose the piece sizes, then a chunked body with an extension, a trailer and what follows.
printf '\x12\x344\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nHTTP/1.1 200' >build/fuzz/seeds-chunked/body
printf '\x00\x00\x00\x0c\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07' >build/fuzz/seeds-wire/ack
# fuzz T: runs fuzzer T; its exit status goes to build/fuzz/T.rc.
fuzz() {
	(cd build/fuzz && ASAN_OPTIONS=detect_leaks=1 ./fuzz-$1 -max_total_time="$seconds" \
		-max_len=65536 -timeout=10 "seeds-$1" >"$1.log" 2>&1)
	echo $? >"build/fuzz/$1.rc"
}
running=0
for t in $TARGETS; do
	rm -f "build/fuzz/$t.rc"
	fuzz "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait
for t in $TARGETS; do
	log=build/fuzz/$t.log
	if [ "$(cat "build/fuzz/$t.rc" 2>/dev/null)" = 0 ]; then
		ok "fuzz: $t ($(grep -oE 'stat::number_of_executed_units: [0-9]+|#[0-9]+' "$log" | tail -1) runs in ${seconds}s)"
	else
		not_ok "fuzz: $t" "see $log"
		grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -5 | sed 's/^/#   /'
	fi
done
