/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubezonnet-server: one poll() loop that takes agent reports over wire.h, attributes every
 * record to pods, workloads, nodes and zones through the endpoint index, and serves the
 * result as Prometheus metrics over HTTP, plus JSON flow logs on stdout.
 *
 * Structure, after redis ae.c and OpenBSD ntpd: privileged set-up first (listeners, the
 * topology), then a single loop over a fixed table of descriptors. Signal handlers only set
 * flags. A bad frame or request costs only the connection that sent it; no peer can stall
 * the loop (all sockets are non-blocking, every buffer is bounded, every wait has a timeout).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "endpoint.h"
#include "hash.h"
#include "k8s/client.h"
#include "http.h"
#include "metrics.h"
#include "topology.h"
#include "log.h"
#include "sandbox.h"
#include "version.h"
#include "wire.h"

#include "server.h"

static volatile sig_atomic_t server_reload;

static void server_on_hup(int sig)
{
	(void)sig;
	server_reload = 1;
}

static void server_metrics_init(struct server *s)
{
#define FAMILY(f, n, h, t, ...)                                                                    \
	do {                                                                                       \
		static const char *const labels_[] = {__VA_ARGS__};                                \
		s->f.name = n;                                                                     \
		s->f.help = h;                                                                     \
		s->f.type = t;                                                                     \
		s->f.nlabels = sizeof(labels_) / sizeof(labels_[0]);                               \
		memcpy(s->f.labels, labels_, sizeof(labels_));                                     \
	} while (0)
	FAMILY(pod_bytes, "pod_cross_zone_network_traffic_bytes_total",
	       "Bytes sent by a pod to another zone (hostNetwork pods and nodes: namespace "
	       "_node_).",
	       METRICS_COUNTER, "namespace", "pod");
	FAMILY(pod_packets, "pod_cross_zone_network_traffic_packets_total",
	       "Packets sent by a pod to another zone.", METRICS_COUNTER, "namespace", "pod");
	FAMILY(workload_bytes, "workload_cross_zone_network_traffic_bytes_total",
	       "Cross-zone bytes of a workload's pods: sent, or received from outside every node.",
	       METRICS_COUNTER, "namespace", "workload", "workload_kind", "direction");
	FAMILY(workload_packets, "workload_cross_zone_network_traffic_packets_total",
	       "Cross-zone packets of a workload's pods.", METRICS_COUNTER, "namespace", "workload",
	       "workload_kind", "direction");
	FAMILY(zone_bytes, "zone_network_traffic_bytes_total",
	       "Bytes between zones, same-zone pairs included (external: a network with no zone).",
	       METRICS_COUNTER, "src_zone", "dst_zone");
	FAMILY(zone_packets, "zone_network_traffic_packets_total", "Packets between zones.",
	       METRICS_COUNTER, "src_zone", "dst_zone");
	FAMILY(encap_bytes, "kubezonnet_encapsulation_bytes_total",
	       "The part of zone_network_traffic_bytes_total that was tunnel encapsulation (outer "
	       "headers of overlay traffic counted under its inner flow; 0 from version 1 agents).",
	       METRICS_COUNTER, "src_zone", "dst_zone");
	FAMILY(class_bytes, "kubezonnet_traffic_bytes_total",
	       "Attributed bytes by class: same_zone, cross_zone, cross_region, external, unknown.",
	       METRICS_COUNTER, "class");
	FAMILY(unknown_bytes, "kubezonnet_unknown_bytes_total",
	       "Bytes with an address the endpoint index does not know, by which side.",
	       METRICS_COUNTER, "reason");
	FAMILY(records, "kubezonnet_records_received_total", "Flow records received from agents.",
	       METRICS_COUNTER, "node");
	FAMILY(reports, "kubezonnet_reports_total",
	       "STATS reports received: stored, or duplicate (resent after a lost ACK).",
	       METRICS_COUNTER, "result");
	FAMILY(frames_rejected, "kubezonnet_frames_rejected_total",
	       "Agent frames refused (the connection is closed), by the check that failed.",
	       METRICS_COUNTER, "reason");
	FAMILY(agents_connected, "kubezonnet_agents_connected", "Agents connected now.",
	       METRICS_GAUGE, );
	FAMILY(last_report, "kubezonnet_agent_last_report_timestamp_seconds",
	       "When each node's agent last sent a report (Unix time).", METRICS_GAUGE, "node");
	FAMILY(agent_lost_bytes, "kubezonnet_agent_lost_bytes_total",
	       "Bytes an agent counted but could not store under a flow, by reason.",
	       METRICS_COUNTER, "node", "reason");
	FAMILY(agent_lost_packets, "kubezonnet_agent_lost_packets_total",
	       "Packets an agent could not store under a flow, by reason.", METRICS_COUNTER, "node",
	       "reason");
	FAMILY(malformed_packets, "kubezonnet_agent_tunnel_malformed_packets_total",
	       "Tunnel packets whose inner headers could not be read, counted under their outer "
	       "(node) flow; reported by version 2 agents only.",
	       METRICS_COUNTER, "node");
	FAMILY(malformed_bytes, "kubezonnet_agent_tunnel_malformed_bytes_total",
	       "Bytes of tunnel packets whose inner headers could not be read, counted under their "
	       "outer (node) flow; reported by version 2 agents only.",
	       METRICS_COUNTER, "node");
	FAMILY(endpoints, "kubezonnet_endpoints", "Endpoints in the index now, by kind.",
	       METRICS_GAUGE, "kind");
	FAMILY(build_info, "kubezonnet_build_info", "The server's version.", METRICS_GAUGE,
	       "version");
	FAMILY(http_requests, "kubezonnet_http_requests_total", "HTTP requests answered, by code.",
	       METRICS_COUNTER, "code");
	FAMILY(http_rejected, "kubezonnet_http_rejected_total",
	       "HTTP connections closed at a limit: header_too_large, bad_request, "
	       "too_many_connections, idle_timeout, head_timeout.",
	       METRICS_COUNTER, "reason");
	FAMILY(topology_reloads, "kubezonnet_topology_reloads_total",
	       "Topology file loads, by result.", METRICS_COUNTER, "result");
	FAMILY(out_dropped, "kubezonnet_flow_logs_dropped_total",
	       "Flow log (and --dump-records) lines dropped because stdout did not keep up.",
	       METRICS_COUNTER, );
	FAMILY(log_dropped, "kubezonnet_log_lines_dropped_total",
	       "Log lines dropped because stderr did not keep up.", METRICS_COUNTER, );
	FAMILY(agents_closed, "kubezonnet_agent_connections_closed_total",
	       "Agent connections the server closed at a deadline or to make room: "
	       "hello_timeout, idle_timeout, frame_timeout, write_timeout, evicted; "
	       "secret_removed (proved with a secret no longer in the file), node_address (its "
	       "address no longer its node's, or its node gone).",
	       METRICS_COUNTER, "reason");
	FAMILY(accept_errors, "kubezonnet_accept_errors_total",
	       "Failed accept() calls (EMFILE: out of file descriptors), by listener; the "
	       "listener then pauses for 100 ms.",
	       METRICS_COUNTER, "listener");
	FAMILY(input_held, "kubezonnet_agent_input_bytes",
	       "Memory held now for agent input: read buffers and reports being accounted "
	       "(at most --agent-input-memory, plus a quarter of it for ordinary-sized buffers).",
	       METRICS_GAUGE, );
	FAMILY(input_waits, "kubezonnet_agent_input_waits_total",
	       "Times an agent connection paused because the input memory budget was spent.",
	       METRICS_COUNTER, );
	FAMILY(dedup_nodes, "kubezonnet_dedup_nodes",
	       "Nodes whose last stored report sequence the server remembers.", METRICS_GAUGE, );
	FAMILY(dedup_evicted, "kubezonnet_dedup_nodes_evicted_total",
	       "Nodes forgotten (least recently reporting, not connected) to keep the "
	       "deduplication table within its size.",
	       METRICS_COUNTER, );
	FAMILY(handshakes_rejected, "kubezonnet_agent_handshakes_rejected_total",
	       "Agent connections refused at the handshake, nothing of theirs counted: "
	       "unknown_node (not known yet: the agent retries), node_address (not from the "
	       "node it names), secret_required, no_secret, auth_failed.",
	       METRICS_COUNTER, "reason");
	FAMILY(device_bytes, "kubezonnet_agent_device_sent_bytes_total",
	       "Bytes the node's network devices sent, as its agent read them (version 3 agents): "
	       "what its hook's counts can be set against.",
	       METRICS_COUNTER, "node");
	FAMILY(hook_blind, "kubezonnet_agent_hook_blind",
	       "1 when the node's agent saw almost none of what the node's devices sent for a "
	       "while. With hook=netfilter, the network plugin likely routes pod traffic past "
	       "netfilter (Cilium's eBPF host routing, Calico's eBPF data plane): run the agent "
	       "with --hook cgroup. With hook=cgroup, --cgroup likely does not hold the pods' "
	       "cgroups: give it the host's cgroup v2 root.",
	       METRICS_GAUGE, "node", "hook");
	FAMILY(secret_reloads, "kubezonnet_agent_secret_reloads_total",
	       "Reads of --agent-secret-file after it changed, by result (error: the previous "
	       "secrets stay).",
	       METRICS_COUNTER, "result");
	FAMILY(kube_events, "kubezonnet_kube_watch_events_total",
	       "Watch events received from the Kubernetes API, bookmarks included.",
	       METRICS_COUNTER, "resource");
	FAMILY(kube_relists, "kubezonnet_kube_relists_total",
	       "Full lists after the first one (an expired resourceVersion or continue token).",
	       METRICS_COUNTER, "resource");
	FAMILY(kube_errors, "kubezonnet_kube_errors_total",
	       "Failed Kubernetes API requests (connection, TLS, HTTP status, malformed or cut "
	       "responses); each is retried after a back-off.",
	       METRICS_COUNTER, "resource");
	FAMILY(kube_rejected, "kubezonnet_kube_objects_rejected_total",
	       "List items and watch events that could not be decoded.", METRICS_COUNTER,
	       "resource");
	FAMILY(kube_synced, "kubezonnet_kube_synced",
	       "1 once a resource has been listed in full (the index waits for both).",
	       METRICS_GAUGE, "resource");
#undef FAMILY
}

void server_count(struct metrics_family *f, uint64_t n, const char *const values[])
{
	struct metrics_series *x = metrics_get(f, values);

	if (x)
		x->count += n;
}

void server_count_rejected(struct server *s, const char *reason)
{
	SERVER_COUNT(&s->frames_rejected, 1, reason);
}

static volatile sig_atomic_t server_stop;

static void server_on_signal(int sig)
{
	(void)sig;
	server_stop = 1;
}

/*
 * ---- stdout (flow logs, --dump-records) and stderr (the log) ----
 * Lines are buffered here and written only as fast as the descriptor takes them (at most 4 KiB
 * per write, each after poll() says it is writable, which for a pipe means a 4 KiB write does
 * not block): a stalled reader never blocks the loop. Past a sink's limit, whole lines are
 * dropped and counted.
 */
struct server_sink {
	int fd;
	struct buf b;
	size_t off, mark, max;
	unsigned long long dropped;
	int gone; /* the reader went away: lines are dropped (and counted) from now on */
};

static struct server_sink server_out = {.fd = STDOUT_FILENO, .max = 8u << 20};
static struct server_sink server_err = {.fd = STDERR_FILENO, .max = 1u << 20};
static int server_log_buffered; /* set once the loop runs: before, log lines go out at once */

/* server_sink_full reports whether a new line would be dropped (so it need not be formatted). */
static int server_sink_full(const struct server_sink *k)
{
	return k->gone || k->b.len - k->off > k->max;
}

static void server_sink_begin(struct server_sink *k)
{
	k->mark = k->b.len;
}

static void server_sink_end(struct server_sink *k)
{
	if (k->b.oom || k->b.len - k->off > k->max) {
		k->b.len = k->mark; /* drop the whole line */
		k->b.oom = 0;
		k->dropped++;
	}
}

/*
 * server_sink_flush writes what the descriptor takes now; with block set (at exit), what it
 * takes within two seconds.
 */
static void server_sink_flush(struct server_sink *k, int block)
{
	size_t budget = 1u << 20;
	long long deadline = log_now_ms() + 2000;

	while (k->off < k->b.len && (block || budget)) {
		struct pollfd p = {.fd = k->fd, .events = POLLOUT};
		size_t n = k->b.len - k->off;
		ssize_t w;
		long long left = deadline - log_now_ms();

		if (poll(&p, 1, block && left > 0 ? (int)left : 0) <= 0)
			break;
		if (!(p.revents & POLLOUT)) {
			if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) {
				k->off = k->b.len; /* nobody reads it: do not wait for it */
				k->gone = 1;
			}
			break;
		}
		w = write(k->fd, k->b.p + k->off, n < 4096 ? n : 4096);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w <= 0) { /* the descriptor is gone: nothing written to it will be read */
			k->off = k->b.len;
			k->gone = 1;
			break;
		}
		k->off += (size_t)w;
		budget = budget > (size_t)w ? budget - (size_t)w : 0;
	}
	if (k->off == k->b.len) {
		k->b.len = k->off = 0;
		if (k->b.cap > (1u << 20)) /* a burst does not keep its buffer */
			buf_free(&k->b);
	} else if (k->off > k->b.len / 2) {
		memmove(k->b.p, k->b.p + k->off, k->b.len - k->off);
		k->b.len -= k->off;
		k->off = 0;
	}
}

static int server_sink_pending(const struct server_sink *k)
{
	return k->b.len > k->off;
}

#define OUT(...) buf_printf(&server_out.b, __VA_ARGS__)

static void server_out_char(char c)
{
	buf_append(&server_out.b, &c, 1);
}

/*
 * server_log_token takes one of the log's tokens: SERVER_LOG_RATE a second, SERVER_LOG_BURST
 * at most, so peers cannot fill a node's disk through the log; when lines were dropped, the
 * next line allowed says how many first.
 */
#define SERVER_LOG_RATE	 100
#define SERVER_LOG_BURST 1000
static unsigned long long server_log_suppressed;

static int server_log_token(void)
{
	static double tokens = SERVER_LOG_BURST;
	static long long last;
	long long now = log_now_ms();
	char when[40];

	tokens += (double)(now - last) * SERVER_LOG_RATE / 1000.0;
	if (tokens > SERVER_LOG_BURST)
		tokens = SERVER_LOG_BURST;
	last = now;
	if (tokens < 1) {
		server_log_suppressed++;
		return 0;
	}
	tokens -= 1;
	if (server_log_suppressed) {
		log_time(when, sizeof(when), 0);
		server_sink_begin(&server_err);
		buf_printf(&server_err.b,
			   "%s kubezonnet-server: %llu log lines dropped (more than %d a second)\n",
			   when, server_log_suppressed, SERVER_LOG_RATE);
		server_sink_end(&server_err);
		server_log_suppressed = 0;
	}
	return 1;
}

void server_log(const char *fmt, ...)
{
	va_list ap;
	char when[40];

	va_start(ap, fmt);
	if (!server_log_buffered) {
		log_line("kubezonnet-server", fmt, ap);
	} else if (server_sink_full(&server_err) || !server_log_token()) {
		server_err.dropped++;
	} else {
		log_time(when, sizeof(when), 0);
		server_sink_begin(&server_err);
		buf_printf(&server_err.b, "%s kubezonnet-server: ", when);
		/* buf_printf takes no va_list: format into a line-sized buffer first */
		char line[2048];
		int n = vsnprintf(line, sizeof(line), fmt, ap);
		buf_append(&server_err.b, line,
			   n < 0		      ? 0
			   : (size_t)n < sizeof(line) ? (size_t)n
						      : sizeof(line) - 1);
		buf_append(&server_err.b, "\n", 1);
		server_sink_end(&server_err);
	}
	va_end(ap);
}

/*
 * server_listen opens a non-blocking TCP listener on "[HOST]:PORT" (an empty HOST listens on
 * every IPv4 and IPv6 address). Returns the fd, or -1 after logging why.
 */
static int server_listen(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int fd = -1, one = 1, zero = 0, err;
	size_t hlen;

	if (!colon || colon[1] == '\0') {
		server_log("listen address '%s': want [HOST]:PORT", spec);
		return -1;
	}
	/* getaddrinfo takes port 99999 modulo 65536: check the range first. */
	if (strspn(colon + 1, "0123456789") != strlen(colon + 1) || strlen(colon + 1) > 5 ||
	    atol(colon + 1) < 1 || atol(colon + 1) > 65535) {
		server_log("listen address '%s': want a port from 1 to 65535", spec);
		return -1;
	}
	hlen = (size_t)(colon - spec);
	if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
		spec++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host)) {
		server_log("listen address '%s': host too long", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	hints.ai_family = hlen ? AF_UNSPEC : AF_INET6;
	err = getaddrinfo(hlen ? host : NULL, colon + 1, &hints, &res);
	if (err) {
		server_log("listen address '%s': %s", spec, gai_strerror(err));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		server_log("socket: %s", strerror(errno));
		goto out;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
		server_log("setsockopt SO_REUSEADDR: %s", strerror(errno));
		goto fail;
	}
	if (!hlen && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) {
		server_log("setsockopt IPV6_V6ONLY: %s", strerror(errno));
		goto fail;
	}
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
		server_log("bind %s: %s", spec, strerror(errno));
		goto fail;
	}
	if (listen(fd, 128) != 0) {
		server_log("listen %s: %s", spec, strerror(errno));
		goto fail;
	}
	goto out;
fail:
	close(fd);
	fd = -1;
out:
	freeaddrinfo(res);
	return fd;
}

void server_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
			port = ntohs(s->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
			port = ntohs(s->sin6_port);
		}
	}
	snprintf(buf, len, "%s:%d", host, port);
}

/* ---- attribution and metrics ---- */

static const char *server_zone_label(const struct endpoint *e)
{
	return !e ? "unknown" : e->zone ? e->zone : "external";
}

/* server_series returns the endpoint's cached series, finding or creating them once. */
static struct server_endpoint_series *server_series(struct server *s, const struct endpoint *e)
{
	struct endpoint *m = (struct endpoint *)e;
	struct server_endpoint_series *x = m->user;

	if (x)
		return x;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	const char *ns = e->kind == ENDPOINT_POD ? e->namespace : "_node_";
	const char *wl = e->kind == ENDPOINT_POD ? e->workload : e->name;
	const char *kind = e->kind == ENDPOINT_POD ? e->workload_kind : "Node";
	x->pod_bytes = metrics_get(&s->pod_bytes, (const char *const[]){ns, e->name});
	x->pod_packets = metrics_get(&s->pod_packets, (const char *const[]){ns, e->name});
	for (int d = 0; d < 2; d++) {
		const char *dir = d == TRAFFIC_SENT ? "sent" : "received";
		x->workload_bytes[d] =
			metrics_get(&s->workload_bytes, (const char *const[]){ns, wl, kind, dir});
		x->workload_packets[d] =
			metrics_get(&s->workload_packets, (const char *const[]){ns, wl, kind, dir});
	}
	if (!x->pod_bytes || !x->pod_packets || !x->workload_bytes[0] || !x->workload_bytes[1] ||
	    !x->workload_packets[0] || !x->workload_packets[1]) {
		free(x);
		return NULL;
	}
	x->pod_bytes->generation = x->pod_packets->generation = s->generation;
	for (int d = 0; d < 2; d++)
		x->workload_bytes[d]->generation = x->workload_packets[d]->generation =
			s->generation;
	m->user = x;
	return x;
}

static void server_json_string(const char *v)
{
	server_out_char('"');
	for (; v && *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '"' || c == '\\')
			OUT("\\%c", c);
		else if (c < 0x20)
			OUT("\\u%04x", c);
		else
			server_out_char(c);
	}
	server_out_char('"');
}

static void server_flow_endpoint(const char *key, const uint8_t addr[16], const struct endpoint *e)
{
	static const char *const kinds[] = {"unknown", "pod", "node", "external"};
	char ip[INET6_ADDRSTRLEN];

	endpoint_format_address(addr, ip, sizeof(ip));
	OUT("\"%s\":{\"ip\":\"%s\",\"kind\":\"%s\"", key, ip, kinds[e ? e->kind : 0]);
	if (e) {
		if (e->kind == ENDPOINT_POD) {
			OUT(",\"namespace\":");
			server_json_string(e->namespace);
			OUT(",\"pod\":");
			server_json_string(e->name);
			OUT(",\"workload\":");
			server_json_string(e->workload);
			OUT(",\"workload_kind\":");
			server_json_string(e->workload_kind);
		} else {
			OUT(",\"name\":");
			server_json_string(e->name);
		}
		if (e->node) {
			OUT(",\"node\":");
			server_json_string(e->node->name);
		}
		OUT(",\"zone\":");
		server_json_string(server_zone_label(e));
	}
	server_out_char('}');
}

static void server_flow_log(const char *node, const struct wire_record *r,
			    const struct attribution *at)
{
	char when[40];

	if (server_sink_full(&server_out)) { /* not formatted only to be dropped */
		server_out.dropped++;
		return;
	}
	log_time(when, sizeof(when), 1);
	server_sink_begin(&server_out);
	OUT("{\"time\":\"%s\",\"node\":\"%s\",\"class\":\"%s\",\"direction\":\"%s\","
	    "\"protocol\":%u,\"port\":%u,\"bytes\":%llu,\"packets\":%llu,\"encap_bytes\":%llu,",
	    when, node, traffic_class_name(at->class),
	    at->direction == TRAFFIC_SENT ? "sent" : "received", r->protocol, r->port,
	    (unsigned long long)r->bytes, (unsigned long long)r->packets,
	    (unsigned long long)r->encap_bytes);
	server_flow_endpoint("src", r->src, at->src);
	server_out_char(',');
	server_flow_endpoint("dst", r->dst, at->dst);
	OUT("}\n");
	server_sink_end(&server_out);
}

/* server_zone_pair returns the zone-pair series, through a cache keyed by string identity. */
static struct server_zone_pair *server_zone_pair(struct server *s, const char *src, const char *dst)
{
	uintptr_t h = ((uintptr_t)src * 31 + (uintptr_t)dst) * 0x9e3779b97f4a7c15ull;
	struct server_zone_pair *z = &s->zone_cache[(h >> 40) % SERVER_ZONE_CACHE];

	if (z->src != src || z->dst != dst || !z->bytes || !z->packets || !z->encap_bytes) {
		z->bytes = metrics_get(&s->zone_bytes, (const char *const[]){src, dst});
		z->packets = metrics_get(&s->zone_packets, (const char *const[]){src, dst});
		z->encap_bytes = metrics_get(&s->encap_bytes, (const char *const[]){src, dst});
		z->src = src;
		z->dst = dst;
		if (!z->bytes || !z->packets || !z->encap_bytes)
			return NULL;
	}
	return z;
}

/*
 * server_account attributes one record of an agent at hook (WIRE_HOOK_*, 0 before version 3)
 * and adds it to the metrics.
 */
void server_account(struct server *s, const char *node, int hook, const struct wire_record *r)
{
	struct attribution at;
	struct server_zone_pair *z;
	int cross;

	if (!s->index)
		return;
	if (r->encap_bytes || hook == WIRE_HOOK_CGROUP)
		endpoint_attribute_sent(s->index, node, r->src, r->dst, &at);
	else
		endpoint_attribute(s->index, node, r->src, r->dst, &at);
	if (!at.counted)
		return;
	cross = at.class == TRAFFIC_CROSS_ZONE || at.class == TRAFFIC_CROSS_REGION;
	if (!s->class_series[at.class])
		s->class_series[at.class] = metrics_get(
			&s->class_bytes, (const char *const[]){traffic_class_name(at.class)});
	if (s->class_series[at.class])
		s->class_series[at.class]->count += r->bytes;
	if (at.class == TRAFFIC_UNKNOWN)
		SERVER_COUNT(&s->unknown_bytes, r->bytes, at.unknown_reason);
	z = server_zone_pair(s, server_zone_label(at.src), server_zone_label(at.dst));
	if (z) {
		z->bytes->count += r->bytes;
		z->packets->count += r->packets;
		z->encap_bytes->count += r->encap_bytes;
	}
	if (cross && at.subject) {
		struct server_endpoint_series *x = server_series(s, at.subject);
		if (x) {
			if (at.direction == TRAFFIC_SENT) {
				x->pod_bytes->count += r->bytes;
				x->pod_packets->count += r->packets;
			}
			x->workload_bytes[at.direction]->count += r->bytes;
			x->workload_packets[at.direction]->count += r->packets;
		}
	}
	if (s->flow_logs == FLOW_LOGS_ALL || (s->flow_logs == FLOW_LOGS_CROSS_ZONE && cross))
		server_flow_log(node, r, &at);
}

/* server_node_count adds n to a per-node series and keeps it from the sweep. */
static struct metrics_series *server_node_count(struct server *s, struct metrics_family *f,
						uint64_t n, const char *const values[])
{
	struct metrics_series *x = metrics_get(f, values);

	if (x) {
		x->count += n;
		x->generation = s->node_generation;
	}
	return x;
}

#define SERVER_NODE_COUNT(f, n, ...) server_node_count(s, f, n, (const char *const[]){__VA_ARGS__})

/*
 * server_node_label is the node label a report's per-node series take: the node's name when
 * the index knows it or it has series already, and for names the index does not know, only
 * the first SERVER_UNKNOWN_NODES of them; later ones share "_other_" (made-up names cannot
 * grow /metrics without bound).
 */
static const char *server_node_label(struct server *s, const char *node)
{
	if (metrics_find(&s->records, (const char *const[]){node}) ||
	    (s->index && endpoint_node(s->index, node)))
		return node;
	if (s->unknown_nodes < SERVER_UNKNOWN_NODES) {
		s->unknown_nodes++;
		return node;
	}
	return "_other_";
}

/* server_account_report books what a report says of its node, before its records. */
/* server_hook_name is the label of an enum wire_hook. */
static const char *server_hook_name(uint16_t hook)
{
	return hook == WIRE_HOOK_CGROUP ? "cgroup" : "netfilter";
}

void server_account_hook(struct server *s, const char *node, uint16_t hook,
			 const struct wire_stats *st)
{
	const char *name = server_hook_name(hook),
		   *other = server_hook_name(hook == WIRE_HOOK_CGROUP ? WIRE_HOOK_NETFILTER
								      : WIRE_HOOK_CGROUP);
	struct metrics_series *x;

	node = server_node_label(s, node);
	SERVER_NODE_COUNT(&s->device_bytes, st->device_bytes, node);
	x = SERVER_NODE_COUNT(&s->hook_blind, 0, node, name);
	if (x)
		x->gauge = st->hook_status & WIRE_HOOK_BLIND ? 1 : 0;
	x = metrics_find(&s->hook_blind, (const char *const[]){node, other});
	if (x)
		x->gauge = 0; /* the node switched hooks: the other one is blind to nothing now */
}

void server_account_report(struct server *s, const char *node, const struct wire_stats *st)
{
	struct metrics_series *last;
	struct timespec ts;

	node = server_node_label(s, node);
	last = SERVER_NODE_COUNT(&s->last_report, 0, node);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (last)
		last->gauge = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	SERVER_NODE_COUNT(&s->records, st->count, node);
	SERVER_NODE_COUNT(&s->agent_lost_bytes, st->loss.map_full_bytes, node, "map_full");
	SERVER_NODE_COUNT(&s->agent_lost_packets, st->loss.map_full_packets, node, "map_full");
	SERVER_NODE_COUNT(&s->agent_lost_bytes, st->loss.other_bytes, node, "other");
	SERVER_NODE_COUNT(&s->agent_lost_packets, st->loss.other_packets, node, "other");
	if (st->version >= WIRE_VERSION_2) { /* a version 1 agent cannot tell: no series */
		SERVER_NODE_COUNT(&s->malformed_packets, st->tunnel_malformed_packets, node);
		SERVER_NODE_COUNT(&s->malformed_bytes, st->tunnel_malformed_bytes, node);
	}
}

static void server_free_series(struct endpoint *e, void *arg)
{
	(void)arg;
	free(e->user);
	e->user = NULL;
}

/* Series still named by the new index stay live; the others start their retention. */
static void server_mark_live(struct endpoint *e, void *arg)
{
	struct server *s = arg;
	const char *ns = e->kind == ENDPOINT_POD ? e->namespace : "_node_";
	const char *wl = e->kind == ENDPOINT_POD ? e->workload : e->name;
	const char *kind = e->kind == ENDPOINT_POD ? e->workload_kind : "Node";
	struct metrics_series *x;

	if (e->kind == ENDPOINT_EXTERNAL)
		return;
	if ((x = metrics_find(&s->pod_bytes, (const char *const[]){ns, e->name})))
		x->generation = s->generation;
	if ((x = metrics_find(&s->pod_packets, (const char *const[]){ns, e->name})))
		x->generation = s->generation;
	for (int d = 0; d < 2; d++) {
		const char *dir = d == TRAFFIC_SENT ? "sent" : "received";
		if ((x = metrics_find(&s->workload_bytes,
				      (const char *const[]){ns, wl, kind, dir})))
			x->generation = s->generation;
		if ((x = metrics_find(&s->workload_packets,
				      (const char *const[]){ns, wl, kind, dir})))
			x->generation = s->generation;
	}
}

static void server_sweep(struct server *s, long long now)
{
	metrics_sweep(&s->pod_bytes, s->generation, now, s->retention_ms);
	metrics_sweep(&s->pod_packets, s->generation, now, s->retention_ms);
	metrics_sweep(&s->workload_bytes, s->generation, now, s->retention_ms);
	metrics_sweep(&s->workload_packets, s->generation, now, s->retention_ms);
}

/* server_set_index swaps in a new index (taking ownership) and starts series retention. */
static void server_set_index(struct server *s, struct endpoint_index *x)
{
	if (s->index) {
		endpoint_each(s->index, server_free_series, NULL);
		endpoint_index_free(s->index);
	}
	s->index = x;
	s->generation++;
	memset(s->zone_cache, 0, sizeof(s->zone_cache)); /* its keys were the old index's strings */
	endpoint_each(x, server_mark_live, s);
	server_sweep(s, log_now_ms());
	s->ready = 1;
	ingest_recheck_identity(s); /* a node's addresses may have changed, or a pod taken one */
}

static int server_load_topology(struct server *s, int initial)
{
	char err[600];
	struct endpoint_index *x = topology_load(s->topology_path, err, sizeof(err));

	if (!x) {
		SERVER_COUNT(&s->topology_reloads, 1, "error");
		server_log("topology %s%s", err, initial ? "" : "; keeping the previous one");
		return -1;
	}
	SERVER_COUNT(&s->topology_reloads, 1, "ok");
	server_log("topology %s: %zu nodes, %zu pods, %zu external networks%s", s->topology_path,
		   endpoint_count(x, ENDPOINT_NODE), endpoint_count(x, ENDPOINT_POD),
		   endpoint_count(x, ENDPOINT_EXTERNAL),
		   s->kube ? ", added to what the Kubernetes API knows" : "");
	if (s->kube) {
		/* Merged into every index built from the API; rebuild now. */
		endpoint_index_free(s->topology_extra);
		s->topology_extra = x;
		s->kube->changed = 1;
		s->kube_next_index_ms = 0;
		return 0;
	}
	server_set_index(s, x);
	return 0;
}

#define SERVER_MAX_FAMILIES 64

/* server_families gives every metric family, in the order /metrics shows them. */
static size_t server_families(struct server *s, struct metrics_family **all)
{
	struct metrics_family *list[] = {
		&s->pod_bytes,
		&s->pod_packets,
		&s->workload_bytes,
		&s->workload_packets,
		&s->zone_bytes,
		&s->zone_packets,
		&s->encap_bytes,
		&s->class_bytes,
		&s->unknown_bytes,
		&s->records,
		&s->reports,
		&s->frames_rejected,
		&s->agents_connected,
		&s->last_report,
		&s->agent_lost_bytes,
		&s->agent_lost_packets,
		&s->malformed_packets,
		&s->malformed_bytes,
		&s->endpoints,
		&s->build_info,
		&s->http_requests,
		&s->http_rejected,
		&s->topology_reloads,
		&s->kube_events,
		&s->kube_relists,
		&s->kube_errors,
		&s->kube_rejected,
		&s->kube_synced,
		&s->out_dropped,
		&s->log_dropped,
		&s->agents_closed,
		&s->accept_errors,
		&s->input_held,
		&s->input_waits,
		&s->dedup_nodes,
		&s->dedup_evicted,
		&s->handshakes_rejected,
		&s->secret_reloads,
		&s->device_bytes,
		&s->hook_blind,
	};

	_Static_assert(sizeof(list) / sizeof(list[0]) <= SERVER_MAX_FAMILIES, "families");
	memcpy(all, list, sizeof(list));
	return sizeof(list) / sizeof(list[0]);
}

static void server_render_metrics(struct server *s, struct buf *b)
{
	struct metrics_family *all[SERVER_MAX_FAMILIES];
	size_t nall = server_families(s, all);
	static const char *const kinds[] = {"pod", "node", "external"};
	struct metrics_series *x;

	if ((x = metrics_get(&s->agents_connected, NULL)))
		x->gauge = s->n_agents;
	for (int k = 0; k < 3; k++)
		if ((x = metrics_get(&s->endpoints, (const char *const[]){kinds[k]})))
			x->gauge = s->index ? (double)endpoint_count(s->index,
								     (enum endpoint_kind)(k + 1))
					    : 0;
	if ((x = metrics_get(&s->build_info, (const char *const[]){KUBEZONNET_VERSION})))
		x->gauge = 1;
	if ((s->flow_logs != FLOW_LOGS_NONE || s->dump_records) &&
	    (x = metrics_get(&s->out_dropped, NULL)))
		x->count = server_out.dropped;
	if ((x = metrics_get(&s->log_dropped, NULL)))
		x->count = server_err.dropped;
	if ((x = metrics_get(&s->input_held, NULL)))
		x->gauge = (double)s->input_bytes;
	if ((x = metrics_get(&s->input_waits, NULL)))
		x->count = s->stats.input_waits;
	if ((x = metrics_get(&s->dedup_nodes, NULL)))
		x->gauge = (double)s->nodes_len;
	if ((x = metrics_get(&s->dedup_evicted, NULL)))
		x->count = s->stats.dedup_evicted;
	if ((x = metrics_get(&s->reports, (const char *const[]){"stored"})))
		x->count = s->stats.reports_stored;
	if ((x = metrics_get(&s->reports, (const char *const[]){"duplicate"})))
		x->count = s->stats.reports_duplicate;
	for (int i = 0; s->kube && i < 2; i++) {
		const struct k8s_watch *w = &s->kube->watches[i];
		const char *const r[] = {w->resource};
		if ((x = metrics_get(&s->kube_events, r)))
			x->count = w->events;
		if ((x = metrics_get(&s->kube_relists, r)))
			x->count = w->relists;
		if ((x = metrics_get(&s->kube_errors, r)))
			x->count = w->errors;
		if ((x = metrics_get(&s->kube_rejected, r)))
			x->count = w->rejected;
		if ((x = metrics_get(&s->kube_synced, r)))
			x->gauge = w->synced;
	}
	for (size_t i = 0; i < nall; i++)
		metrics_render(all[i], b);
}

/* ---- descriptors: epoll interest, closing, the input memory budget ---- */

static const int server_kind_agent_listen = FD_AGENT_LISTEN,
		 server_kind_http_listen = FD_HTTP_LISTEN;

/* server_watch registers (op EPOLL_CTL_ADD), changes or removes fd's interest. */
void server_watch(struct server *s, int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = {.events = events, .data.ptr = ptr};

	if (epoll_ctl(s->epoll_fd, op, fd, &ev) != 0 && op != EPOLL_CTL_DEL)
		server_log("epoll_ctl: %s", strerror(errno)); /* ENOMEM: nothing else to do */
}

/* server_bury keeps a closed connection's memory until the turn ends (its events may follow). */
void server_bury(struct server *s, void *p)
{
	if (s->n_dead == s->dead_cap) {
		int cap = s->dead_cap ? s->dead_cap * 2 : 64;
		void **d = realloc(s->dead, (size_t)cap * sizeof(*d));
		if (!d) {
			/* Out of memory: leak rather than free what an event may still name. */
			return;
		}
		s->dead = d;
		s->dead_cap = cap;
	}
	s->dead[s->n_dead++] = p;
}

static void server_free_dead(struct server *s)
{
	for (int i = 0; i < s->n_dead; i++)
		free(s->dead[i]);
	s->n_dead = 0;
}

void server_dump_report(const struct server_job *j)
{
	const struct wire_stats *st = &j->st;

	if (server_sink_full(&server_out)) {
		server_out.dropped++;
		return;
	}
	server_sink_begin(&server_out);
	OUT("{\"type\":\"report\",\"node\":\"%s\",\"instance\":\"%016llx\",\"sequence\":%llu,"
	    "\"start_ns\":%llu,\"end_ns\":%llu,\"records\":%u,"
	    "\"lost_map_full_packets\":%llu,\"lost_map_full_bytes\":%llu,"
	    "\"lost_other_packets\":%llu,\"lost_other_bytes\":%llu,"
	    "\"tunnel_malformed_packets\":%llu,\"tunnel_malformed_bytes\":%llu",
	    j->node, (unsigned long long)j->instance_id, (unsigned long long)st->sequence,
	    (unsigned long long)st->start_ns, (unsigned long long)st->end_ns, st->count,
	    (unsigned long long)st->loss.map_full_packets,
	    (unsigned long long)st->loss.map_full_bytes, (unsigned long long)st->loss.other_packets,
	    (unsigned long long)st->loss.other_bytes,
	    (unsigned long long)st->tunnel_malformed_packets,
	    (unsigned long long)st->tunnel_malformed_bytes);
	if (st->version >= WIRE_VERSION_3)
		OUT(",\"hook\":\"%s\",\"device_bytes\":%llu,\"blind\":%s",
		    server_hook_name(j->hook), (unsigned long long)st->device_bytes,
		    st->hook_status & WIRE_HOOK_BLIND ? "true" : "false");
	OUT("}\n");
	server_sink_end(&server_out);
}

void server_dump_record(const struct server_job *j, const struct wire_record *r)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];

	if (server_sink_full(&server_out)) {
		server_out.dropped++;
		return;
	}
	endpoint_format_address(r->src, src, sizeof(src));
	endpoint_format_address(r->dst, dst, sizeof(dst));
	server_sink_begin(&server_out);
	OUT("{\"type\":\"record\",\"node\":\"%s\",\"sequence\":%llu,\"family\":%u,"
	    "\"protocol\":%u,\"port\":%u,\"src\":\"%s\",\"dst\":\"%s\",\"bytes\":%llu,"
	    "\"packets\":%llu,\"encap_bytes\":%llu}\n",
	    j->node, (unsigned long long)j->st.sequence, r->family, r->protocol, r->port, src, dst,
	    (unsigned long long)r->bytes, (unsigned long long)r->packets,
	    (unsigned long long)r->encap_bytes);
	server_sink_end(&server_out);
}

/*
 * server_accept_failed handles a failed accept(): EMFILE and its kin leave the connection in
 * the backlog and the listener readable, so the listener pauses for a moment (rather than the
 * loop spinning on it), and the log says so at most every ten seconds.
 */
void server_accept_failed(struct server *s, int which, long long now)
{
	int fd = which ? s->http_listen_fd : s->agent_listen_fd;
	const char *name = which ? "http" : "agent";

	if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
		return;
	SERVER_COUNT(&s->accept_errors, 1, name);
	if (now - s->emfile_logged_ms >= 10000) {
		server_log("accept (%s): %s; pausing that listener for %d ms (%llu more such "
			   "errors not logged)",
			   name, strerror(errno), SERVER_ACCEPT_BACKOFF_MS, s->emfile_unlogged);
		s->emfile_logged_ms = now;
		s->emfile_unlogged = 0;
	} else {
		s->emfile_unlogged++;
	}
	s->listen_paused[which] = 1;
	s->listen_paused_until[which] = now + SERVER_ACCEPT_BACKOFF_MS;
	server_watch(s, EPOLL_CTL_MOD, fd, 0,
		     (void *)(which ? &server_kind_http_listen : &server_kind_agent_listen));
}

static void server_listeners_resume(struct server *s, long long now)
{
	for (int w = 0; w < 2; w++) {
		if (!s->listen_paused[w] || now < s->listen_paused_until[w])
			continue;
		s->listen_paused[w] = 0;
		server_watch(s, EPOLL_CTL_MOD, w ? s->http_listen_fd : s->agent_listen_fd, EPOLLIN,
			     (void *)(w ? &server_kind_http_listen : &server_kind_agent_listen));
	}
}

/*
 * server_sweep_nodes drops the per-node series (records, last report, losses) of nodes that
 * have neither reported nor been connected for the retention period: names peers made up do
 * not stay in /metrics for ever.
 */
static void server_sweep_nodes(struct server *s, long long now)
{
	struct metrics_family *f[] = {&s->records,	     &s->last_report,
				      &s->agent_lost_bytes,  &s->agent_lost_packets,
				      &s->malformed_packets, &s->malformed_bytes,
				      &s->device_bytes,	     &s->hook_blind};

	for (int i = 0; i < s->n_agents; i++) {
		const struct server_agent *a = s->agents[i];
		if (!a->hello_done)
			continue;
		for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
			/* Series with a second label: each of its values. */
			static const char *const reasons[] = {"map_full", "other"},
						 *const hooks[] = {"netfilter", "cgroup"};
			const char *const *second = f[k] == &s->hook_blind ? hooks : reasons;
			struct metrics_series *x;
			if (f[k]->nlabels == 1) {
				if ((x = metrics_find(f[k], (const char *const[]){a->node})))
					x->generation = s->node_generation;
			} else {
				for (int r = 0; r < 2; r++)
					if ((x = metrics_find(f[k], (const char *const[]){
									    a->node, second[r]})))
						x->generation = s->node_generation;
			}
		}
	}
	for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++)
		metrics_sweep(f[k], s->node_generation, now, s->retention_ms);
	s->node_generation++;
	/* Count again the names the index does not know that still have series. */
	s->unknown_nodes = 0;
	for (size_t b = 0; b < s->records.cap; b++)
		for (const struct metrics_series *x = s->records.buckets[b]; x; x = x->next)
			if (strcmp(x->key, "_other_") != 0 &&
			    !(s->index && endpoint_node(s->index, x->key)))
				s->unknown_nodes++;
}

/* ---- HTTP ---- */

static const char *server_status_text(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Unknown";
	}
}

/* server_gzip compresses in[0..n) as a gzip stream into out; returns 0 or -1. */
static int server_gzip(const char *in, size_t n, struct buf *out)
{
	z_stream z = {0};
	int rc;

	if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	out->len = 0;
	buf_append(out, "", 0);
	size_t cap = deflateBound(&z, (uLong)n) + 64;
	if (out->cap < cap) {
		char *p = realloc(out->p, cap);
		if (!p) {
			deflateEnd(&z);
			return -1;
		}
		out->p = p;
		out->cap = cap;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)out->p;
	z.avail_out = (uInt)out->cap;
	rc = deflate(&z, Z_FINISH);
	out->len = z.total_out;
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -1;
}

static void server_http_respond(struct server *s, struct server_http *c, int code, const char *type,
				const char *body, size_t len, int head_only, int gzip,
				int keep_alive)
{
	char code_s[8];

	snprintf(code_s, sizeof(code_s), "%d", code);
	SERVER_COUNT(&s->http_requests, 1, code_s);
	buf_printf(&c->out,
		   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s\r\n", code,
		   server_status_text(code), type, len, gzip ? "Content-Encoding: gzip\r\n" : "",
		   code == 405 ? "Allow: GET, HEAD\r\n" : "",
		   keep_alive ? "Vary: Accept-Encoding\r\n" : "Connection: close\r\n");
	if (!head_only)
		buf_append(&c->out, body, len);
	if (!keep_alive)
		c->closing = 1;
}

static void server_http_reject(struct server *s, struct server_http *c, int code, const char *why)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%s\n", server_status_text(code));

	SERVER_COUNT(&s->http_rejected, 1, why);
	server_http_respond(s, c, code, "text/plain; charset=utf-8", body, (size_t)n, 0, 0, 0);
}

static int server_path_is(const struct http_request *r, const char *path)
{
	size_t n = strlen(path), len = r->target_len;
	const char *q = memchr(r->target, '?', len);

	if (q)
		len = (size_t)(q - r->target);
	return len == n && memcmp(r->target, path, n) == 0;
}

/*
 * server_http_handle answers one request; returns 0, or 1 when it must wait for the next
 * turn (a /metrics rendering was already made in this one).
 */
static int server_http_handle(struct server *s, struct server_http *c, const struct http_request *r)
{
	const struct http_header *h = http_header_value(r, "Connection");
	int keep_alive = r->minor_version == 1
				 ? !(h && http_accepts_token(h->value, h->value_len, "close"))
				 : (h && http_accepts_token(h->value, h->value_len, "keep-alive"));
	int get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
	int head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
	const char *text = "text/plain; charset=utf-8";

	if (http_header_value(r, "Content-Length") || http_header_value(r, "Transfer-Encoding"))
		keep_alive = 0; /* a body we do not read: do not try to find the next request */
	if (server_path_is(r, "/metrics")) {
		if (!get && !head) {
			server_http_respond(s, c, 405, text, "Method Not Allowed\n", 19, 0, 0,
					    keep_alive);
			return 0;
		}
		struct buf *body = &s->render, *z = &s->gzipped;
		const struct http_header *ae = http_header_value(r, "Accept-Encoding");
		int gzip = ae && http_accepts_token(ae->value, ae->value_len, "gzip");
		long long t0 = log_now_ms();

		if (!s->render_valid || t0 - s->render_at_ms > s->render_ttl_ms) {
			if (s->rendered_this_turn)
				return 1;
			body->len = 0;
			body->oom = 0;
			server_render_metrics(s, body);
			s->render_valid = !body->oom;
			s->gzip_valid = 0;
			s->render_at_ms = t0;
			s->rendered_this_turn = 1;
		}
		if (gzip && s->render_valid && !s->gzip_valid) {
			if (s->rendered_this_turn && s->render_at_ms != t0)
				return 1; /* the gzip of an earlier rendering: next turn */
			s->gzip_valid = server_gzip(body->p ? body->p : "", body->len, z) == 0;
			s->rendered_this_turn = 1;
		}
		if (s->render_at_ms == t0) {
			long long cost = log_now_ms() - t0;
			s->render_ttl_ms = cost * 10 < 1000 ? cost * 10 : 1000;
		}
		if (!s->render_valid) {
			server_http_respond(s, c, 500, text, "out of memory\n", 14, head, 0, 0);
		} else if (gzip && s->gzip_valid) {
			server_http_respond(s, c, 200, "text/plain; version=0.0.4; charset=utf-8",
					    z->p, z->len, head, 1, keep_alive);
		} else {
			server_http_respond(s, c, 200, "text/plain; version=0.0.4; charset=utf-8",
					    body->p ? body->p : "", body->len, head, 0, keep_alive);
		}
	} else if (server_path_is(r, "/healthz") || server_path_is(r, "/readyz")) {
		int ready = server_path_is(r, "/healthz") || s->ready;
		if (!get && !head)
			server_http_respond(s, c, 405, text, "Method Not Allowed\n", 19, 0, 0,
					    keep_alive);
		else if (ready)
			server_http_respond(s, c, 200, text, "ok\n", 3, head, 0, keep_alive);
		else
			server_http_respond(s, c, 503, text, "not ready\n", 10, head, 0,
					    keep_alive);
	} else {
		server_http_respond(s, c, 404, text, "Not Found\n", 10, head, 0, keep_alive);
	}
	return 0;
}

static int server_http_out_pending(const struct server_http *c)
{
	return c->out.len > c->out_off;
}

/* server_http_read reads what the client sent; it is called only with no response pending. */
static void server_http_read(struct server_http *c, long long now)
{
	for (;;) {
		ssize_t n;

		if (c->in_len == sizeof(c->in))
			break;
		n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
		if (n > 0) {
			if (c->in_len == 0)
				c->head_started_ms = now;
			c->in_len += (size_t)n;
			c->heard = 1;
			continue;
		}
		if (n == 0)
			c->eof = 1; /* answer what came with it, then close */
		else if (errno != EAGAIN && errno != EINTR)
			c->closing = 2;
		break;
	}
}

/*
 * server_http_parse answers the request at the start of the buffer, if it is whole, and only
 * while no response is pending: a client that pipelines requests and never reads gets one
 * response buffered, not one per request.
 */
static void server_http_parse(struct server *s, struct server_http *c, long long now)
{
	while (!c->closing && c->in_len && !server_http_out_pending(c)) {
		struct http_request r;
		int n = http_parse_request(c->in, c->in_len, c->seen_len, &r);

		if (n == HTTP_E_PARTIAL) {
			c->seen_len = c->in_len;
			break;
		}
		if (n == HTTP_E_TOO_LARGE) {
			server_http_reject(s, c, 431, "header_too_large");
			break;
		}
		if (n < 0) {
			server_http_reject(s, c, 400, "bad_request");
			break;
		}
		if (server_http_handle(s, c, &r) == 1) {
			c->seen_len = 0; /* a whole request waits: parsed again next turn */
			break;
		}
		memmove(c->in, c->in + n, c->in_len - (size_t)n);
		c->in_len -= (size_t)n;
		c->seen_len = 0;
		c->head_started_ms = now;
		if (server_http_out_pending(c) && !c->write_since_ms)
			c->write_since_ms = now;
	}
}

#define SERVER_HTTP_KEEP_BUFFER (64u << 10)

static void server_http_write(struct server_http *c, long long now)
{
	while (c->out_off < c->out.len) {
		ssize_t n = write(c->fd, c->out.p + c->out_off, c->out.len - c->out_off);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				c->closing = 2;
			return;
		}
		c->out_off += (size_t)n;
		c->write_since_ms = now; /* progress: the write deadline starts again */
		c->last_activity_ms = now;
	}
	c->out.len = c->out_off = 0;
	c->write_since_ms = 0;
	c->head_started_ms = now; /* a pipelined request's head is timed from here */
	/* An idle keep-alive connection does not keep a /metrics-sized buffer. */
	if (c->out.cap > SERVER_HTTP_KEEP_BUFFER)
		buf_free(&c->out);
}

static void server_http_close(struct server *s, struct server_http *c, const char *reason)
{
	if (c->fd < 0)
		return;
	if (reason)
		SERVER_COUNT(&s->http_rejected, 1, reason);
	if (c->again)
		s->n_http_again--;
	server_watch(s, EPOLL_CTL_DEL, c->fd, 0, NULL);
	close(c->fd);
	c->fd = -1;
	buf_free(&c->out);
	s->http[c->slot] = s->http[--s->n_http];
	s->http[c->slot]->slot = c->slot;
	server_bury(s, c);
}

/* server_http_settle closes the connection when it is done, else updates its interest. */
static void server_http_settle(struct server *s, struct server_http *c)
{
	uint32_t ev = 0;

	if (c->fd < 0)
		return;
	if (c->closing == 2 || (c->closing && !server_http_out_pending(c)) ||
	    (c->eof && !c->again && !server_http_out_pending(c))) {
		server_http_close(s, c, NULL);
		return;
	}
	if (!c->closing && !c->eof && !server_http_out_pending(c) && c->in_len < sizeof(c->in))
		ev |= EPOLLIN;
	if (server_http_out_pending(c))
		ev |= EPOLLOUT;
	if (ev != c->events) {
		server_watch(s, EPOLL_CTL_MOD, c->fd, ev, c);
		c->events = ev;
	}
}

static void server_http_event(struct server *s, struct server_http *c, uint32_t ev, long long now)
{
	if (c->fd < 0)
		return;
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		c->last_activity_ms = now;
		if (!c->closing && !c->eof && !server_http_out_pending(c))
			server_http_read(c, now);
		else if (ev & (EPOLLHUP | EPOLLERR))
			c->closing = 2;
	}
	/* Answer, send, answer the next: four pipelined requests a turn, the rest next turn. */
	for (int k = 0; k < 4 && !c->closing; k++) {
		server_http_parse(s, c, now);
		if (!server_http_out_pending(c))
			break;
		server_http_write(c, now);
		if (server_http_out_pending(c))
			break;
	}
	if (server_http_out_pending(c))
		server_http_write(c, now);
	if (!c->again && !c->closing && c->in_len && !server_http_out_pending(c) &&
	    c->seen_len < c->in_len) {
		c->again = 1; /* a whole request may wait in in[]: no event will say so */
		s->n_http_again++;
	}
	server_http_settle(s, c);
}

/* server_http_again goes on with the requests left waiting in connections' buffers. */
static void server_http_again(struct server *s, long long now)
{
	for (int i = s->n_http - 1; i >= 0 && s->n_http_again; i--) {
		struct server_http *c = s->http[i];
		if (c->again) {
			c->again = 0;
			s->n_http_again--;
			server_http_event(s, c, 0, now);
		}
	}
}

/*
 * server_http_deadlines: every state has one. A head must arrive whole within 10 s of its
 * first byte; a keep-alive connection may idle 60 s; a response (also the last one, before a
 * close) must make progress every 30 s.
 */
static void server_http_deadlines(struct server *s, long long now)
{
	for (int i = s->n_http - 1; i >= 0; i--) {
		struct server_http *c = s->http[i];

		if (server_http_out_pending(c)) {
			if (now - c->write_since_ms > SERVER_WRITE_TIMEOUT_MS)
				server_http_close(s, c, "write_timeout");
		} else if (!c->closing && c->in_len) {
			if (now - c->head_started_ms > SERVER_HTTP_HEAD_MS) {
				server_http_reject(s, c, 408, "head_timeout");
				c->write_since_ms = now;
				server_http_write(c, now);
				server_http_settle(s, c);
			}
		} else if (now - c->last_activity_ms > SERVER_HTTP_IDLE_MS) {
			server_http_close(s, c, "idle_timeout");
		}
	}
}

/*
 * server_http_victim is the connection to close for a new one: the oldest that has never sent
 * a byte and has none waiting to be read (a probe's request may be in its socket, not yet
 * read), else the one quiet longest.
 */
static struct server_http *server_http_victim(struct server *s)
{
	struct server_http *v = NULL, *quiet = s->http[0];

	for (int i = 0; i < s->n_http; i++) {
		struct server_http *c = s->http[i];
		int waiting = 0;

		if (c->last_activity_ms < quiet->last_activity_ms)
			quiet = c;
		if (c->heard || (v && c->connected_ms >= v->connected_ms))
			continue;
		if (ioctl(c->fd, FIONREAD, &waiting) == 0 && waiting > 0)
			continue;
		v = c;
	}
	return v ? v : quiet;
}

static void server_http_accept(struct server *s, long long now)
{
	for (int k = 0; k < 256; k++) {
		int fd = accept4(s->http_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct server_http *c;

		if (fd < 0) {
			server_accept_failed(s, 1, now);
			return;
		}
		if (s->n_http == s->http_max) {
			/*
			 * Full: the connection that has been quiet longest makes room (a slow or
			 * idle client cannot keep the scraper and the probes out).
			 */
			server_http_close(s, server_http_victim(s), "evicted");
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			SERVER_COUNT(&s->http_rejected, 1, "too_many_connections");
			continue;
		}
		c->kind = FD_HTTP;
		c->fd = fd;
		c->slot = s->n_http;
		c->events = EPOLLIN;
		c->last_activity_ms = c->connected_ms = now;
		server_peer_name(fd, c->peer, sizeof(c->peer));
		s->http[s->n_http++] = c;
		server_watch(s, EPOLL_CTL_ADD, fd, EPOLLIN, c);
	}
}

/* ---- the Kubernetes source ---- */

/*
 * server_kube_step drives the Kubernetes client and, when the store changed, swaps in a new
 * index from it: at most once a second, and with at least ten times the build's duration
 * between builds, so an event storm in a large cluster costs the loop at most a tenth of its
 * time (100,000 pods: about 85 ms, so a rebuild every 1 s at most).
 */
static void server_kube_step(struct server *s, const struct pollfd *pfds, int n, long long now)
{
	k8s_client_step(s->kube, pfds, n, now);
	for (int i = 0; i < 2; i++) {
		const struct k8s_watch *w = &s->kube->watches[i];
		if (w->errors != s->kube_errors_logged[i]) {
			s->kube_errors_logged[i] = w->errors;
			server_log("kubernetes: %s: %s (retrying in %lld ms)", w->resource,
				   w->last_error, w->retry_at_ms - now);
		}
	}
	if (!k8s_client_synced(s->kube) || !s->kube->changed || now < s->kube_next_index_ms)
		return;
	struct endpoint_index *x = k8s_store_index(s->kube->store);
	if (x && s->topology_extra && endpoint_index_merge(x, s->topology_extra) != 0) {
		endpoint_index_free(x);
		x = NULL;
	}
	long long took = log_now_ms() - now;
	/* At most once a second, and never more than a tenth of the loop's time. */
	s->kube_next_index_ms = now + (took * 10 > 1000 ? took * 10 : 1000);
	if (!x)
		return;
	if (!s->ready)
		server_log("kubernetes: listed %zu nodes and %zu pods; ready",
			   k8s_store_count(s->kube->store, K8S_NODE),
			   k8s_store_count(s->kube->store, K8S_POD));
	server_set_index(s, x);
	s->kube->changed = 0;
}

/* ---- flags and the loop ---- */

static void server_usage(FILE *out)
{
	fprintf(out,
		"usage: kubezonnet-server [options]\n"
		"\n"
		"Receives the kubezonnet agents' flow reports, attributes them to pods, workloads\n"
		"and zones, and serves Prometheus metrics.\n"
		"\n"
		"  --http-listen [HOST]:PORT   metrics and health (default :8080, IPv4 and IPv6)\n"
		"  --agent-listen [HOST]:PORT  agent reports (default :8081, IPv4 and IPv6)\n"
		"  --topology FILE             nodes, pods and external networks as JSON; re-read\n"
		"                              on SIGHUP (a bad file keeps the previous one)\n"
		"  --kube-api URL              list and watch pods and nodes at this API server:\n"
		"                              https://HOST:PORT, or http://HOST:PORT (kubectl\n"
		"                              proxy). Default in a pod: the in-cluster API "
		"server\n"
		"                              with the service account's CA and token\n"
		"  --kube-ca FILE              CA certificates for an https --kube-api (default:\n"
		"                              the system's)\n"
		"  --kube-token-file FILE      bearer token, read again when it changes, at least\n"
		"                              every minute, and on 401\n"
		"  --kube-timeout DURATION     connect, TLS and list timeout (default 30s)\n"
		"  --flow-logs MODE            JSON flow logs on stdout: cross-zone (default), "
		"all,\n"
		"                              or none\n"
		"  --pod-retention DURATION    keep the series of a deleted pod, and of a node no\n"
		"                              agent reports for, this long (default 5m)\n"
		"  --http-max-connections N    concurrent HTTP connections (default %d; when "
		"full,\n"
		"                              the quietest one makes room)\n"
		"  --max-agents N              concurrent agent connections (default %d); the\n"
		"                              file descriptor limit is raised to fit at start\n"
		"  --agent-input-memory BYTES  memory for agent input: buffers and reports being\n"
		"                              counted (default %u MiB, at least 3 * --max-frame)\n"
		"  --max-frame BYTES           largest agent frame accepted (default %u)\n"
		"  --agent-secret-file FILE    agents must prove they hold one of FILE's secrets\n"
		"                              (one per line; wire protocol version 3, every\n"
		"                              frame authenticated); read again when it changes\n"
		"  --no-agent-address-check    accept an agent's HELLO from any address (by\n"
		"                              default, with --kube-api or --topology, only from\n"
		"                              its node's addresses and pod CIDRs; turn it off\n"
		"                              where node traffic to the server is source-NATed)\n"
		"  --no-sandbox                keep capabilities and allow any system call (by\n"
		"                              default, once listening, they are dropped and a\n"
		"                              seccomp filter allows only the calls it makes)\n"
		"  --dump-records              print every new raw record as a JSON line on "
		"stdout\n"
		"  -h, --help                  this text\n"
		"  -V, --version               print the version and exit\n",
		SERVER_HTTP_MAX_DEFAULT, SERVER_MAX_AGENTS_DEFAULT,
		SERVER_INPUT_MEMORY_DEFAULT >> 20, WIRE_FRAME_MAX_DEFAULT);
}

/*
 * server_fd_limit raises the soft RLIMIT_NOFILE to what the flags need (every agent and HTTP
 * connection, the listeners, the API server, stdio). When the hard limit is lower: with
 * --max-agents given, an error; with the default, fewer agents and a warning. Returns 0 or -1.
 */
static int server_fd_limit(struct server *s, int agents_given)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)s->agents_max + (rlim_t)s->http_max + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max < need) {
		if (agents_given || rl.rlim_max < (rlim_t)s->http_max + 64 + 64) {
			fprintf(stderr,
				"kubezonnet-server: --max-agents %d and --http-max-connections %d "
				"need %llu file descriptors, but the hard limit (RLIMIT_NOFILE) is "
				"%llu: raise it (ulimit -Hn, LimitNOFILE=, the container runtime's "
				"default) or lower --max-agents\n",
				s->agents_max, s->http_max, (unsigned long long)need,
				(unsigned long long)rl.rlim_max);
			return -1;
		}
		s->agents_max = (int)(rl.rlim_max - (rlim_t)s->http_max - 64);
		need = rl.rlim_max;
		server_log(
			"the file descriptor limit (RLIMIT_NOFILE) is %llu: accepting at most %d "
			"agents (raise the hard limit, or set --max-agents, to change this)",
			(unsigned long long)rl.rlim_max, s->agents_max);
	}
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		fprintf(stderr, "kubezonnet-server: setrlimit(RLIMIT_NOFILE, %llu): %s\n",
			(unsigned long long)need, strerror(errno));
		return -1;
	}
	return 0;
}

static int server_parse_duration(const char *v, long long *ms)
{
	char *end;
	double x = strtod(v, &end);

	double unit;

	if (end == v || !(x >= 0)) /* NaN too */
		return -1;
	if (strcmp(end, "ms") == 0)
		unit = 1;
	else if (*end == '\0' || strcmp(end, "s") == 0)
		unit = 1000;
	else if (strcmp(end, "m") == 0)
		unit = 60000;
	else if (strcmp(end, "h") == 0)
		unit = 3600000;
	else
		return -1;
	if (!(x * unit < 9e18)) /* inf, and what a long long cannot hold */
		return -1;
	*ms = (long long)(x * unit);
	return 0;
}

/*
 * The system calls the server makes once its listeners are open: the loop (epoll, poll,
 * sockets), the Kubernetes client (name resolution on every connect, files and DNS; TLS;
 * the token file read again), the topology file read again on SIGHUP, malloc, the exit path.
 */
static const int server_syscalls[] = {
	SANDBOX_BASE_SYSCALLS, SYS_epoll_ctl, SYS_epoll_pwait, SYS_accept4, SYS_getgid,
	SYS_getegid,	       SYS_prlimit64, SYS_statx,
#ifdef SYS_epoll_wait
	SYS_epoll_wait,
#endif
};

/* server_sandbox drops every capability, sets no_new_privs and installs the filter. */
static int server_sandbox(void)
{
	int rc;

	if (sandbox_drop_caps(0) != 0) {
		server_log("sandbox: dropping capabilities: %s", strerror(errno));
		return -1;
	}
	rc = sandbox_seccomp("kubezonnet-server", server_syscalls,
			     sizeof(server_syscalls) / sizeof(server_syscalls[0]));
	if (rc < 0) {
		server_log("sandbox: seccomp: %s", strerror(errno));
		return -1;
	}
	server_log("sandbox: no capabilities left; no_new_privs; %s",
		   rc == 0 ? "seccomp filter on"
			   : "no seccomp filter (this architecture, or a sanitized build)");
	return 0;
}

/* server_free gives back everything (so that a leak checker sees only real leaks). */
static void server_free(struct server *s)
{
	struct metrics_family *all[SERVER_MAX_FAMILIES];
	size_t nall = server_families(s, all);

	ingest_free(s);
	if (s->index) {
		endpoint_each(s->index, server_free_series, NULL);
		endpoint_index_free(s->index);
	}
	endpoint_index_free(s->topology_extra);
	if (s->kube) {
		k8s_client_free(s->kube);
		free(s->kube);
	}
	for (size_t i = 0; i < nall; i++)
		metrics_free_family(all[i]);
	buf_free(&s->render);
	buf_free(&s->gzipped);
	buf_free(&server_out.b);
	buf_free(&server_err.b);
	free(s->dead);
	free(s->agents);
	free(s->http);
	if (s->agent_listen_fd >= 0)
		close(s->agent_listen_fd);
	if (s->http_listen_fd >= 0)
		close(s->http_listen_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
}

int main(int argc, char **argv)
{
	enum {
		OPT_AGENT_LISTEN = 256,
		OPT_HTTP_LISTEN,
		OPT_TOPOLOGY,
		OPT_FLOW_LOGS,
		OPT_RETENTION,
		OPT_HTTP_MAX,
		OPT_MAX_FRAME,
		OPT_DUMP,
		OPT_KUBE_API,
		OPT_KUBE_CA,
		OPT_KUBE_TOKEN,
		OPT_KUBE_TIMEOUT,
		OPT_MAX_AGENTS,
		OPT_INPUT_MEMORY,
		OPT_NO_SANDBOX,
		OPT_SECRET,
		OPT_NO_ADDRESS_CHECK,
	};
	static const struct option options[] = {
		{"agent-listen", required_argument, NULL, OPT_AGENT_LISTEN},
		{"http-listen", required_argument, NULL, OPT_HTTP_LISTEN},
		{"topology", required_argument, NULL, OPT_TOPOLOGY},
		{"flow-logs", required_argument, NULL, OPT_FLOW_LOGS},
		{"pod-retention", required_argument, NULL, OPT_RETENTION},
		{"http-max-connections", required_argument, NULL, OPT_HTTP_MAX},
		{"max-frame", required_argument, NULL, OPT_MAX_FRAME},
		{"dump-records", no_argument, NULL, OPT_DUMP},
		{"kube-api", required_argument, NULL, OPT_KUBE_API},
		{"kube-ca", required_argument, NULL, OPT_KUBE_CA},
		{"kube-token-file", required_argument, NULL, OPT_KUBE_TOKEN},
		{"kube-timeout", required_argument, NULL, OPT_KUBE_TIMEOUT},
		{"max-agents", required_argument, NULL, OPT_MAX_AGENTS},
		{"agent-input-memory", required_argument, NULL, OPT_INPUT_MEMORY},
		{"no-sandbox", no_argument, NULL, OPT_NO_SANDBOX},
		{"agent-secret-file", required_argument, NULL, OPT_SECRET},
		{"no-agent-address-check", no_argument, NULL, OPT_NO_ADDRESS_CHECK},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	static struct server s;
	struct pollfd pfds[8];
	struct epoll_event events[256];
	int agents_given = 0, input_given = 0, rc = 1, no_sandbox = 0;
	const char *agent_listen = ":8081", *http_listen = ":8080";
	struct sigaction sa = {.sa_handler = server_on_signal}, hup = {.sa_handler = server_on_hup};
	struct k8s_options kube = {0};
	int kube_off = 0;
	long long next_sweep, sweep_ms, next_tick;
	int opt;

	s.agent_listen_fd = s.http_listen_fd = s.epoll_fd = -1;
	s.max_frame = WIRE_FRAME_MAX_DEFAULT;
	s.flow_logs = FLOW_LOGS_CROSS_ZONE;
	s.retention_ms = SERVER_RETENTION_DEFAULT;
	s.http_max = SERVER_HTTP_MAX_DEFAULT;
	s.agents_max = SERVER_MAX_AGENTS_DEFAULT;
	s.input_budget = SERVER_INPUT_MEMORY_DEFAULT;
	s.address_check = 1;
	while ((opt = getopt_long(argc, argv, "hV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_AGENT_LISTEN:
			agent_listen = optarg;
			break;
		case OPT_HTTP_LISTEN:
			http_listen = optarg;
			break;
		case OPT_TOPOLOGY:
			s.topology_path = optarg;
			break;
		case OPT_FLOW_LOGS:
			if (strcmp(optarg, "all") == 0)
				s.flow_logs = FLOW_LOGS_ALL;
			else if (strcmp(optarg, "cross-zone") == 0)
				s.flow_logs = FLOW_LOGS_CROSS_ZONE;
			else if (strcmp(optarg, "none") == 0)
				s.flow_logs = FLOW_LOGS_NONE;
			else {
				fprintf(stderr,
					"kubezonnet-server: --flow-logs: want all, cross-zone or "
					"none, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case OPT_RETENTION:
			if (server_parse_duration(optarg, &s.retention_ms) != 0) {
				fprintf(stderr,
					"kubezonnet-server: --pod-retention: want a duration such "
					"as 5m, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case OPT_HTTP_MAX: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 65536) {
				fprintf(stderr,
					"kubezonnet-server: --http-max-connections: want 1..65536, "
					"got '%s'\n",
					optarg);
				return 2;
			}
			s.http_max = (int)v;
			break;
		}
		case OPT_MAX_FRAME: {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v < 64 || v > WIRE_FRAME_MAX_DEFAULT * 4ul) {
				fprintf(stderr,
					"kubezonnet-server: --max-frame: want 64..%u, got '%s'\n",
					WIRE_FRAME_MAX_DEFAULT * 4u, optarg);
				return 2;
			}
			s.max_frame = (uint32_t)v;
			break;
		}
		case OPT_MAX_AGENTS: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 1000000) {
				fprintf(stderr,
					"kubezonnet-server: --max-agents: want 1..1000000, got "
					"'%s'\n",
					optarg);
				return 2;
			}
			s.agents_max = (int)v;
			agents_given = 1;
			break;
		}
		case OPT_INPUT_MEMORY: {
			char *end;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (*end || v < (1u << 20) || v > (1ull << 40)) {
				fprintf(stderr,
					"kubezonnet-server: --agent-input-memory: want bytes from "
					"1 MiB "
					"to 1 TiB, got '%s'\n",
					optarg);
				return 2;
			}
			s.input_budget = (size_t)v;
			input_given = 1;
			break;
		}
		case OPT_SECRET:
			s.secret_path = optarg;
			break;
		case OPT_NO_ADDRESS_CHECK:
			s.address_check = 0;
			break;
		case OPT_NO_SANDBOX:
			no_sandbox = 1;
			break;
		case OPT_DUMP:
			s.dump_records = 1;
			s.flow_logs = FLOW_LOGS_NONE;
			break;
		case OPT_KUBE_API:
			kube.url = optarg;
			break;
		case OPT_KUBE_CA:
			kube.ca_file = optarg;
			break;
		case OPT_KUBE_TOKEN:
			kube.token_file = optarg;
			break;
		case OPT_KUBE_TIMEOUT:
			if (server_parse_duration(optarg, &kube.timeout_ms) != 0 ||
			    kube.timeout_ms < 100) {
				fprintf(stderr,
					"kubezonnet-server: --kube-timeout: want a duration of at "
					"least 100ms, such as 30s, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			server_usage(stdout);
			return 0;
		case 'V':
			printf("kubezonnet-server %s\n", KUBEZONNET_VERSION);
			return 0;
		default:
			server_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kubezonnet-server: unexpected argument '%s'\n", argv[optind]);
		server_usage(stderr);
		return 2;
	}

	if (s.input_budget < 3ull * s.max_frame + (1u << 20)) {
		if (input_given) {
			fprintf(stderr,
				"kubezonnet-server: --agent-input-memory %zu is below 3 * "
				"--max-frame "
				"+ 1 MiB (%llu): a frame of the largest size could never be "
				"taken\n",
				s.input_budget, 3ull * s.max_frame + (1u << 20));
			return 2;
		}
		s.input_budget = 3ull * s.max_frame + (1u << 20);
	}
	if (server_fd_limit(&s, agents_given) != 0)
		return 2;
	s.nodes_max = (size_t)s.agents_max * 4 > SERVER_NODES_MIN ? (size_t)s.agents_max * 4
								  : SERVER_NODES_MIN;
	hash_process_key(); /* the hashes' key, drawn before the sandbox */
	{
		char err[400];
		if (ingest_init(&s, err, sizeof(err)) != 0) {
			fprintf(stderr, "kubezonnet-server: --agent-secret-file: %s\n", err);
			ingest_free(&s);
			return 2;
		}
	}
	s.node_generation = 1;

	server_metrics_init(&s);
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &hup, NULL);
	s.http = calloc((size_t)s.http_max, sizeof(*s.http));
	s.agents = calloc((size_t)s.agents_max, sizeof(*s.agents));
	s.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (!s.http || !s.agents || s.epoll_fd < 0) {
		server_log("out of memory for %d agents and %d HTTP connections", s.agents_max,
			   s.http_max);
		rc = 1;
		goto out;
	}
	if (kube.url && strcmp(kube.url, "off") == 0) {
		kube_off = 1;
		kube.url = NULL;
	}
	if ((kube.ca_file || kube.token_file) && !kube.url && !getenv("KUBERNETES_SERVICE_HOST")) {
		fprintf(stderr,
			"kubezonnet-server: --kube-ca and --kube-token-file need --kube-api\n");
		rc = 2;
		goto out;
	}
	/*
	 * The sources of endpoints: the Kubernetes API (--kube-api, or in a pod the in-cluster
	 * API server unless --kube-api off) and the topology file; with both, the file adds
	 * what the API does not know (external networks, machines outside the cluster).
	 */
	if (!kube_off && (kube.url || getenv("KUBERNETES_SERVICE_HOST"))) {
		char err[512];
		s.kube = calloc(1, sizeof(*s.kube));
		if (!s.kube || k8s_client_init(s.kube, &kube, err, sizeof(err)) != 0) {
			fprintf(stderr, "kubezonnet-server: kubernetes: %s\n",
				s.kube ? err : "out of memory");
			rc = 2;
			goto out;
		}
		server_log("kubernetes: API server %s://%s:%s%s", s.kube->tls ? "https" : "http",
			   s.kube->host, s.kube->port,
			   kube.url ? "" : " (in-cluster configuration)");
	}
	if (s.topology_path && server_load_topology(&s, 1) != 0) {
		rc = 1;
		goto out;
	}
	if (s.kube)
		s.index = endpoint_index_new(); /* until the first lists arrive; not ready before */
	else if (!s.topology_path) {
		s.index = endpoint_index_new();
		s.ready = 1; /* no endpoint source to wait for */
	}
	s.agent_listen_fd = server_listen(agent_listen);
	if (s.agent_listen_fd < 0) {
		rc = 1;
		goto out;
	}
	s.http_listen_fd = server_listen(http_listen);
	if (s.http_listen_fd < 0) {
		rc = 1;
		goto out;
	}
	server_watch(&s, EPOLL_CTL_ADD, s.agent_listen_fd, EPOLLIN,
		     (void *)&server_kind_agent_listen);
	server_watch(&s, EPOLL_CTL_ADD, s.http_listen_fd, EPOLLIN,
		     (void *)&server_kind_http_listen);
	server_log("listening for agents on %s (at most %d), HTTP on %s", agent_listen,
		   s.agents_max, http_listen);
	sweep_ms = s.retention_ms / 4 < SERVER_SWEEP_MS ? s.retention_ms / 4 : SERVER_SWEEP_MS;
	if (sweep_ms < 100)
		sweep_ms = 100;
	next_sweep = log_now_ms() + sweep_ms;
	next_tick = log_now_ms() + SERVER_TICK_MS;
	if (no_sandbox)
		server_log("--no-sandbox: keeping capabilities, no seccomp filter");
	else if (server_sandbox() != 0)
		goto out;
	server_log_buffered = 1; /* from here the loop writes the log as stderr takes it */

	while (!server_stop) {
		long long now;
		int n, np = 0, k0, nk = 0, timeout;
		int busy = s.jobs_head || s.ready_head || s.n_http_again;

		s.rendered_this_turn = 0;
		if (server_reload) {
			server_reload = 0;
			if (s.topology_path)
				server_load_topology(&s, 0);
		}
		pfds[np++] = (struct pollfd){.fd = s.epoll_fd, .events = POLLIN};
		k0 = np;
		if (s.kube)
			np += nk = k8s_client_pollfds(s.kube, pfds + np);
		if (server_sink_pending(&server_out)) /* woken when stdout takes more */
			pfds[np++] = (struct pollfd){.fd = STDOUT_FILENO, .events = POLLOUT};
		if (server_sink_pending(&server_err))
			pfds[np++] = (struct pollfd){.fd = STDERR_FILENO, .events = POLLOUT};
		timeout = busy ? 0 : s.kube ? (s.kube->busy ? 0 : 200) : SERVER_TICK_MS;
		n = poll(pfds, (nfds_t)np, timeout);
		if (n < 0 && errno != EINTR) {
			server_log("poll: %s", strerror(errno));
			break;
		}
		now = log_now_ms();
		if (n > 0 && pfds[0].revents) {
			int ne = epoll_wait(s.epoll_fd, events,
					    (int)(sizeof(events) / sizeof(events[0])), 0);
			for (int i = 0; i < ne; i++) {
				int kind = *(const int *)events[i].data.ptr;
				uint32_t ev = events[i].events;

				if (kind == FD_AGENT)
					ingest_event(&s, events[i].data.ptr, ev, now);
				else if (kind == FD_HTTP)
					server_http_event(&s, events[i].data.ptr, ev, now);
				else if (kind == FD_AGENT_LISTEN)
					ingest_accept(&s, now);
				else if (kind == FD_HTTP_LISTEN)
					server_http_accept(&s, now);
			}
		}
		if (s.kube)
			server_kube_step(&s, pfds + k0, nk, now);
		ingest_work(&s, now, 0);
		if (s.n_http_again)
			server_http_again(&s, now);
		if (now >= next_tick) {
			ingest_deadlines(&s, now);
			server_http_deadlines(&s, now);
			server_listeners_resume(&s, now);
			ingest_secret_tick(&s, now);
			next_tick = now + SERVER_TICK_MS;
		}
		if (now >= next_sweep) {
			server_sweep(&s, now);
			server_sweep_nodes(&s, now);
			next_sweep = now + sweep_ms;
		}
		server_sink_flush(&server_out, 0);
		server_sink_flush(&server_err, 0);
		server_free_dead(&s);
	}
	/* Reports already taken are counted and acknowledged before the server goes. */
	ingest_work(&s, log_now_ms(), 1);
	for (int i = 0; i < s.n_agents; i++)
		if (s.agents[i]->out_len)
			ingest_write(s.agents[i], log_now_ms());
	server_log("stopping: %llu reports stored, %llu duplicates", s.stats.reports_stored,
		   s.stats.reports_duplicate);
	server_sink_flush(&server_out, 1);
	server_sink_flush(&server_err, 1);
	server_log_buffered = 0;
	for (int i = s.n_agents - 1; i >= 0; i--)
		ingest_close(&s, s.agents[i], NULL);
	for (int i = s.n_http - 1; i >= 0; i--)
		server_http_close(&s, s.http[i], NULL);
	server_free_dead(&s);
	rc = 0;
out:
	server_free(&s);
	return rc;
}
