#!/usr/bin/env python3
"""Traffic for the network-namespace tests, from Python's standard library only.

  traffic.py udp DST PORT COUNT SIZE [PORTS]   COUNT datagrams of SIZE bytes to PORT..PORT+PORTS-1
  traffic.py tcp-sink PORT                      accept one TCP connection, read to EOF, print bytes
  traffic.py tcp DST PORT BYTES                 send BYTES over TCP; print "payload mss"
  traffic.py udp-flood DST SECONDS NEWPORTS     datagrams for SECONDS, NEWPORTS new ports each 10 ms
  traffic.py udp-gso DST PORT COUNT SIZE SEGMENT  COUNT sends of SIZE bytes, each cut by the kernel
                                                into datagrams of SEGMENT bytes (UDP GSO)
  traffic.py udp6-ext DST PORT COUNT SIZE       IPv6 datagrams with a segment routing header (to
                                                DST itself) and, after it, 16 bytes of
                                                destination options, set on the socket
"""
import socket
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def send_all(s, payload, dst, port, count, ports=1):
    """count datagrams of payload from s to dst, round robin over ports from port."""
    for i in range(count):
        try:
            s.sendto(payload, (dst, port + i % ports))
        except ConnectionRefusedError:
            pass  # an ICMP port unreachable from an earlier datagram: keep going


def udp(dst, port, count, size, ports=1):
    send_all(socket.socket(family(dst), socket.SOCK_DGRAM), b"k" * size, dst, port, count, ports)


def tcp_sink(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(1)
    print("listening", flush=True)
    c, _ = s.accept()
    n = 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        n += len(b)
    c.close()
    print(n, flush=True)


def tcp(dst, port, nbytes):
    s = socket.create_connection((dst, port), timeout=30)
    chunk = b"x" * 65536
    left = nbytes
    while left:
        left -= s.send(chunk[: min(left, len(chunk))])
    mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    print(nbytes, mss, flush=True)


# linux/udp.h: the socket option, at level SOL_UDP, that makes one send several datagrams.
UDP_SEGMENT = 103


def udp_gso(dst, port, count, size, segment):
    s = socket.socket(family(dst), socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, segment)
    send_all(s, b"g" * size, dst, port, count)


# linux/in6.h: the socket's routing header, and its destination options after the routing header.
IPV6_RTHDR, IPV6_DSTOPTS = 57, 59


def udp6_ext(dst, port, count, size):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    seg = socket.inet_pton(socket.AF_INET6, dst)
    # Segment routing header (type 4), two segments, both DST; one left: the packet goes to DST.
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RTHDR, bytes([0, 4, 4, 1, 1, 0, 0, 0]) + seg + seg)
    # 16 bytes: next header, length 1 (2 units of 8), one PadN option of 12 bytes.
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_DSTOPTS, bytes([0, 1, 1, 12]) + bytes(12))
    send_all(s, b"e" * size, dst, port, count)


def udp_flood(dst, seconds, newports):
    s = socket.socket(family(dst), socket.SOCK_DGRAM)
    end = time.time() + seconds
    port = 20000
    sent = 0
    while time.time() < end:
        for _ in range(newports):
            port = 20000 + (port - 20000 + 1) % 40000
            for size in (64, 200):
                try:
                    s.sendto(b"f" * size, (dst, port))
                except ConnectionRefusedError:
                    pass
                sent += 1
        time.sleep(0.01)
    print(sent, flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "udp":
        udp(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]) if len(args) > 4 else 1)
    elif cmd == "tcp-sink":
        tcp_sink(int(args[0]))
    elif cmd == "tcp":
        tcp(args[0], int(args[1]), int(args[2]))
    elif cmd == "udp-gso":
        udp_gso(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
    elif cmd == "udp6-ext":
        udp6_ext(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "udp-flood":
        udp_flood(args[0], float(args[1]), int(args[2]))
    else:
        sys.exit("unknown command " + cmd)
