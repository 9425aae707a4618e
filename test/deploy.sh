#!/usr/bin/env bash
# deploy.yaml is valid YAML with the objects an installation needs, every flag it passes is
# one the binaries accept, the server reads pods and nodes from the in-cluster API with its
# service account, and it needs no more than list and watch on pods and nodes.
. "$(dirname "$0")/lib.sh"
out=$(python3 - "$TOP/deploy.yaml" "$AGENT" "$SERVER" <<'PY' 2>&1
import subprocess, sys
try:
    import yaml
except ImportError:
    print("skip: python3-yaml is not installed (make deps)")
    sys.exit(0)
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(d["kind"] for d in docs)
want = ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Deployment", "Namespace", "Service", "ServiceAccount", "ServiceAccount"]
assert kinds == want, kinds
helps = {"kubezonnet-agent": subprocess.run([sys.argv[2], "--help"], capture_output=True, text=True).stdout,
         "kubezonnet-server": subprocess.run([sys.argv[3], "--help"], capture_output=True, text=True).stdout}
for d in docs:
    if d["kind"] in ("DaemonSet", "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            binary = c["command"][0].lstrip("/")
            for a in c.get("args", []):
                if a.startswith("--"):
                    assert a.split("=")[0] in helps[binary], f"{binary} has no flag {a}"
    if d["kind"] == "Deployment":
        # In-cluster: the Kubernetes API is the source (no topology file), with a token.
        spec = d["spec"]["template"]["spec"]
        args = spec["containers"][0].get("args", [])
        assert "--topology" not in args and "--kube-api" not in args, args
        sa = [x for x in docs if x["kind"] == "ServiceAccount" and x["metadata"]["name"] == spec["serviceAccountName"]]
        assert sa and sa[0].get("automountServiceAccountToken", True), "the server needs its token"
    if d["kind"] == "ClusterRole":
        for r in d["rules"]:
            assert sorted(r["verbs"]) == ["list", "watch"] and sorted(r["resources"]) == ["nodes", "pods"], r
print("ok")
PY
)
case "$out" in
ok) ok "deploy.yaml: objects, flags and RBAC" ;;
skip:*) skip "deploy.yaml: objects, flags and RBAC" "${out#skip: }" ;;
*) not_ok "deploy.yaml: objects, flags and RBAC" "$out" ;;
esac
