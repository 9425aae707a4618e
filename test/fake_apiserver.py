#!/usr/bin/env python3
"""A stand-in Kubernetes API server for tests, written from the API's documented behaviour
with Python's standard library only, serving the real responses in ../shared/fixtures/k8s/.

  fake_apiserver.py PORT FIXTURES LOG [--tls CERT KEY] [--token TOKEN] [--bind ADDR]
                   [--cut-node-watch] [--429-pod-watch] [--hang]

Nodes: the kind NodeList in pages of 2; the first request for page 2 gets a plain HTTP 410
(an expired continue token), so the client must list again, in full without pages. The node watch
streams the node events fixture and then ends normally (the client should resume from the
last resourceVersion, 1900, without listing again).
Pods: the kind kube-system PodList; its watch streams the recreated-pod events fixture, in
chunks of odd sizes that split events, ending with an ERROR 410; the next list (the client
must relist) returns the dual-stack PodList; later watches stay open with no events.
Every request's path is appended to LOG.

--tls serves HTTPS with that certificate; --bind ADDR listens there ("::" takes IPv4 and
IPv6). --token answers 401 to any request without "Authorization: Bearer TOKEN" (and logs
"401 <the token it got>"). --cut-node-watch: the first node watch stops in the middle of its
third event, without the last chunk; the next one must resume from the second event's
resourceVersion (1700) and gets the rest. --429-pod-watch: the first pod watch answers 429.
--hang: accept every connection and never answer.
--empty-watches: every watch ends at once, with no events.
--long-continue: the first node page's continue token is 3,000 bytes long.
--token-log FILE: append each request's bearer token (or "-") to FILE.
--watch-seconds N (with --lists): a watch sends a BOOKMARK and ends normally after N s.
--lists DIR: serve DIR/nodelist.json and DIR/podlist.json as they are (one page whatever the
limit), and on the first pod watch the events in DIR/events.jsonl (if any) after 3 s; the
watches then stay open and quiet.
"""
import argparse
import socket
import ssl
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("fixtures")
ap.add_argument("log")
ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
ap.add_argument("--token")
ap.add_argument("--bind", default="127.0.0.1")
ap.add_argument("--cut-node-watch", action="store_true")
ap.add_argument("--429-pod-watch", dest="pod_watch_429", action="store_true")
ap.add_argument("--hang", action="store_true")
ap.add_argument("--empty-watches", action="store_true")
ap.add_argument("--long-continue", action="store_true")
ap.add_argument("--token-log")
ap.add_argument("--watch-seconds", type=float)
ap.add_argument("--lists")
ARGS = ap.parse_args()
PORT, FIX, LOG = ARGS.port, ARGS.fixtures, ARGS.log
lock = threading.Lock()
state = {"node_page2": 0, "pod_lists": 0, "pod_watches": 0, "node_watches": 0}


def load(name):
    return json.load(open(os.path.join(FIX, name)))


def lines(name):
    return open(os.path.join(FIX, name), "rb").read()


if not ARGS.lists:  # the fixtures' scenario (--lists needs no fixtures)
    NODES = load("nodelist_kind_no_zone_labels_podcidrs_sonobuoy.json")
    PODS1 = load("podlist_kind_kube_system_static_mirror_pending_unscheduled_sonobuoy.json")
    PODS2 = load("podlist_dualstack_and_ipv6_primary_derived.json")
    NODE_EVENTS = lines("watch_events_nodes_zone_label_added_deleted_derived.jsonl")
    POD_EVENTS = lines("watch_events_pods_recreated_bookmark_410_derived.jsonl")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def start_chunked(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_line(self, line):
        with lock, open(LOG, "a") as f:
            f.write(line + "\n")

    def do_GET(self):
        if ARGS.hang:
            while True:
                time.sleep(1)
        if ARGS.token_log:
            with lock, open(ARGS.token_log, "a") as f:
                f.write(self.headers.get("Authorization", "-").removeprefix("Bearer ") + "\n")
        if ARGS.token is not None:
            got = self.headers.get("Authorization", "")
            if got != "Bearer " + ARGS.token:
                self.log_line("401 " + got.removeprefix("Bearer "))
                return self.send_json(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "Unauthorized", "code": 401})
        self.log_line(self.path)
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        kind = url.path.rsplit("/", 1)[-1]
        if ARGS.lists:
            return self.serve_lists(kind, q)
        if q.get("watch") == "1":
            return self.watch(kind, q)
        if kind == "nodes":
            items = NODES["items"]
            if "limit" not in q:  # one full list (after an expired continue token)
                return self.send_json(200, {"kind": "NodeList", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": "1500"}, "items": items})
            if q.get("continue") == "page2":
                with lock:
                    state["node_page2"] += 1
                    first = state["node_page2"] == 1
                if first:
                    return self.send_json(410, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                "reason": "Expired", "code": 410,
                                                "message": "The provided continue parameter is too old"})
                return self.send_json(200, {"kind": "NodeList", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": "1500"}, "items": items[2:]})
            return self.send_json(200, {"kind": "NodeList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "1500",
                                                     "continue": "x" * 3000 if ARGS.long_continue else "page2"},
                                        "items": items[:2]})
        if kind == "pods":
            with lock:
                state["pod_lists"] += 1
                n = state["pod_lists"]
            lst = PODS1 if n == 1 else PODS2
            return self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "247000" if n == 1 else "249000"},
                                        "items": lst["items"]})
        self.send_json(404, {"kind": "Status", "code": 404})

    def serve_lists(self, kind, q):
        if kind not in ("pods", "nodes"):
            return self.send_json(404, {"kind": "Status", "code": 404})
        if q.get("watch") == "1":
            self.start_chunked()
            events = os.path.join(ARGS.lists, "events.jsonl")
            with lock:
                first = kind == "pods" and not state.get("events_sent")
                state["events_sent"] = state.get("events_sent") or first
            try:
                if first and os.path.exists(events):
                    time.sleep(3)
                    self.chunk(open(events, "rb").read())
                if ARGS.watch_seconds:
                    time.sleep(ARGS.watch_seconds)
                    rv = q.get("resourceVersion", "1000")
                    self.chunk(b'{"type":"BOOKMARK","object":{"kind":"%s","metadata":{"resourceVersion":"%s"}}}\n'
                               % (b"Pod" if kind == "pods" else b"Node", rv.encode()))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                while True:
                    time.sleep(1)
                    self.wfile.write(b"")
            except OSError:
                return
        path = os.path.join(ARGS.lists, "podlist.json" if kind == "pods" else "nodelist.json")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.end_headers()
        with open(path, "rb") as f:
            while True:
                block = f.read(1 << 20)
                if not block:
                    break
                self.wfile.write(block)

    def watch(self, kind, q):
        if ARGS.empty_watches:
            self.start_chunked()
            self.wfile.write(b"0\r\n\r\n")
            return
        if kind == "pods" and ARGS.pod_watch_429:
            with lock:
                state["pod_watches"] += 1
                first = state["pod_watches"] == 1
                if first:
                    state["pod_watches"] = 0
                    ARGS.pod_watch_429 = False
            if first:
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.start_chunked()
        if kind == "nodes" and ARGS.cut_node_watch:
            with lock:
                state["node_watches"] += 1
                n = state["node_watches"]
            cut = NODE_EVENTS.index(b"\n", NODE_EVENTS.index(b"\n") + 1) + 1  # two events
            if n == 1 and q.get("resourceVersion") == "1500":
                self.chunk(NODE_EVENTS[:cut + 1000])  # and a third of the third
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if n == 2 and q.get("resourceVersion") == "1700":
                self.chunk(NODE_EVENTS[cut:])
                self.wfile.write(b"0\r\n\r\n")
                return
        elif kind == "nodes":
            if q.get("resourceVersion") == "1500":
                self.chunk(NODE_EVENTS)
                self.wfile.write(b"0\r\n\r\n")  # a watch that ends normally
                return
        else:
            with lock:
                state["pod_watches"] += 1
                n = state["pod_watches"]
            if n == 1:
                data, i = POD_EVENTS, 0
                for size in (1000, 1, 4095, 3, 7000, 17, 2, 1 << 20):
                    if i >= len(data):
                        break
                    self.chunk(data[i:i + size])
                    i += size
                    time.sleep(0.01)
                self.wfile.write(b"0\r\n\r\n")
                return
        try:  # later watches: open, quiet, until the client goes
            while True:
                time.sleep(1)
                self.wfile.write(b"")
                self.wfile.flush()
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6 if ":" in ARGS.bind else socket.AF_INET

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request, client_address):
        pass  # a client that refuses our certificate, or goes away: not our concern


httpd = Server((ARGS.bind, PORT), Handler)
if ARGS.tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*ARGS.tls)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
httpd.serve_forever()
