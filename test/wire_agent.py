#!/usr/bin/env python3
"""An agent written from the README's description of the wire protocol, independently of
wire.h: it sends HELLO and STATS frames and reads the ACKs, so tests can drive the server
with records of their choosing.

  wire_agent.py [OPTIONS] HOST PORT NODE INSTANCE SEQ SRC DST BYTES [SEQ SRC DST BYTES ...]

Each (SEQ, SRC, DST, BYTES) becomes one STATS frame with one UDP record on port 53; it
prints the acknowledged sequence numbers. In protocol version 2, BYTES may be BYTES/ENCAP:
ENCAP of those bytes were tunnel encapsulation (default 0).

  wire_agent.py [OPTIONS] HOST PORT NODE INSTANCE --bulk FRAMES RECORDS SRC DST BYTES

sends FRAMES frames (sequences 1..FRAMES) of RECORDS records each, from SRC to DST on ports
1..RECORDS.

Options, before HOST:
  --protocol N          the version HELLO announces, and so the layout of every STATS frame
                        (default 1)
  --stats-layout N      send STATS frames in version N's layout whatever HELLO announced (to
                        test that the server refuses them)
  --malformed P B       version 2: every STATS frame reports P packets and B bytes whose tunnel
                        inner headers could not be read
  --zlib                send every STATS frame compressed (flag 0x0001)
  --hook N              version 3: the hook HELLO names (1 netfilter, default; 2 cgroup)
  --device-bytes N      version 3: the device bytes every STATS frame reports (default 0)
  --blind               version 3: every STATS frame says the hook is blind
  --secret FILE         protocol version 3: prove the secret on FILE's first line in the
                        handshake, check the server's proof, and authenticate every STATS
                        frame and ACK (HMAC-SHA-256 from Python's hmac module)
  --source ADDR         connect from this local address (127.0.0.2, say: a node's address)
  --capture FILE        write every byte sent to FILE (to replay on another connection)
  --bad-mac             send every STATS frame's MAC with one bit flipped

A reply other than an ACK ends it with exit status 1 and "server error CODE: MESSAGE" (or
the frame type) on stderr.
"""
import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import sys
import zlib

HELLO, STATS, ACK, ERROR, CHALLENGE, AUTH = 1, 2, 3, 4, 5, 6
FLAG_ZLIB, FLAG_MAC, FLAG_SECRET = 0x0001, 0x0002, 0x0004
MAGIC = 0x4B5A4E54  # "KZNT"


def frame(ftype, payload, flags=0):
    return struct.pack(">IHH", 4 + len(payload), ftype, flags) + payload


def addr16(text):
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return b"\0" * 10 + b"\xff\xff" + a.packed, 4
    return a.packed, 6


def read_frame(s):
    """The next frame's (header, type, flags, payload); an ERROR ends the program."""
    header = s.recv(8, socket.MSG_WAITALL)
    if len(header) < 8:
        sys.exit("server closed the connection")
    length, ftype, flags = struct.unpack(">IHH", header)
    body = s.recv(length - 4, socket.MSG_WAITALL)
    if ftype == ERROR and len(body) >= 4:
        code, n = struct.unpack(">HH", body[:4])
        sys.exit("server error %d: %s" % (code, body[4:4 + n].decode("utf-8", "replace")))
    return header, ftype, flags, body


class Session:
    """Version 3 (the README's description): the handshake, then a MAC on every STATS and
    ACK: HMAC(session key, direction || counter || header || payload)."""

    def __init__(self, secret):
        self.secret, self.key, self.sent, self.received = secret, None, 0, 0

    def derive(self, label, transcript, nonce):
        return hmac.new(self.secret, label + transcript + nonce, hashlib.sha256).digest()

    def seal(self, data, bad=False):
        """data: a whole frame without MAC; returns it with its MAC."""
        length, ftype, flags = struct.unpack(">IHH", data[:8])
        header = struct.pack(">IHH", length + 32, ftype, flags | FLAG_MAC)
        mac = hmac.new(self.key, struct.pack(">BQ", 0, self.sent) + header + data[8:],
                       hashlib.sha256).digest()
        self.sent += 1
        if bad:
            mac = bytes([mac[0] ^ 1]) + mac[1:]
        return header + data[8:] + mac

    def open(self, header, flags, body):
        if not flags & FLAG_MAC or len(body) < 32:
            sys.exit("ACK without its MAC")
        want = hmac.new(self.key, struct.pack(">BQ", 1, self.received) + header + body[:-32],
                        hashlib.sha256).digest()
        self.received += 1
        if not hmac.compare_digest(want, body[-32:]):
            sys.exit("ACK with a wrong MAC")
        return body[:-32]


def read_ack(s, session=None):
    """The sequence number of the next frame, which must be an ACK."""
    header, ftype, flags, body = read_frame(s)
    if ftype != ACK:
        sys.exit("expected ACK, got frame type %d: %r" % (ftype, body))
    if session:
        body = session.open(header, flags, body)
    return struct.unpack(">Q", body)[0]


def parse_bytes(text, layout):
    """BYTES or, in version 2, BYTES/ENCAP."""
    if "/" in text:
        if layout < 2:
            sys.exit("BYTES/ENCAP needs --protocol 2: %s" % text)
        nbytes, encap = text.split("/")
        return int(nbytes), int(encap)
    return int(text), 0


class Agent:
    def __init__(self, layout, malformed, compress, device=0, status=0):
        self.layout, self.malformed, self.compress = layout, malformed, compress
        self.device, self.status = device, status

    def record(self, family, proto, port, s16, d16, nbytes, packets, encap):
        # family:u8 protocol:u8 port:u16 src[16] dst[16] bytes:u64 packets:u64, then in
        # version 2 encapsulation bytes:u64
        r = struct.pack(">BBH", family, proto, port) + s16 + d16 + struct.pack(">QQ", nbytes, packets)
        if self.layout >= 2:
            r += struct.pack(">Q", encap)
        return r

    def stats(self, seq, count, records):
        # sequence, interval start, end, lost (map full) packets and bytes, lost (other)
        # packets and bytes, record count; in version 2 then tunnel-malformed packets and bytes
        payload = struct.pack(">QQQQQQQI", seq, 1, 2, 0, 0, 0, 0, count)
        if self.layout >= 2:
            payload += struct.pack(">QQ", *self.malformed)
        if self.layout >= 3:
            # version 3: device bytes:u64, hook status:u32 (bit 0: blind)
            payload += struct.pack(">QI", self.device, self.status)
        payload += records
        if self.compress:
            return frame(STATS, struct.pack(">I", len(payload)) + zlib.compress(payload), FLAG_ZLIB)
        return frame(STATS, payload)


def main():
    args = sys.argv[1:]
    protocol, layout, malformed, compress = 1, None, (0, 0), False
    secret, source, capture, bad_mac = None, None, None, False
    hook, device, status = 1, 0, 0
    while args and args[0].startswith("--") and args[0] != "--bulk":
        opt = args.pop(0)
        if opt == "--protocol":
            protocol = int(args.pop(0))
        elif opt == "--stats-layout":
            layout = int(args.pop(0))
        elif opt == "--malformed":
            malformed = (int(args.pop(0)), int(args.pop(0)))
        elif opt == "--zlib":
            compress = True
        elif opt == "--secret":
            with open(args.pop(0), "rb") as f:
                secret = f.read().split(b"\n")[0].rstrip(b" \t\r")
            protocol = 3
        elif opt == "--source":
            source = args.pop(0)
        elif opt == "--capture":
            capture = open(args.pop(0), "wb")
        elif opt == "--bad-mac":
            bad_mac = True
        elif opt == "--hook":
            hook = int(args.pop(0))
        elif opt == "--device-bytes":
            device = int(args.pop(0))
        elif opt == "--blind":
            status = 1
        else:
            sys.exit("unknown option %s\n%s" % (opt, __doc__))
    layout = protocol if layout is None else layout
    if malformed != (0, 0) and layout < 2:
        sys.exit("--malformed needs version 2")
    agent = Agent(layout, malformed, compress, device, status)
    host, port, node, instance = args[0], int(args[1]), args[2], int(args[3])
    rest = args[4:]
    s = socket.create_connection((host, port), timeout=10,
                                 source_address=(source, 0) if source else None)

    def raw_send(data):
        if capture:
            capture.write(data)
            capture.flush()
        s.sendall(data)
    send = raw_send
    n = node.encode()
    hello = struct.pack(">IHQH", MAGIC, protocol, instance, len(n)) + n + struct.pack(">H", 4) + b"test"
    session = None
    if protocol >= 3:
        hello += struct.pack(">H", hook)  # version 3: the hook
    if secret is not None:
        hello += os.urandom(32)  # the agent's nonce, with the secret flag
    send(frame(HELLO, hello, FLAG_SECRET if secret is not None else 0))
    if secret is not None:
        session = Session(secret)
        _, ftype, _, nonce = read_frame(s)
        if ftype != CHALLENGE or len(nonce) != 32:
            sys.exit("expected CHALLENGE, got frame type %d" % ftype)
        transcript = hashlib.sha256(hello).digest()
        send(frame(AUTH, session.derive(b"kubezonnet v3 agent proof", transcript, nonce)))
        _, ftype, _, proof = read_frame(s)
        if ftype != AUTH or not hmac.compare_digest(
                proof, session.derive(b"kubezonnet v3 server proof", transcript, nonce)):
            sys.exit("the server did not prove it holds the secret")
        session.key = session.derive(b"kubezonnet v3 session key", transcript, nonce)
        send = lambda data: raw_send(session.seal(data, bad_mac))
    acked = []
    if rest and rest[0] == "--bulk":
        frames, count, src, dst = int(rest[1]), int(rest[2]), rest[3], rest[4]
        nbytes, encap = parse_bytes(rest[5], layout)
        s16, fam = addr16(src)
        d16, _ = addr16(dst)
        records = b"".join(agent.record(fam, 17, port, s16, d16, nbytes, 1, encap)
                           for port in range(1, count + 1))
        rest = []
        for seq in range(1, frames + 1):
            send(agent.stats(seq, count, records))
            acked.append(read_ack(s, session))
    for i in range(0, len(rest), 4):
        seq, src, dst = int(rest[i]), rest[i + 1], rest[i + 2]
        nbytes, encap = parse_bytes(rest[i + 3], layout)
        s16, fam = addr16(src)
        d16, _ = addr16(dst)
        send(agent.stats(seq, 1, agent.record(fam, 17, 53, s16, d16, nbytes, 1, encap)))
        acked.append(read_ack(s, session))
    print(" ".join(map(str, acked)))


if __name__ == "__main__":
    main()
