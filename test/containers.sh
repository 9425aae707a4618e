#!/usr/bin/env bash
# The product as deploy.yaml runs it: the end-to-end scenario of server_e2e.sh with the server
# and every agent as podman containers of the image `make image` builds, each with exactly the
# security settings deploy.yaml declares for it (read from deploy.yaml and translated by
# podman_k8s in test/podman.lib.sh, which fails on any setting it does not know):
#
#   lan (bridge; the stand-in API server at 10.88.0.254:6443, HTTPS, a throwaway CA)
#    |-- node-a 10.88.0.1 (zone-a): agent container (hostNetwork)   pod1 10.77.1.2, pod2 10.77.2.2
#    |-- node-b 10.88.0.2 (zone-b): agent container (hostNetwork)   pod3 10.77.3.2
#    `-- the server's pod 10.88.0.10: server container, in-cluster (service account files)
#
# The agents find the server by its Service name (kubezonnet-server.kubezonnet.svc, which the
# cluster DNS answers: --add-host), each node has its own bpf filesystem at /sys/fs/bpf, and
# the nftables counters in each node's postrouting chain (priority 98) are the oracle. Then:
# the probes deploy.yaml declares answer, the processes have the declared uid, capabilities,
# no_new_privs and seccomp mode; the agent without each capability it adds fails naming it;
# deploy/uninstall.yaml's containers, run the same way on a node's bpffs, leave nothing.
# Then the agent secret turned on as deploy.yaml's comments say (test/manifests/enable_secret.py,
# which also writes the Secret volume as the kubelet does) is rolled out to the server and
# node-a's agent: the agent proves it, the server's user can read the file (and could not at
# 0600), a Secret update is taken up without a restart, and the counts arrive exactly. Last,
# node-a's agent switched to the socket-level hook as deploy.yaml's comments say
# (test/manifests/enable_cgroup.py) counts its pods exactly from the host's cgroup hierarchy.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/test/lib.sh"
. "$TOP/test/podman.lib.sh"
DEPLOY=${CONTAINERS_DEPLOY_YAML:-$TOP/deploy.yaml} # another manifest, to see this test fail on it
UNINSTALL=$TOP/deploy/uninstall.yaml
C=containers
# The capabilities deploy.yaml adds to the agent (for the names of the tests).
ADDED=$(python3 -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "DaemonSet":
        for c in d["spec"]["template"]["spec"]["containers"]:
            print(" ".join(c.get("securityContext", {}).get("capabilities", {}).get("add", [])))' "$DEPLOY" 2>/dev/null)
NAMES=("$C: image is current (make image)" "$C: deploy.yaml and deploy/uninstall.yaml translate to podman"
	"$C: server ready in-cluster (service account token and CA, HTTPS API)"
	"$C: agents reach the server by its Service name"
	"$C: server probes declared in deploy.yaml answer 200"
	"$C: server process as declared" "$C: agent process on node-a as declared" "$C: agent process on node-b as declared"
	"$C: pod1 cross-zone bytes equal nftables" "$C: pod3 cross-zone bytes equal nftables")
for cap in $ADDED; do NAMES+=("$C: agent without CAP_$cap fails naming it"); done
NAMES+=("$C: agent under the runtime's default seccomp profile fails naming seccomp")
NAMES+=("$C: uninstall init container removes links and pins" "$C: uninstall pod's idle container as declared")
SECRET_NAMES=("$C: secret: deploy.yaml with the agent secret on, as its comments say, translates to podman"
	"$C: secret: the server's user reads the Secret volume as the kubelet writes it, and could not at 0600"
	"$C: secret: the agent on node-a proves it to the server (protocol 3, secret proved)"
	"$C: secret: a Secret update (the kubelet's ..data swap) is read again by both, the agent proves the new one"
	"$C: secret: pod1 cross-zone bytes equal nftables")
NAMES+=("${SECRET_NAMES[@]}")
CGROUP_NAMES=("$C: cgroup hook: deploy.yaml with --hook cgroup on, as its comments say, translates to podman"
	"$C: cgroup hook: node-a's agent rolled out with it counts at the node's cgroup, its netfilter links detached"
	"$C: cgroup hook: pod1 cross-zone bytes equal nftables")
NAMES+=("${CGROUP_NAMES[@]}")
podman_setup "${NAMES[@]}"
missing=
for tool in bpftool nft openssl curl ip; do command -v $tool >/dev/null 2>&1 || missing+=" $tool"; done
python3 -c 'import yaml' 2>/dev/null || missing+=" python3-yaml"
[ -e /sys/kernel/btf/vmlinux ] || missing+=" /sys/kernel/btf/vmlinux"
if [ -n "$missing" ]; then
	for n in "${NAMES[@]}"; do skip "$n" "needs$missing"; done
	podman_cleanup
	exit 0
fi

WORK=$(mktemp -d /tmp/kzt-containers.XXXXXX)
BPFFS_DIRS=()
PIDS=()
cleanup() {
	local p d
	pm rm -af -t 0 >/dev/null 2>&1
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	podman_cleanup
	netns_cleanup
	cgroup_cleanup
	for d in "${BPFFS_DIRS[@]}"; do umount "$d" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 143" INT TERM
START=$SECONDS

# bpffs_new NAME: a bpf filesystem of its own at $WORK/bpffs-NAME (a node's /sys/fs/bpf).
# FRESH: what a new one holds (the kernel's own maps.debug and progs.debug, if preloaded).
bpffs_new() {
	mkdir -p "$WORK/bpffs-$1" && mount -t bpf bpf "$WORK/bpffs-$1" && BPFFS_DIRS+=("$WORK/bpffs-$1")
	FRESH=$(bpffs_list "$WORK/bpffs-$1")
}
bpffs_list() { (cd "$1" && find . -mindepth 1 | sort | tr '\n' ' '); }
# abort MESSAGE: every test not yet reported fails with MESSAGE; exit.
REPORTED=()
report() { REPORTED+=("$1"); }
abort() {
	local n r done_
	for n in "${NAMES[@]}"; do
		done_=
		for r in "${REPORTED[@]}"; do [ "$r" = "$n" ] && done_=1; done
		[ -n "$done_" ] || not_ok "$n" "$1"
	done
	exit 1
}
# t_ok/t_not_ok/t_eq NAME...: report and remember.
t_ok() { report "$1"; ok "$1${2:+ ($2)}"; }
t_not_ok() { report "$1"; not_ok "$@"; }
t_eq() { report "$1"; check_eq "$@"; }
diag() { sed 's/^/#   /' "$@"; }

# ---- the image: built by make image if missing or older than the binaries
ARCHIVE=$TOP/build/kubezonnet-image.tar
N="$C: image is current (make image)"
if [ ! -s "$ARCHIVE" ] || [ "$ARCHIVE" -ot "$AGENT" ] || [ "$ARCHIVE" -ot "$SERVER" ]; then
	if ! make --no-print-directory -s -C "$TOP" image >"$WORK/make.log" 2>&1; then
		t_not_ok "$N" "make image failed"
		diag "$WORK/make.log"
		abort "no image"
	fi
	t_ok "$N" "built"
else
	t_ok "$N" "$(basename "$ARCHIVE") newer than the binaries"
fi
IMAGE=$(python3 -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "DaemonSet": print(d["spec"]["template"]["spec"]["containers"][0]["image"])' "$DEPLOY")
loaded=$(podman_load "$ARCHIVE" 2>"$WORK/load.log")
IMAGE_USER=$(pm image inspect --format '{{.Config.User}}' "$IMAGE" 2>>"$WORK/load.log")
if [ -z "$IMAGE_USER" ]; then
	echo "# loaded '$loaded', but deploy.yaml names $IMAGE"
	diag "$WORK/load.log"
	abort "the image deploy.yaml names ($IMAGE) is not the one make image writes"
fi
echo "# image $IMAGE (loaded as $loaded), user $IMAGE_USER"

# ---- the cluster's network
LAN=${NS_PREFIX}lan A=${NS_PREFIX}node-a B=${NS_PREFIX}node-b S=${NS_PREFIX}srv CAPNS=${NS_PREFIX}cap
P1=${NS_PREFIX}pod1 P2=${NS_PREFIX}pod2 P3=${NS_PREFIX}pod3 UNS=${NS_PREFIX}unin
API_IP=10.88.0.254 API_PORT=6443 SERVER_IP=10.88.0.10
for ns in "$LAN" "$A" "$B" "$S" "$P1" "$P2" "$P3" "$CAPNS" "$UNS"; do
	ip netns add "$ns" && ip -n "$ns" link set lo up
done
ip -n "$LAN" link add br0 type bridge && ip -n "$LAN" link set br0 up
ip -n "$LAN" addr add $API_IP/24 dev br0
lan_port "$A" 10.88.0.1 fd88::1 a
lan_port "$B" 10.88.0.2 fd88::2 b
lan_port "$S" $SERVER_IP fd88::10 s
for ns in "$A" "$B"; do
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
done
e2e_pods_setup
for n in a b cap1 cap2 cap3 seccomp; do bpffs_new $n; done

# ---- the stand-in API server: the scenario's nodes and pods over HTTPS, a throwaway CA, a token
echo "$E2E_TOPOLOGY" >"$WORK/topology"
python3 "$TOP/test/topology_to_k8s.py" "$WORK/topology" "$WORK/k8s"
ssl() { openssl "$@" >/dev/null 2>&1; }
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" \
	-out "$WORK/ca.pem" -days 1 -subj "/CN=test-cluster-ca"
ssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/api.key" \
	-out "$WORK/api.csr" -subj "/CN=kube-apiserver"
printf 'subjectAltName=IP:%s,DNS:kubernetes.default.svc\n' $API_IP >"$WORK/api.ext"
ssl x509 -req -in "$WORK/api.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
	-days 1 -out "$WORK/api.pem" -extfile "$WORK/api.ext"
[ -s "$WORK/api.pem" ] || abort "openssl could not make the test certificates"
# The service account's files, as the kubelet's projected volume holds them (root, 0644).
mkdir -m 755 "$WORK/sa"
TOKEN=kzt-sa-token-$$
printf '%s' "$TOKEN" >"$WORK/sa/token"
cp "$WORK/ca.pem" "$WORK/sa/ca.crt"
printf kubezonnet >"$WORK/sa/namespace"
chmod 644 "$WORK/sa"/*
ip netns exec "$LAN" python3 "$TOP/test/fake_apiserver.py" $API_PORT "$FIX" "$WORK/api-requests" \
	--bind $API_IP --tls "$WORK/api.pem" "$WORK/api.key" --token "$TOKEN" --lists "$WORK/k8s" \
	2>"$WORK/api.log" &
PIDS+=($!)

# ---- deploy.yaml's containers as podman command lines
SVC=$(python3 -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "Service": print("%s.%s.svc" % (d["metadata"]["name"], d["metadata"]["namespace"]))' "$DEPLOY")
COMMON=(image="$IMAGE" image_user="$IMAGE_USER" kube_service="$API_IP:$API_PORT" hostpath:/sys/kernel/btf=/sys/kernel/btf)
N="$C: deploy.yaml and deploy/uninstall.yaml translate to podman"
tr_err=
translate() { # OUT MANIFEST KEY=VALUE...
	local out=$1 manifest=$2
	shift 2
	podman_k8s "$manifest" "$WORK/$out.json" "${COMMON[@]}" "$@" 2>>"$WORK/translate.log" || tr_err=1
}
translate server "$DEPLOY" workload=Deployment/kubezonnet-server container=server name=kzt-server \
	pod_netns=/run/netns/$S sa_dir="$WORK/sa" cluster_dns="$SVC=$SERVER_IP"
for n in a b; do
	translate agent-$n "$DEPLOY" workload=DaemonSet/kubezonnet-agent container=agent name=kzt-agent-$n \
		node=node-$n node_netns=/run/netns/${NS_PREFIX}node-$n hostpath:/sys/fs/bpf="$WORK/bpffs-$n" \
		cluster_dns="$SVC=$SERVER_IP"
done
i=0
for cap in $ADDED; do
	i=$((i + 1))
	translate cap-$cap "$DEPLOY" workload=DaemonSet/kubezonnet-agent container=agent name=kzt-cap-$cap \
		node=node-cap node_netns=/run/netns/$CAPNS hostpath:/sys/fs/bpf="$WORK/bpffs-cap$i" without_cap=$cap
done
translate seccomp "$DEPLOY" workload=DaemonSet/kubezonnet-agent container=agent name=kzt-seccomp \
	node=node-cap node_netns=/run/netns/$CAPNS hostpath:/sys/fs/bpf="$WORK/bpffs-seccomp" seccomp=RuntimeDefault
for c in uninstall "done"; do
	translate un-$c "$UNINSTALL" workload=DaemonSet/kubezonnet-uninstall container=$c name=kzt-un-$c \
		node=node-b node_netns=/run/netns/$B pod_netns=/run/netns/$UNS hostpath:/sys/fs/bpf="$WORK/bpffs-b"
done
# Every container of both manifests is one the test runs.
all=$(python3 -c '
import sys, yaml
for f in sys.argv[1:]:
    for d in yaml.safe_load_all(open(f)):
        if d and d.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod", "ReplicaSet"):
            s = d["spec"]["template"]["spec"] if "template" in d.get("spec", {}) else d.get("spec", {})
            for k in ("initContainers", "containers", "ephemeralContainers"):
                for c in s.get(k, []): print("%s/%s/%s" % (d["kind"], d["metadata"]["name"], c["name"]))' "$DEPLOY" "$UNINSTALL" | sort)
ran=$(for f in "$WORK"/*.json; do python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j["workload"] + "/" + j["container"])' "$f"; done | sort -u)
if [ "$all" != "$ran" ]; then
	echo "containers in the manifests that the test does not run: $(comm -23 <(echo "$all") <(echo "$ran") | tr '\n' ' ')" >>"$WORK/translate.log"
	tr_err=1
fi
if [ -n "$tr_err" ]; then
	t_not_ok "$N" "deploy.yaml says what the test cannot run:"
	diag "$WORK/translate.log"
	abort "deploy.yaml not translated"
fi
t_ok "$N" "$(echo "$ran" | wc -l) containers in $(ls "$WORK"/*.json | wc -l) podman command lines"
for f in server agent-a agent-b un-uninstall un-done; do
	echo "# $(podman_k8s_get "$WORK/$f.json" command_line)"
done
# run NAME [-d]: podman run of the translated container NAME.
run() {
	local args
	mapfile -d '' args < <(podman_k8s_args "$WORK/$1.json")
	shift
	pm run "$@" "${args[@]}"
}

# ---- the agent without each capability it adds, and under podman's default seccomp profile
# (which allows bpf() only with CAP_SYS_ADMIN): exits non-zero, naming why (in the background)
for run in $(for cap in $ADDED; do echo cap-$cap; done) seccomp; do
	(
		echo "# $(podman_k8s_get "$WORK/$run.json" command_line)"
		run $run --timeout 30 >"$WORK/$run.log" 2>&1
		echo $? >"$WORK/$run.rc"
	) >"$WORK/$run.cmd" &
	PIDS+=($!)
done

# ---- the server, in-cluster
wait_for 5 ip netns exec "$LAN" python3 -c "import socket; socket.create_connection(('$API_IP', $API_PORT), 1)"
run server -d >"$WORK/server.id" 2>"$WORK/server.err" || { diag "$WORK/server.err"; abort "the server container did not start"; }
code() { ip netns exec "$LAN" curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$SERVER_IP:$1$2"; }
readyz=$(python3 -c 'import json, sys; print(" ".join("%s:%s" % (p["port"], p["path"]) for p in json.load(open(sys.argv[1]))["probes"] if p["probe"] == "readinessProbe"))' "$WORK/server.json")
ready() { [ "$(code "${readyz%%:*}" "${readyz#*:}")" = 200 ]; }
N="$C: server ready in-cluster (service account token and CA, HTTPS API)"
if wait_for 20 ready && pm logs kzt-server 2>&1 | grep -q "https://$API_IP:$API_PORT (in-cluster"; then
	t_ok "$N" "$(grep -c "^/api/v1/" "$WORK/api-requests") API requests with the token"
else
	t_not_ok "$N" "readyz $(code "${readyz%%:*}" "${readyz#*:}")"
	pm logs kzt-server 2>&1 | tail -5 | diag
	diag "$WORK/api.log"
	abort "no server"
fi

# ---- the agents, on their nodes
for n in a b; do
	run agent-$n -d >/dev/null 2>"$WORK/agent-$n.err" || diag "$WORK/agent-$n.err"
done
connected() { pm logs kzt-agent-$1 2>&1 | grep -q "connected to"; }
N="$C: agents reach the server by its Service name"
if wait_for 20 connected a && wait_for 10 connected b; then
	t_ok "$N" "$(pm logs kzt-agent-a 2>&1 | grep -m1 -o 'connected to .*')"
else
	t_not_ok "$N"
	for n in a b; do pm logs kzt-agent-$n 2>&1 | tail -5 | diag; done
	abort "no agents"
fi

# ---- the probes deploy.yaml declares, from the LAN as the kubelet asks them
N="$C: server probes declared in deploy.yaml answer 200"
got='' want=''
while read -r probe path port; do
	got+="$probe $port$path $(code "$port" "$path"), "
	want+="$probe $port$path 200, "
done < <(python3 -c 'import json, sys; [print(p["probe"], p["path"], p["port"]) for p in json.load(open(sys.argv[1]))["probes"]]' "$WORK/server.json")
if [ -n "$want" ] && [ "$got" = "$want" ]; then t_ok "$N" "${got%, }"; else t_eq "$N" "$got" "${want:-some probe}"; fi

# ---- the processes: /proc/PID/status and mountinfo against what the manifest declares
# proc_check CONTAINER JSON: "uid U U U U gid G G G G capeff X nnp N seccomp S root ro|rw"
proc_check() {
	local pid
	pid=$(pm inspect --format '{{.State.Pid}}' "$1" 2>/dev/null)
	[ -n "$pid" ] && [ "$pid" != 0 ] || { echo "not running"; return; }
	awk '/^Uid:/ { u = $2 " " $3 " " $4 " " $5 } /^Gid:/ { g = $2 " " $3 " " $4 " " $5 }
		/^CapEff:/ { c = $2 } /^NoNewPrivs:/ { n = $2 } /^Seccomp:/ { s = $2 }
		END { printf "uid %s gid %s capeff %s nnp %s seccomp %s ", u, g, c, n, s }' "/proc/$pid/status"
	awk '$5 == "/" { split($6, o, ","); r = o[1] } END { print "root " r }' "/proc/$pid/mountinfo"
}
# proc_want JSON: what the manifest declares, as the running process shows it: both processes
# sandbox themselves once set up (sandbox.h), so they have no effective capabilities left
# (they start with the declared ones: the agent attaches with them), no_new_privs and their
# own seccomp filter on top of the runtime's.
proc_want() {
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
u, g = j["uid"], j["gid"]
print("uid %s %s %s %s gid %s %s %s %s capeff %s nnp %s seccomp %s root %s" % (u, u, u, u, g, g, g, g,
      "0000000000000000", 1, 2, "ro" if j["read_only"] else "rw"))' "$1"
}
t_eq "$C: server process as declared" "$(proc_check kzt-server)" "$(proc_want "$WORK/server.json")"
for n in a b; do
	t_eq "$C: agent process on node-$n as declared ($(podman_k8s_get "$WORK/agent-$n.json" caps))" \
		"$(proc_check kzt-agent-$n)" "$(proc_want "$WORK/agent-$n.json")"
done
# (t_eq reports the name with the capabilities; remember the plain one too)
report "$C: agent process on node-a as declared"
report "$C: agent process on node-b as declared"

# ---- traffic, as server_e2e.sh: pod1 <-> pod3 across zones, pod1 -> pod2 in zone
TRAFFIC=$TOP/test/traffic.py
ip netns exec "$P1" python3 "$TRAFFIC" udp 10.77.3.2 5000 400 700 4
ip netns exec "$P1" python3 "$TRAFFIC" udp fd77:3::2 5000 300 900 2
ip netns exec "$P3" python3 "$TRAFFIC" udp 10.77.1.2 6000 200 300
ip netns exec "$P1" ping -q -c 20 -i 0.01 -s 300 10.77.3.2 >/dev/null
ip netns exec "$P3" python3 "$TRAFFIC" tcp-sink 8080 >"$WORK/tcp" &
receiver=$!
wait_for 5 grep -q listening "$WORK/tcp"
ip netns exec "$P1" python3 "$TRAFFIC" tcp fd77:3::2 8080 2000000 >/dev/null
wait $receiver
ip netns exec "$P1" python3 "$TRAFFIC" udp 10.77.2.2 7000 500 1200 3
want1=$(($(nft_bytes "$A" pod1-pod3) + $(nft_bytes "$A" pod1-pod3-v6)))
want3=$(($(nft_bytes "$B" pod3-pod1) + $(nft_bytes "$B" pod3-pod1-v6)))
metric() { ip netns exec "$LAN" curl -s "http://$SERVER_IP:8080/metrics" | awk -v want="$1{$2}" '$1 == want { print $2 }'; }
pod_metric() { metric pod_cross_zone_network_traffic_bytes_total "namespace=\"$1\",pod=\"$2\""; }
settled() { [ "$(pod_metric shop pod1)" = "$want1" ] && [ "$(pod_metric data pod3)" = "$want3" ]; }
wait_for 30 settled # deploy.yaml's interval: the agent's default, 10 s
for p in "shop pod1 $want1" "data pod3 $want3"; do
	read -r pns pname want <<<"$p"
	got=$(pod_metric "$pns" "$pname")
	if [ "$got" = "$want" ]; then t_ok "$C: $pname cross-zone bytes equal nftables" "$got bytes"; else t_eq "$C: $pname cross-zone bytes equal nftables" "$got" "$want"; fi
done

# ---- minimal capabilities: the results of the runs started above
# failed_naming NAME RUN PATTERN: the run exited non-zero with a log line matching PATTERN.
failed_naming() {
	local rc line
	wait_for 40 test -s "$WORK/$2.rc"
	cat "$WORK/$2.cmd"
	rc=$(cat "$WORK/$2.rc" 2>/dev/null)
	line=$(grep -m1 -o "$3" "$WORK/$2.log")
	if [ -n "$rc" ] && [ "$rc" != 0 ] && [ -n "$line" ]; then
		t_ok "$1" "exit $rc: $line"
	else
		t_not_ok "$1" "exit '${rc:-still running}'"
		diag "$WORK/$2.log"
	fi
}
for cap in $ADDED; do
	failed_naming "$C: agent without CAP_$cap fails naming it" cap-$cap \
		"missing capability [A-Z_, ]*CAP_${cap}[A-Z_, ]*"
done
failed_naming "$C: agent under the runtime's default seccomp profile fails naming seccomp" seccomp \
	"a seccomp filter refused bpf()"

# ---- deploy/uninstall.yaml on node-b, after its agent ran there: no link, no pin left
N="$C: uninstall init container removes links and pins"
pm stop kzt-agent-b >/dev/null 2>&1 # SIGTERM, within terminationGracePeriodSeconds
pins=$(bpffs_list "$WORK/bpffs-b")
links=$(for f in "$WORK/bpffs-b/kubezonnet"/link_*; do
	bpftool -j link show pinned "$f" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
done | sort -n | tr '\n' ' ')
echo "# node-b before: pins $pins; links $links"
run un-uninstall >"$WORK/uninstall.log" 2>&1
rc=$?
live_links() { bpftool -j link show | python3 -c '
import json, sys
ids = {l["id"] for l in json.load(sys.stdin)}
print(" ".join(w for w in sys.argv[1].split() if int(w) in ids))' "$links"; }
links_gone() { [ -z "$(live_links)" ]; }
wait_for 5 links_gone
left=$(bpffs_list "$WORK/bpffs-b")
diag "$WORK/uninstall.log"
if [ "$rc" = 0 ] && [ -n "$links" ] && links_gone && [ "$left" = "$FRESH" ]; then
	t_ok "$N" "exit 0; links ${links% } detached; $(($(echo "$pins" | wc -w) - $(echo "$FRESH" | wc -w))) pins removed"
else
	t_not_ok "$N" "exit $rc; links ${links:-none found} still attached: '$(live_links)'; on bpffs: '$left', fresh: '$FRESH'"
fi
N="$C: uninstall pod's idle container as declared"
run un-done -d >/dev/null 2>"$WORK/done.err" || diag "$WORK/done.err"
idle() { pm logs kzt-un-done 2>&1 | grep -q "nothing is pinned"; }
wait_for 10 idle
state=$(pm inspect --format '{{.State.Status}}' kzt-un-done 2>&1)
t_eq "$N" "$state, $(proc_check kzt-un-done)" "running, $(proc_want "$WORK/un-done.json")"
pm rm -f -t 0 kzt-un-done >/dev/null 2>&1

# ---- the agent secret, turned on as deploy.yaml's comments say (deploy/server.yaml's and
# deploy/agent.yaml's comments: test/deploy.sh checks deploy.yaml is made of them), rolled out
# to the server and node-a's agent: test/manifests/enable_secret.py uncomments the Secret
# volume and the mounts, appends the args, creates the Secret with the comment's kubectl
# command (--dry-run=client) and plays the kubelet for the Secret volumes (the files root's,
# mode defaultMode or the API's default 0644, behind the ..data symlink, the volume directory
# 1777 as its tmpfs), which podman_k8s then mounts as the manifest's volumeMounts say.
ES=$TOP/test/manifests/enable_secret.py
SV=$WORK/secret
VARIANT=$SV/$(basename "$DEPLOY")
mkdir -p "$SV/new"
N=${SECRET_NAMES[0]}
tr_err=
if python3 "$ES" variant "$SV" "$DEPLOY" >"$SV/variant.out" 2>&1 &&
	python3 "$ES" kubelet "$VARIANT" "$SV/kubelet.yaml" "$SV/secret.json" "$SV/volumes" >"$SV/hostpaths" 2>>"$SV/variant.out" &&
	python3 "$ES" kubelet "$VARIANT" "$SV/kubelet-0600.yaml" "$SV/secret.json" "$SV/volumes-0600" \
		--default-mode 0600 >"$SV/hostpaths-0600" 2>>"$SV/variant.out"; then
	mapfile -t HP <"$SV/hostpaths"
	mapfile -t HP0600 <"$SV/hostpaths-0600"
	translate secret-server "$SV/kubelet.yaml" workload=Deployment/kubezonnet-server container=server \
		name=kzt-server-secret pod_netns=/run/netns/$S sa_dir="$WORK/sa" cluster_dns="$SVC=$SERVER_IP" "${HP[@]}"
	translate secret-agent-a "$SV/kubelet.yaml" workload=DaemonSet/kubezonnet-agent container=agent \
		name=kzt-agent-a-secret node=node-a node_netns=/run/netns/$A hostpath:/sys/fs/bpf="$WORK/bpffs-a" \
		cluster_dns="$SVC=$SERVER_IP" "${HP[@]}"
	translate secret-0600 "$SV/kubelet-0600.yaml" workload=Deployment/kubezonnet-server container=server \
		name=kzt-server-0600 pod_netns=none sa_dir="$WORK/sa" "${HP0600[@]}"
else
	tr_err=1
fi
# the secret's file as the server's mount shows it (the volume's directory on this "node")
SECRET_DIR=$(sed -n 's|^hostpath:/var/lib/kubelet/pods/deployment-[^=]*=||p' "$SV/hostpaths")
SECRET_FILE=$(python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["podman"]
print(a[a.index("--agent-secret-file") + 1])' "$WORK/secret-server.json" 2>/dev/null)
if [ -z "$tr_err" ] && [ -n "$SECRET_DIR" ] && [ -n "$SECRET_FILE" ]; then
	t_ok "$N" "$(sed 's/^ok: //' "$SV/variant.out")"
	for f in secret-server secret-agent-a; do echo "# $(podman_k8s_get "$WORK/$f.json" command_line)"; done
else
	t_not_ok "$N" "the comments cannot be followed, or what they make cannot run:"
	diag "$SV/variant.out" "$WORK/translate.log"
	abort "no secret-enabled variant"
fi

# The rollout: node-a's agent stops first (SIGTERM: its last report goes to the old server,
# so the new one starts from nothing), then the server; the new server, then the new agent.
before1=$(($(nft_bytes "$A" pod1-pod3) + $(nft_bytes "$A" pod1-pod3-v6)))
pm stop kzt-agent-a >/dev/null 2>&1
pm stop -t 5 kzt-server >/dev/null 2>&1
(
	run secret-0600 --timeout 20 >"$WORK/secret-0600.log" 2>&1
	echo $? >"$WORK/secret-0600.rc"
) &
PIDS+=($!)
run secret-server -d >/dev/null 2>"$WORK/server-secret.err" || diag "$WORK/server-secret.err"
wait_for 20 ready
run secret-agent-a -d >/dev/null 2>"$WORK/agent-a-secret.err" || diag "$WORK/agent-a-secret.err"
# proofs N: the server logged at least N connections of node-a's agent that proved the secret
proofs() { [ "$(pm logs kzt-server-secret 2>&1 | grep -c 'connected: node node-a, .*, protocol 3, netfilter hook, secret proved$')" -ge "$1" ]; }
N=${SECRET_NAMES[2]}
if wait_for 20 proofs 1; then
	t_ok "$N" "$(pm logs kzt-server-secret 2>&1 | grep -m1 -o 'agent .* secret proved$')"
else
	t_not_ok "$N"
	pm logs kzt-server-secret 2>&1 | tail -5 | diag
	pm logs kzt-agent-a-secret 2>&1 | tail -5 | diag
fi

# Who may read the file: the server runs as the manifest's non-root user with no fsGroup, so
# it reads the Secret's root-owned file by its mode's "others" bit; the same server with the
# volume at 0600 (as if the manifest said defaultMode: 0600) is refused.
N=${SECRET_NAMES[1]}
wait_for 25 test -s "$WORK/secret-0600.rc"
pid=$(pm inspect --format '{{.State.Pid}}' kzt-server-secret 2>/dev/null)
uid=$(awk '/^Uid:/ { print $3 }' "/proc/$pid/status" 2>/dev/null)
file=$(stat -L -c '%U:%G %a' "$SECRET_DIR/$(basename "$SECRET_FILE")" 2>&1)
link=$(readlink "$SECRET_DIR/$(basename "$SECRET_FILE")")
rc0600=$(cat "$WORK/secret-0600.rc" 2>/dev/null)
denied=$(grep -m1 -o -- '--agent-secret-file: .*Permission denied' "$WORK/secret-0600.log")
if [ "$uid" = "$(podman_k8s_get "$WORK/secret-server.json" uid)" ] && [ "$uid" != 0 ] && proofs 1 &&
	[ -n "$rc0600" ] && [ "$rc0600" != 0 ] && [ -n "$denied" ]; then
	t_ok "$N" "uid $uid reads $SECRET_FILE -> $link, $file; at 0600: exit $rc0600, $denied"
else
	t_not_ok "$N" "server uid '$uid', file $file, proved: $(proofs 1 && echo yes || echo no); at 0600: exit '${rc0600:-still running}'"
	diag "$WORK/secret-0600.log"
fi

# Traffic, then a Secret update while its counts wait in the agent: the kubelet swaps ..data
# (rename(2)); the server reads the file again within a second and ends the session proved
# with the removed secret, the agent reads it again on reconnecting and proves the new one.
ip netns exec "$P1" python3 "$TRAFFIC" udp 10.77.3.2 5000 300 800 4
ip netns exec "$P1" python3 "$TRAFFIC" udp fd77:3::2 5000 200 600 2
want1=$(($(nft_bytes "$A" pod1-pod3) + $(nft_bytes "$A" pod1-pod3-v6) - before1))
N=${SECRET_NAMES[3]}
old_target=$(readlink "$SECRET_DIR/..data")
if python3 "$ES" variant "$SV/new" "$DEPLOY" >/dev/null 2>"$SV/update.err" &&
	python3 "$ES" kubelet "$VARIANT" "$SV/new/kubelet.yaml" "$SV/new/secret.json" "$SV/volumes" >/dev/null 2>>"$SV/update.err"; then
	:
else
	diag "$SV/update.err"
fi
reread() { pm logs "$1" 2>&1 | grep -q "agent secret file $SECRET_FILE read again"; }
if [ "$(readlink "$SECRET_DIR/..data")" != "$old_target" ] && wait_for 10 reread kzt-server-secret &&
	wait_for 10 proofs 2 && reread kzt-agent-a-secret; then
	t_ok "$N" "..data -> $(readlink "$SECRET_DIR/..data"); server: $(pm logs kzt-server-secret 2>&1 | grep -m1 -o 'read again: .*')"
else
	t_not_ok "$N" "..data $old_target -> $(readlink "$SECRET_DIR/..data")"
	pm logs kzt-server-secret 2>&1 | tail -5 | diag
	pm logs kzt-agent-a-secret 2>&1 | tail -5 | diag
fi

N=${SECRET_NAMES[4]}
settled_secret() { [ "$(pod_metric shop pod1)" = "$want1" ]; }
wait_for 25 settled_secret
got=$(pod_metric shop pod1)
if [ "$got" = "$want1" ]; then t_ok "$N" "$got bytes, reported after the rollout and the update"; else t_eq "$N" "$got" "$want1"; fi

# ---- the socket-level hook, switched on as deploy/agent.yaml's comments say on top of the
# secret's variant, rolled out to node-a's agent on the same pins (SIGTERM, then the new one).
# The host's /sys/fs/cgroup is here a cgroup v2 directory standing for node-a's hierarchy,
# with pod1's processes in a cgroup below it; the node's netfilter still sees them, and is
# the oracle.
N=${CGROUP_NAMES[0]}
tr_err=
if cgroup_setup && CG_A=$(cgroup_add node-a) && pod_cgroup "$P1" "$(cgroup_add node-a/pod1)" &&
	python3 "$TOP/test/manifests/enable_cgroup.py" "$VARIANT" "$WORK/cgroup-variant.yaml" >"$WORK/cgroup.out" 2>&1 &&
	python3 "$ES" kubelet "$WORK/cgroup-variant.yaml" "$WORK/cgroup.yaml" "$SV/new/secret.json" "$SV/volumes-cgroup" \
		>"$SV/hostpaths-cgroup" 2>>"$WORK/cgroup.out"; then
	mapfile -t HP <"$SV/hostpaths-cgroup"
	translate cgroup-agent-a "$WORK/cgroup.yaml" workload=DaemonSet/kubezonnet-agent container=agent \
		name=kzt-agent-a-cgroup node=node-a node_netns=/run/netns/$A hostpath:/sys/fs/bpf="$WORK/bpffs-a" \
		hostpath:/sys/fs/cgroup="$CG_A" cluster_dns="$SVC=$SERVER_IP" "${HP[@]}"
else
	tr_err=1
fi
if [ -z "$tr_err" ]; then
	t_ok "$N" "$(sed 's/^ok: //' "$WORK/cgroup.out")"
	echo "# $(podman_k8s_get "$WORK/cgroup-agent-a.json" command_line)"
else
	t_not_ok "$N" "the comments cannot be followed, or what they make cannot run:"
	diag "$WORK/cgroup.out" "$WORK/translate.log"
	abort "no cgroup-hook variant"
fi

N=${CGROUP_NAMES[1]}
before_metric=$(pod_metric shop pod1)
before1=$(($(nft_bytes "$A" pod1-pod3) + $(nft_bytes "$A" pod1-pod3-v6)))
pm stop kzt-agent-a-secret >/dev/null 2>&1
run cgroup-agent-a -d >/dev/null 2>"$WORK/agent-a-cgroup.err" || diag "$WORK/agent-a-cgroup.err"
cgroup_proof() { pm logs kzt-server-secret 2>&1 | grep -q 'connected: node node-a, .*, protocol 3, cgroup hook, secret proved$'; }
cgroup_pins() { ls "$WORK/bpffs-a/kubezonnet" 2>/dev/null | grep '^link_' | tr '\n' ' '; }
if wait_for 20 cgroup_proof && [ "$(cgroup_pins)" = "link_cgroup " ] &&
	pm logs kzt-agent-a-cgroup 2>&1 | grep -q "detached the netfilter hook"; then
	t_ok "$N" "$(pm logs kzt-agent-a-cgroup 2>&1 | grep -m1 -o 'attached to .*'); pinned: $(cgroup_pins)"
else
	t_not_ok "$N" "link pins '$(cgroup_pins)'"
	pm logs kzt-server-secret 2>&1 | tail -3 | diag
	pm logs kzt-agent-a-cgroup 2>&1 | tail -5 | diag
fi

N=${CGROUP_NAMES[2]}
in_pod "$P1" python3 "$TRAFFIC" udp 10.77.3.2 5000 300 800 4
in_pod "$P1" python3 "$TRAFFIC" udp fd77:3::2 5000 200 600 2
want1=$((${before_metric:-0} + $(nft_bytes "$A" pod1-pod3) + $(nft_bytes "$A" pod1-pod3-v6) - before1))
settled_cgroup() { [ "$(pod_metric shop pod1)" = "$want1" ]; }
wait_for 25 settled_cgroup
got=$(pod_metric shop pod1)
if [ "$got" = "$want1" ] && [ "$want1" != "${before_metric:-0}" ]; then
	t_ok "$N" "$got bytes, $((want1 - ${before_metric:-0})) of them counted at the cgroup hook"
else
	t_eq "$N" "$got" "$want1"
fi

echo "# $((SECONDS - START)) s"
