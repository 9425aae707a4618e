#!/usr/bin/env python3
"""Turns manifests into the JSON that test/manifests/validate.mjs reads.

  collect.py objects FILE...           every object of every YAML file
  collect.py merge KUSTOMIZATION FILE...
                                       the objects of FILE... with the kustomization's
                                       strategic-merge patches applied (stand-in for
                                       `kubectl kustomize` where there is none)
  collect.py mutate CASE FILE...       the object that CASE breaks, with its mistake
  collect.py mutate-all FILE...        every case of the table, each one object
  collect.py cases                     the names of the cases

Output: a JSON array of {"source": "FILE#INDEX", "object": {...}} on stdout. Kustomize's own
files (kind Kustomization/Component, or a file named kustomization.yaml) are not Kubernetes
objects and are left out.
"""
import copy
import json
import os
import sys

import yaml


def is_kustomize(path, doc):
    return (os.path.basename(path) in ("kustomization.yaml", "kustomization.yml", "Kustomization")
            or (isinstance(doc, dict) and doc.get("kind") in ("Kustomization", "Component")))


def load(paths):
    out = []
    for path in paths:
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc is None or is_kustomize(path, doc):
                    continue
                out.append({"source": f"{os.path.relpath(path)}#{i}", "object": doc})
    return out


def find(objs, kind, name):
    hits = [o for o in objs if o["object"].get("kind") == kind
            and o["object"].get("metadata", {}).get("name") == name]
    if len(hits) != 1:
        sys.exit(f"{len(hits)} objects {kind}/{name} in the base")
    return hits[0]


def merge(base, patch, path=""):
    """A strategic merge patch restricted to what a plain merge does the same way: maps merge
    key by key, scalars replace, and a list may only be added where the base has none (a list
    of the base would be merged by its patch-merge key, which this stand-in does not know)."""
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v, f"{path}.{k}")
        elif isinstance(v, list) and k in base:
            sys.exit(f"patch replaces the list {path}.{k}: use kubectl kustomize")
        elif v is None:
            base.pop(k, None)
        else:
            base[k] = copy.deepcopy(v)


def merged(kustomization, paths):
    objs = load(paths)
    with open(kustomization) as f:
        k = yaml.safe_load(f)
    here = os.path.dirname(kustomization)
    for entry in k.get("patches", []) + [{"path": p} for p in k.get("patchesStrategicMerge", [])]:
        with open(os.path.join(here, entry["path"])) as f:
            patch = yaml.safe_load(f)
        target = find(objs, patch["kind"], patch["metadata"]["name"])
        t = target["object"]
        if t.get("apiVersion") != patch.get("apiVersion") or \
                t.get("metadata", {}).get("namespace") != patch["metadata"].get("namespace"):
            sys.exit(f"{entry['path']}: apiVersion or namespace differ from the base's")
        merge(t, patch)
        target["source"] += f"+{os.path.relpath(os.path.join(here, entry['path']))}"
    return objs


def set_path(obj, path, value):
    *head, last = path
    for p in head:
        obj = obj[p]
    if value is DELETE:
        del obj[last]
    else:
        obj[last] = value


DELETE = object()
POD = ["spec", "template", "spec"]
# CASE: (kind, name, path, value): one mistake in one real object.
CASES = {
    "unknown-top-level": ("Deployment", "kubezonnet-server", ["replica"], 1),
    "unknown-in-securityContext": ("DaemonSet", "kubezonnet-agent",
                                   POD + ["containers", 0, "securityContext", "runAsUsr"], 0),
    "unknown-in-metadata": ("Service", "kubezonnet-server", ["metadata", "label"], {"a": "b"}),
    "unknown-in-servicemonitor-endpoint": ("ServiceMonitor", "kubezonnet-server",
                                           ["spec", "endpoints", 0, "intervall"], "30s"),
    "wrong-type-replicas": ("Deployment", "kubezonnet-server", ["spec", "replicas"], "two"),
    "wrong-type-port": ("Service", "kubezonnet-server", ["spec", "ports", 0, "port"], "8080"),
    "missing-required-container-name": ("DaemonSet", "kubezonnet-agent",
                                        POD + ["containers", 0, "name"], DELETE),
    "missing-required-selector": ("Deployment", "kubezonnet-server", ["spec", "selector"], DELETE),
    "prometheusrule-expr-not-a-string": ("PrometheusRule", "kubezonnet",
                                         ["spec", "groups", 0, "rules", 0, "expr"], {"sum": "x"}),
    "prometheusrule-rule-without-expr": ("PrometheusRule", "kubezonnet",
                                         ["spec", "groups", 0, "rules", 0, "expr"], DELETE),
    "unknown-kind": ("Deployment", "kubezonnet-server", ["kind"], "Deploymnt"),
    "unknown-apiversion": ("ServiceMonitor", "kubezonnet-server", ["apiVersion"],
                           "monitoring.coreos.com/v2"),
    # deploy/networkpolicy.yaml: a port given as a list, a protocol in lower case (the API
    # takes TCP, UDP or SCTP only), an ipBlock without its cidr.
    "networkpolicy-port-wrong-type": ("NetworkPolicy", "kubezonnet-server",
                                      ["spec", "ingress", 0, "ports", 0, "port"], ["agents"]),
    "networkpolicy-protocol-lowercase": ("NetworkPolicy", "kubezonnet-server",
                                         ["spec", "ingress", 0, "ports", 0, "protocol"], "tcp"),
    "networkpolicy-ipblock-without-cidr": ("NetworkPolicy", "kubezonnet-server",
                                           ["spec", "ingress", 0, "from", 0, "ipBlock", "cidr"],
                                           DELETE),
}


def mutate(case, paths):
    kind, name, path, value = CASES[case]
    obj = find(load(paths), kind, name)
    set_path(obj["object"], path, value)
    obj["source"] += f" ({case})"
    return [obj]


def main():
    cmd, *rest = sys.argv[1:] or [""]
    if cmd == "objects":
        out = load(rest)
    elif cmd == "merge":
        out = merged(rest[0], rest[1:])
    elif cmd == "mutate":
        out = mutate(rest[0], rest[1:])
    elif cmd == "mutate-all":
        out = [o for case in CASES for o in mutate(case, rest)]
    elif cmd == "cases":
        print("\n".join(CASES))
        return
    else:
        sys.exit(__doc__)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
