#!/usr/bin/env bash
# deploy.yaml is the pieces in deploy/ put together, holds the objects an installation needs,
# passes only flags the binaries accept, gives the server only list and watch on pods and
# nodes, and labels its namespace with the Pod Security level its pods really need: a small
# model of Pod Security Admission's baseline and restricted rules checks each pod.
. "$(dirname "$0")/lib.sh"

if diff <("$TOP/deploy/gen-deploy-yaml.sh") "$TOP/deploy.yaml" >/dev/null; then
	ok "deploy.yaml is deploy/namespace.yaml, server.yaml and agent.yaml (make deploy.yaml)"
else
	not_ok "deploy.yaml is deploy/namespace.yaml, server.yaml and agent.yaml (make deploy.yaml)" \
		"deploy.yaml differs from what deploy/gen-deploy-yaml.sh writes: run make deploy.yaml"
fi

# The image the manifests name is the one `make image` builds by default, and kustomize's.
release=$(sed -n 's/^RELEASE\t*:= *//p' "$TOP/Makefile")
images=$(grep -hE '^ +image: ' "$TOP/deploy.yaml" "$TOP/deploy/uninstall.yaml" | sort -u | tr -d ' ')
tag=$(sed -n 's/^ *newTag: *//p' "$TOP/deploy/kustomization.yaml")
if [ -n "$release" ] && [ "$images" = "image:kubezonnet:$release" ] && [ "$tag" = "$release" ]; then
	ok "deploy.yaml, uninstall.yaml and kustomization.yaml name the image make image builds (kubezonnet:$release)"
else
	not_ok "deploy.yaml, uninstall.yaml and kustomization.yaml name the image make image builds" \
		"Makefile RELEASE '$release', manifests: $images, kustomization newTag '$tag'"
fi

out=$(python3 - "$TOP" "$AGENT" "$SERVER" <<'PY' 2>&1
import subprocess, sys
try:
    import yaml
except ImportError:
    print("skip: python3-yaml is not installed (make deps)")
    sys.exit(0)
top, agent, server = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(top + "/deploy.yaml")) if d]
uninstall = [d for d in yaml.safe_load_all(open(top + "/deploy/uninstall.yaml")) if d]
kinds = sorted(d["kind"] for d in docs)
want = ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Deployment", "Namespace", "Service", "ServiceAccount", "ServiceAccount"]
assert kinds == want, kinds
helps = {"kubezonnet-agent": subprocess.run([agent, "--help"], capture_output=True, text=True).stdout,
         "kubezonnet-server": subprocess.run([server, "--help"], capture_output=True, text=True).stdout}

# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), the
# rules these pods can break.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                 "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
def level(spec):
    """The least Pod Security level that admits this pod spec, and why."""
    baseline, restricted = [], []
    psc = spec.get("securityContext", {})
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(k): baseline.append(k)
    for v in spec.get("volumes", []):
        if "hostPath" in v: baseline.append("hostPath " + v["hostPath"]["path"])
        if not set(v) - {"name"} <= RESTRICTED_VOLUMES: restricted.append("volume " + v["name"])
    containers = spec.get("initContainers", []) + spec["containers"]
    for c in containers:
        sc = c.get("securityContext", {})
        if sc.get("privileged"): baseline.append(c["name"] + " privileged")
        added = set(sc.get("capabilities", {}).get("add", []))
        if added - BASELINE_CAPS: baseline.append(c["name"] + " adds " + ",".join(sorted(added - BASELINE_CAPS)))
        if added - {"NET_BIND_SERVICE"}: restricted.append(c["name"] + " adds capabilities")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []): restricted.append(c["name"] + " does not drop ALL")
        if any(p.get("hostPort") for p in c.get("ports", [])): baseline.append(c["name"] + " hostPort")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp == "Unconfined": baseline.append(c["name"] + " seccomp Unconfined")
        if seccomp not in ("RuntimeDefault", "Localhost"): restricted.append(c["name"] + " seccomp not set")
        if sc.get("allowPrivilegeEscalation") is not False: restricted.append(c["name"] + " may escalate")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")): restricted.append(c["name"] + " may run as root")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0: restricted.append(c["name"] + " runs as user 0")
    if baseline: return "privileged", baseline
    if restricted: return "baseline", restricted
    return "restricted", []
ORDER = ["restricted", "baseline", "privileged"]

namespace = [d for d in docs if d["kind"] == "Namespace"][0]
enforce = namespace["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
needed = "restricted"
for d in docs + uninstall:
    if d["kind"] in ("DaemonSet", "Deployment"):
        spec = d["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            binary = c["command"][0].lstrip("/")
            for a in c["command"][1:] + c.get("args", []):
                if a.startswith("--"):
                    assert a.split("=")[0] in helps[binary], f"{binary} has no flag {a}"
        lvl, why = level(spec)
        if d in docs and ORDER.index(lvl) > ORDER.index(needed): needed = lvl
        if d["metadata"]["name"] == "kubezonnet-server":
            assert lvl == "restricted", f"the server should meet restricted: {why}"
        if d["metadata"]["name"] == "kubezonnet-agent":
            sc = spec["containers"][0]["securityContext"]
            assert sorted(sc["capabilities"]["add"]) == ["BPF", "NET_ADMIN", "PERFMON"], sc
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False, sc
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
assert enforce == needed, f"namespace enforces {enforce!r}, its pods need {needed!r}"
print("ok")
PY
)
case "$out" in
ok) ok "deploy.yaml: objects, flags, RBAC, least capabilities and Pod Security level" ;;
skip:*) skip "deploy.yaml: objects, flags, RBAC, least capabilities and Pod Security level" "${out#skip: }" ;;
*) not_ok "deploy.yaml: objects, flags, RBAC, least capabilities and Pod Security level" "$out" ;;
esac
