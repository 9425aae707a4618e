#!/usr/bin/env bash
# deploy/prometheus-rules.yaml: promtool checks its rules and runs their unit tests
# (test/rules/rules_test.yaml: the cost and every alert on synthetic series); two deliberate
# mistakes in the rules make those tests fail. Then a real Prometheus (scratch TSDB on
# 127.0.0.1) parses every PromQL expression kubezonnet ships: the rules', the Grafana
# dashboard's targets and README.md's "Queries"; a broken expression is refused.
#
# The same rules on live data, against a Prometheus that scrapes a real server:
# `python3 test/rules/promql.py live URL` (see its header; test/server_e2e.sh can call it).
. "$(dirname "$0")/lib.sh"
R=$TOP/test/rules
NAMES=("rules: promtool check rules" "rules: promtool test rules" "rules: the unit tests catch a wrong price"
	"rules: the unit tests catch an agent alert that ignores its other server"
	"prometheus: every shipped expression parses" "prometheus: a broken expression is refused"
	"live check: fails on a Prometheus without kubezonnet data")
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null || ! python3 -c 'import yaml' 2>/dev/null; then
	for n in "${NAMES[@]}"; do skip "$n" "needs prometheus, promtool and python3-yaml (make deps)"; done
	exit 0
fi
WORK=$(mktemp -d)
PROM_PID=
cleanup() {
	[ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

python3 "$R/promql.py" rules-file "$WORK/rules.yaml"
cp "$R/rules_test.yaml" "$WORK/"
check "rules: promtool check rules" promtool check rules "$WORK/rules.yaml"
check "rules: promtool test rules" bash -c "cd '$WORK' && promtool test rules rules_test.yaml"

# mutant SED NAME: the unit tests must fail on the rules with one mistake.
mutant() {
	mkdir -p "$WORK/mutant"
	sed "$1" "$WORK/rules.yaml" >"$WORK/mutant/rules.yaml"
	cp "$R/rules_test.yaml" "$WORK/mutant/"
	if cmp -s "$WORK/rules.yaml" "$WORK/mutant/rules.yaml"; then
		not_ok "$2" "the mistake '$1' changed nothing"
	elif (cd "$WORK/mutant" && promtool test rules rules_test.yaml >/dev/null 2>&1); then
		not_ok "$2" "promtool test rules passed with '$1'"
	else
		ok "$2"
	fi
}
mutant 's/vector(0.01)/vector(0.02)/' "rules: the unit tests catch a wrong price"
mutant 's/time() - max by (node) (kubezonnet_agent_last_report_timestamp_seconds)/time() - kubezonnet_agent_last_report_timestamp_seconds/' \
	"rules: the unit tests catch an agent alert that ignores its other server"

# A real Prometheus, nothing to scrape: it parses and evaluates queries.
port=$((19400 + $$ % 500))
printf 'global:\n  scrape_interval: 15s\n' >"$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
	--web.listen-address="127.0.0.1:$port" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
URL=http://127.0.0.1:$port
if ! wait_for 30 curl -sf "$URL/-/ready"; then
	not_ok "prometheus: every shipped expression parses" "prometheus did not start"
	tail -5 "$WORK/prometheus.log" | sed 's/^/#   /'
	exit 1
fi
python3 "$R/promql.py" exprs >"$WORK/exprs" || { not_ok "prometheus: every shipped expression parses" "could not list them"; exit 1; }
n=$(wc -l <"$WORK/exprs")
if python3 "$R/promql.py" parse "$URL" <"$WORK/exprs" >"$WORK/parsed"; then
	ok "prometheus: every shipped expression parses ($n: $(grep -c '"where": "rule' "$WORK/exprs") rules, $(grep -c '"where": "dashboard' "$WORK/exprs") dashboard, $(grep -c '"where": "README' "$WORK/exprs") README)"
else
	not_ok "prometheus: every shipped expression parses" "these were refused:"
	grep -A2 '^not ok' "$WORK/parsed" | sed 's/^/#   /'
fi
echo '{"where": "a broken expression", "expr": "sum by (namespace (rate(pod_cross_zone_network_traffic_bytes_total[5m]))"}' >"$WORK/bad"
if python3 "$R/promql.py" parse "$URL" <"$WORK/bad" >"$WORK/bad.out"; then
	not_ok "prometheus: a broken expression is refused" "accepted"
else
	ok "prometheus: a broken expression is refused ($(grep -m1 'bad_data' "$WORK/bad.out" | sed 's/^#   //' | cut -c1-80))"
fi
if python3 "$R/promql.py" live "$URL" >"$WORK/live.out"; then
	not_ok "live check: fails on a Prometheus without kubezonnet data" "$(head -3 "$WORK/live.out")"
else
	ok "live check: fails on a Prometheus without kubezonnet data ($(grep -c '^not ok' "$WORK/live.out") rules without series)"
fi
