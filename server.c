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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "endpoint.h"
#include "k8s/client.h"
#include "http.h"
#include "metrics.h"
#include "topology.h"
#include "log.h"
#include "version.h"
#include "wire.h"

#define SERVER_MAX_AGENTS	 1024
#define SERVER_MAX_INSTANCES	 4096 /* remembered (instance, last sequence) pairs */
#define SERVER_READ_CHUNK	 65536
#define SERVER_HELLO_TIMEOUT_MS	 10000
#define SERVER_IDLE_TIMEOUT_MS	 300000 /* an agent reports every 10 s */
#define SERVER_WRITE_BUFFER	 1024
#define SERVER_HTTP_MAX_DEFAULT	 256
#define SERVER_HTTP_IDLE_MS	 60000 /* keep-alive connection without a request */
#define SERVER_HTTP_HEAD_MS	 10000 /* to send a whole request head once started */
#define SERVER_SWEEP_MS		 30000
#define SERVER_RETENTION_DEFAULT (5 * 60 * 1000)

struct server_agent {
	int fd;
	char peer[64];
	int hello_done;
	uint16_t version; /* from HELLO: the layout of every STATS frame on this connection */
	char node[WIRE_NODE_NAME_MAX + 1];
	uint64_t instance_id;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t out[SERVER_WRITE_BUFFER];
	size_t out_len;
	int closing; /* 1: flush out[], then close; 2: close now */
	long long connected_ms;
	long long last_activity_ms;
};

struct server_instance {
	uint64_t id;
	uint64_t last_sequence;
	long long seen_ms;
};

struct server_http {
	int fd;
	char peer[64];
	char in[HTTP_MAX_HEADER_BYTES + 1];
	size_t in_len, seen_len;
	struct buf out;
	size_t out_off;
	int closing;
	long long last_activity_ms, head_started_ms;
};

/* What the server keeps per endpoint of the current index: its series, found once. */
struct server_endpoint_series {
	struct metrics_series *pod_bytes, *pod_packets;
	struct metrics_series *workload_bytes[2], *workload_packets[2]; /* by direction */
};

enum server_flow_logs { FLOW_LOGS_NONE, FLOW_LOGS_CROSS_ZONE, FLOW_LOGS_ALL };

/* Zone-pair series by the (interned) zone strings of the current index. */
#define SERVER_ZONE_CACHE 256
struct server_zone_pair {
	const char *src, *dst;
	struct metrics_series *bytes, *packets, *encap_bytes;
};

struct server {
	/* configuration */
	uint32_t max_frame;
	int dump_records;
	enum server_flow_logs flow_logs;
	const char *topology_path;
	long long retention_ms;
	int http_max;

	int agent_listen_fd, http_listen_fd;
	struct server_agent agents[SERVER_MAX_AGENTS];
	int n_agents;
	struct server_http *http;
	int n_http;
	struct server_instance instances[SERVER_MAX_INSTANCES];

	struct endpoint_index *index;
	unsigned generation;
	struct k8s_client *kube; /* --kube-api, or NULL */
	long long kube_next_index_ms;
	struct endpoint_index *topology_extra; /* with --kube-api: the topology file's index */
	struct metrics_series *class_series[TRAFFIC_CLASSES];
	/* Kept between scrapes: a large fresh buffer costs a page fault per 4 KiB every time. */
	struct buf render, gzipped;
	struct server_zone_pair zone_cache[SERVER_ZONE_CACHE];
	int ready;

	struct {
		unsigned long long reports_stored, reports_duplicate;
	} stats;

	struct metrics_family pod_bytes, pod_packets, workload_bytes, workload_packets;
	struct metrics_family zone_bytes, zone_packets, encap_bytes, class_bytes, unknown_bytes;
	struct metrics_family records, reports, frames_rejected, agents_connected, last_report;
	struct metrics_family agent_lost_bytes, agent_lost_packets, endpoints, build_info;
	struct metrics_family malformed_packets, malformed_bytes; /* tunnel inner headers */
	struct metrics_family http_requests, http_rejected, topology_reloads;
	struct metrics_family kube_events, kube_relists, kube_errors, kube_rejected, kube_synced;
	struct metrics_family out_dropped;
	unsigned long long kube_errors_logged[2];
};

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

static void server_count(struct metrics_family *f, uint64_t n, const char *const values[])
{
	struct metrics_series *x = metrics_get(f, values);

	if (x)
		x->count += n;
}

#define SERVER_COUNT(f, n, ...) server_count(f, n, (const char *const[]){__VA_ARGS__})

static void server_count_rejected(struct server *s, const char *reason)
{
	SERVER_COUNT(&s->frames_rejected, 1, reason);
}

static void server_account_report(struct server *s, const struct server_agent *a,
				  const struct wire_stats *st);
static volatile sig_atomic_t server_stop;

static void server_on_signal(int sig)
{
	(void)sig;
	server_stop = 1;
}

static void server_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void server_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("kubezonnet-server", fmt, ap);
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

static void server_peer_name(int fd, char *buf, size_t len)
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

/* server_queue appends a frame to the agent's output; frames here are small and bounded. */
static void server_queue(struct server_agent *a, const uint8_t *frame, size_t len)
{
	if (len > sizeof(a->out) - a->out_len) {
		a->closing = 1; /* the peer does not read its ACKs: give up on it */
		return;
	}
	memcpy(a->out + a->out_len, frame, len);
	a->out_len += len;
}

/* server_reject sends an ERROR naming the failed check, counts it, and closes after flushing. */
static void server_reject(struct server *s, struct server_agent *a, int result, uint16_t code)
{
	uint8_t frame[WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + WIRE_ERROR_MESSAGE_MAX];
	long n;

	server_count_rejected(s, wire_reason(result));
	server_log("agent %s (%s): %s; closing", a->peer, a->hello_done ? a->node : "no HELLO yet",
		   wire_strerror(result));
	n = wire_error_encode(frame, sizeof(frame), code, wire_strerror(result));
	if (n > 0)
		server_queue(a, frame, (size_t)n);
	a->closing = 1;
}

static struct server_instance *server_instance(struct server *s, uint64_t id)
{
	struct server_instance *oldest = &s->instances[0];

	for (int i = 0; i < SERVER_MAX_INSTANCES; i++) {
		struct server_instance *in = &s->instances[i];
		if (in->seen_ms && in->id == id)
			return in;
		if (in->seen_ms < oldest->seen_ms)
			oldest = in;
	}
	memset(oldest, 0, sizeof(*oldest));
	oldest->id = id;
	return oldest;
}

/*
 * ---- stdout: flow logs and --dump-records ----
 * Lines are buffered here and written only as fast as stdout takes them (at most 4 KiB per
 * write, each after poll() says it is writable): a stalled log reader never blocks the loop.
 * Past SERVER_OUT_MAX pending bytes, whole lines are dropped and counted.
 */
#define SERVER_OUT_MAX (8u << 20)

static struct buf server_out;
static size_t server_out_off, server_out_mark;
static unsigned long long server_out_dropped;

static void server_out_begin(void)
{
	server_out_mark = server_out.len;
}

static void server_out_end(void)
{
	if (server_out.oom || server_out.len - server_out_off > SERVER_OUT_MAX) {
		server_out.len = server_out_mark; /* drop the whole line */
		server_out.oom = 0;
		server_out_dropped++;
	}
}

#define OUT(...) buf_printf(&server_out, __VA_ARGS__)

static void server_out_char(char c)
{
	buf_append(&server_out, &c, 1);
}

/*
 * server_out_flush writes what stdout takes now; with block set (at exit), what it takes
 * within two seconds.
 */
static void server_out_flush(int block)
{
	size_t budget = 1u << 20;
	long long deadline = log_now_ms() + 2000;

	while (server_out_off < server_out.len && (block || budget)) {
		struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
		size_t n = server_out.len - server_out_off;
		ssize_t w;
		long long left = deadline - log_now_ms();

		if (poll(&p, 1, block && left > 0 ? (int)left : 0) <= 0 || !(p.revents & POLLOUT))
			break;
		w = write(STDOUT_FILENO, server_out.p + server_out_off, n < 4096 ? n : 4096);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w <= 0) { /* stdout is gone: nothing written to it will be read */
			server_out_off = server_out.len;
			break;
		}
		server_out_off += (size_t)w;
		budget = budget > (size_t)w ? budget - (size_t)w : 0;
	}
	if (server_out_off == server_out.len) {
		server_out.len = server_out_off = 0;
	} else if (server_out_off > server_out.len / 2) {
		memmove(server_out.p, server_out.p + server_out_off,
			server_out.len - server_out_off);
		server_out.len -= server_out_off;
		server_out_off = 0;
	}
}

static int server_out_pending(void)
{
	return server_out.len > server_out_off;
}

static void server_dump(const struct server_agent *a, const struct wire_stats *st)
{
	server_out_begin();
	OUT("{\"type\":\"report\",\"node\":\"%s\",\"instance\":\"%016llx\",\"sequence\":%llu,"
	    "\"start_ns\":%llu,\"end_ns\":%llu,\"records\":%u,"
	    "\"lost_map_full_packets\":%llu,\"lost_map_full_bytes\":%llu,"
	    "\"lost_other_packets\":%llu,\"lost_other_bytes\":%llu,"
	    "\"tunnel_malformed_packets\":%llu,\"tunnel_malformed_bytes\":%llu}\n",
	    a->node, (unsigned long long)a->instance_id, (unsigned long long)st->sequence,
	    (unsigned long long)st->start_ns, (unsigned long long)st->end_ns, st->count,
	    (unsigned long long)st->loss.map_full_packets,
	    (unsigned long long)st->loss.map_full_bytes, (unsigned long long)st->loss.other_packets,
	    (unsigned long long)st->loss.other_bytes,
	    (unsigned long long)st->tunnel_malformed_packets,
	    (unsigned long long)st->tunnel_malformed_bytes);
	server_out_end();
	for (uint32_t i = 0; i < st->count; i++) {
		struct wire_record r;
		char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];

		wire_record_get(st, i, &r);
		endpoint_format_address(r.src, src, sizeof(src));
		endpoint_format_address(r.dst, dst, sizeof(dst));
		server_out_begin();
		OUT("{\"type\":\"record\",\"node\":\"%s\",\"sequence\":%llu,\"family\":%u,"
		    "\"protocol\":%u,\"port\":%u,\"src\":\"%s\",\"dst\":\"%s\",\"bytes\":%llu,"
		    "\"packets\":%llu,\"encap_bytes\":%llu}\n",
		    a->node, (unsigned long long)st->sequence, r.family, r.protocol, r.port, src,
		    dst, (unsigned long long)r.bytes, (unsigned long long)r.packets,
		    (unsigned long long)r.encap_bytes);
		server_out_end();
	}
}

/* server_handle_stats decodes, deduplicates and acknowledges one STATS frame. */
static int server_handle_stats(struct server *s, struct server_agent *a, const struct wire_frame *f)
{
	uint8_t *inflated = NULL;
	const uint8_t *payload = f->payload;
	size_t len = f->payload_len;
	struct wire_stats st;
	struct server_instance *in;
	uint8_t ack[WIRE_HEADER_SIZE + WIRE_ACK_PAYLOAD_SIZE];
	int rc;

	if (f->flags & WIRE_FLAG_ZLIB) {
		long size = wire_inflated_size(f->payload, f->payload_len, s->max_frame);
		if (size < 0)
			return (int)size;
		inflated = malloc((size_t)size);
		if (!inflated)
			return WIRE_E_SPACE;
		long n = wire_inflate(f->payload, f->payload_len, inflated, (size_t)size);
		if (n < 0) {
			free(inflated);
			return (int)n;
		}
		payload = inflated;
		len = (size_t)size;
	}
	rc = wire_stats_decode(payload, len, a->version, &st);
	if (rc < 0)
		goto out;
	in = server_instance(s, a->instance_id);
	in->seen_ms = log_now_ms();
	if (st.sequence <= in->last_sequence) {
		s->stats.reports_duplicate++;
		server_log("agent %s (%s): report %llu already stored; acknowledged again", a->peer,
			   a->node, (unsigned long long)st.sequence);
	} else {
		in->last_sequence = st.sequence;
		s->stats.reports_stored++;
		if (s->dump_records)
			server_dump(a, &st);
		server_account_report(s, a, &st);
	}
	server_queue(a, ack, (size_t)wire_ack_encode(ack, sizeof(ack), st.sequence));
out:
	free(inflated);
	return rc;
}

/* server_handle_frame acts on one whole frame; a negative result rejects the connection. */
static int server_handle_frame(struct server *s, struct server_agent *a, const struct wire_frame *f)
{
	if (!a->hello_done) {
		struct wire_hello h;
		int rc;

		if (f->type != WIRE_HELLO)
			return WIRE_E_TYPE;
		rc = wire_hello_decode(f->payload, f->payload_len, &h);
		if (rc < 0)
			return rc;
		memcpy(a->node, h.node, h.node_len);
		a->node[h.node_len] = '\0';
		a->instance_id = h.instance_id;
		a->version = h.version;
		a->hello_done = 1;
		server_log(
			"agent %s connected: node %s, instance %016llx, version %.*s, protocol %u",
			a->peer, a->node, (unsigned long long)a->instance_id, h.agent_version_len,
			h.agent_version, h.version);
		return 0;
	}
	switch (f->type) {
	case WIRE_STATS:
		return server_handle_stats(s, a, f);
	case WIRE_ERROR: {
		struct wire_error e;
		int rc = wire_error_decode(f->payload, f->payload_len, &e);
		if (rc == 0) {
			char message[4 * WIRE_ERROR_MESSAGE_MAX + 1];

			/* A peer's words never reach the log raw: no forged lines, no escapes. */
			log_escape(e.message, e.message_len, message, sizeof(message));
			server_log("agent %s (%s) sent error %u: %s", a->peer, a->node, e.code,
				   message);
			a->closing = 1;
		}
		return rc;
	}
	default:
		return WIRE_E_TYPE; /* HELLO twice, or ACK, which only the server sends */
	}
}

static void server_agent_close(struct server *s, int i)
{
	struct server_agent *a = &s->agents[i];

	if (a->hello_done)
		server_log("agent %s (%s) disconnected", a->peer, a->node);
	close(a->fd);
	free(a->in);
	s->agents[i] = s->agents[--s->n_agents];
}

/*
 * server_frame_limit is the largest frame length a connection may send now: before its HELLO,
 * a HELLO's (a peer that has not said who it is gets no megabytes of buffer); then
 * --max-frame.
 */
static uint32_t server_frame_limit(const struct server *s, const struct server_agent *a)
{
	return a->hello_done ? s->max_frame
			     : WIRE_HEADER_SIZE - WIRE_LENGTH_SIZE + WIRE_HELLO_MAX_PAYLOAD;
}

/* server_read reads what the agent sent and handles every whole frame in it. */
static void server_agent_read(struct server *s, struct server_agent *a)
{
	size_t pos = 0;

	for (;;) {
		ssize_t n;

		if (a->in_cap - a->in_len < SERVER_READ_CHUNK) {
			size_t cap = a->in_cap ? a->in_cap * 2 : SERVER_READ_CHUNK * 2;
			size_t most = (size_t)server_frame_limit(s, a) + WIRE_LENGTH_SIZE +
				      SERVER_READ_CHUNK;
			uint8_t *p;

			if (cap > most)
				cap = most > a->in_cap ? most : a->in_cap;
			if (cap <= a->in_cap)
				break; /* buffer full: parse what is here first */
			p = realloc(a->in, cap);
			if (!p) {
				server_log("agent %s: out of memory", a->peer);
				a->closing = 1;
				return;
			}
			a->in = p;
			a->in_cap = cap;
		}
		n = read(a->fd, a->in + a->in_len, a->in_cap - a->in_len);
		if (n > 0) {
			a->in_len += (size_t)n;
			continue;
		}
		if (n == 0) {
			a->closing = 2; /* peer closed: nothing more to say */
		} else if (errno != EAGAIN && errno != EINTR) {
			server_log("agent %s: read: %s", a->peer, strerror(errno));
			a->closing = 2;
		}
		break;
	}
	while (!a->closing || a->closing == 2) {
		struct wire_frame f;
		long n = wire_frame_parse(a->in + pos, a->in_len - pos, server_frame_limit(s, a),
					  &f);
		int rc;

		if (n == WIRE_E_PARTIAL)
			break;
		if (n < 0) {
			server_reject(s, a, (int)n, WIRE_ERR_PROTOCOL);
			break;
		}
		rc = server_handle_frame(s, a, &f);
		if (rc < 0) {
			server_reject(s, a, rc,
				      rc == WIRE_E_VERSION ? WIRE_ERR_VERSION
				      : !a->hello_done && rc == WIRE_E_TYPE
					      ? WIRE_ERR_EXPECTED_HELLO
					      : WIRE_ERR_PROTOCOL);
			break;
		}
		pos += (size_t)n;
	}
	memmove(a->in, a->in + pos, a->in_len - pos);
	a->in_len -= pos;
	/* After a large report, give the memory back rather than keep it for the connection's life. */
	if (a->in_cap > 4 * SERVER_READ_CHUNK && a->in_len <= SERVER_READ_CHUNK) {
		uint8_t *p = realloc(a->in, 2 * SERVER_READ_CHUNK);

		if (p) {
			a->in = p;
			a->in_cap = 2 * SERVER_READ_CHUNK;
		}
	}
}

static void server_agent_write(struct server_agent *a)
{
	while (a->out_len) {
		ssize_t n = write(a->fd, a->out, a->out_len);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				a->closing = 2;
			return;
		}
		memmove(a->out, a->out + n, a->out_len - (size_t)n);
		a->out_len -= (size_t)n;
	}
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

static void server_flow_log(const struct server_agent *a, const struct wire_record *r,
			    const struct attribution *at)
{
	char when[40];

	log_time(when, sizeof(when), 1);
	server_out_begin();
	OUT("{\"time\":\"%s\",\"node\":\"%s\",\"class\":\"%s\",\"direction\":\"%s\","
	    "\"protocol\":%u,\"port\":%u,\"bytes\":%llu,\"packets\":%llu,\"encap_bytes\":%llu,",
	    when, a->node, traffic_class_name(at->class),
	    at->direction == TRAFFIC_SENT ? "sent" : "received", r->protocol, r->port,
	    (unsigned long long)r->bytes, (unsigned long long)r->packets,
	    (unsigned long long)r->encap_bytes);
	server_flow_endpoint("src", r->src, at->src);
	server_out_char(',');
	server_flow_endpoint("dst", r->dst, at->dst);
	OUT("}\n");
	server_out_end();
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

/* server_account attributes one record and adds it to the metrics. */
static void server_account(struct server *s, const struct server_agent *a,
			   const struct wire_record *r)
{
	struct attribution at;
	struct server_zone_pair *z;
	int cross;

	if (!s->index)
		return;
	if (r->encap_bytes)
		endpoint_attribute_tunnelled(s->index, a->node, r->src, r->dst, &at);
	else
		endpoint_attribute(s->index, a->node, r->src, r->dst, &at);
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
		server_flow_log(a, r, &at);
}

static void server_account_report(struct server *s, const struct server_agent *a,
				  const struct wire_stats *st)
{
	struct metrics_series *last = metrics_get(&s->last_report, (const char *const[]){a->node});
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (last)
		last->gauge = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	SERVER_COUNT(&s->records, st->count, a->node);
	SERVER_COUNT(&s->agent_lost_bytes, st->loss.map_full_bytes, a->node, "map_full");
	SERVER_COUNT(&s->agent_lost_packets, st->loss.map_full_packets, a->node, "map_full");
	SERVER_COUNT(&s->agent_lost_bytes, st->loss.other_bytes, a->node, "other");
	SERVER_COUNT(&s->agent_lost_packets, st->loss.other_packets, a->node, "other");
	if (st->version >= WIRE_VERSION_2) { /* a version 1 agent cannot tell: no series */
		SERVER_COUNT(&s->malformed_packets, st->tunnel_malformed_packets, a->node);
		SERVER_COUNT(&s->malformed_bytes, st->tunnel_malformed_bytes, a->node);
	}
	for (uint32_t i = 0; i < st->count; i++) {
		struct wire_record r;
		wire_record_get(st, i, &r);
		server_account(s, a, &r);
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

static void server_render_metrics(struct server *s, struct buf *b)
{
	struct metrics_family *all[] = {
		&s->pod_bytes,	       &s->pod_packets,
		&s->workload_bytes,    &s->workload_packets,
		&s->zone_bytes,	       &s->zone_packets,
		&s->encap_bytes,       &s->class_bytes,
		&s->unknown_bytes,     &s->records,
		&s->reports,	       &s->frames_rejected,
		&s->agents_connected,  &s->last_report,
		&s->agent_lost_bytes,  &s->agent_lost_packets,
		&s->malformed_packets, &s->malformed_bytes,
		&s->endpoints,	       &s->build_info,
		&s->http_requests,     &s->http_rejected,
		&s->topology_reloads,  &s->kube_events,
		&s->kube_relists,      &s->kube_errors,
		&s->kube_rejected,     &s->kube_synced,
		&s->out_dropped,
	};
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
		x->count = server_out_dropped;
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
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		metrics_render(all[i], b);
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

static void server_http_handle(struct server *s, struct server_http *c,
			       const struct http_request *r)
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
			return;
		}
		struct buf *body = &s->render, *z = &s->gzipped;
		const struct http_header *ae = http_header_value(r, "Accept-Encoding");
		int gzip = ae && http_accepts_token(ae->value, ae->value_len, "gzip");

		body->len = 0;
		body->oom = 0;
		server_render_metrics(s, body);
		if (body->oom) {
			server_http_respond(s, c, 500, text, "out of memory\n", 14, head, 0, 0);
		} else if (gzip && server_gzip(body->p ? body->p : "", body->len, z) == 0) {
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
}

static void server_http_read(struct server *s, struct server_http *c, long long now)
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
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			c->closing = 2;
		break;
	}
	while (!c->closing && c->in_len) {
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
		server_http_handle(s, c, &r);
		memmove(c->in, c->in + n, c->in_len - (size_t)n);
		c->in_len -= (size_t)n;
		c->seen_len = 0;
		c->head_started_ms = now;
	}
}

#define SERVER_HTTP_KEEP_BUFFER (64u << 10)

static void server_http_write(struct server_http *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = write(c->fd, c->out.p + c->out_off, c->out.len - c->out_off);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				c->closing = 2;
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out.len = c->out_off = 0;
	/* An idle keep-alive connection does not keep a /metrics-sized buffer. */
	if (c->out.cap > SERVER_HTTP_KEEP_BUFFER)
		buf_free(&c->out);
}

static void server_http_close(struct server *s, int i)
{
	close(s->http[i].fd);
	buf_free(&s->http[i].out);
	s->http[i] = s->http[--s->n_http];
}

static void server_http_accept(struct server *s)
{
	for (;;) {
		int fd = accept4(s->http_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct server_http *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				server_log("accept (http): %s", strerror(errno));
			return;
		}
		if (s->n_http == s->http_max) {
			static const char busy[] =
				"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				"Connection: close\r\n\r\n";
			if (write(fd, busy, sizeof(busy) - 1) < 0) {
				/* best effort */
			}
			close(fd);
			SERVER_COUNT(&s->http_rejected, 1, "too_many_connections");
			continue;
		}
		c = &s->http[s->n_http++];
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->last_activity_ms = log_now_ms();
		server_peer_name(fd, c->peer, sizeof(c->peer));
	}
}

/* ---- agents ---- */

static void server_agent_accept(struct server *s)
{
	for (;;) {
		int fd = accept4(s->agent_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct server_agent *a;
		int one = 1;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				server_log("accept (agents): %s", strerror(errno));
			return;
		}
		if (s->n_agents == SERVER_MAX_AGENTS) {
			uint8_t frame[64];
			long n = wire_error_encode(frame, sizeof(frame), WIRE_ERR_OVERLOADED,
						   "too many agent connections");
			if (write(fd, frame, (size_t)n) < 0) {
				/* best effort: the peer learns the reason or just sees the close */
			}
			close(fd);
			server_count_rejected(s, "too_many_connections");
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		a = &s->agents[s->n_agents++];
		memset(a, 0, sizeof(*a));
		a->fd = fd;
		a->connected_ms = a->last_activity_ms = log_now_ms();
		server_peer_name(fd, a->peer, sizeof(a->peer));
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
		"  --kube-token-file FILE      bearer token, read again every minute and on 401\n"
		"  --kube-timeout DURATION     connect, TLS and list timeout (default 30s)\n"
		"  --flow-logs MODE            JSON flow logs on stdout: cross-zone (default), "
		"all,\n"
		"                              or none\n"
		"  --pod-retention DURATION    keep a deleted pod's series this long (default 5m)\n"
		"  --http-max-connections N    concurrent HTTP connections (default %d)\n"
		"  --max-frame BYTES           largest agent frame accepted (default %u)\n"
		"  --dump-records              print every new raw record as a JSON line on "
		"stdout\n"
		"  -h, --help                  this text\n"
		"  -V, --version               print the version and exit\n",
		SERVER_HTTP_MAX_DEFAULT, WIRE_FRAME_MAX_DEFAULT);
}

static int server_parse_duration(const char *v, long long *ms)
{
	char *end;
	double x = strtod(v, &end);

	if (end == v || x < 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		*ms = (long long)x;
	else if (*end == '\0' || strcmp(end, "s") == 0)
		*ms = (long long)(x * 1000);
	else if (strcmp(end, "m") == 0)
		*ms = (long long)(x * 60000);
	else if (strcmp(end, "h") == 0)
		*ms = (long long)(x * 3600000);
	else
		return -1;
	return 0;
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
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	static struct server s;
	struct pollfd *pfds;
	const char *agent_listen = ":8081", *http_listen = ":8080";
	struct sigaction sa = {.sa_handler = server_on_signal}, hup = {.sa_handler = server_on_hup};
	struct k8s_options kube = {0};
	int kube_off = 0;
	long long next_sweep, sweep_ms;
	int opt;

	s.max_frame = WIRE_FRAME_MAX_DEFAULT;
	s.flow_logs = FLOW_LOGS_CROSS_ZONE;
	s.retention_ms = SERVER_RETENTION_DEFAULT;
	s.http_max = SERVER_HTTP_MAX_DEFAULT;
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

	server_metrics_init(&s);
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &hup, NULL);
	s.http = calloc((size_t)s.http_max, sizeof(*s.http));
	pfds = calloc((size_t)(5 + SERVER_MAX_AGENTS + s.http_max), sizeof(*pfds));
	if (!s.http || !pfds) {
		server_log("out of memory for %d HTTP connections", s.http_max);
		return 1;
	}
	if (kube.url && strcmp(kube.url, "off") == 0) {
		kube_off = 1;
		kube.url = NULL;
	}
	if ((kube.ca_file || kube.token_file) && !kube.url && !getenv("KUBERNETES_SERVICE_HOST")) {
		fprintf(stderr,
			"kubezonnet-server: --kube-ca and --kube-token-file need --kube-api\n");
		return 2;
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
			return 2;
		}
		server_log("kubernetes: API server %s://%s:%s%s", s.kube->tls ? "https" : "http",
			   s.kube->host, s.kube->port,
			   kube.url ? "" : " (in-cluster configuration)");
	}
	if (s.topology_path && server_load_topology(&s, 1) != 0)
		return 1;
	if (s.kube)
		s.index = endpoint_index_new(); /* until the first lists arrive; not ready before */
	else if (!s.topology_path) {
		s.index = endpoint_index_new();
		s.ready = 1; /* no endpoint source to wait for */
	}
	s.agent_listen_fd = server_listen(agent_listen);
	if (s.agent_listen_fd < 0)
		return 1;
	s.http_listen_fd = server_listen(http_listen);
	if (s.http_listen_fd < 0)
		return 1;
	server_log("listening for agents on %s, HTTP on %s", agent_listen, http_listen);
	sweep_ms = s.retention_ms / 4 < SERVER_SWEEP_MS ? s.retention_ms / 4 : SERVER_SWEEP_MS;
	if (sweep_ms < 100)
		sweep_ms = 100;
	next_sweep = log_now_ms() + sweep_ms;

	while (!server_stop) {
		long long now;
		int n, np = 2, a0, h0, k0, nk = 0;

		if (server_reload) {
			server_reload = 0;
			if (s.topology_path)
				server_load_topology(&s, 0);
		}
		pfds[0] = (struct pollfd){.fd = s.agent_listen_fd, .events = POLLIN};
		pfds[1] = (struct pollfd){.fd = s.http_listen_fd, .events = POLLIN};
		a0 = np;
		for (int i = 0; i < s.n_agents; i++) {
			struct server_agent *a = &s.agents[i];
			pfds[np++] = (struct pollfd){.fd = a->fd,
						     .events = (short)((a->closing ? 0 : POLLIN) |
								       (a->out_len ? POLLOUT : 0))};
		}
		h0 = np;
		for (int i = 0; i < s.n_http; i++) {
			struct server_http *c = &s.http[i];
			pfds[np++] = (struct pollfd){
				.fd = c->fd,
				.events = (short)((c->closing ? 0 : POLLIN) |
						  (c->out.len > c->out_off ? POLLOUT : 0))};
		}
		k0 = np;
		if (s.kube)
			np += nk = k8s_client_pollfds(s.kube, pfds + np);
		if (server_out_pending()) /* woken when stdout takes more */
			pfds[np++] = (struct pollfd){.fd = STDOUT_FILENO, .events = POLLOUT};
		n = poll(pfds, (nfds_t)np, s.kube ? (s.kube->busy ? 0 : 200) : 1000);
		if (n < 0 && errno != EINTR) {
			server_log("poll: %s", strerror(errno));
			return 1;
		}
		now = log_now_ms();
		/* Walk backwards: closing moves the last connection into the closed one's slot. */
		for (int i = s.n_agents - 1; i >= 0; i--) {
			struct server_agent *a = &s.agents[i];
			short re = n > 0 ? pfds[a0 + i].revents : 0;

			if (re & (POLLIN | POLLHUP | POLLERR)) {
				a->last_activity_ms = now;
				server_agent_read(&s, a);
			}
			if (a->out_len)
				server_agent_write(a);
			if (!a->hello_done && now - a->connected_ms > SERVER_HELLO_TIMEOUT_MS)
				a->closing = 2;
			if (now - a->last_activity_ms > SERVER_IDLE_TIMEOUT_MS)
				a->closing = 2;
			if (a->closing == 2 || (a->closing && a->out_len == 0))
				server_agent_close(&s, i);
		}
		for (int i = s.n_http - 1; i >= 0; i--) {
			struct server_http *c = &s.http[i];
			short re = n > 0 ? pfds[h0 + i].revents : 0;

			if (re & (POLLIN | POLLHUP | POLLERR)) {
				c->last_activity_ms = now;
				server_http_read(&s, c, now);
			}
			if (c->out.len > c->out_off)
				server_http_write(c);
			if (!c->closing && c->in_len &&
			    now - c->head_started_ms > SERVER_HTTP_HEAD_MS) {
				server_http_reject(&s, c, 408, "head_timeout");
				server_http_write(c);
			} else if (!c->closing && now - c->last_activity_ms > SERVER_HTTP_IDLE_MS) {
				SERVER_COUNT(&s.http_rejected, 1, "idle_timeout");
				c->closing = 2;
			}
			if (c->closing == 2 || (c->closing && c->out.len <= c->out_off))
				server_http_close(&s, i);
		}
		if (n > 0 && (pfds[0].revents & POLLIN))
			server_agent_accept(&s);
		if (n > 0 && (pfds[1].revents & POLLIN))
			server_http_accept(&s);
		if (s.kube)
			server_kube_step(&s, pfds + k0, nk, now);
		server_out_flush(0);
		if (now >= next_sweep) {
			server_sweep(&s, now);
			next_sweep = now + sweep_ms;
		}
	}
	server_log("stopping: %llu reports stored, %llu duplicates", s.stats.reports_stored,
		   s.stats.reports_duplicate);
	server_out_flush(1);
	for (int i = s.n_agents - 1; i >= 0; i--)
		server_agent_close(&s, i);
	for (int i = s.n_http - 1; i >= 0; i--)
		server_http_close(&s, i);
	close(s.agent_listen_fd);
	close(s.http_listen_fd);
	if (s.kube) {
		k8s_client_free(s.kube);
		free(s.kube);
	}
	endpoint_index_free(s.topology_extra);
	free(s.http);
	free(pfds);
	return 0;
}
