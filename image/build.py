#!/usr/bin/env python3
"""image/build.py: builds kubezonnet's OCI image from files, without a base image or a daemon.

The image is the two binaries plus what they need at run time, taken from this machine's
Debian packages (distroless, apko and ko are the models):

  base layer  the ELF interpreter and the shared libraries ldd resolves (glibc: the loader and
              libc.so.6), their packages' copyright files, the CA bundle rebuilt from the
              ca-certificates package's own certificates (never from local additions),
              /etc/passwd, /etc/group (root and nonroot 65532), /etc/nsswitch.conf, and a link
              from OpenSSL's compiled-in default CA file to the bundle
  app layer   /kubezonnet-agent, /kubezonnet-server (as built, less their symbol tables and
              debug information: `strip --strip-all`, 1.3 MB of 6.1; the build tree keeps
              them for debugging), LICENSE

Everything is deterministic: tar entries sorted, owners 0:0 (the nonroot home 65532),
mtimes SOURCE_DATE_EPOCH, gzip with mtime 0 and no file name, JSON with sorted keys. So two
builds of one commit give one digest, and the digest is the build's fingerprint.

The output is one tar holding an OCI image layout (oci-layout, index.json, blobs/sha256/) and
the manifest.json `docker save` writes, pointing at the same blobs: podman load, docker load
(old and new), skopeo copy oci-archive:, ctr images import and kind load image-archive all
read it.

Usage: image/build.py --out FILE --name NAME:TAG --version V [--revision R] [--source URL]
                      [--license FILE] AGENT SERVER
       image/build.py --list ... AGENT SERVER       the paths the image will hold
       image/build.py --rootfs DIR ... AGENT SERVER  those files as a tree (Containerfile)
SOURCE_DATE_EPOCH (environment) sets every timestamp; it is required.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import time

NONROOT = 65532
EM_TO_OCI_ARCH = {3: "386", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64", 22: "s390x", 21: "ppc64le"}

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
# Without this file glibc asks DNS before /etc/hosts; a pod's /etc/hosts should win.
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def die(msg):
    sys.exit(f"image/build.py: {msg}")


def elf_info(path):
    """Returns (OCI architecture, PT_INTERP path or None) of an ELF executable."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        die(f"{path}: not an ELF file")
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    machine = struct.unpack_from(order + "H", data, 18)[0]
    if is64:
        phoff, = struct.unpack_from(order + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 54)
    else:
        phoff, = struct.unpack_from(order + "I", data, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 42)
    interp = None
    for i in range(phnum):
        at = phoff + i * phentsize
        if struct.unpack_from(order + "I", data, at)[0] != 3:  # PT_INTERP
            continue
        if is64:
            offset, filesz = struct.unpack_from(order + "Q", data, at + 8)[0], struct.unpack_from(order + "Q", data, at + 32)[0]
        else:
            offset, filesz = struct.unpack_from(order + "I", data, at + 4)[0], struct.unpack_from(order + "I", data, at + 16)[0]
        interp = data[offset:offset + filesz].rstrip(b"\0").decode()
    arch = EM_TO_OCI_ARCH.get(machine)
    if arch == "ppc64le" and order == ">":
        arch = "ppc64"
    if arch is None:
        die(f"{path}: unknown ELF machine {machine}")
    return arch, interp


def shared_libraries(path):
    """The absolute paths ldd resolves for an executable (the loader itself excluded)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0:
        die(f"ldd {path}: {out.stderr.strip() or out.stdout.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+) \(0x", line)
        if m:
            libs.append(m.group(2))
        elif "=>" in line and "not found" in line:
            die(f"ldd {path}: {line.strip()}")
    return libs


def owning_package(path):
    """The Debian package (name:arch) that ships a path, tried as given and fully resolved."""
    for p in dict.fromkeys([path, os.path.realpath(path)]):
        out = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if not line.startswith("diversion ")]
        if out.returncode == 0 and lines:
            return lines[0].split(": ")[0].split(", ")[0]  # "libc6:amd64: /lib/.../libc.so.6"
    die(f"{path}: no Debian package ships it (dpkg-query -S)")


def package_version(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout:
        die(f"dpkg-query: package {package} is not installed")
    return out.stdout


def ca_bundle():
    """The CA bundle update-ca-certificates would write from the package's certificates alone."""
    out = subprocess.run(["dpkg-query", "-L", "ca-certificates"], capture_output=True, text=True)
    if out.returncode != 0:
        die("the ca-certificates package is not installed")
    certs = sorted(p for p in out.stdout.split() if p.startswith("/usr/share/ca-certificates/") and p.endswith(".crt"))
    if not certs:
        die("the ca-certificates package lists no certificates")
    bundle = b""
    for p in certs:
        with open(p, "rb") as f:
            pem = f.read()
        bundle += pem if pem.endswith(b"\n") else pem + b"\n"
    return bundle


def openssl_default_cert_file(path):
    """OpenSSL's compiled-in default CA file (e.g. /usr/lib/ssl/cert.pem), if linked in."""
    with open(path, "rb") as f:
        m = re.search(rb"\0(/[\w./+-]+/cert\.pem)\0", f.read())
    return m.group(1).decode() if m else None


class Layer:
    """A deterministic tar layer: every entry owned by root unless told, mtime fixed, sorted."""

    def __init__(self, mtime):
        self.mtime, self.entries = mtime, {}

    def _dirs(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = ("dir", None, 0o755, 0)

    def file(self, path, data, mode=0o644):
        self._dirs(path)
        self.entries[path.strip("/")] = ("file", data, mode, 0)

    def symlink(self, path, target):
        self._dirs(path)
        self.entries[path.strip("/")] = ("symlink", target, 0o777, 0)

    def dir(self, path, mode=0o755, owner=0):
        self._dirs(path)
        self.entries[path.strip("/")] = ("dir", None, mode, owner)

    def tar(self):
        return deterministic_tar(self.entries, self.mtime)


def deterministic_tar(entries, mtime):
    """entries: {path: (kind, data or link target, mode, owner)} -> tar bytes, sorted by path."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(entries):
            kind, data, mode, owner = entries[path]
            info = tarfile.TarInfo(path + ("/" if kind == "dir" else ""))
            info.mode, info.mtime, info.uid, info.gid = mode, mtime, owner, owner
            info.uname = info.gname = ""
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as z:
        z.write(data)
    return buf.getvalue()


def stripped(path):
    """The bytes of the ELF file at path without symbols and debug information (binutils'
    strip writes the same bytes for the same input)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["strip", "--strip-all", "-o", os.path.join(tmp, "out"), path], check=True)
        with open(os.path.join(tmp, "out"), "rb") as f:
            out = f.read()
    if not out.startswith(b"\x7fELF"):
        die(f"strip {path}: no ELF file came out")
    return out


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def normalized_reference(name):
    """docker.io/library/NAME:TAG, as containerd and the kubelet name images."""
    first = name.split("/")[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + ("library/" if "/" not in name else "") + name
    return name


def main():
    ap = argparse.ArgumentParser(description="Build kubezonnet's OCI image archive.")
    ap.add_argument("--out", help="the archive to write (required unless --list)")
    ap.add_argument("--name", required=True, help="NAME:TAG the archive loads as")
    ap.add_argument("--version", required=True)
    ap.add_argument("--revision", default="")
    ap.add_argument("--source", default="", help="source repository URL (label omitted when empty)")
    ap.add_argument("--license", default="LICENSE")
    ap.add_argument("--list", action="store_true", help="print the planned file list and exit")
    ap.add_argument("--rootfs", help="write the image's files into this directory instead")
    ap.add_argument("agent")
    ap.add_argument("server")
    args = ap.parse_args()

    if not args.out and not args.list and not args.rootfs:
        die("--out FILE is required")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None or not epoch.isdigit():
        die("SOURCE_DATE_EPOCH must be set to a Unix time (the Makefile uses the commit's)")
    epoch = int(epoch)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    name = args.name
    tag_ok = re.fullmatch(r"[\w][\w.-]{0,127}", name.rsplit(":", 1)[-1]) and ":" in name.split("/")[-1]
    if not tag_ok:
        die(f"image name '{name}' needs a valid :TAG ([A-Za-z0-9_][A-Za-z0-9_.-]*; no '+')")

    binaries = {"/kubezonnet-agent": args.agent, "/kubezonnet-server": args.server}
    arch, interp = None, None
    libraries = []
    for path in binaries.values():
        a, i = elf_info(path)
        if arch not in (None, a) or interp not in (None, i):
            die("the two binaries differ in architecture or ELF interpreter")
        arch, interp = a, i
        libraries += [lib for lib in shared_libraries(path) if lib not in libraries]
    if interp is None:
        die("the binaries have no ELF interpreter (PT_INTERP): this builder expects glibc-linked ones")

    base = Layer(epoch)
    packages = {}
    for path in [interp] + sorted(libraries):
        with open(path, "rb") as f:  # a symbolic link on the host becomes the file itself
            base.file(path, f.read(), 0o755)
        pkg = owning_package(path)
        packages[pkg] = package_version(pkg)
    packages["ca-certificates"] = package_version("ca-certificates")
    for pkg in packages:
        doc = pkg.split(":")[0]
        with open(f"/usr/share/doc/{doc}/copyright", "rb") as f:
            base.file(f"/usr/share/doc/{doc}/copyright", f.read())
    base.file("/etc/ssl/certs/ca-certificates.crt", ca_bundle())
    cert_file = openssl_default_cert_file(args.server)
    if cert_file and cert_file != "/etc/ssl/certs/ca-certificates.crt":
        base.symlink(cert_file, "/etc/ssl/certs/ca-certificates.crt")
    base.file("/etc/passwd", PASSWD.encode())
    base.file("/etc/group", GROUP.encode())
    base.file("/etc/nsswitch.conf", NSSWITCH.encode())
    base.dir("/home/nonroot", 0o700, NONROOT)

    app = Layer(epoch)
    for dest, src in binaries.items():
        app.file(dest, stripped(src), 0o755)
    with open(args.license, "rb") as f:
        app.file("/usr/share/doc/kubezonnet/LICENSE", f.read())

    if args.rootfs:  # for the Containerfile: the same files as a directory tree to COPY
        for layer in (base, app):
            with tarfile.open(fileobj=io.BytesIO(layer.tar())) as tar:
                trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(args.rootfs, numeric_owner=True, **trusted)  # our own tar
        return
    if args.list:
        for layer in (base, app):
            for path in sorted(layer.entries):
                kind = layer.entries[path][0]
                print(path + ("/" if kind == "dir" else ""))
        return

    layers = [(base.tar(), "base: the ELF interpreter, libraries, CA bundle and users, from Debian packages " +
               " ".join(f"{p}={v}" for p, v in sorted(packages.items()))),
              (app.tar(), "app: kubezonnet-agent, kubezonnet-server " + args.version)]
    blobs = {}
    layer_descriptors, diff_ids, history = [], [], []
    for raw, comment in layers:
        compressed = gzip_bytes(raw)
        blobs[sha256(compressed)] = compressed
        layer_descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": sha256(compressed), "size": len(compressed)})
        diff_ids.append(sha256(raw))
        history.append({"created": created, "created_by": "image/build.py", "comment": comment})

    labels = {
        "org.opencontainers.image.title": "kubezonnet",
        "org.opencontainers.image.description": "kubezonnet-agent and kubezonnet-server: cross-zone network traffic per pod",
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    if args.revision:
        labels["org.opencontainers.image.revision"] = args.revision
    if args.source:
        labels["org.opencontainers.image.source"] = args.source
    else:
        print("image/build.py: no source URL given: label org.opencontainers.image.source omitted", file=sys.stderr)
    config = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": f"{NONROOT}:{NONROOT}",
            "Env": ["PATH=/"],
            "Cmd": ["/kubezonnet-server"],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    if arch == "arm64":
        config["variant"] = "v8"
    config_bytes = canonical_json(config)
    blobs[sha256(config_bytes)] = config_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": layer_descriptors,
    }
    manifest_bytes = canonical_json(manifest)
    blobs[sha256(manifest_bytes)] = manifest_bytes
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest_bytes),
            "size": len(manifest_bytes),
            "annotations": {
                "io.containerd.image.name": normalized_reference(name),
                "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
            },
        }],
    }
    blob_path = lambda d: "blobs/sha256/" + d.split(":")[1]
    docker_manifest = [{"Config": blob_path(sha256(config_bytes)), "RepoTags": [name],
                        "Layers": [blob_path(d["digest"]) for d in layer_descriptors]}]

    entries = {"blobs": ("dir", None, 0o755, 0), "blobs/sha256": ("dir", None, 0o755, 0),
               "oci-layout": ("file", canonical_json({"imageLayoutVersion": "1.0.0"}), 0o644, 0),
               "index.json": ("file", canonical_json(index), 0o644, 0),
               "manifest.json": ("file", canonical_json(docker_manifest), 0o644, 0)}
    for digest, data in blobs.items():
        entries[blob_path(digest)] = ("file", data, 0o644, 0)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(deterministic_tar(entries, epoch))
    os.replace(tmp, args.out)
    size = sum(d["size"] for d in layer_descriptors)
    print(f"image {name} ({arch}): {args.out}\n"
          f"  manifest digest {sha256(manifest_bytes)}\n"
          f"  image id        {sha256(config_bytes)}\n"
          f"  layers          {size} bytes compressed, {sum(len(r) for r, _ in layers)} bytes of tar")


if __name__ == "__main__":
    main()
