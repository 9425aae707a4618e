#!/usr/bin/env python3
"""Generates a PodList and a NodeList for the Kubernetes benchmarks from the real objects in
../shared/fixtures/k8s/: every pod is a copy of a real pod (managedFields and all) with its
own name, UID, owner, node and addresses.

  gen_k8s.py OUTDIR PODS NODES

Per node: two hostNetwork DaemonSet pods (aws-node, kube-proxy). The rest: Deployment pods
(20 replicas per Deployment, 50 namespaces), and one in twenty a bare pod. Nodes spread over
three zones. Writes OUTDIR/podlist.json, OUTDIR/nodelist.json, and OUTDIR/events.jsonl: a
MODIFIED event for each of 100 pods (new addresses), for a rebuild of the index.
"""
import json
import os
import sys

OUT, PODS, NODES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures", "k8s")


def load(name):
    return json.load(open(os.path.join(FIX, name)))


def template(obj, fields):
    """obj with fields (path -> placeholder) replaced, as a list of text and placeholder names."""
    for path, name in fields.items():
        o = obj
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = "@@%s@@" % name
    return json.dumps(obj, separators=(",", ":")).split("@@")


def fill(pieces, values):
    return "".join(values[p] if i % 2 else p for i, p in enumerate(pieces))


eks = {p["metadata"]["name"]: p for p in load("podlist_eks_vpccni_hostnetwork_bare_pod_cloudability.json")["items"]}
POD_FIELDS = {
    ("metadata", "name"): "NAME", ("metadata", "namespace"): "NS", ("metadata", "uid"): "UID",
    ("spec", "nodeName"): "NODE", ("status", "podIP"): "IP", ("status", "hostIP"): "HOST",
}


def pod_template(name, owner=True, rs=False):
    p = eks[name]
    fields = dict(POD_FIELDS)
    p["status"]["podIPs"] = [{"ip": "x"}]
    fields[("status", "podIPs", 0, "ip")] = "IP"
    if p["status"].get("hostIPs"):
        p["status"]["hostIPs"] = [{"ip": "x"}]
        fields[("status", "hostIPs", 0, "ip")] = "HOST"
    if owner:
        fields[("metadata", "ownerReferences", 0, "name")] = "OWNER"
        fields[("metadata", "ownerReferences", 0, "uid")] = "OWNERUID"
        fields[("metadata", "generateName")] = "GEN"
    if rs:
        fields[("metadata", "labels", "pod-template-hash")] = "HASH"
    return template(p, fields)


deploy = pod_template("cloudability-metrics-agent-f564d999d-8qwp8", rs=True)
coredns = pod_template("coredns-7f5998f4c-5fblt", rs=True)
bare = pod_template("stress2", owner=False)
ds = [pod_template("aws-node-48cfw"), pod_template("kube-proxy-g6lc7")]

node_obj = load("nodelist_eks_topology_zone_region_honeycomb.json")["items"][0]
labels = node_obj["metadata"]["labels"]
nfields = {("metadata", "name"): "NAME", ("metadata", "uid"): "UID"}
for k in ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"):
    if k in labels:
        nfields[("metadata", "labels", k)] = "ZONE"
node_obj["status"]["addresses"] = [{"type": "InternalIP", "address": "x"}, {"type": "Hostname", "address": "x"}]
nfields[("status", "addresses", 0, "address")] = "IP"
nfields[("status", "addresses", 1, "address")] = "NAME"
node_t = template(node_obj, nfields)


def ip(base, i):
    return "10.%d.%d.%d" % (base + (i >> 16), (i >> 8) & 255, i & 255)


def uid(kind, i):
    return "%08x-0000-4000-8000-%012x" % (kind, i)


os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "nodelist.json"), "w") as f:
    f.write('{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"1000"},"items":[')
    for n in range(NODES):
        f.write(("," if n else "") + fill(node_t, {"NAME": "node-%04d" % n, "UID": uid(1, n),
                                                  "ZONE": "zone-%c" % "abc"[n % 3], "IP": ip(0, n + 1)}))
    f.write("]}")
events = []
with open(os.path.join(OUT, "podlist.json"), "w") as f:
    f.write('{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1000"},"items":[')
    for i in range(PODS):
        node = i % NODES
        v = {"UID": uid(2, i), "NODE": "node-%04d" % node, "HOST": ip(0, node + 1)}
        if i < 2 * NODES:  # the DaemonSets' hostNetwork pods
            t = ds[i // NODES]
            name = ("aws-node", "kube-proxy")[i // NODES]
            v.update(NAME="%s-%05x" % (name, i), NS="kube-system", IP=v["HOST"], OWNER=name,
                     OWNERUID=uid(3, i // NODES), GEN=name + "-")
        elif i % 20 == 0:
            t = bare
            v.update(NAME="job-runner-%d" % i, NS="batch-%d" % (i % 50), IP=ip(128, i))
        else:
            d = i // 20
            t = coredns if d % 7 == 0 else deploy
            h = "%09x" % (d * 2654435761 % (1 << 36))
            rs = "app-%d-%s" % (d, h)
            v.update(NAME="%s-%05x" % (rs, i & 0xfffff), NS="team-%d" % (d % 50), IP=ip(128, i),
                     OWNER=rs, OWNERUID=uid(4, d), GEN=rs + "-", HASH=h)
        f.write(("," if i else "") + fill(t, v))
        if 5000 <= i < 5100:
            v["IP"] = ip(200, i)
            events.append('{"type":"MODIFIED","object":%s}\n' % fill(t, v))
    f.write("]}")
with open(os.path.join(OUT, "events.jsonl"), "w") as f:
    f.write("".join(events))
