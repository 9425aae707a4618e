#!/usr/bin/env python3
"""Turns a kubezonnet topology file (nodes and pods) into the NodeList and PodList a
Kubernetes API server would answer for that cluster, for test/fake_apiserver.py --lists:
Node objects with zone and region labels and InternalIP addresses, Pod objects with the
owner references a controller sets (a Deployment's pod is owned by its ReplicaSet
<name>-<pod-template-hash>, a CronJob's by a Job <name>-<8 digits>, others by the workload
itself; a pod that is its own workload has no owner), a generateName, podIPs and hostIPs.
External networks have no Kubernetes object and are left out.

  topology_to_k8s.py TOPOLOGY OUTDIR
"""
import hashlib
import json
import os
import sys

topo = json.load(open(sys.argv[1]))
out = sys.argv[2]
os.makedirs(out, exist_ok=True)


def uid(*parts):
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return "%s-%s-4%s-8%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:32])


nodes, node_ip = [], {}
for n in topo.get("nodes", []):
    node_ip[n["name"]] = n["ips"][0]
    labels = {"kubernetes.io/hostname": n["name"]}
    if n.get("zone"):
        labels["topology.kubernetes.io/zone"] = n["zone"]
    if n.get("region"):
        labels["topology.kubernetes.io/region"] = n["region"]
    nodes.append({
        "metadata": {"name": n["name"], "uid": uid("node", n["name"]), "resourceVersion": "100",
                     "labels": labels},
        "spec": {},
        "status": {"addresses": [{"type": "InternalIP", "address": a} for a in n["ips"]] +
                   [{"type": "Hostname", "address": n["name"]}]},
    })

pods = []
for p in topo.get("pods", []):
    ns, name, wl, kind = p["namespace"], p["name"], p.get("workload", p["name"]), p.get("workload_kind", "Pod")
    meta = {"name": name, "namespace": ns, "uid": uid("pod", ns, name), "resourceVersion": "200",
            "labels": {"app": wl}}
    owner = None
    if kind == "Deployment":
        h = hashlib.sha256(wl.encode()).hexdigest()[:9]
        h = "".join(c if c.isalpha() or c in "456789" else "bcdfghjklmnpqrstvwxz"[int(c)] for c in h)
        meta["labels"]["pod-template-hash"] = h
        owner = ("apps/v1", "ReplicaSet", "%s-%s" % (wl, h))
    elif kind == "CronJob":
        owner = ("batch/v1", "Job", "%s-29000000" % wl)
    elif kind != "Pod" or wl != name:
        owner = ("apps/v1" if kind in ("StatefulSet", "DaemonSet", "ReplicaSet") else "v1", kind, wl)
    if owner:
        meta["generateName"] = owner[2] + "-"
        meta["ownerReferences"] = [{"apiVersion": owner[0], "kind": owner[1], "name": owner[2],
                                    "uid": uid("owner", ns, owner[2]), "controller": True,
                                    "blockOwnerDeletion": True}]
    host = node_ip.get(p["node"], "")
    ips = [host] if p.get("host_network") else p.get("ips", [])
    spec = {"nodeName": p["node"], "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9"}]}
    if p.get("host_network"):
        spec["hostNetwork"] = True
    status = {"phase": p.get("phase", "Running"), "hostIP": host, "hostIPs": [{"ip": host}] if host else []}
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": a} for a in ips]
    pods.append({"metadata": meta, "spec": spec, "status": status})

for kind, items in (("NodeList", nodes), ("PodList", pods)):
    with open(os.path.join(out, kind.lower() + ".json"), "w") as f:
        json.dump({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1000"},
                   "items": [dict(kind=kind[:-4], apiVersion="v1", **o) for o in items]}, f, indent=1)
