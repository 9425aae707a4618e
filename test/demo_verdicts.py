#!/usr/bin/env python3
"""Judges a demo report (make demo DEMO_REPORT=FILE): one line per verdict, "NAME ok|bad
WHY". exact: every pod's cross-zone bytes in the table equal the nftables counters inside
the nodes (and at least five pods send across zones); top: the noisy talker comes first;
same: the pod that talks only within its zone shows no cross-zone bytes.

  demo_verdicts.py REPORT
"""
import json
import sys

r = json.load(open(sys.argv[1]))
pods, oracle = r["pods"], r["oracle"]
bad = [f"{p}: table {pods.get(p, 0):.0f}, nftables {o}" for p, o in oracle.items() if pods.get(p, 0) != o]
sent = [p for p, o in oracle.items() if o > 0]
print("exact", "ok" if not bad and len(sent) >= 5 else "bad", "; ".join(bad) or f"{len(sent)} pods sending across zones")
print("top", "ok" if r["top_pod"] == "batch/report-29000000-x7k2q" else "bad", r["top_pod"])
print("same", "ok" if oracle.get("shop/cache-0") == 0 and pods.get("shop/cache-0", 0) == 0 else "bad",
      f"cache-0: table {pods.get('shop/cache-0', 0)}, nftables {oracle.get('shop/cache-0')}")
