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

A reply other than an ACK ends it with exit status 1 and "server error CODE: MESSAGE" (or
the frame type) on stderr.
"""
import ipaddress
import socket
import struct
import sys
import zlib

HELLO, STATS, ACK, ERROR = 1, 2, 3, 4
FLAG_ZLIB = 0x0001
MAGIC = 0x4B5A4E54  # "KZNT"


def frame(ftype, payload, flags=0):
    return struct.pack(">IHH", 4 + len(payload), ftype, flags) + payload


def addr16(text):
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return b"\0" * 10 + b"\xff\xff" + a.packed, 4
    return a.packed, 6


def read_ack(s):
    """The sequence number of the next frame, which must be an ACK."""
    length, ftype, _ = struct.unpack(">IHH", s.recv(8, socket.MSG_WAITALL))
    body = s.recv(length - 4, socket.MSG_WAITALL)
    if ftype == ERROR and len(body) >= 4:
        code, n = struct.unpack(">HH", body[:4])
        sys.exit("server error %d: %s" % (code, body[4:4 + n].decode("utf-8", "replace")))
    if ftype != ACK:
        sys.exit("expected ACK, got frame type %d: %r" % (ftype, body))
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
    def __init__(self, layout, malformed, compress):
        self.layout, self.malformed, self.compress = layout, malformed, compress

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
        payload += records
        if self.compress:
            return frame(STATS, struct.pack(">I", len(payload)) + zlib.compress(payload), FLAG_ZLIB)
        return frame(STATS, payload)


def main():
    args = sys.argv[1:]
    protocol, layout, malformed, compress = 1, None, (0, 0), False
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
        else:
            sys.exit("unknown option %s\n%s" % (opt, __doc__))
    layout = protocol if layout is None else layout
    if malformed != (0, 0) and layout < 2:
        sys.exit("--malformed needs version 2")
    agent = Agent(layout, malformed, compress)
    host, port, node, instance = args[0], int(args[1]), args[2], int(args[3])
    rest = args[4:]
    s = socket.create_connection((host, port), timeout=10)
    n = node.encode()
    hello = struct.pack(">IHQH", MAGIC, protocol, instance, len(n)) + n + struct.pack(">H", 4) + b"test"
    s.sendall(frame(HELLO, hello))
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
            s.sendall(agent.stats(seq, count, records))
            acked.append(read_ack(s))
    for i in range(0, len(rest), 4):
        seq, src, dst = int(rest[i]), rest[i + 1], rest[i + 2]
        nbytes, encap = parse_bytes(rest[i + 3], layout)
        s16, fam = addr16(src)
        d16, _ = addr16(dst)
        s.sendall(agent.stats(seq, 1, agent.record(fam, 17, 53, s16, d16, nbytes, 1, encap)))
        acked.append(read_ack(s))
    print(" ".join(map(str, acked)))


if __name__ == "__main__":
    main()
