#!/usr/bin/env bash
# Every Kubernetes object kubezonnet ships (deploy.yaml, deploy/*.yaml and
# the per-zone variant, rendered) validates against the Kubernetes and Prometheus Operator
# schemas of an independent validator, the npm packages kubernetes-models and
# @kubernetes-models/prometheus-operator (test/manifests/validate.mjs), with unknown fields
# rejected. A table of deliberately broken objects proves the check can fail. The objects
# agree with each other (selectors, ports), the optional NetworkPolicy opens the server's
# two ports to the right peers and is not applied by default, the dashboard's ConfigMap is
# generated from its JSON, and the dashboard names no data source of its own. The agent
# secret, turned on as the comments of deploy/server.yaml and deploy/agent.yaml say
# (test/manifests/enable_secret.py), agrees with itself and validates too, and a table of
# broken comments proves that tool refuses them.
#
# The packages are installed at test time into build/npm, at the exact versions of
# test/manifests/package.json; without npm or its registry the schema checks skip.
. "$(dirname "$0")/lib.sh"
cd "$TOP" || exit 1
NPM=$TOP/build/npm
M=$TOP/test/manifests
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! python3 -c 'import yaml' 2>/dev/null; then
	skip "manifests" "python3-yaml is not installed (make deps)"
	exit 0
fi

# The files whose objects are checked; kustomization.yaml files are left out by collect.py.
FILES=()
for f in deploy.yaml deploy/*.yaml; do [ -f "$f" ] && FILES+=("$f"); done
# The installation's own objects, once each: the base's resources (deploy/kustomization.yaml;
# deploy.yaml before the split), then the optional pieces beside it.
BASE=()
if [ -f deploy/kustomization.yaml ]; then
	mapfile -t BASE < <(python3 -c '
import sys, yaml
print("\n".join("deploy/" + r for r in yaml.safe_load(open("deploy/kustomization.yaml")).get("resources", [])))')
else
	BASE=(deploy.yaml)
fi
INSTALL=("${BASE[@]}")
for f in deploy/servicemonitor.yaml deploy/prometheus-rules.yaml deploy/grafana-dashboard-configmap.yaml deploy/networkpolicy.yaml; do
	[[ " ${INSTALL[*]} " == *" $f "* ]] || INSTALL+=("$f")
done

# ---- the per-zone variant (a kustomize Component over the base), rendered by kubectl
# kustomize from a kustomization outside deploy/, as a user would; without kubectl, by the
# strategic-merge stand-in (collect.py merge) on the base's files. Where kubectl exists the
# two must agree: the stand-in applied to the rendered base gives the rendered variant.
T=$WORK/tree
mkdir -p "$T/mine" && cp -r deploy "$T/deploy"
[ -f deploy/kustomization.yaml ] || { cp deploy.yaml "$T/deploy/" && printf 'resources:\n  - deploy.yaml\n' >"$T/deploy/kustomization.yaml"; }
printf 'resources:\n  - ../deploy\ncomponents:\n  - ../deploy/per-zone\n' >"$T/mine/kustomization.yaml"
if command -v kubectl >/dev/null && kubectl kustomize "$T/mine" >"$WORK/perzone.yaml" 2>"$WORK/kustomize.err" &&
	kubectl kustomize "$T/deploy" >"$WORK/base.yaml" 2>>"$WORK/kustomize.err"; then
	python3 "$M/collect.py" objects "$WORK/perzone.yaml" >"$WORK/perzone.json"
	RENDERED="kubectl kustomize"
	if python3 "$M/collect.py" merge deploy/per-zone/kustomization.yaml "$WORK/base.yaml" >"$WORK/perzone-merged.json" 2>"$WORK/merge.err" &&
		python3 - "$WORK/perzone.json" "$WORK/perzone-merged.json" 2>>"$WORK/merge.err" <<'PY'; then
import json, sys
key = lambda o: (o["object"]["kind"], o["object"]["metadata"]["name"])
a = {key(o): o["object"] for o in json.load(open(sys.argv[1]))}
b = {key(o): o["object"] for o in json.load(open(sys.argv[2]))}
bad = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
if bad: sys.exit(f"differ: {bad}")
PY
		ok "per-zone: kubectl kustomize renders it, and the merge stand-in (test/manifests/collect.py) agrees"
	else
		not_ok "per-zone: kubectl kustomize renders it, and the merge stand-in (test/manifests/collect.py) agrees" "$(cat "$WORK/merge.err")"
	fi
else
	if command -v kubectl >/dev/null; then
		not_ok "per-zone: kubectl kustomize renders it" "$(head -3 "$WORK/kustomize.err")"
	fi
	RENDERED="the strategic-merge stand-in, no kubectl"
	python3 "$M/collect.py" merge deploy/per-zone/kustomization.yaml "${BASE[@]}" >"$WORK/perzone.json" 2>"$WORK/merge.err" ||
		not_ok "per-zone: the patches apply to the base" "$(cat "$WORK/merge.err")"
fi

# ---- how the objects fit together (python3-yaml only).
out=$(python3 - "$WORK/perzone.json" "${INSTALL[@]}" <<'PY' 2>&1
import json, sys, yaml
objs = []
for f in sys.argv[2:]:
    objs += [d for d in yaml.safe_load_all(open(f)) if d and d.get("kind") not in ("Kustomization", "Component")]
def one(kind, name):
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{len(hits)} {kind}/{name}"
    return hits[0]
svc, dep, ds = one("Service", "kubezonnet-server"), one("Deployment", "kubezonnet-server"), one("DaemonSet", "kubezonnet-agent")
sm, pr = one("ServiceMonitor", "kubezonnet-server"), one("PrometheusRule", "kubezonnet")
pod_labels = dep["spec"]["template"]["metadata"]["labels"]
assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "the Service does not select the server pods"
assert all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()), "the ServiceMonitor does not select the Service"
assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"], "ServiceMonitor namespaceSelector"
ports = {p["name"] for p in svc["spec"]["ports"]}
ep = sm["spec"]["endpoints"]
assert [e["port"] for e in ep] == ["http-metrics"] and "http-metrics" in ports, (ep, ports)
assert ep[0]["path"] == "/metrics" and ep[0]["interval"] == "30s", ep
args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
server = args[args.index("--server") + 1]
assert server == f'{svc["metadata"]["name"]}.{svc["metadata"]["namespace"]}.svc:8081', server
assert any(p["name"] == "agents" and p["port"] == 8081 for p in svc["spec"]["ports"])
assert pr["metadata"]["namespace"] == "kubezonnet"
cm = one("ConfigMap", "kubezonnet-grafana-dashboard")
assert cm["metadata"]["labels"].get("grafana_dashboard") == "1", "grafana_dashboard label"
# The per-zone variant, rendered: one server per zone, same-zone routing, and nothing else changed.
pz = {(o["object"]["kind"], o["object"]["metadata"]["name"]): o["object"] for o in json.load(open(sys.argv[1]))}
psvc, pdep = pz[("Service", "kubezonnet-server")], pz[("Deployment", "kubezonnet-server")]
assert psvc["spec"].get("trafficDistribution") == "PreferClose", psvc["spec"]
assert "service.kubernetes.io/topology-mode" not in psvc["metadata"].get("annotations", {}), "both topology-mode and trafficDistribution"
assert pdep["spec"]["replicas"] >= 2
tsc = pdep["spec"]["template"]["spec"]["topologySpreadConstraints"]
z = [t for t in tsc if t["topologyKey"] == "topology.kubernetes.io/zone"]
assert z and z[0]["maxSkew"] == 1 and z[0]["whenUnsatisfiable"] == "DoNotSchedule", tsc
assert all(pdep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in z[0]["labelSelector"]["matchLabels"].items()), "spread selector"
assert pdep["spec"]["template"]["spec"]["containers"] == dep["spec"]["template"]["spec"]["containers"], "containers changed"
assert psvc["spec"]["ports"] == svc["spec"]["ports"] and psvc["spec"]["selector"] == svc["spec"]["selector"]
print("ok")
PY
)
if [ "$out" = ok ]; then
	ok "objects agree: Service selects the server, ServiceMonitor the Service's http-metrics port, agents the Service; per-zone: PreferClose, one server per zone"
else
	not_ok "objects agree" "$out"
fi

# ---- the optional NetworkPolicy (test/manifests/networkpolicy.py says what is checked): it
# selects the server pods, opens the agents' port (traced from the agents' --server through
# the Service) to node address blocks and the metrics port (traced from the ServiceMonitor) to
# one named namespace, documents both, and is not applied by default.
N="networkpolicy: selects the server pods, agent port from node address blocks, metrics port from one namespace (ports traced from the manifests), documented, not in the base"
if out=$(python3 "$M/networkpolicy.py" deploy/networkpolicy.yaml "$WORK/perzone.json" "${INSTALL[@]}" -- "${BASE[@]}" 2>&1) &&
	[ "$out" = ok ]; then
	ok "$N"
else
	not_ok "$N" "$(tail -1 <<<"$out")"
fi

# ---- the optional agent secret (test/manifests/enable_secret.py says what is checked): the
# variant a user gets by following the comments of deploy/server.yaml and deploy/agent.yaml
# (the kubectl command, the commented volume and mounts, the args to add) is made from those
# comments, differs from the base by exactly that, and agrees with itself: the Secret the
# command creates, mounted read-only, no subPath, readable by its user, in the server and the
# agents alike, at the directory of --agent-secret-file. Its objects are validated with the
# others below; test/containers.sh runs it.
mkdir -p "$WORK/secret"
SECRET_FILES=(deploy/server.yaml deploy/agent.yaml)
N="secret: the comments of ${SECRET_FILES[*]} turn the agent secret on, and what they make agrees"
if out=$(python3 "$M/enable_secret.py" variant "$WORK/secret" "${SECRET_FILES[@]}" 2>&1); then
	ok "$N (${out#ok: })"
	python3 "$M/collect.py" objects "$WORK/secret/server.yaml" "$WORK/secret/agent.yaml" >"$WORK/secret-objects.json"
else
	not_ok "$N" "$out"
fi
# The table: each case is one mistake someone could make in those comments; the tool must
# refuse it, and for that reason. CASE, FILE, the text replaced, its replacement (\n: a new
# line), what the error must say; tab-separated.
python3 - "$M" "${SECRET_FILES[@]}" >"$WORK/secret-cases.out" <<'PY'
import os, re, shutil, sys, tempfile
sys.path.insert(0, sys.argv[1])
import enable_secret
files = sys.argv[2:]
cases = """\
mount-path-moved	deploy/agent.yaml	#   mountPath: /etc/kubezonnet	#   mountPath: /etc/kzn	mountPath /etc/kzn is not the directory of --agent-secret-file /etc/kubezonnet/secret
args-path-moved	deploy/server.yaml	"/etc/kubezonnet/secret" to args	"/run/kubezonnet/secret" to args	mountPath /etc/kubezonnet is not the directory of --agent-secret-file /run/kubezonnet/secret
file-not-the-key	deploy/server.yaml	--from-literal=secret=	--from-literal=key=	the Secret volume holds the file key
secret-name-differs	deploy/agent.yaml	#     secretName: kubezonnet-agent-secret	#     secretName: kubezonnet-secret	agent.yaml: no commented volume of the Secret kubezonnet-agent-secret
kubectl-no-namespace	deploy/server.yaml	kubectl -n kubezonnet create	kubectl create	names no namespace
kubectl-gone	deploy/server.yaml	#   kubectl -n kubezonnet create secret generic	#   create secret generic	0 `kubectl ... create secret` commands
args-instruction-gone	deploy/server.yaml	add "--agent-secret-file",	set "--agent-secret-file",	0 `add "...", "..." to args` instructions
not-read-only	deploy/agent.yaml	#   readOnly: true	#   readOnly: false	the mount of agent-secret is not readOnly: true
agent-mount-gone	deploy/agent.yaml	# - name: agent-secret\\n            #   mountPath: /etc/kubezonnet\\n            #   readOnly: true\\n	\\n	agent.yaml: no commented volumeMount of agent-secret
mount-item-broken	deploy/server.yaml	#     mountPath: /etc/kubezonnet	#   mountPath: /etc/kubezonnet	the commented item agent-secret is neither a Secret volume nor a mount
mount-block-dedented	deploy/agent.yaml	            # - name: agent-secret\\n            #   mountPath	          # - name: agent-secret\\n          #   mountPath	(does not parse|changed more than the volume)
mounts-key-twice	deploy/server.yaml	          args: ["--agent-listen", ":8081"]	          args: ["--agent-listen", ":8081"]\\n          volumeMounts: [{name: topology, mountPath: /etc/kubezonnet-topology}]	server.yaml with the secret's blocks uncommented does not parse: .*duplicate key 'volumeMounts'
mode-unreadable	deploy/server.yaml	#       secretName: kubezonnet-agent-secret	#       secretName: kubezonnet-agent-secret\\n      #       defaultMode: 0400	kubezonnet-server container server: runs as 65532:65532 .* mode 0400: it cannot read it
"""
for line in cases.splitlines():
    case, path, old, new, want = line.split("\t")
    old, new = old.replace("\\n", "\n"), new.replace("\\n", "\n")
    tmp = tempfile.mkdtemp()
    try:
        for f in files:
            shutil.copy(f, tmp)
        target = os.path.join(tmp, os.path.basename(path))
        if path not in files or old not in open(target).read():
            print(f"{case} stale {old!r} is not in {path} (update the case)")
            continue
        text = open(target).read().replace(old, new, 1)
        open(target, "w").write(text)
        os.mkdir(os.path.join(tmp, "out"))
        try:
            enable_secret.variant(os.path.join(tmp, "out"), [os.path.join(tmp, os.path.basename(f)) for f in files])
            print(f"{case} accepted")
        except enable_secret.Broken as e:
            msg = " ".join(str(e).replace(tmp + "/", "").split())
            print(f"{case} {'refused' if re.search(want, msg) else 'other'} {msg}")
    finally:
        shutil.rmtree(tmp)
PY
while read -r case verdict msg; do
	if [ "$verdict" = refused ]; then
		ok "secret: a broken comment is refused: $case ($(cut -c1-110 <<<"$msg"))"
	else
		not_ok "secret: a broken comment is refused: $case" "$verdict${msg:+: $msg}"
	fi
done <"$WORK/secret-cases.out"
check_eq "secret: every case ran" "$(grep -c . "$WORK/secret-cases.out")" 13

# ---- the dashboard: the ConfigMap is generated from the JSON (and the check would see a
# change), no data source UID is written in, every panel uses the datasource variable.
check "dashboard: ConfigMap in sync with the JSON (deploy/gen-dashboard-configmap.py --check)" \
	python3 deploy/gen-dashboard-configmap.py --check
mkdir -p "$WORK/gen" && cp deploy/gen-dashboard-configmap.py deploy/grafana-dashboard.json deploy/grafana-dashboard-configmap.yaml "$WORK/gen/"
sed -i '0,/"title": "kubezonnet: cross-zone traffic"/s//"title": "kubezonnet: changed"/' "$WORK/gen/grafana-dashboard.json"
if python3 "$WORK/gen/gen-dashboard-configmap.py" --check >/dev/null 2>&1; then
	not_ok "dashboard: the sync check sees a changed JSON"
else
	ok "dashboard: the sync check sees a changed JSON"
fi
out=$(python3 - deploy/grafana-dashboard.json <<'PY' 2>&1
import json, sys
d = json.load(open(sys.argv[1]))
assert 38 <= d["schemaVersion"] <= 41, d["schemaVersion"]
var = [v for v in d["templating"]["list"] if v["name"] == "datasource"]
assert var and var[0]["type"] == "datasource" and var[0]["query"] == "prometheus", var
bad = []
def walk(x, path):
    if isinstance(x, dict):
        if "datasource" in x:
            ds = x["datasource"]
            if not (isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") in ("${datasource}", "$datasource")):
                bad.append(f"{path}: {ds!r}")
        for k, v in x.items(): walk(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x): walk(v, f"{path}[{i}]")
walk(d, "")
assert not bad, bad
panels = [p for p in d["panels"] if p["type"] != "row"]
assert all(p.get("targets") and all(t.get("expr") for t in p["targets"]) for p in panels)
assert len({p["id"] for p in d["panels"]}) == len(d["panels"]), "panel ids repeat"
print("ok")
PY
)
if [ "$out" = ok ]; then ok "dashboard: schemaVersion, a prometheus datasource variable, no data source UID of its own"; else not_ok "dashboard: datasource" "$out"; fi

# ---- the schema validator.
SCHEMA_NAMES=("schemas: every object validates strictly" "schemas: kubernetes-models' own validate() lets an unknown field through" "schemas: broken manifests are rejected")
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	for n in "${SCHEMA_NAMES[@]}"; do skip "$n" "node or npm is not installed"; done
	exit 0
fi
if ! cmp -s "$M/package.json" "$NPM/package.json" || [ ! -d "$NPM/node_modules/kubernetes-models" ] ||
	[ ! -d "$NPM/node_modules/@kubernetes-models/prometheus-operator" ]; then
	rm -rf "$NPM" && mkdir -p "$NPM" && cp "$M/package.json" "$NPM/"
	if ! timeout 180 npm install --no-package-lock --no-audit --no-fund --loglevel=error --prefix "$NPM" \
		>"$WORK/npm.log" 2>&1; then
		reason="npm install failed (registry unreachable?): $(grep -v -e '^npm warn' -e 'complete log' "$WORK/npm.log" | head -2 | tr '\n' ' ')"
		rm -rf "$NPM"
		for n in "${SCHEMA_NAMES[@]}"; do skip "$n" "$reason"; done
		exit 0
	fi
fi
validate() { KZN_NPM=$NPM/node_modules node "$M/validate.mjs" "$@"; }
versions=$(cd "$NPM/node_modules" && node -e 'for (const p of ["kubernetes-models", "@kubernetes-models/prometheus-operator"]) process.stdout.write(p + "@" + require("./" + p + "/package.json").version + " ")')
echo "# validator: $versions"

python3 "$M/collect.py" objects "${FILES[@]}" >"$WORK/all.json"
python3 - "$WORK/all.json" "$WORK/perzone.json" "$RENDERED" "$WORK/secret" >"$WORK/objects.json" <<'PY'
import json, os, sys
a = json.load(open(sys.argv[1]))
for o in json.load(open(sys.argv[2])):
    o["source"] = f"per-zone ({sys.argv[3]}) " + o["source"].rsplit("/", 1)[-1]
    a.append(o)
# the secret-enabled variant and the Secret its kubectl command creates (if it could be made)
secret = os.path.join(sys.argv[4], "secret.json")
if os.path.exists(secret):
    for o in json.load(open(sys.argv[4] + "-objects.json")):
        o["source"] = "secret-enabled " + o["source"].rsplit("/", 1)[-1]
        a.append(o)
    a.append({"source": "secret-enabled (the comment's kubectl create secret)", "object": json.load(open(secret))})
json.dump(a, sys.stdout)
PY
if validate "$WORK/objects.json" >"$WORK/valid.out" 2>&1; then
	ok "schemas: every object validates strictly ($(grep -c '^ok ' "$WORK/valid.out") objects of ${FILES[*]}, per-zone and secret-enabled)"
else
	not_ok "schemas: every object validates strictly"
	grep -v '^ok ' "$WORK/valid.out" | sed 's/^/#   /'
fi

# The reason for the strict walk: the models' validate() alone accepts an unknown field.
python3 "$M/collect.py" mutate unknown-in-securityContext "${INSTALL[@]}" >"$WORK/m.json"
if validate --lax "$WORK/m.json" >/dev/null 2>&1; then
	ok "schemas: kubernetes-models' own validate() lets an unknown field through (securityContext.runAsUsr), so validate.mjs walks the object itself"
else
	not_ok "schemas: kubernetes-models' own validate() lets an unknown field through" \
		"it now rejects it: the Proxy walk in validate.mjs may be redundant; keep this test honest"
fi

# The table: each case is one real object with one mistake (test/manifests/collect.py), all
# validated in one run; each must be rejected, and for the reason it was broken.
# CASE  what the error must say
python3 "$M/collect.py" mutate-all "${INSTALL[@]}" >"$WORK/m.json"
validate "$WORK/m.json" >"$WORK/m.out" 2>&1
while read -r case want; do
	line=$(grep -F "($case)" "$WORK/m.out")
	if [ -z "$line" ]; then
		not_ok "schemas: broken manifest rejected: $case" "no verdict: $(head -3 "$WORK/m.out")"
	elif [[ $line == ok* ]]; then
		not_ok "schemas: broken manifest rejected: $case" "accepted: $line"
	elif grep -qE "^error .*$want" <<<"$line"; then
		ok "schemas: broken manifest rejected: $case ($(sed 's/^error [^ ]* ([^)]*) //' <<<"$line" | cut -c1-120))"
	else
		not_ok "schemas: broken manifest rejected: $case" "rejected for another reason than '$want': $line"
	fi
done <<'EOF'
unknown-top-level unknown field replica$
unknown-in-securityContext unknown field spec.template.spec.containers\[0\].securityContext.runAsUsr$
unknown-in-metadata unknown field metadata.label$
unknown-in-servicemonitor-endpoint unknown field spec.endpoints\[0\].intervall$
wrong-type-replicas spec/replicas must be integer
wrong-type-port spec/ports/0/port must be integer
missing-required-container-name must have required property name
missing-required-selector must have required property selector
prometheusrule-expr-not-a-string rules/0/expr must be string
prometheusrule-rule-without-expr must have required property expr
unknown-kind unknown kind "Deploymnt"
unknown-apiversion unknown apiVersion "monitoring.coreos.com/v2"
networkpolicy-port-wrong-type ingress/0/ports/0/port must be string
networkpolicy-protocol-lowercase ingress/0/ports/0/protocol must be equal to one of the allowed values
networkpolicy-ipblock-without-cidr ingress/0/from/0/ipBlock must have required property cidr
EOF
check_eq "schemas: every case of collect.py is in the table" "$(python3 "$M/collect.py" cases | wc -l)" 15
