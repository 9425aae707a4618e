#!/usr/bin/env python3
"""An agent written from the README's description of the wire protocol, independently of
wire.h: it sends HELLO and STATS frames and reads the ACKs, so tests can drive the server
with records of their choosing.

  wire_agent.py HOST PORT NODE INSTANCE SEQ SRC DST BYTES [SEQ SRC DST BYTES ...]

Each (SEQ, SRC, DST, BYTES) becomes one STATS frame with one UDP record on port 53; it
prints the acknowledged sequence numbers.

  wire_agent.py HOST PORT NODE INSTANCE --bulk FRAMES RECORDS SRC DST BYTES

sends FRAMES frames (sequences 1..FRAMES) of RECORDS records each, from SRC to DST on ports
1..RECORDS.
"""
import ipaddress
import socket
import struct
import sys


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
    if ftype != 3:
        sys.exit("expected ACK, got frame type %d: %r" % (ftype, body))
    return struct.unpack(">Q", body)[0]


def main():
    host, port, node, instance = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    rest = sys.argv[5:]
    s = socket.create_connection((host, port), timeout=10)
    n = node.encode()
    hello = struct.pack(">IHQH", 0x4B5A4E54, 1, instance, len(n)) + n + struct.pack(">H", 4) + b"test"
    s.sendall(frame(1, hello))
    acked = []
    if rest and rest[0] == "--bulk":
        frames, count, src, dst, nbytes = int(rest[1]), int(rest[2]), rest[3], rest[4], int(rest[5])
        s16, fam = addr16(src)
        d16, _ = addr16(dst)
        records = b"".join(struct.pack(">BBH", fam, 17, port) + s16 + d16 + struct.pack(">QQ", nbytes, 1)
                           for port in range(1, count + 1))
        rest = []
        for seq in range(1, frames + 1):
            s.sendall(frame(2, struct.pack(">QQQQQQQI", seq, 1, 2, 0, 0, 0, 0, count) + records))
            acked.append(read_ack(s))
    for i in range(0, len(rest), 4):
        seq, src, dst, nbytes = int(rest[i]), rest[i + 1], rest[i + 2], int(rest[i + 3])
        s16, fam = addr16(src)
        d16, _ = addr16(dst)
        record = struct.pack(">BBH", fam, 17, 53) + s16 + d16 + struct.pack(">QQ", nbytes, 1)
        stats = struct.pack(">QQQQQQQI", seq, 1, 2, 0, 0, 0, 0, 1) + record
        s.sendall(frame(2, stats))
        acked.append(read_ack(s))
    print(" ".join(map(str, acked)))


if __name__ == "__main__":
    main()
