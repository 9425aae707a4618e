#!/usr/bin/env python3
"""PromQL that kubezonnet ships, checked against a real Prometheus (test/rules.sh).

  promql.py rules-file OUT        spec.groups of deploy/prometheus-rules.yaml as a plain
                                  Prometheus rules file (for promtool)
  promql.py exprs                 every expression: the rules', the dashboard's targets (Grafana
                                  variables substituted) and README.md's ```promql blocks, as
                                  JSON lines {"where": ..., "expr": ...}
  promql.py parse URL             each expression of `exprs` (stdin) is queried at URL; a TAP
                                  line per expression, "not ok" naming it if Prometheus refuses it
  promql.py live URL              the main recording rules' expressions, with the recorded series
                                  they use written out, return at least one series from a
                                  Prometheus at URL that scrapes a real server: a TAP line each

`live` is for test/server_e2e.sh: it needs only python3 and the Prometheus URL (run it where
that URL is reachable, e.g. `in_pod "$A" python3 test/rules/promql.py live URL`).
"""
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(TOP, "deploy", "prometheus-rules.yaml")
DASHBOARD = os.path.join(TOP, "deploy", "grafana-dashboard.json")
README = os.path.join(TOP, "README.md")

# Grafana's variables, replaced by what Grafana would put there.
GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
                "__range_s": "3600", "namespace": ".*"}

# The recording rules the live check evaluates: the main ones an operator looks at.
LIVE = [
    "namespace_workload_workload_kind:workload_cross_zone_network_traffic_bytes:rate5m",
    "src_zone_dst_zone:zone_network_traffic_bytes:rate5m",
    "namespace_workload_workload_kind:kubezonnet_cross_zone_cost_dollars:rate5m",
    "namespace_pod:pod_cross_zone_network_traffic_bytes:rate5m",
]


def groups():
    import yaml  # python3-yaml; only the rules need it

    with open(RULES) as f:
        return yaml.safe_load(f)["spec"]["groups"]


def rules_file(out):
    import yaml

    with open(out, "w") as f:
        yaml.safe_dump({"groups": groups()}, f, sort_keys=False)


def grafana_subst(expr):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in GRAFANA_VARS:
            raise SystemExit(f"dashboard: unknown Grafana variable ${name} in {expr}")
        return GRAFANA_VARS[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def readme_queries():
    """Every line of README.md's ```promql blocks, and of the plain blocks under "Queries"."""
    text = open(README).read()
    m = re.search(r"^### Queries\n(.*?)(?=^#{2,3} )", text, re.S | re.M)
    if not m:
        raise SystemExit("README.md has no \"### Queries\" section")
    blocks = re.findall(r"^```(?:promql)?\n(.*?)^```", m.group(1), re.S | re.M)
    outside = text[:m.start(1)] + text[m.end(1):]
    blocks += re.findall(r"^[ \t]*```promql\n(.*?)^[ \t]*```", outside, re.S | re.M)
    out = []
    for block in blocks:
        out += [line.strip() for line in block.splitlines() if line.strip()]
    return out


def exprs():
    out = []
    for g in groups():
        for r in g["rules"]:
            out.append({"where": f"rule {r.get('record') or r.get('alert')}", "expr": r["expr"]})
    dash = json.load(open(DASHBOARD))
    panels = [p for p in dash["panels"]]
    panels += [q for p in dash["panels"] for q in p.get("panels", [])]
    for p in panels:
        for t in p.get("targets", []):
            out.append({"where": f"dashboard \"{p['title']}\" {t.get('refId')}",
                        "expr": grafana_subst(t["expr"])})
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if v["type"] == "query":
            q = q["query"] if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            if not m:
                raise SystemExit(f"dashboard variable {v['name']}: not label_values(SELECTOR, LABEL): {q}")
            out.append({"where": f"dashboard variable {v['name']}", "expr": m.group(1)})
    for i, q in enumerate(readme_queries()):
        out.append({"where": f"README.md Queries #{i + 1}", "expr": q})
    return out


def query(url, expr):
    data = urllib.parse.urlencode({"query": expr}).encode()
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v1/query", data, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        try:
            return json.load(e)
        except ValueError:
            return {"status": "error", "error": f"HTTP {e.code}"}
    except (OSError, ValueError) as e:
        return {"status": "error", "error": str(e)}


def parse(url):
    failed = 0
    items = [json.loads(line) for line in sys.stdin if line.strip()]
    for it in items:
        r = query(url, it["expr"])
        if r.get("status") == "success":
            print(f"ok - prometheus accepts: {it['where']}")
        else:
            failed += 1
            print(f"not ok - prometheus accepts: {it['where']}")
            print(f"#   {it['expr']}")
            print(f"#   {r.get('errorType', '')}: {r.get('error', r)}")
    return 1 if failed else 0


def expand(expr, records, depth=0):
    """Writes out every recorded series an expression uses as its own expression, so that a
    Prometheus without the rules loaded evaluates what the rules would record."""
    if depth > 5:
        raise SystemExit("recording rules refer to each other too deep")
    for name, e in records.items():
        expr = re.sub(r"(?<![\w:])" + re.escape(name) + r"(?![\w:])",
                      lambda _: f"({expand(e, records, depth + 1)})", expr)
    return expr


def live(url):
    records = {r["record"]: r["expr"] for g in groups() for r in g["rules"] if "record" in r}
    failed = 0
    for name in LIVE:
        expr = expand(records[name], records)
        r = query(url, expr)
        result = r.get("data", {}).get("result", []) if r.get("status") == "success" else None
        if result:
            ex = result[0]
            labels = ",".join(f"{k}={v}" for k, v in sorted(ex["metric"].items()))
            print(f"ok - rules on live data: {name} ({len(result)} series, e.g. {{{labels}}} {ex['value'][1]})")
        else:
            failed += 1
            print(f"not ok - rules on live data: {name}")
            print(f"#   {expr}")
            print(f"#   {r.get('error') if result is None else 'no series'}")
    return 1 if failed else 0


def main():
    cmd, *rest = sys.argv[1:] or [""]
    if cmd == "rules-file" and len(rest) == 1:
        rules_file(rest[0])
    elif cmd == "exprs" and not rest:
        for e in exprs():
            print(json.dumps(e))
    elif cmd == "parse" and len(rest) == 1:
        sys.exit(parse(rest[0]))
    elif cmd == "live" and len(rest) == 1:
        sys.exit(live(rest[0]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
