#!/usr/bin/env python3
"""What a NodeList and a PodList imply for the server's index, worked out from
../shared/K8S-API.md ("What the index needs") independently of the C code:

  k8s_oracle.py ips NODES PODS           every address either list mentions and the node it
                                         is on ("-" if none), one per line: an agent counts
                                         only what leaves its own node
  k8s_oracle.py check NODES PODS FLOWS   compares the "src" of each JSON flow log line in
                                         FLOWS with what the lists imply for its address;
                                         prints mismatches, then "N checked, M wrong"

- A node's zone: topology.kubernetes.io/zone, else failure-domain.beta.kubernetes.io/zone,
  else "unknown". Its InternalIP and ExternalIP addresses are the node.
- A pod's addresses (podIPs, else podIP) are the pod when it is scheduled, not hostNetwork,
  and not Succeeded or Failed; its zone is its node's (a node not in the list: "unknown").
  A hostNetwork pod's address is its node's. When two pods claim an address, the later one
  in the list (the later change) has it.
- The workload: the controller owner (else the first owner); a ReplicaSet named
  <name>-<pod-template-hash> is the Deployment <name>, a Job named <name>-<8 to 10 digits>
  is the CronJob <name> (both only with a generateName); otherwise the owner's kind and
  name; no owner: the pod itself (kind Pod).
"""
import json
import re
import sys


def zone_of(node):
    labels = node["metadata"].get("labels") or {}
    return labels.get("topology.kubernetes.io/zone") or labels.get(
        "failure-domain.beta.kubernetes.io/zone") or "unknown"


def workload(meta):
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if not owner:
        return meta["name"], "Pod"
    kind, name = owner["kind"], owner["name"]
    if meta.get("generateName"):
        h = (meta.get("labels") or {}).get("pod-template-hash")
        if kind == "ReplicaSet" and h and name.endswith("-" + h) and len(name) > len(h) + 1:
            return name[:-len(h) - 1], "Deployment"
        m = re.fullmatch(r"(.+)-([0-9]{8,10})", name)
        if kind == "Job" and m:
            return m.group(1), "CronJob"
    return name, kind


def expected(nodes, pods):
    want, zones = {}, {}
    for n in nodes["items"]:
        name = n["metadata"]["name"]
        zones[name] = zone_of(n)
        for a in (n.get("status") or {}).get("addresses") or []:
            if a["type"] in ("InternalIP", "ExternalIP"):
                want[norm(a["address"])] = {"kind": "node", "name": name, "node": name, "zone": zones[name]}
    for p in pods["items"]:
        meta, spec, status = p["metadata"], p.get("spec") or {}, p.get("status") or {}
        node = spec.get("nodeName") or ""
        if not node or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        ips = [x["ip"] for x in status.get("podIPs") or []] or ([status["podIP"]] if status.get("podIP") else [])
        wl, kind = workload(meta)
        for ip in ips:
            want[norm(ip)] = {"kind": "pod", "namespace": meta["namespace"], "pod": meta["name"],
                              "workload": wl, "workload_kind": kind, "node": node,
                              "zone": zones.get(node, "unknown")}
    return want


def norm(ip):
    import ipaddress
    return str(ipaddress.ip_address(ip))


def mentioned(nodes, pods):
    ips = set()
    for n in nodes["items"]:
        for a in (n.get("status") or {}).get("addresses") or []:
            if a["type"] in ("InternalIP", "ExternalIP"):
                ips.add(norm(a["address"]))
    for p in pods["items"]:
        st = p.get("status") or {}
        for x in st.get("podIPs") or []:
            ips.add(norm(x["ip"]))
        for k in ("podIP", "hostIP"):
            if st.get(k):
                ips.add(norm(st[k]))
    return sorted(ips)


def main():
    mode, nodes, pods = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
    want = expected(nodes, pods)
    if mode == "ips":
        for ip in mentioned(nodes, pods):
            print(ip, want.get(ip, {}).get("node", "-"))
        return
    seen, wrong = set(), 0
    for line in open(sys.argv[4]):
        src = json.loads(line)["src"]
        ip = norm(src["ip"])
        seen.add(ip)
        got = {k: v for k, v in src.items() if k != "ip"}
        exp = want.get(ip, {"kind": "unknown"})
        if got != exp:
            wrong += 1
            print("%s: got %s, want %s" % (ip, json.dumps(got, sort_keys=True), json.dumps(exp, sort_keys=True)))
    for ip in sorted(set(mentioned(nodes, pods)) - seen):
        wrong += 1
        print("%s: no flow log line" % ip)
    print("%d checked, %d wrong" % (len(seen), wrong))


main()
