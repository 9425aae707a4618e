#!/usr/bin/env python3
"""Hostile peers against the server's trust checks (commit 9fdb1fa): the node address check
and the shared secret (wire protocol version 3). Written from wire.h's header comment and the
README, independently of ingest.c. test/server_trust_attack.sh starts the servers and runs it.

  trust_attack.py --port P --http P --secret-file F --honest-secret F --leaked-secret F
                  --server-pid PID --plain-port P --plain-http P --plain-topology F
                  --plain-pid PID --wire-agent PATH --work DIR

Server "secret" (--port): --topology (below) and --agent-secret-file F, whose first line the
honest agents prove (--honest-secret) and whose second line is the secret rotated out during
the run (--leaked-secret). Server "plain" (--plain-port, listening on [::]): the same topology
(--plain-topology, which gains a pod during the run), no secret. Nodes and their addresses:

  n1 127.0.0.2, pod CIDR 127.0.10.0/24 (pod "evil" is 127.0.10.5)   zone a
  n2 127.0.0.3                                                        zone b
  n3 127.0.0.4, n4 127.0.0.5                                          zone a
  pods pa 10.1.0.1 (n1), pb 10.2.0.1 (n2), pc 10.3.0.1 (n3), pd 10.4.0.1 (n4)

Honest wire_agent.py sessions report pa->pb from n1 throughout, and a long-lived honest
session reports pb->pa from n2; every attack frame carries pa->pb with ATTACK_BYTES, so any
attack record that counts shows in the totals checked at the end. Each finished attack prints
"ok - NAME" or "not ok - NAME" (TAP, like the other tests).
"""
import argparse
import hashlib
import hmac
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

HELLO, STATS, ACK, ERROR, CHALLENGE, AUTH = 1, 2, 3, 4, 5, 6
FLAG_ZLIB, FLAG_MAC, FLAG_SECRET = 0x0001, 0x0002, 0x0004
MAGIC = 0x4B5A4E54
LABEL_AGENT = b"kubezonnet v3 agent proof"
LABEL_SERVER = b"kubezonnet v3 server proof"
LABEL_SESSION = b"kubezonnet v3 session key"
ERR_PROTOCOL, ERR_VERSION, ERR_EXPECTED_HELLO = 1, 2, 3
ERR_RETRY, ERR_IDENTITY, ERR_AUTH = 6, 7, 8
ATTACK_BYTES = 1000003  # every attack record: a count that includes one is visibly wrong

A = argparse.Namespace()
failures = []
out_lock = threading.Lock()


def ok(name):
    with out_lock:
        print("ok - " + name, flush=True)


def not_ok(name, why=""):
    failures.append(name)
    with out_lock:
        print("not ok - " + name, flush=True)
        if why:
            for line in str(why).splitlines()[:10]:
                print("#   " + line, flush=True)


def check(name, cond, why=""):
    (ok if cond else not_ok)(name, *([] if cond else [why]))
    return cond


# ---- frames ----

def frame(ftype, payload, flags=0, length=None):
    # Every version 3 HELLO here offers a secret: the flag that says a nonce follows.
    if ftype == HELLO and len(payload) >= 6 and struct.unpack(">H", payload[4:6])[0] == 3:
        flags |= FLAG_SECRET
    return struct.pack(">IHH", 4 + len(payload) if length is None else length, ftype,
                       flags) + payload


def addr16(ip):
    return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(ip)


POD = {"pa": "10.1.0.1", "pb": "10.2.0.1", "pc": "10.3.0.1", "pd": "10.4.0.1"}


def record(src, dst, nbytes):
    """A version 2 record: UDP port 53, one packet, no encapsulation."""
    return (struct.pack(">BBH", 4, 17, 53) + addr16(POD[src]) + addr16(POD[dst]) +
            struct.pack(">QQQ", nbytes, 1, 0))


def stats_payload(seq, recs, layout=3):
    p = struct.pack(">QQQQQQQI", seq, 1, 2, 0, 0, 0, 0, len(recs))
    if layout >= 2:
        p += struct.pack(">QQ", 0, 0)
    if layout >= 3:
        p += struct.pack(">QI", 0, 0)  # device bytes, hook status
    for r in recs:
        p += r if layout >= 2 else r[:52]
    return p


def stats_frame(seq, recs, layout=3, compress=False):
    p = stats_payload(seq, recs, layout)
    if compress:
        return frame(STATS, struct.pack(">I", len(p)) + zlib.compress(p), FLAG_ZLIB)
    return frame(STATS, p)


def hello_payload(version, instance, node, nonce=None, agent_version=b"evil"):
    n = node.encode()
    p = struct.pack(">IHQH", MAGIC, version, instance, len(n)) + n
    p += struct.pack(">H", len(agent_version)) + agent_version
    if version >= 3:
        p += struct.pack(">H", 1)  # the hook: netfilter
    if version >= 3 and nonce is None:
        nonce = os.urandom(32)
    return p + (nonce or b"")


def attack_stats(seq):
    return stats_frame(seq, [record("pa", "pb", ATTACK_BYTES)])


# ---- connections ----

PORT_OF = {}


def connect(port, source, family=socket.AF_INET, host=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((source, 0))
    s.connect((host or ("127.0.0.1" if family == socket.AF_INET else "::ffff:127.0.0.1"), port))
    PORT_OF[id(s)] = port
    return s


def send(s, data):
    """sendall, but a server that closed first (refusing at an earlier frame) is no error:
    what it answered is checked next."""
    try:
        s.sendall(data)
    except OSError:
        pass


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b


def read_frame(s, timeout=5.0):
    """(header, type, flags, body); None at EOF, "timeout" when nothing came."""
    s.settimeout(timeout)
    try:
        h = recv_exact(s, 8)
        if h is None:
            return None
        length, ftype, flags = struct.unpack(">IHH", h)
        body = recv_exact(s, length - 4)
        if body is None:
            return None
        return h, ftype, flags, body
    except socket.timeout:
        return "timeout"
    except OSError:
        return None


def replies(s, timeout=3.0, stop=(ACK, AUTH)):
    """Every frame the server sends until it closes, or until it sends one of the types in
    stop (an attack that succeeded: no need to wait for more): (list of (type, flags, body),
    closed)."""
    got = []
    end = time.time() + timeout
    while True:
        f = read_frame(s, max(0.05, end - time.time()))
        if f is None:
            return got, True
        if f == "timeout":
            return got, False
        got.append(f[1:])
        if f[1] in stop or time.time() > end:
            return got, False


def error_code(frames):
    for t, _, body in frames:
        if t == ERROR and len(body) >= 4:
            return struct.unpack(">H", body[:2])[0]
    return None


def describe(frames, closed):
    d = []
    for t, fl, body in frames:
        if t == ERROR and len(body) >= 4:
            n = struct.unpack(">H", body[2:4])[0]
            d.append("ERROR %d %r" % (struct.unpack(">H", body[:2])[0], body[4:4 + n]))
        else:
            d.append("type %d flags %d len %d" % (t, fl, len(body)))
    return "; ".join(d) + (" then closed" if closed else " (still open)")


def refused(name, s, code, timeout=3.0):
    """ok when the server answers with ERROR code (any code for None) and closes, sending no
    ACK, AUTH or CHALLENGE after what the caller already read."""
    http = http_of(s)
    frames, closed = replies(s, timeout)
    s.close()
    types = [t for t, _, _ in frames]
    good = closed and ERROR in types and not {ACK, AUTH, CHALLENGE} & set(types)
    if code is not None:
        good = good and error_code(frames) == code
    up = http is None or alive(http)
    return check(name, good and up, "want ERROR %s and close; got: %s%s" % (
        code, describe(frames, closed), "" if up else "; and the server is down"))


def closed_without_ack(name, s, timeout=3.0):
    """ok when the server closes (an ERROR or not) without acknowledging anything."""
    http = http_of(s)
    frames, closed = replies(s, timeout)
    s.close()
    types = [t for t, _, _ in frames]
    up = http is None or alive(http)
    return check(name, closed and ACK not in types and AUTH not in types and up,
                 "want close without ACK; got: %s%s" % (describe(frames, closed),
                                                       "" if up else "; and the server is down"))


def http_of(s):
    """The HTTP port of the server s is connected to (each attack checks it is still up)."""
    return {A.port: A.http, A.plain_port: A.plain_http}.get(PORT_OF.get(id(s)))


# ---- version 3 ----

def hm(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def read_secret(path, line=0):
    lines = [x.rstrip(b" \t\r") for x in open(path, "rb").read().split(b"\n")]
    return [x for x in lines if x][line]


class V3:
    """A version 3 session (wire.h): HELLO with nonce, CHALLENGE, AUTH both ways, then
    HMAC(session key, direction || counter || header || payload) on every STATS and ACK."""

    def __init__(self, port, source, node, instance, secret, family=socket.AF_INET,
                 handshake=True):
        self.s = connect(port, source, family)
        self.secret = secret
        self.hello = hello_payload(3, instance, node)
        self.sent = self.received = 0
        self.key = None
        self.error = None
        if handshake:
            self.handshake()

    def start(self):
        """HELLO, and the CHALLENGE's nonce (None if anything else came)."""
        try:
            self.s.sendall(frame(HELLO, self.hello))
        except OSError as e:
            self.error = "send HELLO: %s" % e
            return None
        f = read_frame(self.s)
        if not isinstance(f, tuple) or f[1] != CHALLENGE or len(f[3]) != 32:
            self.error = "no CHALLENGE: %r" % (f if not isinstance(f, tuple) else f[1:],)
            return None
        self.nonce = f[3]
        self.transcript = hashlib.sha256(self.hello).digest()
        return self.nonce

    def proof(self, label=LABEL_AGENT):
        return hm(self.secret, label, self.transcript, self.nonce)

    def handshake(self):
        if self.start() is None:
            return False
        try:
            self.s.sendall(frame(AUTH, self.proof()))
        except OSError as e:
            self.error = "send AUTH: %s" % e
            return False
        f = read_frame(self.s)
        if not isinstance(f, tuple) or f[1] != AUTH or not hmac.compare_digest(
                f[3], self.proof(LABEL_SERVER)):
            self.error = "no server AUTH: %r" % (f if not isinstance(f, tuple) else f[1:],)
            return False
        self.key = self.proof(LABEL_SESSION)
        return True

    def seal(self, data, counter=None, direction=0, key=None, bump=True):
        length, ftype, flags = struct.unpack(">IHH", data[:8])
        header = struct.pack(">IHH", length + 32, ftype, flags | FLAG_MAC)
        c = self.sent if counter is None else counter
        mac = hm(key or self.key, struct.pack(">BQ", direction, c), header, data[8:])
        if bump and counter is None:
            self.sent += 1
        return header + data[8:] + mac

    def ack(self, timeout=5.0):
        """The sequence of the next frame if it is an ACK with a good MAC, else a string."""
        f = read_frame(self.s, timeout)
        if not isinstance(f, tuple):
            return "closed" if f is None else "timeout"
        h, t, fl, body = f
        if t != ACK:
            return "type %d %r" % (t, body)
        if not fl & FLAG_MAC or len(body) != 40:
            return "ACK without MAC"
        want = hm(self.key, struct.pack(">BQ", 1, self.received), h, body[:8])
        self.received += 1
        if not hmac.compare_digest(want, body[8:]):
            return "ACK with a wrong MAC"
        return struct.unpack(">Q", body[:8])[0]

    def report(self, seq, recs):
        try:
            self.s.sendall(self.seal(stats_frame(seq, recs)))
        except OSError as e:
            return "send: %s" % e
        return self.ack()


# ---- the server's metrics ----

def metrics(http):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http, timeout=5).read()
    except OSError:
        return None
    m = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    return m


def metric(http, key):
    m = metrics(http)
    return None if m is None else m.get(key, 0.0)


def alive(http):
    try:
        return urllib.request.urlopen("http://127.0.0.1:%d/healthz" % http,
                                      timeout=3).status == 200
    except OSError:
        return False


def wait_metric(http, key, at_least, seconds):
    end = time.time() + seconds
    while time.time() < end:
        v = metric(http, key)
        if v is not None and v >= at_least:
            return v
        time.sleep(0.05)
    return metric(http, key)


# ---- honest agents, running throughout ----

class Honest:
    """wire_agent.py (an independent version 3 client) as node n1 from 127.0.0.2, in sessions
    of three reports, until stopped. Counts what was acknowledged and what failed."""

    def __init__(self):
        self.stop = threading.Event()
        self.seq = 0
        self.bytes = self.reports = self.sessions = 0
        self.errors = []
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            args = []
            seqs = []
            total = 0
            for _ in range(3):
                self.seq += 1
                b = 100 + self.seq
                args += [str(self.seq), POD["pa"], POD["pb"], str(b)]
                seqs.append(self.seq)
                total += b
            extra = ["--zlib"] if self.sessions % 2 else []
            p = subprocess.run([sys.executable, A.wire_agent, "--secret", A.honest_secret,
                                "--source", "127.0.0.2"] + extra +
                               ["127.0.0.1", str(A.port), "n1", "4242"] + args,
                               capture_output=True, text=True, timeout=20)
            self.sessions += 1
            if p.returncode == 0 and p.stdout.split() == [str(x) for x in seqs]:
                self.bytes += total
                self.reports += 3
            else:
                self.errors.append("session %d: rc %d, acked %r, %s" % (
                    self.sessions, p.returncode, p.stdout.strip(), p.stderr.strip()))
                # The ACKs it got were counted by the server; those it did not get may be
                # too: the totals check would be off, and this failure says why.
            time.sleep(0.02)


# ---- the attacks ----

HANDSHAKE = 'kubezonnet_agent_handshakes_rejected_total{reason="%s"}'


def pre_auth_attacks():
    P = A.port
    m0 = metrics(A.http)
    # Downgrades: the secret server takes only version 3.
    for v in (1, 2):
        s = connect(P, "127.0.0.2")
        send(s, frame(HELLO, hello_payload(v, 77, "n1")) + stats_frame(1, [record(
            "pa", "pb", ATTACK_BYTES)], layout=v))
        refused("secret server: a version %d HELLO (and STATS after it) from n1's own address "
                "is refused with code 8" % v, s, ERR_AUTH)
    # A version 3 HELLO without its nonce (version 2's body), and one cut inside the nonce.
    s = connect(P, "127.0.0.2")
    send(s, frame(HELLO, hello_payload(2, 77, "n1")[:4] + b"\x00\x03" +
                    hello_payload(2, 77, "n1")[6:]))
    refused("secret server: a version 3 HELLO without its nonce is refused", s, None)
    s = connect(P, "127.0.0.2")
    send(s, frame(HELLO, hello_payload(3, 77, "n1", nonce=b"\x01" * 31)))
    refused("secret server: a version 3 HELLO with a 31-byte nonce is refused", s, None)
    # A version 3 HELLO whose nonce is made of the agent version's bytes (the lengths lie).
    s = connect(P, "127.0.0.2")
    body = hello_payload(3, 77, "n1", nonce=b"", agent_version=b"x" * 40)
    send(s, frame(HELLO, body))
    refused("secret server: a version 3 HELLO whose nonce would overlap the agent version is "
            "refused", s, None)
    # Wrong secret, random proof, empty / short / long AUTH, AUTH first, CHALLENGE from the
    # peer, HELLO twice, STATS before AUTH.
    wrong = b"not the secret, but 16+ bytes long"
    v = V3(P, "127.0.0.2", "n1", 78, wrong)
    check("secret server: a wrong secret's AUTH gets no server AUTH",
          v.key is None, "the handshake completed with a wrong secret")
    v.s.close()
    v = V3(P, "127.0.0.2", "n1", 78, wrong, handshake=False)
    if v.start() is None:
        not_ok("secret server: a random proof is refused with code 8", v.error)
    else:
        send(v.s, frame(AUTH, os.urandom(32)) + v.seal(attack_stats(1), key=os.urandom(32)))
        refused("secret server: a random proof is refused with code 8", v.s, ERR_AUTH)
    for n in (0, 31, 33, 64):
        v = V3(P, "127.0.0.2", "n1", 79, wrong, handshake=False)
        if v.start() is None:
            not_ok("secret server: an AUTH of %d bytes is refused" % n, v.error)
            continue
        send(v.s, frame(AUTH, os.urandom(n)))
        refused("secret server: an AUTH of %d bytes is refused" % n, v.s, None)
    s = connect(P, "127.0.0.2")
    send(s, frame(AUTH, os.urandom(32)))
    refused("secret server: AUTH before HELLO is refused", s, None)
    h = hello_payload(3, 80, "n1")
    s = connect(P, "127.0.0.2")
    send(s, frame(AUTH, os.urandom(32)) + frame(HELLO, h))
    refused("secret server: AUTH then HELLO (AUTH before its CHALLENGE) is refused", s, None)
    v = V3(P, "127.0.0.2", "n1", 81, wrong, handshake=False)
    if v.start() is not None:
        send(v.s, frame(CHALLENGE, os.urandom(32)))
        refused("secret server: a CHALLENGE from the peer is refused", v.s, None)
    v = V3(P, "127.0.0.2", "n1", 82, wrong, handshake=False)
    if v.start() is not None:
        send(v.s, frame(HELLO, hello_payload(3, 82, "n1")))
        refused("secret server: HELLO after CHALLENGE is refused", v.s, None)
    v = V3(P, "127.0.0.2", "n1", 83, wrong, handshake=False)
    if v.start() is not None:
        send(v.s, attack_stats(1))
        refused("secret server: STATS after CHALLENGE, before AUTH, is refused", v.s, None)
    # STATS pipelined right after HELLO (before the CHALLENGE came), plain and with a MAC flag.
    s = connect(P, "127.0.0.2")
    send(s, frame(HELLO, hello_payload(3, 84, "n1")) + attack_stats(1))
    f = read_frame(s)
    check("secret server: STATS pipelined after HELLO gets a CHALLENGE first",
          isinstance(f, tuple) and f[1] == CHALLENGE, repr(f))
    refused("secret server: STATS pipelined after HELLO is refused, not counted", s, None)
    s = connect(P, "127.0.0.2")
    junk = attack_stats(1)
    send(s, frame(HELLO, hello_payload(3, 85, "n1")) +
              struct.pack(">IHH", len(junk) - 4 + 32, STATS, FLAG_MAC) + junk[8:] +
              os.urandom(32))
    read_frame(s)
    refused("secret server: a MAC-flagged STATS pipelined after HELLO is refused", s, None)
    # Flags where none may be.
    for name, t, payload in (("HELLO", HELLO, hello_payload(3, 86, "n1")),
                             ("ERROR", ERROR, struct.pack(">HH", 1, 2) + b"hi")):
        for fl in (FLAG_MAC, FLAG_ZLIB, 0x8000):
            s = connect(P, "127.0.0.2")
            send(s, frame(t, payload, fl))
            refused("secret server: %s with flags 0x%04x is refused" % (name, fl), s, ERR_PROTOCOL)
    for fl in (FLAG_MAC, FLAG_ZLIB):
        v = V3(P, "127.0.0.2", "n1", 87, wrong, handshake=False)
        if v.start() is not None:
            send(v.s, frame(AUTH, v.proof(), fl))
            refused("secret server: AUTH with flags 0x%04x is refused" % fl, v.s, ERR_PROTOCOL)
    # ERROR frames from the peer at each stage.
    s = connect(P, "127.0.0.2")
    send(s, frame(ERROR, struct.pack(">HH", 5, 3) + b"bye"))
    refused("secret server: an ERROR before HELLO is refused", s, None)
    v = V3(P, "127.0.0.2", "n1", 88, wrong, handshake=False)
    if v.start() is not None:
        send(v.s, frame(ERROR, struct.pack(">HH", 5, 3) + b"bye") + attack_stats(1))
        refused("secret server: an ERROR instead of AUTH is refused", v.s, None)
    # Address and node checks (before any secret is asked for).
    for source, node, code, what in (
            ("127.0.0.3", "n1", ERR_IDENTITY, "n2's address claiming n1"),
            ("127.0.10.5", "n1", ERR_IDENTITY, "pod evil's address claiming its own node n1"),
            ("127.0.10.5", "n2", ERR_IDENTITY, "pod evil's address claiming n2"),
            ("127.0.0.9", "n1", ERR_IDENTITY, "an address of no node claiming n1"),
            ("127.0.0.2", "ghost", ERR_RETRY, "an unknown node")):
        s = connect(P, source)
        send(s, frame(HELLO, hello_payload(3, 90, node)))
        refused("secret server: %s is refused with code %d at its version 3 HELLO, before "
                "any CHALLENGE" % (what, code), s, code)
    # A captured honest session replayed on a new connection, from the same address.
    cap = os.path.join(A.work, "capture")
    p = subprocess.run([sys.executable, A.wire_agent, "--secret", A.honest_secret, "--source",
                        "127.0.0.4", "--capture", cap, "127.0.0.1", str(P), "n3", "555", "1",
                        POD["pc"], POD["pb"], "9"], capture_output=True, text=True, timeout=20)
    A.expect_pc += 9 if p.returncode == 0 else 0
    A.expect_n3 += 1 if p.returncode == 0 else 0
    check("secret server: the session to replay was acknowledged", p.stdout.strip() == "1",
          p.stderr)
    data = open(cap, "rb").read()
    s = connect(P, "127.0.0.4")
    send(s, data)
    frames, closed = replies(s)
    s.close()
    types = [t for t, _, _ in frames]
    check("secret server: a captured session replayed on a new connection gets a fresh "
          "CHALLENGE and is refused at AUTH (code 8), no ACK",
          types[:1] == [CHALLENGE] and error_code(frames) == ERR_AUTH and ACK not in types and
          AUTH not in types and closed, describe(frames, closed))
    # Huge frames before the secret is proved: refused at their header, no buffer given.
    hwm0 = vm_hwm()
    rej0 = metric(A.http, 'kubezonnet_frames_rejected_total{reason="too_big"}')
    socks = []
    for i in range(24):
        v = V3(P, "127.0.0.2", "n1", 100 + i, wrong, handshake=False)
        if v.start() is None:
            continue
        v.s.setblocking(False)
        try:
            v.s.send(struct.pack(">IHH", 16 << 20, AUTH if i % 2 else STATS, 0) +
                     bytes(1 << 20))
        except OSError:
            pass
        socks.append(v.s)
    held = metric(A.http, "kubezonnet_agent_input_bytes")
    rej = wait_metric(A.http, 'kubezonnet_frames_rejected_total{reason="too_big"}',
                      rej0 + len(socks), 5)
    for s in socks:
        s.close()
    grew = vm_hwm() - hwm0
    check("secret server: 16 MiB frames after HELLO, before AUTH, are refused at their header "
          "(%d refused, %d bytes of input held, peak RSS +%d kB)" % (rej - rej0, held, grew),
          len(socks) == 24 and rej - rej0 == len(socks) and held < (1 << 20) and
          (grew < 20000 or os.environ.get("KZN_SANITIZED")),
          "refused %s of %d, input held %s, peak RSS grew %d kB" % (rej - rej0, len(socks),
                                                                    held, grew))
    m1 = metrics(A.http)
    want = {"secret_required": 2, "auth_failed": 3, "node_address": 4, "unknown_node": 1,
            "no_secret": 0}
    got = {k: int(m1.get(HANDSHAKE % k, 0) - m0.get(HANDSHAKE % k, 0)) for k in want}
    check("secret server: each refused handshake is counted by its reason %r" % want,
          got == want, "got %r" % got)
    check("secret server: alive after the handshake attacks", alive(A.http))


def vm_hwm():
    try:
        for line in open("/proc/%d/status" % A.server_pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stall_attacks(results):
    """Peers that stop mid-handshake: closed by the 10 s HELLO deadline. In a thread."""
    P = A.port
    wrong = b"not the secret, but 16+ bytes long"
    t0 = time.time()
    conns = []
    v = V3(P, "127.0.0.2", "n1", 200, wrong, handshake=False)
    v.start()
    conns.append(("after its CHALLENGE", v.s))
    v = V3(P, "127.0.0.2", "n1", 201, wrong, handshake=False)
    v.start()
    send(v.s, frame(AUTH, os.urandom(32))[:20])
    conns.append(("inside its AUTH", v.s))
    s = connect(P, "127.0.0.2")
    send(s, frame(HELLO, hello_payload(3, 202, "n1"))[:30])
    conns.append(("inside its HELLO", s))
    for what, s in conns:
        frames, closed = replies(s, 15)
        took = time.time() - t0
        results.append(("secret server: a peer stalling %s is closed by the HELLO deadline "
                        "(after %.1f s)" % (what, took),
                        closed and 9.0 <= took <= 13.5 and ACK not in [f[0] for f in frames],
                        "closed=%s after %.1f s: %s" % (closed, took, describe(frames, closed))))
        s.close()


def session_attacks():
    """A peer on the path of an authenticated session (here, one that holds the honest secret
    only to make the honest frames): replayed, reordered, cut, stripped, moved frames."""
    P = A.port
    secret = read_secret(A.honest_secret, 0)
    inst = [300]
    seq_base = [0]

    def session():
        inst[0] += 1
        v = V3(P, "127.0.0.5", "n4", inst[0], secret)
        if v.key is None:
            not_ok("secret server: n4's handshake", v.error)
        return v

    macs = [0]
    mac0 = metric(A.http, 'kubezonnet_frames_rejected_total{reason="mac"}')

    def macfail(name, s, code):
        """A frame whose MAC must fail: refused, and counted as reason "mac"."""
        macs[0] += 1
        return refused(name, s, code)

    def legit(v, seq):
        r = v.report(seq, [record("pd", "pb", 1)])
        if r == seq:
            A.expect_pd += 1
            A.expect_n4 += 1
        return r

    # The same MAC'd frame twice: the second has the wrong counter.
    v = session()
    f = v.seal(stats_frame(1, [record("pd", "pb", 1)]))
    send(v.s, f)
    r = v.ack()
    if r == 1:
        A.expect_pd += 1
        A.expect_n4 += 1
    check("secret server: n4's first report is acknowledged with a good MAC", r == 1, r)
    send(v.s, f)
    macfail("secret server: a MAC'd STATS sent twice on its session is refused (counter)",
            v.s, ERR_PROTOCOL)
    # A new report, MAC'd with the counter of a frame already taken.
    v = session()
    legit(v, 1)
    send(v.s, v.seal(attack_stats(2), counter=0))
    macfail("secret server: a new report with an old counter is refused", v.s, ERR_PROTOCOL)
    # Reordered: the second frame first.
    v = session()
    f1 = v.seal(stats_frame(1, [record("pa", "pb", ATTACK_BYTES)]))
    f2 = v.seal(attack_stats(2))
    send(v.s, f2 + f1)
    macfail("secret server: two MAC'd frames sent in the wrong order are refused", v.s,
            ERR_PROTOCOL)
    # A counter far ahead (a frame skipped: dropped by the path).
    v = session()
    send(v.s, v.seal(attack_stats(1), counter=5))
    macfail("secret server: a frame whose counter skips ahead is refused", v.s, ERR_PROTOCOL)
    # MAC stripped (flag and bytes), flag without MAC, MAC without flag, short MAC.
    v = session()
    send(v.s, attack_stats(1))
    macfail("secret server: a STATS without MAC in an authenticated session is refused", v.s,
            ERR_PROTOCOL)
    v = session()
    raw = attack_stats(1)
    send(v.s, struct.pack(">IHH", len(raw) - 4, STATS, FLAG_MAC) + raw[8:])
    macfail("secret server: the MAC flag without a MAC is refused", v.s, ERR_PROTOCOL)
    v = session()
    sealed = v.seal(attack_stats(1))
    send(v.s, struct.pack(">IHH", len(sealed) - 4, STATS, 0) + sealed[8:])
    macfail("secret server: a MAC without the MAC flag is refused", v.s, ERR_PROTOCOL)
    v = session()
    send(v.s, frame(STATS, os.urandom(20), FLAG_MAC))
    macfail("secret server: a MAC-flagged frame shorter than a MAC is refused", v.s,
            ERR_PROTOCOL)
    v = session()
    send(v.s, frame(STATS, b"", FLAG_MAC))
    macfail("secret server: an empty MAC-flagged frame is refused", v.s, ERR_PROTOCOL)
    v = session()
    send(v.s, frame(STATS, os.urandom(32), FLAG_MAC))
    macfail("secret server: a frame of only a (random) MAC is refused", v.s, ERR_PROTOCOL)
    # Cut: the MAC's last byte dropped (length fixed); a frame's last record dropped (length
    # and count fixed, the MAC of the whole frame kept).
    v = session()
    sealed = v.seal(attack_stats(1))
    send(v.s, struct.pack(">I", len(sealed) - 5) + sealed[4:-1])
    macfail("secret server: a frame with its MAC cut by a byte is refused", v.s, ERR_PROTOCOL)
    v = session()
    two = stats_frame(1, [record("pa", "pb", ATTACK_BYTES), record("pa", "pb", ATTACK_BYTES)])
    sealed = v.seal(two)
    one = stats_frame(1, [record("pa", "pb", ATTACK_BYTES)])
    cut = struct.pack(">IHH", len(one) - 4 + 32, STATS, FLAG_MAC) + one[8:] + sealed[-32:]
    send(v.s, cut)
    macfail("secret server: a frame cut by a record (count fixed, MAC kept) is refused", v.s,
            ERR_PROTOCOL)
    # Tampered: a byte of a record changed; the zlib flag toggled.
    v = session()
    sealed = bytearray(v.seal(attack_stats(1)))
    sealed[8 + 88 + 36 + 7] ^= 0x40  # the record's bytes
    send(v.s, bytes(sealed))
    macfail("secret server: a record changed after its MAC is refused", v.s, ERR_PROTOCOL)
    v = session()
    z = stats_frame(1, [record("pa", "pb", ATTACK_BYTES)], compress=True)
    sealed = v.seal(z)
    flags = struct.unpack(">H", sealed[6:8])[0] & ~FLAG_ZLIB
    send(v.s, sealed[:6] + struct.pack(">H", flags) + sealed[8:])
    macfail("secret server: the zlib flag removed after the MAC is refused", v.s, ERR_PROTOCOL)
    # Another direction's MAC, another session's key, another session's frame.
    v = session()
    send(v.s, v.seal(attack_stats(1), direction=1))
    macfail("secret server: a frame MAC'd in the server's direction is refused", v.s,
            ERR_PROTOCOL)
    v1, v2 = session(), session()
    send(v2.s, v1.seal(attack_stats(1)))
    macfail("secret server: a frame MAC'd for another session (same counter) is refused", v2.s,
            ERR_PROTOCOL)
    v1.s.close()
    v = session()
    send(v.s, v.seal(attack_stats(1), key=v.secret))
    macfail("secret server: a frame MAC'd with the secret instead of the session key is "
            "refused", v.s, ERR_PROTOCOL)
    mac = wait_metric(A.http, 'kubezonnet_frames_rejected_total{reason="mac"}', mac0 + macs[0], 2)
    check("secret server: each of the %d forged frames is counted as reason mac" % macs[0],
          mac - mac0 == macs[0], "frames_rejected{mac} grew by %s" % (mac - mac0))
    # The server's own AUTH sent back; AUTH twice; HELLO after AUTH.
    v = session()
    send(v.s, frame(AUTH, v.proof()))
    refused("secret server: AUTH again after the handshake is refused", v.s, None)
    v = session()
    send(v.s, frame(AUTH, v.proof(LABEL_SERVER)))
    refused("secret server: the server's proof sent back is refused", v.s, None)
    v = session()
    send(v.s, frame(HELLO, v.hello))
    refused("secret server: HELLO again after the handshake is refused", v.s, None)
    # ACK, CHALLENGE from the peer after the handshake, MAC'd or not.
    v = session()
    send(v.s, v.seal(frame(ACK, struct.pack(">Q", 1))))
    refused("secret server: an ACK from the peer (MAC'd) is refused", v.s, None)
    v = session()
    send(v.s, frame(CHALLENGE, os.urandom(32)))
    refused("secret server: a CHALLENGE from the peer after the handshake is refused", v.s,
            None)
    # An ERROR after the handshake closes the session; nothing after it counts.
    v = session()
    legit(v, 1)
    send(v.s, frame(ERROR, struct.pack(">HH", 5, 3) + b"bye") + v.seal(attack_stats(2)))
    closed_without_ack("secret server: an ERROR ends the session; a report after it is not "
                       "counted", v.s)
    # A duplicate resent on a new session is acknowledged (MAC'd) but not counted again.
    v = session()
    legit(v, 1)
    v.s.close()
    v = V3(P, "127.0.0.5", "n4", inst[0], secret)
    r = v.report(1, [record("pd", "pb", 1)])
    check("secret server: a resent report on a new session is acknowledged with a good MAC",
          r == 1, r)
    v.s.close()
    # The server's ACK MACs: two reports on one session, checked with counters 0 and 1.
    v = session()
    r1, r2 = legit(v, 1), legit(v, 2)
    check("secret server: ACKs carry MACs with counters 0, 1", (r1, r2) == (1, 2), (r1, r2))
    v.s.close()
    check("secret server: alive after the session attacks", alive(A.http))


def plain_attacks():
    """The server without secret, listening on [::]: address checks over IPv4-mapped IPv6,
    version 3 refused, and a session whose address becomes a pod's."""
    P, H = A.plain_port, A.plain_http
    m0 = metrics(H)
    # Version 3 HELLO to a server without secret.
    s = connect(P, "127.0.0.2")
    send(s, frame(HELLO, hello_payload(3, 1, "n1")))
    refused("plain server: a version 3 HELLO is refused with code 8 (no secret)", s, ERR_AUTH)
    # IPv4-mapped peers against IPv4 node addresses.
    s = connect(P, "::ffff:127.0.0.2", socket.AF_INET6)
    send(s, frame(HELLO, hello_payload(2, 11, "n1")) +
              stats_frame(1, [record("pa", "pb", 5)], layout=2))
    frames, closed = replies(s, 2)
    s.close()
    acked = [struct.unpack(">Q", b[:8])[0] for t, _, b in frames if t == ACK]
    if acked == [1]:
        A.plain_expect_pa += 5
        A.plain_expect_n1 += 1
    check("plain server: n1 from ::ffff:127.0.0.2 (IPv4-mapped) is accepted", acked == [1],
          describe(frames, closed))
    for src, fam in (("::ffff:127.0.0.3", socket.AF_INET6), ("::1", socket.AF_INET6),
                     ("::ffff:127.0.10.5", socket.AF_INET6)):
        s = connect(P, src, fam, host="::1" if src == "::1" else None)
        send(s, frame(HELLO, hello_payload(2, 12, "n1")) + attack_stats(1))
        refused("plain server: n1 claimed from %s is refused with code 7" % src, s, ERR_IDENTITY)
    s = connect(P, "127.0.0.3")
    send(s, frame(HELLO, hello_payload(1, 13, "n1")) + stats_frame(1, [record(
        "pa", "pb", ATTACK_BYTES)], layout=1))
    refused("plain server: n1 claimed from 127.0.0.3 over IPv4 is refused with code 7", s,
            ERR_IDENTITY)
    # An address in n1's pod CIDR that no pod has yet (a pod just started, its address not yet
    # in the index) is taken as n1. When the index learns that the address is a pod's, the
    # session must end: its reports are a pod's, not the node's.
    s = connect(P, "127.0.10.7")
    send(s, frame(HELLO, hello_payload(2, 14, "n1")) +
         stats_frame(1, [record("pa", "pb", 7)], layout=2))
    f = read_frame(s, 3)
    first = isinstance(f, tuple) and f[1] == ACK
    if first:
        A.plain_expect_pa += 7
        A.plain_expect_n1 += 1
        ok("plain server: an address in n1's pod CIDR that is no pod's is taken as n1 (the "
           "pod CIDR rule)")
    else:
        check("plain server: an address in n1's pod CIDR that is no pod's is taken as n1, or "
              "refused with code 7 (a narrower rule)",
              isinstance(f, tuple) and f[1] == ERROR and error_code([f[1:]]) == ERR_IDENTITY,
              repr(f))
    reloads = metric(H, 'kubezonnet_topology_reloads_total{result="ok"}')
    topo = open(A.plain_topology).read()
    topo = topo.replace('"pods": [', '"pods": [{"namespace": "ns", "name": "late", "node": "n1", '
                        '"ips": ["127.0.10.7"]}, ', 1)
    with open(A.plain_topology + ".new", "w") as f:
        f.write(topo)
    os.rename(A.plain_topology + ".new", A.plain_topology)
    os.kill(A.plain_pid, signal.SIGHUP)
    got = wait_metric(H, 'kubezonnet_topology_reloads_total{result="ok"}', reloads + 1, 5)
    check("plain server: topology reloaded (pod late now has 127.0.10.7)", got == reloads + 1,
          "reloads %s -> %s" % (reloads, got))
    time.sleep(0.3)
    name = ("plain server: a session accepted as n1 from an address that then became a pod's "
            "(pod late) is closed, its next report not counted")
    if first:
        before = metric(H, 'pod_cross_zone_network_traffic_bytes_total{namespace="ns",pod="pa"}')
        send(s, stats_frame(2, [record("pa", "pb", ATTACK_BYTES)], layout=2))
        frames, closed = replies(s, 2)
        time.sleep(0.2)
        after = metric(H, 'pod_cross_zone_network_traffic_bytes_total{namespace="ns",pod="pa"}')
        if ACK in [t for t, _, _ in frames] or after != before:
            A.plain_expect_pa += after - before  # so that the totals check names only this hole
            A.plain_expect_n1 += 1
        check(name, ACK not in [t for t, _, _ in frames] and after == before,
              "pa bytes %d -> %d; the server answered: %s" % (before, after,
                                                              describe(frames, closed)))
    else:
        ok(name + " (not reachable: refused at HELLO)")
    s.close()
    # The same address on a new connection is refused now.
    s = connect(P, "127.0.10.7")
    send(s, frame(HELLO, hello_payload(2, 15, "n1")) + attack_stats(1))
    refused("plain server: the pod's address is refused as n1 on a new connection", s,
            ERR_IDENTITY)
    m = metrics(H) or {}
    pa = m.get('pod_cross_zone_network_traffic_bytes_total{namespace="ns",pod="pa"}', 0)
    n1 = m.get('kubezonnet_records_received_total{node="n1"}', 0)
    check("plain server: only the accepted reports are counted (pa %d bytes, n1 %d records)" %
          (pa, n1), (pa, n1) == (A.plain_expect_pa, A.plain_expect_n1),
          "want pa %d, n1 %d" % (A.plain_expect_pa, A.plain_expect_n1))
    m1 = metrics(H)
    want = {"no_secret": 1, "node_address": 5, "secret_required": 0, "auth_failed": 0}
    if not first:
        want["node_address"] += 1
    got = {k: int(m1.get(HANDSHAKE % k, 0) - m0.get(HANDSHAKE % k, 0)) for k in want}
    check("plain server: each refused handshake is counted by its reason %r" % want,
          got == want, "got %r" % got)
    check("plain server: alive after its attacks", alive(H))


def rotation_attacks():
    """The secret file rewritten while sessions run: a session proved with a secret that is
    removed is closed and counts nothing more; a broken or empty file keeps the secrets; a
    long-lived honest session (n2) keeps reporting through all of it."""
    P, H = A.port, A.http
    honest = read_secret(A.honest_secret, 0)
    leaked = read_secret(A.leaked_secret, 0)
    n2 = V3(P, "127.0.0.3", "n2", 900, honest)
    seq = [0]

    def n2_report(what):
        seq[0] += 1
        r = n2.report(seq[0], [record("pb", "pa", 1000 + seq[0])])
        if r == seq[0]:
            A.expect_pb += 1000 + seq[0]
            A.expect_n2 += 1
        check("secret server: the long-lived honest session reports %s" % what, r == seq[0], r)

    if not check("secret server: the long-lived honest session (n2) is authenticated",
                 n2.key is not None, n2.error):
        return
    n2_report("before the rotation")
    x = V3(P, "127.0.0.4", "n3", 901, leaked)
    check("secret server: a session proves the second secret (about to be removed)",
          x.key is not None, x.error)
    if x.key is not None:
        r = x.report(1, [record("pc", "pb", 11)])
        if r == 1:
            A.expect_pc += 11
            A.expect_n3 += 1
        check("secret server: its report is acknowledged while its secret is valid", r == 1, r)
    # Remove the second secret (an atomic rename, as the kubelet's symlink swap).
    ok0 = metric(H, 'kubezonnet_agent_secret_reloads_total{result="ok"}')
    rem0 = metric(H, 'kubezonnet_agent_connections_closed_total{reason="secret_removed"}')
    write_secret_file(honest + b"\n")
    got = wait_metric(H, 'kubezonnet_agent_secret_reloads_total{result="ok"}', ok0 + 1, 4)
    check("secret server: the rewritten secret file is read again", got == ok0 + 1,
          "reloads %s -> %s" % (ok0, got))
    rem = wait_metric(H, 'kubezonnet_agent_connections_closed_total{reason="secret_removed"}',
                      rem0 + 1, 2)
    check("secret server: the session of the removed secret is closed (secret_removed %d)" %
          (rem - rem0), rem == rem0 + 1, "secret_removed %s -> %s" % (rem0, rem))
    if x.key is not None:
        send(x.s, x.seal(stats_frame(2, [record("pa", "pb", ATTACK_BYTES)])))
        r = x.ack(3)
        check("secret server: a report on the revoked session is not acknowledged",
              not isinstance(r, int), r)
        x.s.close()
    x = V3(P, "127.0.0.4", "n3", 902, leaked)
    check("secret server: the removed secret no longer authenticates", x.key is None,
          "the handshake succeeded")
    x.s.close()
    n2_report("after its secret file was rewritten")
    # A broken file (a secret too short), then an empty file: both keep the secrets.
    for what, content in (("a secret too short", b"short\n"), ("an empty file", b""),
                          ("nine secrets", b"".join(b"s" * 20 + bytes([65 + i]) + b"\n"
                                                    for i in range(9)))):
        err0 = metric(H, 'kubezonnet_agent_secret_reloads_total{result="error"}')
        write_secret_file(content)
        got = wait_metric(H, 'kubezonnet_agent_secret_reloads_total{result="error"}',
                          err0 + 1, 4)
        check("secret server: %s is counted as a failed reload" % what, got == err0 + 1,
              "errors %s -> %s" % (err0, got))
        check("secret server: alive after %s" % what, alive(H))
        n2_report("after %s" % what)
        x = V3(P, "127.0.0.4", "n3", 903, leaked)
        check("secret server: after %s, the removed secret still does not authenticate" % what,
              x.key is None, "the handshake succeeded")
        x.s.close()
        y = V3(P, "127.0.0.4", "n3", 904, honest)
        check("secret server: after %s, the kept secret still authenticates" % what,
              y.key is not None, y.error)
        y.s.close()
    # The file fixed, with the second secret back, rewritten in place (same inode).
    ok0 = metric(H, 'kubezonnet_agent_secret_reloads_total{result="ok"}')
    write_secret_file(honest + b"\n" + leaked + b"\n", in_place=True)
    got = wait_metric(H, 'kubezonnet_agent_secret_reloads_total{result="ok"}', ok0 + 1, 4)
    check("secret server: the fixed secret file (rewritten in place) is read again",
          got == ok0 + 1, "reloads %s -> %s" % (ok0, got))
    x = V3(P, "127.0.0.4", "n3", 905, leaked)
    check("secret server: a secret added back authenticates again", x.key is not None, x.error)
    if x.key is not None:
        r = x.report(1, [record("pc", "pb", 13)])
        if r == 1:
            A.expect_pc += 13
            A.expect_n3 += 1
        check("secret server: ... and its report counts", r == 1, r)
    # The same length, another second secret, in place: the session of the old one closes.
    rem0 = metric(H, 'kubezonnet_agent_connections_closed_total{reason="secret_removed"}')
    other = bytes(b ^ 1 if 0x61 <= b <= 0x7a else b for b in leaked)
    write_secret_file(honest + b"\n" + other + b"\n", in_place=True)
    rem = wait_metric(H, 'kubezonnet_agent_connections_closed_total{reason="secret_removed"}',
                      rem0 + 1, 4)
    check("secret server: a secret replaced in place (same size) closes its sessions",
          rem == rem0 + 1, "secret_removed %s -> %s" % (rem0, rem))
    if x.key is not None:
        send(x.s, x.seal(attack_stats(2)))
        check("secret server: ... and its report is not acknowledged",
              not isinstance(x.ack(3), int))
        x.s.close()
    n2_report("at the end of the rotation")
    n2.s.close()
    check("secret server: alive after the rotation", alive(H))


def write_secret_file(content, in_place=False):
    if in_place:
        with open(A.secret_file, "r+b") as f:
            f.truncate(0)
            f.write(content)
    else:
        tmp = A.secret_file + ".new"
        with open(tmp, "wb") as f:
            f.write(content)
        os.rename(tmp, A.secret_file)


def main():
    p = argparse.ArgumentParser()
    for opt in ("port", "http", "server-pid", "plain-port", "plain-http", "plain-pid"):
        p.add_argument("--" + opt, type=int, required=True)
    for opt in ("secret-file", "honest-secret", "leaked-secret", "plain-topology",
                "wire-agent", "work"):
        p.add_argument("--" + opt, required=True)
    p.parse_args(namespace=A)
    for k in ("pc", "pd", "pb", "n2", "n3", "n4"):
        setattr(A, "expect_" + k, 0)
    A.plain_expect_pa = A.plain_expect_n1 = 0

    honest = Honest()
    honest.t.start()
    stalls = []
    st = threading.Thread(target=stall_attacks, args=(stalls,), daemon=True)
    st.start()
    for phase in (pre_auth_attacks, session_attacks, plain_attacks, rotation_attacks):
        try:
            phase()
        except Exception as e:  # an attack that could not run is a failure, not a crash
            import traceback
            not_ok("%s ran to its end" % phase.__name__, traceback.format_exc())
    st.join(20)
    for name, good, why in stalls:
        check(name, good, why)
    check("secret server: three stalled handshakes were all closed", len(stalls) == 3,
          "%d of 3 finished" % len(stalls))
    time.sleep(0.3)
    honest.stop.set()
    honest.t.join(30)
    check("secret server: every honest wire_agent.py session was acknowledged in full "
          "(%d sessions, %d reports)" % (honest.sessions, honest.reports),
          not honest.errors and honest.sessions >= 3, "\n".join(honest.errors[:5]))
    # Totals: the honest reports exactly, nothing of any attack.
    time.sleep(0.3)
    m = metrics(A.http) or {}

    def g(k):
        return int(m.get(k, 0))
    want = {
        'pod_cross_zone_network_traffic_bytes_total{namespace="ns",pod="pa"}': honest.bytes,
        'pod_cross_zone_network_traffic_bytes_total{namespace="ns",pod="pb"}': A.expect_pb,
        'pod_cross_zone_network_traffic_bytes_total{namespace="ns",pod="pc"}': A.expect_pc,
        'pod_cross_zone_network_traffic_bytes_total{namespace="ns",pod="pd"}': A.expect_pd,
        'kubezonnet_records_received_total{node="n1"}': honest.reports,
        'kubezonnet_records_received_total{node="n2"}': A.expect_n2,
        'kubezonnet_records_received_total{node="n3"}': A.expect_n3,
        'kubezonnet_records_received_total{node="n4"}': A.expect_n4,
        'kubezonnet_reports_total{result="stored"}':
            honest.reports + A.expect_n2 + A.expect_n3 + A.expect_n4,
    }
    bad = ["%s = %d, want %d" % (k, g(k), v) for k, v in want.items() if g(k) != v]
    check("secret server: exactly the honest reports are counted (pa %d bytes in %d reports)" %
          (honest.bytes, honest.reports), not bad, "\n".join(bad))
    others = [k for k in m if k.startswith("kubezonnet_records_received_total{") and
              not re.search(r'node="n[1-4]"', k)]
    check("secret server: no other node has records", not others, " ".join(others))
    check("secret server: alive at the end", alive(A.http))
    return 0


if __name__ == "__main__":
    sys.exit(main())
