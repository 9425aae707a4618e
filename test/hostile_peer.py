#!/usr/bin/env python3
"""Hostile peers for the server's tests (issue #12), written from the README's description of
the wire protocol and of HTTP, independently of the server's code. Each subcommand is one
attack; each prints what the test compares, one "key=value" per line.

  hostile_peer.py bomb AGENT_PORT HTTP_PORT FRAMES
      HELLO, then FRAMES zlib STATS frames sent at once, each about 50 KB that inflates to the
      largest payload a default server takes (322,637 records of 10.0.0.1 -> 10.0.0.2, one
      byte each); while the ACKs come, /healthz is asked every 100 ms.
      Prints acks=N, healthz_max_ms=MS, healthz_count=N.

  hostile_peer.py pipeline HTTP_PORT REQUESTS SECONDS
      Sends REQUESTS pipelined "GET /metrics" on one connection and never reads, for SECONDS.

  hostile_peer.py names AGENT_PORT COUNT PREFIX INSTANCE0
      COUNT agents named PREFIX-0 .. PREFIX-(COUNT-1), instances INSTANCE0.., each sending
      one report (sequence 1, one record between two unknown addresses), 200 at a time.
      Prints acked=N.

  hostile_peer.py hold AGENT_PORT|HTTP_PORT COUNT SECONDS [drip]
      Opens COUNT connections and holds them SECONDS (with drip: one byte a second each,
      the first bytes of a HELLO, or of an HTTP request head on the HTTP port).
      Prints opened=N.

  hostile_peer.py storm AGENT_PORT HTTP_PORT SECONDS
      Everything at once, for SECONDS: on each port 1,000 connections that send one byte a
      second and 1,000 idle ones; garbage, truncated and oversized frames; a HELLO storm
      (connect, HELLO, close); and four honest agents (nodes n1..n4, instances 1..4) each
      sending a report every 500 ms: ten records from pod 10.0.N.1 to 10.0.N.2 (N the
      agent's number) of 1,000 + N bytes each, resending any report not acknowledged. Meanwhile
      GET /metrics every 200 ms on a new connection, timed. Prints honest_reports=N,
      honest_unacked=N, honest_N=reports acknowledged of agent N, scrapes=N, scrape_failed=N, scrape_p50_ms, scrape_max_ms, opened=N.
"""
import select
import socket
import struct
import sys
import time
import zlib

HELLO, STATS, ACK, ERROR = 1, 2, 3, 4
FLAG_ZLIB = 0x0001
MAGIC = 0x4B5A4E54
STATS_FIXED = 60  # version 1: seven u64 and a u32 record count
RECORD = 52       # version 1: family, protocol, port, two addresses, bytes, packets
MAX_FRAME = 16 << 20


def frame(ftype, payload, flags=0):
    return struct.pack(">IHH", 4 + len(payload), ftype, flags) + payload


def hello(node, instance):
    n = node.encode()
    return frame(HELLO, struct.pack(">IHQH", MAGIC, 1, instance, len(n)) + n +
                 struct.pack(">H", 7) + b"hostile")


def v4(text):
    return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(text)


def stats(seq, records, count, compress):
    payload = struct.pack(">QQQQQQQI", seq, 1, 2, 0, 0, 0, 0, count) + records
    if compress:
        return frame(STATS, struct.pack(">I", len(payload)) + zlib.compress(payload, 9), FLAG_ZLIB)
    return frame(STATS, payload)


def record(src, dst, nbytes):
    return struct.pack(">BBH", 4, 17, 53) + v4(src) + v4(dst) + struct.pack(">QQ", nbytes, 1)


def read_frames(buf):
    """Whole frames at the start of buf: ([(type, body)], rest)."""
    out = []
    while len(buf) >= 8:
        length, ftype, _ = struct.unpack(">IHH", buf[:8])
        if len(buf) < 4 + length:
            break
        out.append((ftype, buf[8:4 + length]))
        buf = buf[4 + length:]
    return out, buf


def healthz_ms(port):
    t = time.monotonic()
    c = socket.create_connection(("127.0.0.1", port), timeout=60)
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = c.recv(4096)
        if not d:
            break
        data += d
    c.close()
    if not data.startswith(b"HTTP/1.1 200"):
        raise SystemExit("healthz: %r" % data[:40])
    return (time.monotonic() - t) * 1000


def bomb(agent_port, http_port, frames):
    count = (MAX_FRAME - STATS_FIXED) // RECORD
    records = record("10.0.0.1", "10.0.0.2", 1) * count
    data = [stats(seq, records, count, True) for seq in range(1, frames + 1)]
    s = socket.create_connection(("127.0.0.1", agent_port), timeout=10)
    s.sendall(hello("n1", 4242) + b"".join(data))
    s.setblocking(False)
    acks, buf, worst, asked = 0, b"", 0.0, 0
    deadline = time.monotonic() + 300
    while acks < frames and time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.1)
        if r:
            d = s.recv(65536)
            if not d:
                break
            got, buf = read_frames(buf + d)
            for ftype, _ in got:
                if ftype != ACK:
                    raise SystemExit("bomb: frame type %d" % ftype)
                acks += 1
        if acks < frames:
            worst = max(worst, healthz_ms(http_port))
            asked += 1
    print("acks=%d" % acks)
    print("healthz_max_ms=%d" % worst)
    print("healthz_count=%d" % asked)
    print("records_per_frame=%d" % count)


def pipeline(http_port, requests, seconds):
    s = socket.create_connection(("127.0.0.1", http_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    s.setblocking(False)
    pending = req * requests
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pending:
            try:
                n = s.send(pending[:1 << 20])
                pending = pending[n:]
            except BlockingIOError:
                pass
            except OSError:
                break
        time.sleep(0.01)
    print("unsent=%d" % len(pending))


def names(agent_port, count, prefix, instance0):
    acked = 0
    rec = record("192.0.2.1", "192.0.2.2", 1)
    for start in range(0, count, 200):
        socks = []
        for i in range(start, min(count, start + 200)):
            s = socket.create_connection(("127.0.0.1", agent_port), timeout=30)
            s.sendall(hello("%s-%d" % (prefix, i), instance0 + i) + stats(1, rec, 1, False))
            socks.append(s)
        for s in socks:
            buf = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got, buf = read_frames(buf + d)
                if got:
                    acked += sum(1 for t, _ in got if t == ACK)
                    break
            s.close()
    print("acked=%d" % acked)


def hold(port, count, seconds, drip):
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    print("opened=%d" % len(socks), flush=True)
    if drip == "http":
        head = b"GET /metrics HTTP/1.1\r\nHost: " + b"x" * 4096
    else:
        head = hello("drip", 1)
    end, k = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        if drip:
            for s in socks:
                try:
                    s.send(head[k % len(head):k % len(head) + 1])
                except OSError:
                    pass
            k += 1
        time.sleep(1)


def storm(agent_port, http_port, seconds):
    import random
    import threading
    end = time.monotonic() + seconds
    results = {"honest_reports": 0, "honest_unacked": 0, "scrape_failed": 0, "garbage_sent": 0,
               "storm_hellos": 0}
    lat = []
    lock = threading.Lock()

    def holders():
        socks = []
        for port in (agent_port, http_port):
            for _ in range(2000):
                try:
                    socks.append((port, socket.create_connection(("127.0.0.1", port), timeout=5)))
                except OSError:
                    pass
        with lock:
            results["opened"] = len(socks)
        heads = {agent_port: hello("drip", 1), http_port: b"GET /metrics HTTP/1.1\r\nHost: " + b"x" * 4096}
        k = 0
        while time.monotonic() < end:
            for i, (port, c) in enumerate(socks):
                if i % 2:  # every other one idle; the rest drip a byte a second
                    continue
                h = heads[port]
                try:
                    c.send(h[k % len(h):k % len(h) + 1])
                except OSError:
                    pass
            k += 1
            time.sleep(1)
        for _, c in socks:
            c.close()

    def garbage():
        rng = random.Random(7)
        kinds = [
            lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))),
            lambda: hello("g", 9)[:rng.randrange(1, 20)],                       # truncated HELLO
            lambda: struct.pack(">IHH", 0x7fffffff, 1, 0),                      # oversized
            lambda: hello("g", 9) + frame(STATS, b"\0" * 10),                 # short STATS
            lambda: hello("g", 9) + frame(STATS, b"\0\0\0\x10" + b"junk", FLAG_ZLIB),  # bad zlib
            lambda: frame(STATS, b"\0" * 60),                                 # no HELLO first
        ]
        while time.monotonic() < end:
            try:
                c = socket.create_connection(("127.0.0.1", agent_port), timeout=2)
                c.sendall(rng.choice(kinds)())
                c.close()
                with lock:
                    results["garbage_sent"] += 1
            except OSError:
                pass
            try:
                c = socket.create_connection(("127.0.0.1", http_port), timeout=2)
                c.sendall(bytes(rng.getrandbits(8) for _ in range(64)) + b"\r\n\r\n")
                c.close()
            except OSError:
                pass
            time.sleep(0.01)

    def hello_storm():
        i = 0
        while time.monotonic() < end:
            try:
                c = socket.create_connection(("127.0.0.1", agent_port), timeout=2)
                c.sendall(hello("storm-%d" % (i % 50), 100000 + i))
                c.close()
                i += 1
            except OSError:
                pass
            time.sleep(0.002)
        with lock:
            results["storm_hellos"] = i

    def honest(n):
        rec = record("10.0.%d.1" % n, "10.0.%d.2" % n, 1000 + n) * 10
        seq = 0
        s = None
        while time.monotonic() < end:
            seq += 1
            acked = False
            while not acked and time.monotonic() < end + 20:
                try:
                    if s is None:
                        s = socket.create_connection(("127.0.0.1", agent_port), timeout=5)
                        s.sendall(hello("n%d" % n, n))
                    s.sendall(stats(seq, rec, 10, n % 2 == 0))
                    buf = b""
                    while True:
                        d = s.recv(4096)
                        if not d:
                            raise OSError("closed")
                        got, buf = read_frames(buf + d)
                        if got:
                            acked = got[0][0] == ACK
                            if not acked:
                                raise OSError("error frame")
                            break
                except OSError:
                    if s:
                        s.close()
                    s = None
                    time.sleep(0.2)
            with lock:
                if acked:
                    results["honest_reports"] += 1
                    results["honest_%d" % n] = results.get("honest_%d" % n, 0) + 1
                else:
                    results["honest_unacked"] += 1
            time.sleep(0.5)

    def scraper():
        while time.monotonic() < end:
            t = time.monotonic()
            try:
                c = socket.create_connection(("127.0.0.1", http_port), timeout=5)
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
                c.close()
                if not data.startswith(b"HTTP/1.1 200"):
                    raise OSError("status %r" % data[:20])
                with lock:
                    lat.append((time.monotonic() - t) * 1000)
            except OSError:
                with lock:
                    results["scrape_failed"] += 1
            time.sleep(0.2)

    threads = [threading.Thread(target=f) for f in (holders, garbage, hello_storm, scraper)]
    threads += [threading.Thread(target=honest, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    results["scrapes"] = len(lat)
    results["scrape_p50_ms"] = int(lat[len(lat) // 2]) if lat else -1
    results["scrape_max_ms"] = int(lat[-1]) if lat else -1
    for k, v in sorted(results.items()):
        print("%s=%s" % (k, v))


def main():
    a = sys.argv[1:]
    if not a:
        raise SystemExit(__doc__)
    if a[0] == "bomb":
        bomb(int(a[1]), int(a[2]), int(a[3]))
    elif a[0] == "pipeline":
        pipeline(int(a[1]), int(a[2]), float(a[3]))
    elif a[0] == "names":
        names(int(a[1]), int(a[2]), a[3], int(a[4]))
    elif a[0] == "storm":
        storm(int(a[1]), int(a[2]), float(a[3]))
    elif a[0] == "hold":
        hold(int(a[1]), int(a[2]), float(a[3]), a[4] if len(a) > 4 else "")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
