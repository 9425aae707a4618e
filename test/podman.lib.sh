# test/podman.lib.sh: a throwaway podman for container tests (source it after test/lib.sh; it
# is not executable on purpose: test/run runs every executable test/*.sh).
#
# Everything lives in one scratch directory (store, run state, locks' tmpdir, containers.conf),
# never in the system's store, and is removed by podman_cleanup. The flags work around this
# kind of machine: crun refuses hybrid cgroups (so runc and cgroupfs), and a sandbox without
# CAP_SYS_RESOURCE cannot apply podman's default ulimits (so none).
#
#   podman_setup NAME...     skips the named tests and exits 0 without root or podman
#   pm ARGS...               podman with the scratch store and flags
#   podman_load ARCHIVE      loads an image archive; prints the name it was loaded as
#   podman_run IMAGE ARGS... a container as the image's user: read-only rootfs, no network,
#                            no capabilities; removed when it exits
#   podman_cleanup           removes containers, images and the scratch directory
# shellcheck shell=bash

PODMAN_DIR=
PODMAN_FLAGS=()

podman_setup() {
	if [ "$(id -u)" != 0 ]; then
		for n in "$@"; do skip "$n" "needs root"; done
		exit 0
	fi
	if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
		for n in "$@"; do skip "$n" "needs podman and runc (make deps)"; done
		exit 0
	fi
	PODMAN_DIR=$(mktemp -d /tmp/kzt-podman.XXXXXX)
	mkdir -p "$PODMAN_DIR/root" "$PODMAN_DIR/runroot" "$PODMAN_DIR/tmp"
	cat >"$PODMAN_DIR/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
EOF
	export CONTAINERS_CONF=$PODMAN_DIR/containers.conf
	# vfs: no overlay mounts to leave behind; the images here are a few megabytes.
	PODMAN_FLAGS=(--root "$PODMAN_DIR/root" --runroot "$PODMAN_DIR/runroot" --tmpdir "$PODMAN_DIR/tmp"
		--storage-driver vfs --runtime runc --cgroup-manager cgroupfs --events-backend file)
}

pm() { podman "${PODMAN_FLAGS[@]}" "$@"; }

podman_load() {
	pm load -q -i "$1" | sed -n 's/^Loaded image[^:]*: //p' | tail -1
}

podman_run() {
	local image=$1
	shift
	pm run --rm --read-only --network none --cap-drop all --security-opt no-new-privileges \
		"$image" "$@"
}

podman_cleanup() {
	[ -n "$PODMAN_DIR" ] || return 0
	pm rm -af >/dev/null 2>&1
	pm rmi -af >/dev/null 2>&1
	rm -rf "$PODMAN_DIR"
	PODMAN_DIR=
}

# ---- Kubernetes manifests as podman command lines (test/containers.sh, bench/resources.sh)
#
#   podman_k8s MANIFEST OUT KEY=VALUE...
#       translates one container of a workload in MANIFEST (a multi-document YAML file) into the
#       arguments of `podman run` with exactly the settings the manifest declares for it, and
#       writes them with what the kubelet would make of them (user, capabilities, no_new_privs,
#       seccomp, probes) to OUT (JSON). Every document of MANIFEST is read, and any field the
#       translator does not know makes it fail with a message (exit 1), so that a manifest
#       cannot say more than the tests run. Keys (the node's part, which the kubelet supplies):
#         workload=KIND/NAME container=NAME   which container (containers or initContainers)
#         name=NAME                           the podman container's name
#         image=REF                           the image loaded for the manifest's image: name
#         image_user=UID:GID                  the image's USER (for containers that set none)
#         node=NAME                           spec.nodeName (fieldRef, hostname of hostNetwork)
#         node_netns=PATH pod_netns=PATH      the node's network namespace (hostNetwork), the pod's
#                                             (pod_netns=none: one with loopback only)
#         hostpath:PATH=DIR                   where a hostPath volume's PATH is on this "node"
#         sa_dir=DIR                          the service account files (token, ca.crt, namespace)
#         kube_service=HOST:PORT              the kubernetes Service (KUBERNETES_SERVICE_HOST/PORT)
#         cluster_dns=NAME=IP                 a name the cluster DNS answers (repeatable)
#         without_cap=CAP                     remove CAP from the declared added capabilities
#         seccomp=TYPE                        this seccompProfile type instead of the declared one
#   podman_k8s_args OUT          the podman run arguments, NUL-separated (mapfile -d '')
#   podman_k8s_get OUT KEY       one field of OUT (a list: space-separated)
podman_k8s() {
	python3 - "$@" <<'PY'
import json, os, re, shlex, sys
import yaml

manifest, out, kv = sys.argv[1], sys.argv[2], sys.argv[3:]
opt, hostpaths, cluster_dns = {}, {}, {}
for a in kv:
    k, _, v = a.partition("=")
    if k.startswith("hostpath:"):
        hostpaths[k[len("hostpath:"):]] = v
    elif k == "cluster_dns":
        n, _, ip = v.partition("=")
        cluster_dns[n] = ip
    else:
        opt[k] = v

def fail(msg):
    sys.exit("podman_k8s: %s: %s" % (manifest, msg))

def known(obj, keys, where):
    if not isinstance(obj, dict):
        fail("%s: want a mapping, got %r" % (where, obj))
    extra = sorted(set(obj) - set(keys))
    if extra:
        fail("%s: %s: not translated to podman (teach podman_k8s in test/podman.lib.sh)" % (where, ", ".join(extra)))

CAPS = {n: i for i, n in enumerate("""CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID
SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE
SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG
WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE""".split())}

docs = [d for d in yaml.safe_load_all(open(manifest)) if d is not None]

# ---- every document: only what is known (and understood below or without effect on a container)
META = ["name", "namespace", "labels", "annotations"]
PODSPEC = ["serviceAccountName", "automountServiceAccountToken", "hostNetwork", "dnsPolicy",
           "priorityClassName", "terminationGracePeriodSeconds", "tolerations", "securityContext",
           "containers", "initContainers", "volumes"]
POD_SC = ["runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"]
CONTAINER = ["name", "image", "command", "args", "env", "ports", "readinessProbe", "livenessProbe",
             "resources", "securityContext", "volumeMounts"]
C_SC = ["runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation",
        "capabilities", "seccompProfile"]
PROBE = ["httpGet", "periodSeconds", "timeoutSeconds", "failureThreshold", "initialDelaySeconds",
         "successThreshold"]
workloads, services, sas = {}, [], {}

def check_pod(spec, where):
    known(spec, PODSPEC, where)
    known(spec.get("securityContext", {}), POD_SC, where + ".securityContext")
    for p, v in spec.get("securityContext", {}).get("seccompProfile", {}).items():
        if p != "type":
            fail("%s.securityContext.seccompProfile.%s: not translated" % (where, p))
    for t in spec.get("tolerations", []):
        known(t, ["operator", "key", "effect", "value"], where + ".tolerations")
    for v in spec.get("volumes", []):
        known(v, ["name", "hostPath"], where + ".volumes")
        known(v["hostPath"], ["path", "type"], where + ".volumes." + v["name"] + ".hostPath")
    for kind in ("containers", "initContainers"):
        for c in spec.get(kind, []):
            w = "%s.%s[%s]" % (where, kind, c.get("name"))
            known(c, CONTAINER, w)
            sc = c.get("securityContext", {})
            known(sc, C_SC, w + ".securityContext")
            known(sc.get("capabilities", {}), ["drop", "add"], w + ".securityContext.capabilities")
            known(sc.get("seccompProfile", {}), ["type"], w + ".securityContext.seccompProfile")
            for e in c.get("env", []):
                known(e, ["name", "value", "valueFrom"], w + ".env")
                if "valueFrom" in e:
                    known(e["valueFrom"], ["fieldRef"], w + ".env." + e["name"])
                    known(e["valueFrom"]["fieldRef"], ["fieldPath", "apiVersion"], w + ".env." + e["name"])
            for p in c.get("ports", []):
                known(p, ["name", "containerPort", "protocol"], w + ".ports")
            for pk in ("readinessProbe", "livenessProbe"):
                if pk in c:
                    known(c[pk], PROBE, w + "." + pk)
                    known(c[pk]["httpGet"], ["path", "port"], w + "." + pk + ".httpGet")
            known(c.get("resources", {}), ["requests", "limits"], w + ".resources")
            for rk in ("requests", "limits"):
                known(c.get("resources", {}).get(rk, {}), ["cpu", "memory"], w + ".resources." + rk)
            for m in c.get("volumeMounts", []):
                known(m, ["name", "mountPath", "readOnly", "mountPropagation"], w + ".volumeMounts")

for d in docs:
    kind, meta = d.get("kind"), d.get("metadata", {})
    where = "%s/%s" % (kind, meta.get("name"))
    known(meta, META, where + ".metadata")
    if kind == "Namespace":
        known(d, ["apiVersion", "kind", "metadata"], where)
    elif kind == "ServiceAccount":
        known(d, ["apiVersion", "kind", "metadata", "automountServiceAccountToken"], where)
        sas[(meta.get("namespace"), meta["name"])] = d
    elif kind in ("ClusterRole", "Role"):
        known(d, ["apiVersion", "kind", "metadata", "rules"], where)
    elif kind in ("ClusterRoleBinding", "RoleBinding"):
        known(d, ["apiVersion", "kind", "metadata", "roleRef", "subjects"], where)
    elif kind == "Service":
        known(d, ["apiVersion", "kind", "metadata", "spec"], where)
        known(d["spec"], ["selector", "ports"], where + ".spec")
        for p in d["spec"]["ports"]:
            known(p, ["name", "port", "targetPort", "protocol"], where + ".spec.ports")
        services.append(d)
    elif kind in ("Deployment", "DaemonSet"):
        known(d, ["apiVersion", "kind", "metadata", "spec"], where)
        known(d["spec"], ["replicas", "selector", "template", "updateStrategy", "strategy"], where + ".spec")
        known(d["spec"]["template"], ["metadata", "spec"], where + ".spec.template")
        known(d["spec"]["template"].get("metadata", {}), ["labels", "annotations"], where + ".spec.template.metadata")
        check_pod(d["spec"]["template"]["spec"], where + ".spec.template.spec")
        workloads[where] = d
    else:
        fail("%s: kind %s: not translated" % (where, kind))

# ---- the Services, with named target ports resolved in the pods they select
svc_out = []
for s in services:
    ns = s["metadata"].get("namespace", "default")
    for p in s["spec"]["ports"]:
        target = p.get("targetPort", p["port"])
        if isinstance(target, str):
            found = [cp["containerPort"] for w in workloads.values()
                     if w["metadata"].get("namespace", "default") == ns and
                     all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in s["spec"]["selector"].items())
                     for c in w["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", []) if cp.get("name") == target]
            if len(set(found)) != 1:
                fail("Service %s: targetPort %s names %s container ports" % (s["metadata"]["name"], target, found))
            target = found[0]
        svc_out.append({"dns": "%s.%s.svc" % (s["metadata"]["name"], ns), "port": p["port"], "target_port": target,
                        "name": p.get("name")})

if "workload" not in opt:
    json.dump({"services": svc_out}, open(out, "w"), indent=1)
    sys.exit(0)

# ---- the container asked for
w = workloads.get(opt["workload"]) or fail("no workload %s" % opt["workload"])
wmeta, spec = w["metadata"], w["spec"]["template"]["spec"]
cs = [c for k in ("containers", "initContainers") for c in spec.get(k, []) if c["name"] == opt.get("container")]
if len(cs) != 1:
    fail("%s: no container %s" % (opt["workload"], opt.get("container")))
c = cs[0]
need = lambda k: opt.get(k) or fail("%s/%s needs %s= from the caller" % (opt["workload"], c["name"], k))
if c["image"] != opt.get("image", c["image"]):
    fail("image %s is not the one loaded (%s)" % (c["image"], opt["image"]))
args = ["--name", need("name"), "--pull", "never"]
psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
res = {"workload": opt["workload"], "container": c["name"]}

# user and group: the container's, else the pod's, else the image's
uid = csc.get("runAsUser", psc.get("runAsUser"))
gid = csc.get("runAsGroup", psc.get("runAsGroup"))
if uid is None and gid is None:
    iu = need("image_user").split(":")
    uid, gid = int(iu[0]), int(iu[1] if len(iu) > 1 else iu[0])
elif uid is None or gid is None:
    fail("%s: runAsUser without runAsGroup (or the reverse): not translated" % c["name"])
else:
    args += ["--user", "%d:%d" % (uid, gid)]
if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
    fail("%s: runAsNonRoot with user 0: the kubelet would refuse to start it" % c["name"])
res["uid"], res["gid"] = uid, gid

# the root file system
res["read_only"] = bool(csc.get("readOnlyRootFilesystem", False))
if res["read_only"]:
    args += ["--read-only", "--read-only-tmpfs=false"]

# capabilities: only "drop ALL" is translated (otherwise the base set would be the runtime's,
# and containerd's differs from podman's); the added ones are effective for root only
caps = csc.get("capabilities")
if not caps or caps.get("drop") != ["ALL"]:
    fail("%s: capabilities without drop [ALL]: the runtime's default set is not translated" % c["name"])
add = []
for a in caps.get("add", []):
    n = a.upper().removeprefix("CAP_")
    if n not in CAPS:
        fail("%s: unknown capability %s" % (c["name"], a))
    if n != opt.get("without_cap", "").upper().removeprefix("CAP_"):
        add.append(n)
args += ["--cap-drop", "ALL"]
for n in add:
    args += ["--cap-add", "CAP_" + n]
res["caps"] = ["CAP_" + n for n in add]
res["cap_eff"] = "%016x" % (sum(1 << CAPS[n] for n in add) if uid == 0 else 0)

ape = csc.get("allowPrivilegeEscalation", True)
if ape is False:
    args += ["--security-opt", "no-new-privileges"]
res["no_new_privs"] = 1 if ape is False else 0

sp = csc.get("seccompProfile", psc.get("seccompProfile"))
if sp and opt.get("seccomp"):
    sp = {"type": opt["seccomp"]}
if not sp:
    fail("%s: no seccompProfile: the kubelet's default (--seccomp-default) is not translated" % c["name"])
if sp.get("type") == "RuntimeDefault":
    res["seccomp"] = 2  # podman's default profile (containers-common), CRI-O's too
elif sp.get("type") == "Unconfined":
    args += ["--security-opt", "seccomp=unconfined"]
    res["seccomp"] = 0
else:
    fail("%s: seccompProfile %s: not translated" % (c["name"], sp))

# network: the node's for hostNetwork, else the pod's own; names from the cluster DNS
host_net = bool(spec.get("hostNetwork", False))
netns = need("node_netns" if host_net else "pod_netns")
args += ["--network", "none" if netns == "none" else "ns:" + netns]
args += ["--hostname", need("node") if host_net else opt["name"]]
dns = spec.get("dnsPolicy", "ClusterFirst")
if dns not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default"):
    fail("dnsPolicy %s: not translated" % dns)
# ClusterFirst in a hostNetwork pod means the node's resolver: no cluster names
if dns == "ClusterFirstWithHostNet" or (dns == "ClusterFirst" and not host_net):
    for n, ip in sorted(cluster_dns.items()):
        args += ["--add-host", "%s:%s" % (n, ip)]
res["host_network"] = host_net

# the service account's files, as the kubelet mounts them
ns = wmeta.get("namespace", "default")
san = spec.get("serviceAccountName", "default")
sa = sas.get((ns, san), {})
if spec.get("automountServiceAccountToken", sa.get("automountServiceAccountToken", True)):
    sa_dir = need("sa_dir")
    for f in ("token", "ca.crt", "namespace"):
        if not os.path.isfile(os.path.join(sa_dir, f)):
            fail("sa_dir %s has no %s" % (sa_dir, f))
    args += ["-v", sa_dir + ":/var/run/secrets/kubernetes.io/serviceaccount:ro"]
    res["service_account"] = san

# environment: the kubelet's service variables, then the container's own
if "kube_service" in opt:
    h, _, p = opt["kube_service"].rpartition(":")
    args += ["--env", "KUBERNETES_SERVICE_HOST=" + h.strip("[]"), "--env", "KUBERNETES_SERVICE_PORT=" + p]
for e in c.get("env", []):
    if "value" in e:
        v = str(e["value"])
    elif e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName":
        v = need("node")
    else:
        fail("env %s: fieldRef %s not translated" % (e["name"], e["valueFrom"]["fieldRef"]["fieldPath"]))
    args += ["--env", "%s=%s" % (e["name"], v)]

# volumes: hostPath only, at the caller's directory for that path on this node
vols = {v["name"]: v for v in spec.get("volumes", [])}
PROP = {"None": "rprivate", "HostToContainer": "rslave"}
for m in c.get("volumeMounts", []):
    v = vols.get(m["name"]) or fail("volumeMount %s: no such volume" % m["name"])
    hp = v["hostPath"]["path"]
    src = hostpaths.get(hp) or fail("hostPath %s: the caller gave no hostpath:%s=DIR" % (hp, hp))
    t = v["hostPath"].get("type", "")
    if t == "Directory" and not os.path.isdir(src):
        fail("hostPath %s (%s) is not a directory: the kubelet would refuse it" % (hp, src))
    elif t not in ("", "Directory"):
        fail("hostPath type %s: not translated" % t)
    prop = m.get("mountPropagation", "None")
    if prop not in PROP:
        fail("mountPropagation %s: not translated (Bidirectional needs privileged)" % prop)
    args += ["-v", "%s:%s:%s%s" % (src, m["mountPath"], "ro," if m.get("readOnly") else "", PROP[prop])]

# resources: limits are the cgroup's; requests.cpu are CPU shares as the kubelet sets them;
# requests.memory is for the scheduler only
def qty(s, cpu=False):
    s = str(s)
    if cpu:
        return int(s[:-1]) / 1000 if s.endswith("m") else float(s)
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", s) or fail("quantity %s: not translated" % s)
    return int(m.group(1)) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}[m.group(2)]
r = c.get("resources", {})
if "memory" in r.get("limits", {}):
    b = qty(r["limits"]["memory"])
    args += ["--memory", str(b), "--memory-swap", str(b)]
    res["memory_limit"] = b
if "cpu" in r.get("limits", {}):
    args += ["--cpus", "%g" % qty(r["limits"]["cpu"], True)]
if "cpu" in r.get("requests", {}):
    args += ["--cpu-shares", str(max(2, int(qty(r["requests"]["cpu"], True) * 1024)))]
if "memory" in r.get("requests", {}):
    res["memory_request"] = qty(r["requests"]["memory"])

if "terminationGracePeriodSeconds" in spec:
    args += ["--stop-timeout", str(spec["terminationGracePeriodSeconds"])]

# probes: what the kubelet would ask, with named ports resolved
ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
res["probes"] = []
for pk in ("readinessProbe", "livenessProbe"):
    if pk in c:
        g = c[pk]["httpGet"]
        port = ports.get(g["port"]) if isinstance(g["port"], str) else g["port"]
        if port is None:
            fail("%s: port %s is not a container port" % (pk, g["port"]))
        res["probes"].append({"probe": pk, "path": g["path"], "port": port})

# command and args: command replaces the image's entrypoint (and drops its Cmd)
if "command" in c:
    args += ["--entrypoint", json.dumps(c["command"])]
args.append(opt.get("image", c["image"]))
args += [str(a) for a in c.get("args", [])]
res["podman"] = args
res["command_line"] = "podman run " + shlex.join(args)
res["services"] = svc_out
json.dump(res, open(out, "w"), indent=1)
PY
}

podman_k8s_args() {
	python3 -c 'import json, sys; sys.stdout.write("".join(a + "\0" for a in json.load(open(sys.argv[1]))["podman"]))' "$1"
}

podman_k8s_get() {
	python3 -c '
import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2], "")
print(" ".join(map(str, v)) if isinstance(v, list) else v)' "$1" "$2"
}
