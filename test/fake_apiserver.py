#!/usr/bin/env python3
"""A stand-in Kubernetes API server for tests, written from the API's documented behaviour
with Python's standard library only, serving the real responses in ../shared/fixtures/k8s/.

  fake_apiserver.py PORT FIXTURES LOG

Nodes: the kind NodeList in pages of 2; the first request for page 2 gets a plain HTTP 410
(an expired continue token), so the client must list again, in full without pages. The node watch
streams the node events fixture and then ends normally (the client should resume from the
last resourceVersion, 1900, without listing again).
Pods: the kind kube-system PodList; its watch streams the recreated-pod events fixture, in
chunks of odd sizes that split events, ending with an ERROR 410; the next list (the client
must relist) returns the dual-stack PodList; later watches stay open with no events.
Every request line is appended to LOG.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, FIX, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
state = {"node_page2": 0, "pod_lists": 0, "pod_watches": 0}


def load(name):
    return json.load(open(os.path.join(FIX, name)))


def lines(name):
    return open(os.path.join(FIX, name), "rb").read()


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

    def do_GET(self):
        with open(LOG, "a") as f:
            f.write(self.path + "\n")
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        kind = url.path.rsplit("/", 1)[-1]
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
                                        "metadata": {"resourceVersion": "1500", "continue": "page2"},
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

    def watch(self, kind, q):
        self.start_chunked()
        if kind == "nodes":
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


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
