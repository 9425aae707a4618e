#!/usr/bin/env bash
# The server against a stand-in API server over HTTPS (test/fake_apiserver.py with Python's
# ssl module and a throwaway CA made by openssl): certificate and name checks, a bearer
# token refused (401) until the token file changes, a watch cut mid-event, a 429, an API
# server that hangs, and the in-cluster configuration (service account files, an IPv6
# KUBERNETES_SERVICE_HOST).
. "$(dirname "$0")/lib.sh"
NAMES=("k8s tls: ready over https with the CA and the token file"
	"k8s tls: a refused token is read again from its file"
	"k8s tls: a watch cut mid-event resumes from the last whole event"
	"k8s tls: a 429 on a watch is retried without a relist"
	"k8s tls: an untrusted CA is refused and the token never sent"
	"k8s tls: a certificate for another name is refused"
	"k8s tls: a hung API server does not delay /metrics"
	"k8s: a watch that ends at once is retried after a back-off"
	"k8s: a continue token too long to keep: one full list instead"
	"k8s tls: in-cluster configuration with an IPv6 service host")
skip_unless_fixtures "${NAMES[@]}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -n "$KEEP" ] && cp -r "$WORK" /tmp/k8stls; rm -rf "$WORK"' EXIT
BASE=$((12000 + $$ % 8000))

# A CA, a server certificate for localhost, 127.0.0.1 and ::1, one for another name, and a
# second CA that signed nothing here.
ssl() { openssl "$@" >/dev/null 2>&1; }
mkcert() { # NAME SANS: a key and a certificate signed by ca
	ssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/$1.key" \
		-out "$WORK/$1.csr" -subj "/CN=kube-apiserver"
	printf 'subjectAltName=%s\n' "$2" >"$WORK/$1.ext"
	ssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
		-CAcreateserial -days 1 -out "$WORK/$1.pem" -extfile "$WORK/$1.ext"
}
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" \
	-out "$WORK/ca.pem" -days 1 -subj "/CN=test-cluster-ca"
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/other.key" \
	-out "$WORK/other.pem" -days 1 -subj "/CN=some-other-ca"
mkcert good "DNS:localhost,IP:127.0.0.1,IP:::1"
mkcert elsewhere "DNS:kubernetes.default.svc,IP:10.96.0.1"
if [ ! -s "$WORK/good.pem" ] || [ ! -s "$WORK/elsewhere.pem" ]; then
	for n in "${NAMES[@]}"; do not_ok "$n" "openssl could not make the test certificates"; done
	exit 0
fi

api() { # PORT LOG ARGS...: a stand-in API server
	local port=$1 log=$2
	shift 2
	: >"$log"
	python3 "$TOP/test/fake_apiserver.py" "$port" "$FIX" "$log" "$@" &
	wait_for 5 python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)"
}
server() { # HTTP_PORT LOG ARGS...
	local http=$1 log=$2
	shift 2
	"$SERVER" --http-listen 127.0.0.1:"$http" --agent-listen 127.0.0.1:$((http + 1)) \
		--flow-logs none "$@" 2>"$log" &
}
metric() { # PORT NAME LABELS
	curl -s "http://127.0.0.1:$1/metrics" | awk -v want="$2{$3}" '$1 == want { print $2 }'
}
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; }
# next_after LOG LINE PATTERN: the first line matching PATTERN after LINE.
next_after() { awk -v l="$2" -v p="$3" 'seen && $0 ~ p { print; exit } $0 == l { seen = 1 }' "$1"; }

# 1. HTTPS by name (localhost: SNI and a DNS name check), token refused at first, a node
# watch cut mid-event, a 429 on the first pod watch.
P=$BASE
echo token-1 >"$WORK/token"
api $P "$WORK/req1" --bind :: --tls "$WORK/good.pem" "$WORK/good.key" --token token-2 \
	--cut-node-watch --429-pod-watch
server $((P + 1)) "$WORK/log1" --kube-api "https://localhost:$P" --kube-ca "$WORK/ca.pem" \
	--kube-token-file "$WORK/token"
refused() { grep -q '^401 token-1$' "$WORK/req1"; }
wait_for 10 refused
sleep 1
not_yet=$(ready $((P + 1)) && echo ready || echo not-ready)
echo token-2 >"$WORK/token.new" && mv "$WORK/token.new" "$WORK/token" # swapped as kubelet does
t0=$(date +%s)
wait_for 40 ready $((P + 1))
t1=$(date +%s)
check_eq "k8s tls: a refused token is read again from its file" \
	"$not_yet, then $(ready $((P + 1)) && echo ready) ($(grep -c '^401' "$WORK/req1") refusals)" \
	"not-ready, then ready ($(grep -c '^401' "$WORK/req1") refusals)"
[ $((t1 - t0)) -le 35 ] || echo "#   ready $((t1 - t0)) s after the token changed"
pods_are() { [ "$(metric $((P + 1)) kubezonnet_endpoints 'kind="pod"')" = "$1" ]; }
wait_for 40 pods_are 2
check_eq "k8s tls: ready over https with the CA and the token file" \
	"$(metric $((P + 1)) kubezonnet_endpoints 'kind="pod"') pods, $(metric $((P + 1)) kubezonnet_kube_synced 'resource="nodes"') synced" \
	"2 pods, 1 synced"
resumed() { grep -q 'nodes?watch=1&resourceVersion=1700&' "$WORK/req1"; }
wait_for 40 resumed
got=$(next_after "$WORK/req1" "$(grep -m1 'nodes?watch=1&resourceVersion=1500&' "$WORK/req1")" '^/api/v1/nodes')
case $got in
/api/v1/nodes\?watch=1\&resourceVersion=1700\&*) ok "k8s tls: a watch cut mid-event resumes from the last whole event" ;;
*) not_ok "k8s tls: a watch cut mid-event resumes from the last whole event" "next node request: ${got:-none}" ;;
esac
rewatched() { [ "$(grep -c '^/api/v1/pods?watch=1' "$WORK/req1")" -ge 2 ]; }
wait_for 40 rewatched # after a back-off, which the 401s have already doubled a few times
first_watch=$(grep -m1 '^/api/v1/pods?watch=1' "$WORK/req1")
got=$(next_after "$WORK/req1" "$first_watch" '^/api/v1/pods')
case "$first_watch $got" in
*resourceVersion=247000*' '/api/v1/pods\?watch=1\&resourceVersion=247000\&*)
	ok "k8s tls: a 429 on a watch is retried without a relist" ;;
*) not_ok "k8s tls: a 429 on a watch is retried without a relist" "first watch $first_watch, then ${got:-none}" ;;
esac

# 2. A CA that did not sign the server's certificate: refused before any request is sent.
P=$((BASE + 10))
api $P "$WORK/req2" --tls "$WORK/good.pem" "$WORK/good.key"
server $((P + 1)) "$WORK/log2" --kube-api "https://127.0.0.1:$P" --kube-ca "$WORK/other.pem" \
	--kube-token-file "$WORK/token"
errors() { # PORT: at least two failed requests for pods
	local v
	v=$(metric "$1" kubezonnet_kube_errors_total 'resource="pods"')
	[ "${v:-0}" -ge 2 ]
}
wait_for 15 errors $((P + 1))
if errors $((P + 1)) && ! ready $((P + 1)) && [ ! -s "$WORK/req2" ] &&
	grep -q 'certificate is not trusted' "$WORK/log2"; then
	ok "k8s tls: an untrusted CA is refused and the token never sent"
else
	not_ok "k8s tls: an untrusted CA is refused and the token never sent" \
		"requests: $(wc -l <"$WORK/req2"), log: $(tail -2 "$WORK/log2" | tr '\n' ' ')"
fi

# 3. A certificate from the right CA for another name and address.
P=$((BASE + 20))
api $P "$WORK/req3" --tls "$WORK/elsewhere.pem" "$WORK/elsewhere.key"
server $((P + 1)) "$WORK/log3" --kube-api "https://127.0.0.1:$P" --kube-ca "$WORK/ca.pem" \
	--kube-token-file "$WORK/token"
wait_for 15 errors $((P + 1))
if errors $((P + 1)) && ! ready $((P + 1)) && [ ! -s "$WORK/req3" ]; then
	ok "k8s tls: a certificate for another name is refused ($(grep -m1 -o 'not trusted: .*' "$WORK/log3" | cut -d'(' -f1))"
else
	not_ok "k8s tls: a certificate for another name is refused" "$(tail -2 "$WORK/log3" | tr '\n' ' ')"
fi

# 4. An API server that accepts and never answers: /metrics stays fast, requests time out.
P=$((BASE + 30))
api $P "$WORK/req4" --tls "$WORK/good.pem" "$WORK/good.key" --hang
server $((P + 1)) "$WORK/log4" --kube-api "https://127.0.0.1:$P" --kube-ca "$WORK/ca.pem" \
	--kube-timeout 1s
wait_for 5 curl -sf -o /dev/null "http://127.0.0.1:$((P + 1))/metrics"
slowest=0
for _ in $(seq 20); do
	t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$((P + 1))/metrics")
	slowest=$(awk -v a="$slowest" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
	sleep 0.2
done
if awk -v s="$slowest" 'BEGIN { exit !(s < 0.5) }' && errors $((P + 1)) &&
	grep -q 'did not answer in time' "$WORK/log4"; then
	ok "k8s tls: a hung API server does not delay /metrics (slowest of 20: ${slowest}s)"
else
	not_ok "k8s tls: a hung API server does not delay /metrics" \
		"slowest ${slowest}s, errors $(metric $((P + 1)) kubezonnet_kube_errors_total 'resource="pods"')"
fi

# 5. Watches that end at once with no events (a broken proxy, say): asked again after a
# back-off, not in a tight loop.
P=$((BASE + 50))
api $P "$WORK/req6" --empty-watches
server $((P + 1)) "$WORK/log6" --kube-api "http://127.0.0.1:$P"
wait_for 10 ready $((P + 1))
sleep 6
watches=$(grep -c '^/api/v1/pods?watch=1' "$WORK/req6")
if [ "$watches" -ge 2 ] && [ "$watches" -le 6 ] && ready $((P + 1)); then
	ok "k8s: a watch that ends at once is retried after a back-off ($watches pod watches in about 6 s)"
else
	not_ok "k8s: a watch that ends at once is retried after a back-off" "$watches pod watches in about 6 s"
fi

# 6. A continue token longer than the client keeps (2 KiB): rather than take the first page
# for the whole list, it lists again in full.
P=$((BASE + 60))
api $P "$WORK/req7" --long-continue
server $((P + 1)) "$WORK/log7" --kube-api "http://127.0.0.1:$P"
nodes_are() { [ "$(metric $((P + 1)) kubezonnet_endpoints 'kind="node"')" = 3 ]; }
wait_for 10 nodes_are
if nodes_are && grep -q '^/api/v1/nodes?resourceVersion=0$' "$WORK/req7" && ! grep -q 'continue=' "$WORK/req7"; then
	ok "k8s: a continue token too long to keep: one full list instead"
else
	not_ok "k8s: a continue token too long to keep: one full list instead" \
		"$(metric $((P + 1)) kubezonnet_endpoints 'kind="node"') nodes; $(grep nodes "$WORK/req7" | tr '\n' ' ')"
fi

# 7. In a pod: KUBERNETES_SERVICE_HOST/PORT (IPv6, so the URL needs brackets) and the service
# account's token and CA at their fixed path, made in a private mount namespace.
P=$((BASE + 40))
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then
	skip "k8s tls: in-cluster configuration with an IPv6 service host" "needs root for a private mount namespace"
	exit 0
fi
api $P "$WORK/req5" --bind :: --tls "$WORK/good.pem" "$WORK/good.key" --token token-2
SA=/var/run/secrets/kubernetes.io/serviceaccount
KUBERNETES_SERVICE_HOST=::1 KUBERNETES_SERVICE_PORT=$P unshare -m --propagation private sh -c '
	mount -t tmpfs tmpfs "$(readlink -f /var/run)" && mkdir -p "$3" &&
	cp "$1/ca.pem" "$3/ca.crt" && cp "$1/token" "$3/token" && shift 3 && exec "$@"' \
	sh "$WORK" "$TOP" "$SA" "$SERVER" --http-listen 127.0.0.1:$((P + 1)) \
	--agent-listen 127.0.0.1:$((P + 2)) --flow-logs none 2>"$WORK/log5" &
wait_for 20 ready $((P + 1))
if ready $((P + 1)) && grep -q 'https://\[::1\]:'$P' (in-cluster' "$WORK/log5"; then
	ok "k8s tls: in-cluster configuration with an IPv6 service host"
else
	not_ok "k8s tls: in-cluster configuration with an IPv6 service host" "$(tail -3 "$WORK/log5" | tr '\n' ' ')"
fi
