#!/usr/bin/env python3
"""Turns on the optional agent secret exactly as the comments of the manifests say, and plays
the kubelet's part for the Secret volume (test/manifests.sh, test/containers.sh).

  enable_secret.py variant OUTDIR FILE...
      FILE... are manifests (deploy/server.yaml and deploy/agent.yaml, or deploy.yaml, which
      holds both) whose comments say how to turn the secret on: a `kubectl create secret
      generic` command, `add "--agent-secret-file", "PATH" to args`, and commented blocks of a
      Secret volume and of its volumeMounts. Writes OUTDIR/<name of FILE> for each FILE, the
      FILE as a user who follows the comments has it: those blocks uncommented (the `# ` taken
      off, nothing else) and the two args appended to the args of every container that mounts
      the volume. Writes OUTDIR/secret.json, the Secret the kubectl command creates (run with
      --dry-run=client where kubectl exists; built the same way otherwise), with a fresh value.
      Prints one line, "ok: ...", or exits 1 with the first thing that does not hold:
        - the kubectl command is in the comments once, `kubectl -n NS create secret generic
          NAME --from-literal=KEY=VALUE`, VALUE "$(openssl rand -hex N)";
        - the args instruction is in the comments once;
        - every FILE has at least one commented volume of that Secret and one commented
          volumeMount of it; a commented item is `- name: VOLUME` and the lines under it,
          with the `volumes:`/`volumeMounts:` line above it if that is commented too;
        - the uncommented file parses, and differs from the FILE only by those volumes,
          mounts and args (anything else uncommented or moved is an error);
        - the Deployment's server container and the DaemonSet's agent container, and no
          other, mount it: readOnly, no subPath, the mountPath the directory of the
          --agent-secret-file path and KEY its file name, the Secret name and the namespace
          the kubectl command's, the same path and Secret in both;
        - the file a Secret volume gives (defaultMode, else 0644, owner root) is readable by
          each container's user (the server's is not root and the pod sets no fsGroup);
        - the secret the command makes is one line of 16 to 1,024 bytes (secret.h).

  enable_secret.py kubelet MANIFEST OUT SECRET.json ROOT [--default-mode MODE]
      The kubelet's part for Secret volumes, for test/podman.lib.sh's podman_k8s (which knows
      hostPath volumes only): writes each pod's Secret volume under ROOT as the kubelet's
      AtomicWriter does (a directory as the tmpfs is mounted, 1777; the keys' files, mode
      defaultMode or 0644, owner root, in a `..<time>` directory, 0755; `..data` a symlink to
      it; each key a symlink to `..data/KEY`), and writes MANIFEST to OUT with each Secret
      volume replaced by a hostPath volume of that directory's kubelet path. Prints the
      `hostpath:PATH=DIR` arguments podman_k8s needs, one a line. Run again with another
      SECRET.json, it updates the volumes as the kubelet does when a Secret changes: a new
      `..<time>` directory, `..data` replaced by rename(2), the old one removed.
      --default-mode MODE: as if every Secret volume said defaultMode: MODE.
"""
import base64
import datetime
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

# secret.h: SECRET_MIN_BYTES, SECRET_MAX_BYTES.
SECRET_MIN_BYTES, SECRET_MAX_BYTES = 16, 1024
# The containers that must get the secret: the server and every agent.
WANT = {("Deployment", "kubezonnet-server", "server"), ("DaemonSet", "kubezonnet-agent", "agent")}
SECRET_DEFAULT_MODE = 0o644  # the Kubernetes API's default for a Secret volume's defaultMode
KUBELET_DIR = "/var/lib/kubelet/pods/{pod}/volumes/kubernetes.io~secret/{volume}"

COMMENT = re.compile(r"^(?P<column> *)#(?P<body>.*)$")
ITEM = re.compile(r"^(?P<dash> *)- name: (?P<name>[a-z0-9-]+) *$")
LIST_KEY = re.compile(r"^(?P<indent> *)(?P<key>volumes|volumeMounts): *$")
ARGS = re.compile(r'\badd ((?:"[^"]*", *)*"[^"]*") to args\b')
OPENSSL_HEX = re.compile(r"^\$\(openssl rand -hex (?P<n>[0-9]+)\)$")


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing a key twice in one mapping, as kubectl's strict field
    validation does (PyYAML would keep the last silently: a `volumeMounts:` line uncommented
    above a container's own would drop its mounts)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class Broken(Exception):
    pass


def fail(msg):
    raise Broken(msg)


def uncomment(line):
    """The text of a `# ` comment line with the `# ` taken off, or None."""
    m = COMMENT.match(line)
    if not m:
        return None
    body = m.group("body")
    if body == "":
        return m.group("column")
    if not body.startswith(" "):
        return None
    return m.group("column") + body[1:]


def comment_text(lines):
    """Every comment block of lines as one line of text each (for the prose instructions)."""
    blocks, cur = [], []
    for line in lines + [""]:
        m = COMMENT.match(line)
        if m:
            cur.append(m.group("body").strip())
        elif cur:
            blocks.append(" ".join(cur))
            cur = []
    return blocks


# ---- what the comments say
def kubectl_command(files):
    """The `kubectl ... create secret generic` command of the comments, as its argv words
    (a trailing backslash continues it on the next comment line)."""
    found = []
    for path, text in files.items():
        lines = text.split("\n")
        for i, line in enumerate(lines):
            m = COMMENT.match(line)
            if not m or not m.group("body").strip().startswith("kubectl "):
                continue
            cmd = m.group("body").strip()
            j = i
            while cmd.endswith("\\"):
                j += 1
                nxt = COMMENT.match(lines[j]) if j < len(lines) else None
                if not nxt:
                    fail(f"{path}:{i + 1}: the kubectl command's continuation is not a comment")
                cmd = cmd[:-1].rstrip() + " " + nxt.group("body").strip()
            found.append((path, i + 1, cmd))
    found = [f for f in found if " create secret " in f[2]]
    if len(found) != 1:
        fail(f"{len(found)} `kubectl ... create secret` commands in the comments of "
             f"{', '.join(files)} (want one): {[f'{p}:{n}' for p, n, _ in found]}")
    return found[0]


def parse_kubectl(where, cmd):
    """namespace, Secret name, key, N of "$(openssl rand -hex N)", and the command's words."""
    try:
        words = shlex.split(cmd)
    except ValueError as e:
        fail(f"{where}: {cmd!r}: {e}")
    namespace, positional, literals = None, [], []
    i = 1
    while i < len(words):
        w = words[i]
        if w in ("-n", "--namespace"):
            namespace = words[i + 1] if i + 1 < len(words) else fail(f"{where}: {w} without a value")
            i += 2
            continue
        if w.startswith("--namespace="):
            namespace = w.split("=", 1)[1]
        elif w.startswith("--from-literal="):
            literals.append(w[len("--from-literal="):])
        elif w.startswith("-"):
            fail(f"{where}: kubectl option {w}: not understood here (teach enable_secret.py)")
        else:
            positional.append(w)
        i += 1
    if positional[:3] != ["create", "secret", "generic"] or len(positional) != 4:
        fail(f"{where}: want `kubectl -n NS create secret generic NAME --from-literal=KEY=VALUE`, got {cmd!r}")
    if namespace is None:
        fail(f"{where}: the kubectl command names no namespace: the Secret would go to the "
             "context's namespace, not the pods'")
    if len(literals) != 1 or "=" not in literals[0]:
        fail(f"{where}: want one --from-literal=KEY=VALUE, got {literals}")
    key, value = literals[0].split("=", 1)
    m = OPENSSL_HEX.match(value)
    if not m:
        fail(f"{where}: the secret's value {value!r}: want \"$(openssl rand -hex N)\"")
    return namespace, positional[3], key, int(m.group("n")), words


def make_secret(namespace, name, key, nbytes, words):
    """The Secret the command creates, with a fresh value (kubectl's own object if it exists)."""
    if shutil.which("openssl"):
        value = subprocess.run(["openssl", "rand", "-hex", str(nbytes)], check=True,
                               capture_output=True, text=True).stdout
        value = value.rstrip("\n")  # "$(...)" drops the trailing newline
    else:
        value = secrets.token_hex(nbytes)  # the same: N random bytes in lower-case hex
    argv = [w if not w.startswith("--from-literal=") else f"--from-literal={key}={value}" for w in words]
    if shutil.which("kubectl"):
        r = subprocess.run(argv + ["--dry-run=client", "-o", "json"], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"the comment's kubectl command fails: {r.stderr.strip()}")
        secret, made_by = json.loads(r.stdout), "kubectl --dry-run=client"
    else:
        secret = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace},
                  "data": {key: base64.b64encode(value.encode()).decode()}}
        made_by = "built here, no kubectl"
    secret["metadata"].pop("creationTimestamp", None)
    return secret, made_by


def args_instruction(files):
    found = []
    for path, text in files.items():
        for block in comment_text(text.split("\n")):
            for m in ARGS.finditer(block):
                found.append((path, json.loads("[" + m.group(1) + "]")))
    if len(found) != 1:
        fail(f"{len(found)} `add \"...\", \"...\" to args` instructions in the comments of "
             f"{', '.join(files)} (want one)")
    return found[0]


# ---- the commented blocks
def commented_items(path, lines):
    """Every commented `- name: X` item: (first line, last line, name, parsed item, list key
    or None), the list key's line included when it is commented just above the item."""
    items = []
    for i, line in enumerate(lines):
        text = uncomment(line)
        m = ITEM.match(text) if text is not None else None
        if not m:
            continue
        column, dash = COMMENT.match(line).group("column"), len(m.group("dash"))
        end = i
        while end + 1 < len(lines):
            nxt = lines[end + 1]
            t = uncomment(nxt)
            if (t is None or COMMENT.match(nxt).group("column") != column or not t.strip()
                    or len(t) - len(t.lstrip(" ")) <= dash):
                break
            end += 1
        start, key = i, None
        if i > 0:
            above = uncomment(lines[i - 1])
            k = LIST_KEY.match(above) if above is not None else None
            if k and COMMENT.match(lines[i - 1]).group("column") == column and len(k.group("indent")) <= dash:
                start, key = i - 1, k.group("key")
        body = "\n".join(uncomment(lines[j]) for j in range(i, end + 1))
        try:
            (item,) = yaml.safe_load(body)
        except (yaml.YAMLError, ValueError, TypeError) as e:
            fail(f"{path}:{i + 1}: the commented item {m.group('name')} does not parse: "
                 f"{' '.join(str(e).split())}")
        items.append((start, end, m.group("name"), item, key))
    return items


def docs_of(text, where):
    try:
        return list(yaml.load_all(text, Loader=StrictLoader))
    except yaml.YAMLError as e:
        fail(f"{where} does not parse: {' '.join(str(e).split())}")


def pod_templates(docs):
    """(index, kind, name, namespace, pod spec) of every workload."""
    for i, d in enumerate(docs):
        if isinstance(d, dict) and d.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            yield i, d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "default"), \
                d["spec"]["template"]["spec"]


def node_get(node, key):
    """The value node of key in a compose MappingNode, or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if k.value == key:
            return v
    return None


def containers_node(doc_node):
    """The compose node of spec.template.spec.containers of a workload document, or None."""
    node = doc_node
    for key in ("spec", "template", "spec", "containers"):
        node = node_get(node, key)
    return node


def add_args(path, text, volumes, extra):
    """text with extra appended to the args of every container that mounts one of volumes."""
    edits = []
    for doc_node in yaml.compose_all(text):
        cs = containers_node(doc_node)
        if cs is None:
            continue
        for c in cs.value:
            mounts = node_get(c, "volumeMounts")
            if not isinstance(mounts, yaml.SequenceNode) or not any(
                    getattr(node_get(m, "name"), "value", None) in volumes for m in mounts.value):
                continue
            name = node_get(c, "name").value
            args = node_get(c, "args")
            if not isinstance(args, yaml.SequenceNode):
                fail(f"{path}: container {name} mounts the secret but has no args list to add to")
            if args.flow_style:
                close = args.end_mark.index - 1
                if text[close] != "]":
                    fail(f"{path}: container {name}: args does not end in ]")
                words = ", ".join(json.dumps(a) for a in extra)
                edits.append((close, (", " if args.value else "") + words))
            else:
                if not args.value:
                    fail(f"{path}: container {name}: an empty block args list")
                first = args.value[0].start_mark
                line_start = text.rindex("\n", 0, first.index) + 1
                dash = text[line_start:first.index]
                if not re.fullmatch(r" *- *", dash):
                    fail(f"{path}: container {name}: args items are not one a line")
                at = text.index("\n", args.value[-1].end_mark.index) + 1
                edits.append((at, "".join(f"{dash}{json.dumps(a)}\n" for a in extra)))
    for at, s in sorted(edits, reverse=True):
        text = text[:at] + s + text[at:]
    return text


def strip_variant(doc, volumes, extra):
    """The variant's document with the secret's volumes, mounts and args taken out again."""
    for _, _, _, _, spec in pod_templates([doc]):
        spec["volumes"] = [v for v in spec.get("volumes", []) if v.get("name") not in volumes]
        for kind in ("containers", "initContainers"):
            for c in spec.get(kind, []):
                mounts = [m for m in c.get("volumeMounts", []) if m.get("name") not in volumes]
                if len(mounts) != len(c.get("volumeMounts", [])):
                    if c.get("args", [])[-len(extra):] != extra:
                        fail(f"container {c.get('name')}: args do not end in {extra}: {c.get('args')}")
                    c["args"] = c["args"][:-len(extra)]
                c["volumeMounts"] = mounts


def drop_empty_lists(doc):
    for _, _, _, _, spec in pod_templates([doc]):
        if spec.get("volumes") == []:
            del spec["volumes"]
        for kind in ("containers", "initContainers"):
            for c in spec.get(kind, []):
                if c.get("volumeMounts") == []:
                    del c["volumeMounts"]


def variant(outdir, paths):
    files = {}
    for p in paths:
        with open(p) as f:
            files[p] = f.read()
    kpath, kline, cmd = kubectl_command(files)
    namespace, secret_name, key, nbytes, words = parse_kubectl(f"{kpath}:{kline}", cmd)
    apath, extra = args_instruction(files)
    if len(extra) != 2 or extra[0] != "--agent-secret-file":
        fail(f"{apath}: the args to add are {extra}, want \"--agent-secret-file\", \"PATH\"")
    secret_path = extra[1]

    # (kind, name, namespace, container, volume, its secret:, the mount, uid, gid, fsGroup, args)
    mounted = []
    for path, text in files.items():
        lines = text.split("\n")
        items = commented_items(path, lines)
        vols = {n: it for s, e, n, it, k in items
                if isinstance(it, dict) and "secret" in it and it["secret"].get("secretName") == secret_name}
        if not vols:
            fail(f"{path}: no commented volume of the Secret {secret_name} (`- name: ...` with "
                 f"`secret: secretName: {secret_name}`)")
        blocks = [(s, e, n, it, k) for s, e, n, it, k in items if n in vols]
        for s, e, n, it, k in blocks:
            if not isinstance(it, dict) or not (("secret" in it) ^ ("mountPath" in it)):
                fail(f"{path}:{s + 1}: the commented item {n} is neither a Secret volume nor a mount")
        if not any("mountPath" in it for _, _, _, it, _ in blocks):
            fail(f"{path}: no commented volumeMount of {', '.join(sorted(vols))}")
        for s, e, _, _, _ in blocks:
            for j in range(s, e + 1):
                lines[j] = uncomment(lines[j])
        out = "\n".join(lines)
        docs_of(out, f"{path} with the secret's blocks uncommented")
        out = add_args(path, out, set(vols), extra)
        base, var = docs_of(text, path), docs_of(out, f"{path}, the variant")
        if len(base) != len(var):
            fail(f"{path}: the variant has {len(var)} documents, the file {len(base)}")
        for b, v in zip(base, var):
            for _, kind, name, ns, spec in pod_templates([v]):
                pod_vols = {x["name"]: x for x in spec.get("volumes", [])}
                for c in spec.get("containers", []) + spec.get("initContainers", []):
                    for m in c.get("volumeMounts", []):
                        if m["name"] in vols:
                            if "secret" not in pod_vols.get(m["name"], {}):
                                fail(f"{path}: {kind}/{name} container {c['name']} mounts "
                                     f"{m['name']}, which is no Secret volume of its pod")
                            psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
                            mounted.append((kind, name, ns, c["name"], m["name"],
                                            pod_vols[m["name"]]["secret"], m,
                                            csc.get("runAsUser", psc.get("runAsUser")),
                                            csc.get("runAsGroup", psc.get("runAsGroup")),
                                            psc.get("fsGroup"), c.get("args", [])))
                for vn in pod_vols:
                    if vn in vols and not any(x[0] == kind and x[1] == name and x[4] == vn for x in mounted):
                        fail(f"{path}: {kind}/{name} has the volume {vn} but no container mounts it")
            strip_variant(v, set(vols), extra)
            drop_empty_lists(v)
            if v != b:
                fail(f"{path}: uncommenting the secret's blocks changed more than the volume, the "
                     f"mount and the args (a block in the wrong place, or other lines uncommented)")
        with open(os.path.join(outdir, os.path.basename(path)), "w") as f:
            f.write(out)

    # ---- they agree
    got = {(k, n, c) for k, n, _, c, *_ in mounted}
    if got != WANT:
        fail(f"containers that mount the secret: {sorted(got)}, want {sorted(WANT)}")
    paths_seen, secrets_seen = set(), set()
    for kind, name, ns, cname, vname, vsecret, m, uid, gid, fsgroup, args in mounted:
        w = f"{kind}/{name} container {cname}"
        if ns != namespace:
            fail(f"{w}: namespace {ns}, but the kubectl command creates the Secret in {namespace}")
        unknown = set(vsecret) - {"secretName", "defaultMode"}
        if unknown:
            fail(f"{w}: the Secret volume says {sorted(unknown)}: not checked here (teach enable_secret.py)")
        if vsecret["secretName"] != secret_name:
            fail(f"{w}: secretName {vsecret['secretName']}, the kubectl command creates {secret_name}")
        if m.get("readOnly") is not True:
            fail(f"{w}: the mount of {vname} is not readOnly: true")
        if "subPath" in m or "subPathExpr" in m:
            fail(f"{w}: the mount of {vname} has a subPath: a Secret update never reaches it")
        if os.path.dirname(secret_path) != m["mountPath"].rstrip("/"):
            fail(f"{w}: mountPath {m['mountPath']} is not the directory of --agent-secret-file {secret_path}")
        if os.path.basename(secret_path) != key:
            fail(f"--agent-secret-file {secret_path}: the Secret volume holds the file {key} "
                 f"(--from-literal={key}=...), not {os.path.basename(secret_path)}")
        if args.count("--agent-secret-file") != 1:
            fail(f"{w}: --agent-secret-file {args.count('--agent-secret-file')} times in args")
        mode = vsecret.get("defaultMode", SECRET_DEFAULT_MODE)
        if type(mode) is not int or not 0 <= mode <= 0o777:
            fail(f"{w}: defaultMode {mode!r}: want a mode from 0 to 0777 (an integer; 0644 in YAML is octal)")
        # The kubelet writes the files as root:root with the mode; with an fsGroup it gives
        # them to that group, adds g+r, and the container's user gets the group. The owner's
        # bits apply to root, the group's to a member, the others' to anyone else (no
        # container here keeps CAP_DAC_OVERRIDE).
        if uid == 0:
            readable = mode & 0o400
        elif fsgroup is not None:
            readable = True
        elif gid == 0:
            readable = mode & 0o040
        else:
            readable = mode & 0o004
        if uid is None or not readable:
            fail(f"{w}: runs as {uid}:{gid} (fsGroup {fsgroup}), the file is root's with mode "
                 f"{mode:04o}: it cannot read it")
        paths_seen.add(m["mountPath"])
        secrets_seen.add(vsecret["secretName"])
    if len(paths_seen) != 1 or len(secrets_seen) != 1:
        fail(f"the server and the agents mount different things: {paths_seen} {secrets_seen}")

    secret, made_by = make_secret(namespace, secret_name, key, nbytes, words)
    value = base64.b64decode(secret.get("data", {}).get(key, ""))
    if list(secret.get("data", {})) != [key] or not SECRET_MIN_BYTES <= len(value) <= SECRET_MAX_BYTES \
            or b"\n" in value:
        fail(f"the kubectl command's Secret holds {sorted(secret.get('data', {}))}, {len(value)} "
             f"bytes: want one line of {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes in {key}")
    with open(os.path.join(outdir, "secret.json"), "w") as f:
        json.dump(secret, f)
    print(f"ok: Secret {namespace}/{secret_name} ({made_by}, {len(value)} bytes in {key}) mounted "
          f"read-only at {paths_seen.pop()} by {', '.join(f'{k}/{n}/{c}' for k, n, _, c, *_ in sorted(mounted))}; "
          f"args + {' '.join(extra)}")


# ---- the kubelet's part
def atomic_write(target, files, mode):
    """What the kubelet's AtomicWriter does to a Secret volume's directory (create or update)."""
    if not os.path.isdir(target):
        os.makedirs(target)
        os.chmod(target, 0o1777)  # the volume is a tmpfs; a fresh tmpfs is 1777
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.")
    ts = tempfile.mkdtemp(prefix=stamp, dir=target)
    os.chmod(ts, 0o755)
    for name, content in files.items():
        p = os.path.join(ts, name)
        with open(p, "wb") as f:
            f.write(content)
        os.chmod(p, mode)
    data, tmp = os.path.join(target, "..data"), os.path.join(target, "..data_tmp")
    old = os.readlink(data) if os.path.islink(data) else None
    os.symlink(os.path.basename(ts), tmp)
    os.rename(tmp, data)
    for name in files:
        if not os.path.lexists(os.path.join(target, name)):
            os.symlink(os.path.join("..data", name), os.path.join(target, name))
    if old:
        shutil.rmtree(os.path.join(target, old))


def kubelet(manifest, out, secret_file, root, default_mode=None):
    with open(secret_file) as f:
        secret = json.load(f)
    files = {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
    with open(manifest) as f:
        docs = [d for d in yaml.safe_load_all(f)]
    hostpaths = []
    for _, kind, name, ns, spec in pod_templates(docs):
        for v in spec.get("volumes", []):
            if "secret" not in v:
                continue
            s = v.pop("secret")
            unknown = set(s) - {"secretName", "defaultMode"}
            if unknown:
                fail(f"{kind}/{name} volume {v['name']}: {sorted(unknown)}: not translated")
            if (ns, s["secretName"]) != (secret["metadata"].get("namespace"), secret["metadata"]["name"]):
                fail(f"{kind}/{name} volume {v['name']}: Secret {ns}/{s['secretName']} is not the one given "
                     f"({secret['metadata'].get('namespace')}/{secret['metadata']['name']}): the pod would not start")
            mode = default_mode if default_mode is not None else s.get("defaultMode", SECRET_DEFAULT_MODE)
            if type(mode) is not int or not 0 <= mode <= 0o777:
                fail(f"{kind}/{name} volume {v['name']}: defaultMode {mode!r}: not translated")
            pod = f"{kind.lower()}-{name}"
            target = os.path.join(root, pod, v["name"])
            atomic_write(target, files, mode)
            path = KUBELET_DIR.format(pod=pod, volume=v["name"])
            v["hostPath"] = {"path": path, "type": "Directory"}
            hostpaths.append(f"hostpath:{path}={target}")
    with open(out, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    print("\n".join(hostpaths))


def main():
    try:
        if len(sys.argv) >= 4 and sys.argv[1] == "variant":
            variant(sys.argv[2], sys.argv[3:])
        elif len(sys.argv) in (6, 8) and sys.argv[1] == "kubelet":
            mode = None
            if len(sys.argv) == 8:
                if sys.argv[6] != "--default-mode":
                    sys.exit(__doc__)
                mode = int(sys.argv[7], 8)
            kubelet(*sys.argv[2:6], default_mode=mode)
        else:
            sys.exit(__doc__)
    except Broken as e:
        sys.exit(f"enable_secret.py: {e}")


if __name__ == "__main__":
    main()
