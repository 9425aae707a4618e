#!/usr/bin/env python3
"""Traffic for `make demo`: services that answer requests, and clients that call them the way
real services do (request, response, think time). Python standard library only.

  traffic.py serve PORT                       answer each request with the size it asks for
  traffic.py call RATE REQ RESP ADDR:PORT...  RATE requests/s, REQ bytes up, RESP bytes back,
                                              round robin over the targets
"""
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = recv_exact(sock, 8)
                if not head:
                    return
                req, resp = struct.unpack(">II", head)
                if not recv_exact(sock, req - 8 if req > 8 else 0) and req > 8:
                    return
                sock.sendall(b"r" * resp)
        except OSError:
            return


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf if n else b"ok"


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET


def serve(port):
    Server(("0.0.0.0", port), Handler).serve_forever()


class Stop(Exception):
    pass


def stop(*_):
    raise Stop


def close_all(conns):
    """On SIGTERM: each connection's FIN, then the server's, with this process still holding
    the socket, so that the last ACK leaves from it (counted under this pod's cgroup) and not
    from the kernel's own socket, as it would from a socket already closed."""
    for s in conns.values():
        try:
            s.settimeout(2)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()


def call(rate, req, resp, targets):
    conns = {}
    signal.signal(signal.SIGTERM, stop)
    try:
        call_loop(rate, req, resp, targets, conns)
    except Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        close_all(conns)


def call_loop(rate, req, resp, targets, conns):
    period = 1.0 / rate
    i = random.randrange(len(targets))
    while True:
        start = time.monotonic()
        target = targets[i % len(targets)]
        i += 1
        try:
            s = conns.get(target)
            if s is None:
                host, port = target.rsplit(":", 1)
                s = socket.create_connection((host, int(port)), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns[target] = s
            s.sendall(struct.pack(">II", req, resp) + b"q" * max(0, req - 8))
            if not recv_exact(s, resp):
                raise OSError("closed")
        except OSError:
            conns.pop(target, None)
            time.sleep(0.2)
        time.sleep(max(0.0, period - (time.monotonic() - start)))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        call(float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
