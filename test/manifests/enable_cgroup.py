#!/usr/bin/env python3
"""Switches the agent to the socket-level hook exactly as deploy/agent.yaml's comments say
(test/containers.sh runs what this writes).

  enable_cgroup.py MANIFEST OUT
      MANIFEST holds the agent's DaemonSet (deploy.yaml, deploy/agent.yaml, or a variant of
      them, such as enable_secret.py's). Its comments say `put "ARG", ... in args` once, and
      hold a commented volumeMount and a commented volume named host-cgroup, each on one line
      (`# - {name: host-cgroup, ...}`). Writes OUT, MANIFEST as a user who follows the
      comments has it: those two lines uncommented (the `# ` taken off, nothing else) and the
      ARGs appended to the agent container's args. Prints one line, "ok: ...", or exits 1 with
      the first thing that does not hold:
        - the instruction is there once, and names --hook cgroup and a --cgroup DIR;
        - the commented volume and mount are there once each, and uncommented they parse;
        - the file then differs from MANIFEST only by that volume and mount;
        - the mount is the agent container's, readOnly, at DIR (or a parent of it); the
          volume is a hostPath of /sys/fs/cgroup, a Directory.
"""
import re
import sys

import yaml

ARGS = re.compile(r'\bput ((?:"[^"]*", *)*"[^"]*") in args\b')
LINE = re.compile(r"^(?P<column> *)# (?P<item>- \{name: host-cgroup,.*\}) *$")


def fail(msg):
    print(f"enable_cgroup.py: {msg}", file=sys.stderr)
    sys.exit(1)


def agent(docs):
    for d in docs:
        if d and d.get("kind") == "DaemonSet" and d["metadata"]["name"] == "kubezonnet-agent":
            spec = d["spec"]["template"]["spec"]
            for c in spec["containers"]:
                if c["name"] == "agent":
                    return spec, c
    fail("no DaemonSet kubezonnet-agent with a container agent")


def main():
    if len(sys.argv) != 3:
        fail("usage: enable_cgroup.py MANIFEST OUT")
    text = open(sys.argv[1]).read()
    comments = " ".join(l.split("#", 1)[1].strip() for l in text.splitlines() if l.lstrip().startswith("#"))
    found = ARGS.findall(comments)
    if len(found) != 1:
        fail(f"the args instruction is in the comments {len(found)} times, want once")
    args = re.findall(r'"([^"]*)"', found[0])
    if args[:2] != ["--hook", "cgroup"] or len(args) != 4 or args[2] != "--cgroup":
        fail(f"the instruction's args are {args}, want --hook cgroup --cgroup DIR")
    lines, n = [], 0
    for l in text.splitlines():
        m = LINE.match(l)
        if m:
            l, n = m["column"] + m["item"], n + 1
        lines.append(l)
    if n != 2:
        fail(f"{n} commented host-cgroup lines, want a volume and a mount")
    before = list(yaml.safe_load_all(text))
    try:
        after = list(yaml.safe_load_all("\n".join(lines) + "\n"))
    except yaml.YAMLError as e:
        fail(f"uncommented, the file does not parse: {e}")
    spec, c = agent(after)
    mounts = [m for m in c.get("volumeMounts", []) if m.get("name") == "host-cgroup"]
    vols = [v for v in spec.get("volumes", []) if v.get("name") == "host-cgroup"]
    if len(mounts) != 1 or len(vols) != 1:
        fail(f"the agent container has {len(mounts)} host-cgroup mounts and {len(vols)} volumes, want 1 and 1")
    c["volumeMounts"].remove(mounts[0])
    spec["volumes"].remove(vols[0])
    if after != before:
        fail("uncommenting changed more than the host-cgroup volume and mount")
    m, v = mounts[0], vols[0]
    path = m.get("mountPath", "")
    if m.get("readOnly") is not True or not (args[3] == path or args[3].startswith(path.rstrip("/") + "/")):
        fail(f"the mount {m} is not read-only at {args[3]} or a parent of it")
    if v.get("hostPath") != {"path": "/sys/fs/cgroup", "type": "Directory"}:
        fail(f"the volume {v} is not the hostPath Directory /sys/fs/cgroup")
    c["volumeMounts"].append(m)
    spec["volumes"].append(v)
    c["args"] = list(c.get("args", [])) + args
    with open(sys.argv[2], "w") as f:
        yaml.safe_dump_all(after, f, sort_keys=False)
    print(f"ok: args {' '.join(c['args'])}; {path} <- hostPath {v['hostPath']['path']} (read-only)")


main()
