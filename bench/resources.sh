#!/usr/bin/env bash
# Figures for the resource requests and limits in deploy.yaml (root, podman; one measurement
# each, memory being steady: the median of one).
#
# The agent: its container as deploy.yaml declares it (podman_k8s, test/podman.lib.sh: user,
# capabilities, read-only root, limits) on a node of its own (a network namespace with one pod
# behind it; what the pod sends to 10.99.0.0/16 goes to a namespace that drops it), reporting to a server
# in that namespace. Its cgroup's memory (cgroup v1: memory.usage_in_bytes, which includes the
# BPF maps the agent created, charged to it) idle, and with 65,536 distinct flows (256
# addresses x 256 UDP ports) in one interval; the peak (memory.max_usage_in_bytes, reset after
# the idle figure); its RSS; the memlock of its pinned maps (bpftool map show).
# The server: RSS and peak RSS with 20,000 pods on 200 nodes (bench/gen_k8s.py) from the
# stand-in API server (test/fake_apiserver.py --lists), as bench/k8s_rss.sh does for 100,000.
# Baselines: the request or limit deploy.yaml sets for that container.
cd "$(dirname "$0")/.." || exit 1
TOP=$(pwd)
row() { printf '%-44s %14.1f %-12s %-26s %14.1f %7.2fx\n' "$1" "$2" "$3" "$4" "$5" "$(awk -v a="$2" -v b="$5" 'BEGIN { print (b ? a / b : 0) }')"; }
skipped() { printf '%-44s (skipped: %s)\n' "resources: agent and server memory" "$1"; exit 0; }
[ "$(id -u)" = 0 ] || skipped "needs root"
for t in podman runc bpftool python3; do command -v $t >/dev/null 2>&1 || skipped "needs $t"; done
python3 -c 'import yaml' 2>/dev/null || skipped "needs python3-yaml"
[ -e /sys/kernel/btf/vmlinux ] || skipped "needs /sys/kernel/btf/vmlinux"
. test/lib.sh
. test/podman.lib.sh
podman_setup "resources"
WORK=$(mktemp -d /tmp/kzt-resources.XXXXXX)
BPF=$WORK/bpffs
cleanup() {
	pm rm -af -t 0 >/dev/null 2>&1
	# shellcheck disable=SC2046
	kill $(jobs -p) 2>/dev/null
	wait 2>/dev/null
	podman_cleanup
	netns_cleanup
	umount "$BPF" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
mib() { awk -v b="$1" 'BEGIN { print b / 1048576 }'; }

# ---- the agent
ARCHIVE=build/kubezonnet-image.tar
if [ ! -s $ARCHIVE ] || [ $ARCHIVE -ot kubezonnet-agent ] || [ $ARCHIVE -ot kubezonnet-server ]; then
	make --no-print-directory -s image >"$WORK/make.log" 2>&1 || skipped "make image failed: $(tail -1 "$WORK/make.log")"
fi
podman_load $ARCHIVE >/dev/null 2>&1
NODE=${NS_PREFIX}node POD=${NS_PREFIX}pod SINK=${NS_PREFIX}sink
ip netns add "$NODE" && ip netns add "$POD"
ip -n "$NODE" link set lo up && ip -n "$POD" link set lo up
ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=1
ip link add ${NS_PREFIX}v netns "$NODE" type veth peer name eth0 netns "$POD"
ip -n "$NODE" addr add 10.77.1.1/24 dev ${NS_PREFIX}v && ip -n "$NODE" link set ${NS_PREFIX}v up
ip -n "$POD" addr add 10.77.1.2/24 dev eth0 && ip -n "$POD" link set eth0 up
ip -n "$POD" route add default via 10.77.1.1
# The far end: a namespace that forwards nothing and so drops, silently, what is not its own.
ip netns add "$SINK" && ip -n "$SINK" link set lo up
ip link add ${NS_PREFIX}s netns "$NODE" type veth peer name eth0 netns "$SINK"
ip -n "$NODE" addr add 10.98.0.1/24 dev ${NS_PREFIX}s && ip -n "$NODE" link set ${NS_PREFIX}s up
ip -n "$SINK" addr add 10.98.0.2/24 dev eth0 && ip -n "$SINK" link set eth0 up
ip -n "$NODE" route add 10.99.0.0/16 via 10.98.0.2
mkdir "$BPF" && mount -t bpf bpf "$BPF"
ip netns exec "$NODE" ./kubezonnet-server --agent-listen :8081 --http-listen 127.0.0.1:18080 \
	--flow-logs none 2>"$WORK/server.log" &
SVC=$(python3 -c '
import yaml
for d in yaml.safe_load_all(open("deploy.yaml")):
    if d and d.get("kind") == "Service": print("%s.%s.svc" % (d["metadata"]["name"], d["metadata"]["namespace"]))')
IMAGE_USER=$(pm image inspect --format '{{.Config.User}}' kubezonnet:0.1.0 2>/dev/null)
podman_k8s deploy.yaml "$WORK/agent.json" workload=DaemonSet/kubezonnet-agent container=agent \
	name=kzt-res-agent node=node-1 node_netns=/run/netns/$NODE image_user="$IMAGE_USER" \
	hostpath:/sys/fs/bpf="$BPF" hostpath:/sys/kernel/btf=/sys/kernel/btf cluster_dns="$SVC=127.0.0.1" \
	2>"$WORK/translate.log" || skipped "deploy.yaml: $(tail -1 "$WORK/translate.log")"
mapfile -d '' args < <(podman_k8s_args "$WORK/agent.json")
pm run -d "${args[@]}" >/dev/null 2>"$WORK/run.log" || skipped "podman run: $(tail -1 "$WORK/run.log")"
LIMIT=$(podman_k8s_get "$WORK/agent.json" memory_limit)
REQUEST=$(podman_k8s_get "$WORK/agent.json" memory_request)
pid=$(pm inspect --format '{{.State.Pid}}' kzt-res-agent)
CG=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' "/proc/$pid/cgroup")
[ -r "$CG/memory.usage_in_bytes" ] || skipped "no cgroup v1 memory controller for the container ($CG)"
# metric NAME or NAME{LABELS}: the sum of the series (all labels for a bare NAME).
metric() { ip netns exec "$NODE" curl -s http://127.0.0.1:18080/metrics | awk -v k="$1" '$1 == k || index($1, k "{") == 1 { s += $2 } END { printf "%d\n", s }'; }
reports() { metric 'kubezonnet_reports_total{result="stored"}'; }
# next_report: waits for the next stored report (the agent's interval: 10 s).
next_report() {
	local r0
	r0=$(reports)
	for _ in $(seq 300); do [ "$(reports)" -gt "$r0" ] && return 0; sleep 0.1; done
	return 1
}
next_report && next_report || skipped "the agent does not report: $(pm logs kzt-res-agent 2>&1 | tail -1)"
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
memlock() { # the memlock of the maps pinned under $BPF/kubezonnet
	for f in "$BPF"/kubezonnet/kzn_*; do bpftool -j map show pinned "$f" 2>/dev/null; echo; done | python3 -c '
import json, sys
print(sum(json.loads(l).get("bytes_memlock", 0) for l in sys.stdin if l.strip()))'
}
idle=$(cat "$CG/memory.usage_in_bytes") idle_rss=$(kib "$pid" VmRSS) maps=$(memlock)
start_peak=$(cat "$CG/memory.max_usage_in_bytes") # loading: libbpf reads the kernel's BTF
echo 0 >"$CG/memory.max_usage_in_bytes"
recs0=$(metric kubezonnet_records_received_total) lost0=$(metric kubezonnet_agent_lost_packets_total)
# 65,536 distinct flows, just after a report so that they fall in one interval
next_report
ip netns exec "$POD" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for a in range(256):
    for p in range(256):
        s.sendto(b"f" * 64, ("10.99.%d.%d" % (a // 250, 1 + a % 250), 20000 + p))'
next_report && next_report
busy=$(cat "$CG/memory.usage_in_bytes") peak=$(cat "$CG/memory.max_usage_in_bytes")
busy_rss=$(kib "$pid" VmRSS) hwm=$(kib "$pid" VmHWM)
recs=$(($(metric kubezonnet_records_received_total) - recs0)) lost=$(($(metric kubezonnet_agent_lost_packets_total) - lost0))
echo "# agent: $recs records shipped, $lost packets lost to a full map after the flows; maps $(mib "$maps") MiB memlock; cgroup idle $idle B, busy $busy B, peak $peak B" >&2
row "resources: agent cgroup memory, idle" "$(mib "$idle")" MiB "deploy.yaml request" "$(mib "$REQUEST")"
row "resources: agent cgroup memory, 65,536 flows" "$(mib "$busy")" MiB "deploy.yaml limit" "$(mib "$LIMIT")"
row "resources: agent cgroup peak, start-up" "$(mib "$start_peak")" MiB "deploy.yaml limit" "$(mib "$LIMIT")"
row "resources: agent cgroup peak, 65,536 flows" "$(mib "$peak")" MiB "deploy.yaml limit" "$(mib "$LIMIT")"
row "resources: agent RSS, 65,536 flows" "$(awk -v k="$busy_rss" 'BEGIN { print k / 1024 }')" MiB "agent RSS, idle" "$(awk -v k="$idle_rss" 'BEGIN { print k / 1024 }')"
row "resources: agent peak RSS (VmHWM)" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" MiB "deploy.yaml limit" "$(mib "$LIMIT")"
row "resources: agent BPF maps (memlock)" "$(mib "$maps")" MiB "agent cgroup memory, idle" "$(mib "$idle")"
pm rm -f -t 0 kzt-res-agent >/dev/null 2>&1

# ---- the server with 20,000 pods on 200 nodes
DIR=build/bench/k8s-20k
[ -s $DIR/podlist.json ] || python3 bench/gen_k8s.py $DIR 20000 200 >/dev/null || exit 0
SLIMIT=$(python3 - <<'PY'
import re, yaml
q = lambda s: int(re.fullmatch(r"(\d+)Mi", s).group(1))
for d in yaml.safe_load_all(open("deploy.yaml")):
    if d and d.get("kind") == "Deployment":
        r = d["spec"]["template"]["spec"]["containers"][0]["resources"]
        print(q(r["requests"]["memory"]), q(r["limits"]["memory"]))
PY
)
API=$((26000 + $$ % 5000)) # below 32768: not an ephemeral port another socket may hold
python3 test/fake_apiserver.py $API ../shared/fixtures/k8s "$WORK/req" --lists $DIR &
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$API/" && break; sleep 0.1; done
./kubezonnet-server --kube-api http://127.0.0.1:$API --http-listen 127.0.0.1:$((API + 1)) \
	--agent-listen 127.0.0.1:$((API + 2)) --flow-logs none 2>"$WORK/log" &
srv=$!
want=$(python3 -c '
import json, sys
print(sum(1 for p in json.load(open(sys.argv[1]))["items"] if not p["spec"].get("hostNetwork")))' $DIR/podlist.json)
pods() { curl -s "http://127.0.0.1:$((API + 1))/metrics" | awk '$1 == "kubezonnet_endpoints{kind=\"pod\"}" { print $2 }'; }
for _ in $(seq 300); do [ "$(pods)" = "$want" ] && break; sleep 0.2; done
sleep 2
if [ "$(pods)" != "$want" ]; then
	printf '%-44s (skipped: the server indexed %s of %s pods)\n' "resources: server RSS, 20k pods" "$(pods)" "$want"
	exit 0
fi
rss=$(kib $srv VmRSS) hwm=$(kib $srv VmHWM)
read -r sreq slim <<<"$SLIMIT"
row "resources: server RSS, 20k pods on 200 nodes" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" MiB "deploy.yaml request" "$sreq"
row "resources: server peak RSS (VmHWM), 20k pods" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" MiB "deploy.yaml limit" "$slim"
