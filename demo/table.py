#!/usr/bin/env python3
"""The live table of `make demo`, read from the server's /metrics (the server's numbers, not
the traffic generators'): top pods and workloads by cross-zone bytes per second, the
zone-to-zone matrix, totals, and the queries to try.

  table.py URL                                 refresh every 2 s until interrupted
  table.py URL --final SECONDS [--report FILE] one table of the whole run (rates are totals
                                               over SECONDS); --report writes its numbers as JSON
"""
import json
import os
import re
import sys
import time
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def human(v):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(v) < 1000:
            return f"{v:7.1f} {unit}"
        v /= 1000
    return f"{v:7.1f} PB"


def render(now, before, elapsed, url, final):
    def rate(name, key):
        cur = now.get((name, key), 0.0)
        old = before.get((name, key), 0.0 if final else cur)
        return (cur - old) / elapsed if elapsed > 0 else 0.0

    lines = []
    pods = [(l, v) for (n, l), v in now.items() if n == "pod_cross_zone_network_traffic_bytes_total"]
    pods.sort(key=lambda x: (rate("pod_cross_zone_network_traffic_bytes_total", x[0]), x[1]), reverse=True)
    lines.append(f"kubezonnet demo   metrics: {url}   " + ("final" if final else "Ctrl-C stops and cleans up"))
    lines.append("")
    lines.append(f"{'Top pods by cross-zone traffic':<48} {'per second':>12} {'total':>12}")
    for l, v in pods[:8]:
        d = dict(l)
        lines.append(f"  {d['namespace'] + '/' + d['pod']:<46} {human(rate('pod_cross_zone_network_traffic_bytes_total', l)) + '/s':>12} {human(v):>12}")
    wl = {}
    for (n, l), v in now.items():
        if n == "workload_cross_zone_network_traffic_bytes_total":
            d = dict(l)
            k = f"{d['namespace']}/{d['workload']} ({d['workload_kind']}, {d['direction']})"
            wl[k] = (wl.get(k, (0, 0))[0] + rate(n, l), wl.get(k, (0, 0))[1] + v)
    lines.append("")
    lines.append(f"{'Top workloads by cross-zone traffic':<48} {'per second':>12} {'total':>12}")
    for k, (r, v) in sorted(wl.items(), key=lambda x: x[1], reverse=True)[:6]:
        if v > 0:
            lines.append(f"  {k:<46} {human(r) + '/s':>12} {human(v):>12}")
    zones = {}
    for (n, l), v in now.items():
        if n == "zone_network_traffic_bytes_total":
            d = dict(l)
            zones[(d["src_zone"], d["dst_zone"])] = (rate(n, l), v)
    names = sorted({z for pair in zones for z in pair})
    lines.append("")
    lines.append("Zone to zone, bytes per second (rows send, columns receive)")
    lines.append(" " * 12 + "".join(f"{z:>14}" for z in names))
    for s in names:
        lines.append(f"  {s:<10}" + "".join(f"{human(zones.get((s, d), (0, 0))[0]) + '/s':>14}" for d in names))
    cross = sum(r for (s, d), (r, v) in zones.items() if s != d)
    total = sum(r for (r, v) in zones.values())
    cross_t = sum(v for (s, d), (r, v) in zones.items() if s != d)
    total_t = sum(v for (r, v) in zones.values())
    lines.append("")
    lines.append(f"Totals: cross-zone {human(cross)}/s of {human(total)}/s"
                 f" ({100 * cross / total if total else 0:.0f}%); since start {human(cross_t)} of {human(total_t)}")
    lines.append("")
    lines.append("Try in Prometheus (or curl the metrics URL):")
    lines.append("  topk(20, rate(pod_cross_zone_network_traffic_bytes_total[5m])) / 1e6")
    lines.append("  sum by (src_zone, dst_zone) (rate(zone_network_traffic_bytes_total[5m]))")
    return "\n".join(lines), pods, wl, zones


def main():
    url = sys.argv[1]
    if len(sys.argv) > 2 and sys.argv[2] == "--final":
        duration = float(sys.argv[3])
        report = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--report" else None
        now = scrape(url)
        text, pods, wl, zones = render(now, {}, duration, url, True)
        print(text, flush=True)
        if report:
            with open(report, "w") as f:
                json.dump({
                    "pods": {dict(l)["namespace"] + "/" + dict(l)["pod"]: v for l, v in pods},
                    "top_pod": (dict(pods[0][0])["namespace"] + "/" + dict(pods[0][0])["pod"]) if pods else None,
                    "zones": {s + ">" + d: v for (s, d), (r, v) in zones.items()},
                }, f, indent=1)
        return
    interactive = sys.stdout.isatty()
    before, t_before = None, time.monotonic()
    while True:
        # The demo's address exists only on its link to this host: once the demo is gone,
        # stop rather than send requests towards the default route.
        if not os.path.exists("/sys/class/net/kzd-host"):
            print("the demo's network is gone; stopping", file=sys.stderr)
            return
        try:
            now = scrape(url)
        except OSError as e:
            print(f"waiting for the server: {e}", file=sys.stderr)
            time.sleep(1)
            continue
        t = time.monotonic()
        if before is not None:
            text = render(now, before, t - t_before, url, False)[0]
            if interactive:
                sys.stdout.write("\033[H\033[2J")
            print(text + ("" if interactive else "\n"), flush=True)
        before, t_before = now, t
        time.sleep(2)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
