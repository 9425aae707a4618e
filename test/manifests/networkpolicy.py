#!/usr/bin/env python3
"""Checks deploy/networkpolicy.yaml against the manifests it protects (test/manifests.sh).

  networkpolicy.py POLICY PERZONE.json INSTALL_FILE... -- BASE_FILE...

POLICY is the optional NetworkPolicy file; PERZONE.json the rendered per-zone variant
(collect.py's format); INSTALL_FILE... the installation's objects (base and optional pieces);
BASE_FILE... the files deploy/kustomization.yaml lists. Prints "ok", or exits with the first
mismatch (an AssertionError naming it).

What it checks, reading every value from the manifests rather than repeating it:
  - the file holds one networking.k8s.io/v1 NetworkPolicy, in the server's namespace;
  - its podSelector (non-empty matchLabels) selects the server pod template, not the agents';
  - policyTypes is [Ingress] (the server's egress, to the API server, stays open);
  - exactly two rules, one TCP port each, with explicit peers: the port the agents reach
    (the DaemonSet's --server port, through the Service's targetPort, to the container port)
    and the port Prometheus scrapes (the ServiceMonitor's endpoint port, likewise), a named
    port resolved on the server container, a number equal to one of its containerPorts;
  - the agents' peers are ipBlocks only (agents use the host network), each a network in
    canonical form that is not 0.0.0.0/0, and the header comment names the example block;
  - the metrics peers are namespaceSelectors naming one namespace by kubernetes.io/metadata.name,
    and the header comment documents that namespace;
  - the kubelet probes the header says need no rule are on the metrics port;
  - it is not applied by default: not in the base's resources, not in deploy.yaml (nor in
    deploy/gen-deploy-yaml.sh's list), not in the per-zone rendering.
"""
import ipaddress
import json
import re
import sys

import yaml

NAMESPACE_LABEL = "kubernetes.io/metadata.name"
# RFC 1123 label: what a namespace name may be.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f)
                if d and d.get("kind") not in ("Kustomization", "Component")]


def main():
    policy_file, perzone, *rest = sys.argv[1:]
    install, base = rest[:rest.index("--")], rest[rest.index("--") + 1:]
    objs = [o for f in install for o in load(f)]

    def one(kind, name):
        hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(hits) == 1, f"{len(hits)} {kind}/{name}"
        return hits[0]

    svc, dep = one("Service", "kubezonnet-server"), one("Deployment", "kubezonnet-server")
    ds, sm = one("DaemonSet", "kubezonnet-agent"), one("ServiceMonitor", "kubezonnet-server")

    mine = load(policy_file)
    assert [o["kind"] for o in mine] == ["NetworkPolicy"], \
        f"{policy_file} holds {[o['kind'] for o in mine]}, want one NetworkPolicy"
    policy = mine[0]
    assert policy["apiVersion"] == "networking.k8s.io/v1", policy["apiVersion"]
    assert policy["metadata"]["namespace"] == dep["metadata"]["namespace"], \
        "not in the server's namespace"

    # Labels only: an empty selector (every pod of the namespace) or expressions are refused
    # rather than interpreted here.
    selector = policy["spec"]["podSelector"]
    assert set(selector) == {"matchLabels"} and selector["matchLabels"], \
        f"podSelector must be non-empty matchLabels: {selector}"

    def selects(labels):
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items())

    assert selects(dep["spec"]["template"]["metadata"]["labels"]), \
        "podSelector does not select the server pods"
    assert not selects(ds["spec"]["template"]["metadata"]["labels"]), \
        "podSelector selects the agent pods too"
    assert policy["spec"].get("policyTypes") == ["Ingress"], \
        f"policyTypes {policy['spec'].get('policyTypes')}: Ingress only (the server must reach the API server)"

    (container,) = dep["spec"]["template"]["spec"]["containers"]
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}

    def container_port(port, what):
        """A port as a NetworkPolicy or a Service's targetPort gives it, on the server pod."""
        if isinstance(port, str):
            assert port in by_name, \
                f"{what}: {port!r} is not a port name of the server container {sorted(by_name)}"
            return by_name[port]
        assert port in by_name.values(), \
            f"{what}: {port} is not a containerPort of the server {sorted(by_name.values())}"
        return port

    def through_service(service_port, what):
        return container_port(service_port.get("targetPort", service_port["port"]),
                              f"{what} (Service targetPort)")

    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    agents_service_port = int(args[args.index("--server") + 1].rsplit(":", 1)[1])
    (sp,) = [p for p in svc["spec"]["ports"] if p["port"] == agents_service_port]
    agents_port = through_service(sp, "agents")
    (sp,) = [p for p in svc["spec"]["ports"] if p["name"] == sm["spec"]["endpoints"][0]["port"]]
    metrics_port = through_service(sp, "metrics")
    assert agents_port != metrics_port

    # A rule without `from` admits every source, one without `ports` every port.
    peers = {}
    for i, rule in enumerate(policy["spec"]["ingress"]):
        assert rule.get("from"), f"ingress[{i}] has no from: it admits every source"
        assert rule.get("ports") and len(rule["ports"]) == 1, \
            f"ingress[{i}]: one port per rule, got {rule.get('ports')}"
        (p,) = rule["ports"]
        assert p.get("protocol", "TCP") == "TCP" and "endPort" not in p, f"ingress[{i}]: {p}"
        n = container_port(p["port"], f"ingress[{i}] port")
        assert n not in peers, f"two rules for port {n}"
        peers[n] = rule["from"]
    assert set(peers) == {agents_port, metrics_port}, \
        f"rules for ports {sorted(peers)}, want the agents' {agents_port} and the metrics' {metrics_port}"

    with open(policy_file) as f:
        text = f.read()
    header = text[:text.index("\napiVersion:")]

    for peer in peers[agents_port]:
        assert set(peer) == {"ipBlock"}, \
            f"agent port peer {peer}: host-network agents are node addresses, an ipBlock"
        block = peer["ipBlock"]["cidr"]
        net = ipaddress.ip_network(block, strict=True)
        assert str(net) == block, f"{block} is not in canonical form ({net})"
        assert net.prefixlen > 0, f"{net} admits every address"
        assert block in header, f"the header does not name the example block {block}"

    for peer in peers[metrics_port]:
        assert set(peer) == {"namespaceSelector"}, \
            f"metrics peer {peer}: a namespaceSelector (alone: a podSelector beside it is the user's choice)"
        ns_selector = peer["namespaceSelector"]
        assert set(ns_selector) == {"matchLabels"} and list(ns_selector["matchLabels"]) == [NAMESPACE_LABEL], \
            f"metrics namespaceSelector {ns_selector}: one namespace, by {NAMESPACE_LABEL}"
        namespace = ns_selector["matchLabels"][NAMESPACE_LABEL]
        assert isinstance(namespace, str) and DNS_LABEL.fullmatch(namespace), f"namespace {namespace!r}"
        assert f"`{namespace}`" in header, \
            f"the header does not document the monitoring namespace `{namespace}`"

    for probe in ("readinessProbe", "livenessProbe"):
        assert container_port(container[probe]["httpGet"]["port"], probe) == metrics_port, \
            f"{probe} is not on the metrics port, as the header says"

    assert policy_file not in base, f"{policy_file} is in deploy/kustomization.yaml's resources"
    with open("deploy/gen-deploy-yaml.sh") as f:
        assert "networkpolicy" not in f.read(), "deploy/gen-deploy-yaml.sh puts it in deploy.yaml"
    assert not any(d["kind"] == "NetworkPolicy" for d in load("deploy.yaml")), \
        "deploy.yaml holds a NetworkPolicy"
    with open(perzone) as f:
        assert not any(o["object"]["kind"] == "NetworkPolicy" for o in json.load(f)), \
            "the per-zone rendering holds a NetworkPolicy"
    print("ok")


if __name__ == "__main__":
    main()
