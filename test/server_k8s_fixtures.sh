#!/usr/bin/env bash
# For each real PodList fixture (with a NodeList whose nodes it names, or not): the server
# lists them from the stand-in API server, a test agent sends one record from every address
# the lists mention, and the server's flow log must name each address exactly as
# test/k8s_oracle.py (the rules of ../shared/K8S-API.md, in Python) says the lists imply:
# pod, namespace, workload and kind, node, zone, or unknown.
. "$(dirname "$0")/lib.sh"
PAIRS=(
	"podlist_kind_kube_system_static_mirror_pending_unscheduled_sonobuoy nodelist_kind_no_zone_labels_podcidrs_sonobuoy"
	"podlist_kind_succeeded_pod_owned_by_pod_sonobuoy nodelist_kind_no_zone_labels_podcidrs_sonobuoy"
	"podlist_same_name_recreated_new_uid_sonobuoy nodelist_kind_no_zone_labels_podcidrs_sonobuoy"
	"podlist_dualstack_and_ipv6_primary_derived nodelist_kind_no_zone_labels_podcidrs_sonobuoy"
	"podlist_eks_vpccni_hostnetwork_bare_pod_cloudability nodelist_eks_topology_zone_region_honeycomb"
	"podlist_onprem_calico_hostnetwork_daemonsets_honeycomb nodelist_eks_topology_zone_region_honeycomb"
	"podlist_dualstack_and_ipv6_primary_derived nodelist_zone_label_variants_derived"
)
skip_unless_fixtures "${PAIRS[@]/#/k8s fixture: }"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$((24000 + $$ % 6000))
i=0
for pair in "${PAIRS[@]}"; do
	pods=${pair% *} nodes=${pair#* }
	name="k8s fixture: $pair"
	d=$WORK/$i
	mkdir -p "$d/lists"
	cp "$FIX/$pods.json" "$d/lists/podlist.json"
	cp "$FIX/$nodes.json" "$d/lists/nodelist.json"
	api=$((PORT + 4 * i)) http=$((PORT + 4 * i + 1)) ag=$((PORT + 4 * i + 2))
	i=$((i + 1))
	python3 "$TOP/test/fake_apiserver.py" $api "$FIX" "$d/requests" --lists "$d/lists" &
	apipid=$!
	wait_for 5 python3 -c "import socket; socket.create_connection(('127.0.0.1', $api), 1)"
	"$SERVER" $ANY_ADDRESS --kube-api http://127.0.0.1:$api --http-listen 127.0.0.1:$http \
		--agent-listen 127.0.0.1:$ag --flow-logs all >"$d/flows" 2>"$d/log" &
	srv=$!
	ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; }
	wait_for 10 ready $http
	# One test agent per node: a record counts only on the node its source is on.
	python3 "$TOP/test/k8s_oracle.py" ips "$d/lists/nodelist.json" "$d/lists/podlist.json" >"$d/ips"
	total=$(wc -l <"$d/ips")
	instance=1
	for node in $(awk '{ print $2 }' "$d/ips" | sort -u); do
		args=()
		while read -r ip _; do
			args+=($((${#args[@]} / 4 + 1)) "$ip" 192.0.2.1 100)
		done < <(awk -v n="$node" '$2 == n' "$d/ips")
		python3 "$TOP/test/wire_agent.py" 127.0.0.1 $ag "${node/#-/test-node}" $instance "${args[@]}" >/dev/null
		instance=$((instance + 1))
	done
	lines() { [ "$(wc -l <"$d/flows")" -ge "$1" ]; }
	wait_for 5 lines "$total"
	kill $srv $apipid 2>/dev/null
	wait $srv $apipid 2>/dev/null
	out=$(python3 "$TOP/test/k8s_oracle.py" check "$d/lists/nodelist.json" "$d/lists/podlist.json" "$d/flows")
	summary=$(echo "$out" | tail -1)
	if [ "${summary#* checked, }" = "0 wrong" ] && [ "${summary%% *}" -gt 0 ]; then
		ok "$name ($summary)"
	else
		not_ok "$name" "$summary"
		echo "$out" | head -8 | sed 's/^/#   /'
	fi
done
