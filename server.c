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

#define SERVER_MAX_AGENTS_DEFAULT   16384
#define SERVER_NODE_INSTANCES	    4	  /* (instance, last sequence) pairs kept per node */
#define SERVER_NODES_MIN	    65536 /* nodes whose deduplication state is kept, at least */
#define SERVER_READ_CHUNK	    65536
#define SERVER_HELLO_TIMEOUT_MS	    10000
#define SERVER_IDLE_TIMEOUT_MS	    300000 /* an agent reports every 10 s */
#define SERVER_FRAME_TIMEOUT_MS	    60000  /* to send a whole frame once its first byte came */
#define SERVER_FRAME_STALL_MS	    10000  /* a frame begun, and not a byte more for this long */
#define SERVER_UNKNOWN_NODES	    1024   /* per-node series for names the index does not know */
#define SERVER_WRITE_TIMEOUT_MS	    30000  /* for a peer to take any of what we have to send */
#define SERVER_WRITE_BUFFER	    1024
#define SERVER_HTTP_MAX_DEFAULT	    256
#define SERVER_HTTP_IDLE_MS	    60000 /* keep-alive connection without a request */
#define SERVER_HTTP_HEAD_MS	    10000 /* to send a whole request head once started */
#define SERVER_SWEEP_MS		    30000
#define SERVER_RETENTION_DEFAULT    (5 * 60 * 1000)
#define SERVER_INPUT_MEMORY_DEFAULT (96u << 20)
/*
 * The work one loop turn may do before it returns to poll(): records accounted, plus one unit
 * per 64 bytes inflated. 32,768 units are a few milliseconds, so no report, however large,
 * keeps /healthz or the other agents waiting.
 */
#define SERVER_TURN_WORK	 32768
#define SERVER_SMALL_BUFFER	 (128u << 10)
#define SERVER_JOB_SLICE	 8192 /* records of one report before the next report's turn */
#define SERVER_TICK_MS		 250  /* how often deadlines are checked */
#define SERVER_ACCEPT_BACKOFF_MS 100

struct server_job;

struct server_agent {
	int kind; /* FD_AGENT: first, as epoll events find it through a pointer */
	int fd;
	int slot;	 /* index in server.agents */
	uint32_t events; /* the epoll interest registered now */
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
	int eof;     /* 1: the peer sent FIN; 2: it hung up (no longer watched): finish, close */
	int waiting; /* paused until the input memory budget has room */
	struct server_job *job;			      /* its report being accounted, or NULL */
	struct server_agent *ready_prev, *ready_next; /* on the list of input to parse */
	int ready;
	long long connected_ms, last_activity_ms;
	long long frame_started_ms; /* 0: no partial frame in in[] */
	long long write_since_ms;   /* 0: nothing waiting to be written */
};

/*
 * A report being accounted: its records are attributed a slice at a time, between other
 * work, so one large report does not hold the loop. It lives on if its connection closes.
 */
struct server_job {
	struct server_job *next;
	struct server_agent *a; /* NULL once the connection is gone */
	char node[WIRE_NODE_NAME_MAX + 1];
	uint64_t instance_id;
	uint8_t *payload; /* owned */
	size_t mem;	  /* bytes counted against the input budget */
	struct wire_stats st;
	uint32_t done; /* records accounted so far */
	int started;
};

/* A node's deduplication state: the last sequence stored of each of its recent instances. */
struct server_node {
	struct server_node *next; /* hash chain */
	uint64_t hash;
	long long seen_ms;
	int connected; /* scratch for eviction */
	struct {
		uint64_t id, last_sequence;
		long long seen_ms;
	} inst[SERVER_NODE_INSTANCES];
	char name[];
};

struct server_http {
	int kind; /* FD_HTTP */
	int fd;
	int slot;
	uint32_t events;
	char peer[64];
	char in[HTTP_MAX_HEADER_BYTES + 1];
	size_t in_len, seen_len;
	struct buf out;
	size_t out_off;
	int closing;
	long long last_activity_ms, head_started_ms;
	long long write_since_ms; /* 0: nothing waiting to be written */
	int again;		  /* requests left in in[] for the next turn */
	int heard;		  /* it has sent a byte */
	int eof;		  /* it sent FIN: answer what is buffered, then close */
	long long connected_ms;
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

/* What an epoll event points at: a listener (kind 0, 1), an agent (2) or an HTTP client (3). */
enum server_fd_kind { FD_AGENT_LISTEN, FD_HTTP_LISTEN, FD_AGENT, FD_HTTP };

struct server {
	/* configuration */
	uint32_t max_frame;
	int dump_records;
	enum server_flow_logs flow_logs;
	const char *topology_path;
	long long retention_ms;
	int http_max, agents_max;
	size_t input_budget;

	int epoll_fd;
	int agent_listen_fd, http_listen_fd;
	long long listen_paused_until[2]; /* after EMFILE: accept again at this time */
	int listen_paused[2];
	long long emfile_logged_ms;
	unsigned long long emfile_unlogged;
	struct server_agent **agents;
	int n_agents;
	struct server_http **http;
	int n_http, n_http_again;
	/* closed this turn, freed at its end (an event later in the turn may still name them) */
	void **dead;
	int n_dead, dead_cap;

	/* the input budget: agent buffers and reports being accounted */
	size_t input_bytes;
	int n_waiting;
	struct server_agent *ready_head, *ready_tail;
	struct server_job *jobs_head, *jobs_tail;
	long work; /* what is left of this turn's work */

	struct server_node **nodes;
	size_t nodes_cap, nodes_len, nodes_max;
	unsigned node_generation;
	size_t unknown_nodes; /* per-node series named by nodes the index does not know */

	struct endpoint_index *index;
	unsigned generation;
	struct k8s_client *kube; /* --kube-api, or NULL */
	long long kube_next_index_ms;
	struct endpoint_index *topology_extra; /* with --kube-api: the topology file's index */
	struct metrics_series *class_series[TRAFFIC_CLASSES];
	/* Kept between scrapes: a large fresh buffer costs a page fault per 4 KiB every time. */
	struct buf render, gzipped;
	/*
	 * A rendering is reused for ten times what it cost (at most a second): scrapers and
	 * pipelined requests cannot keep the loop rendering; and at most one rendering (and its
	 * gzip) a turn, further requests waiting for the next turn.
	 */
	long long render_at_ms, render_ttl_ms;
	int render_valid, gzip_valid, rendered_this_turn;
	struct server_zone_pair zone_cache[SERVER_ZONE_CACHE];
	int ready;

	struct {
		unsigned long long reports_stored, reports_duplicate, input_waits;
		unsigned long long dedup_evicted;
	} stats;

	struct metrics_family pod_bytes, pod_packets, workload_bytes, workload_packets;
	struct metrics_family zone_bytes, zone_packets, encap_bytes, class_bytes, unknown_bytes;
	struct metrics_family records, reports, frames_rejected, agents_connected, last_report;
	struct metrics_family agent_lost_bytes, agent_lost_packets, endpoints, build_info;
	struct metrics_family malformed_packets, malformed_bytes; /* tunnel inner headers */
	struct metrics_family http_requests, http_rejected, topology_reloads;
	struct metrics_family kube_events, kube_relists, kube_errors, kube_rejected, kube_synced;
	struct metrics_family out_dropped, log_dropped, agents_closed, accept_errors;
	struct metrics_family input_held, input_waits, dedup_nodes, dedup_evicted;
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
	FAMILY(log_dropped, "kubezonnet_log_lines_dropped_total",
	       "Log lines dropped because stderr did not keep up.", METRICS_COUNTER, );
	FAMILY(agents_closed, "kubezonnet_agent_connections_closed_total",
	       "Agent connections the server closed at a deadline or to make room: "
	       "hello_timeout, idle_timeout, frame_timeout, write_timeout, evicted.",
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

static void server_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void server_log(const char *fmt, ...)
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

/* server_account attributes one record and adds it to the metrics. */
static void server_account(struct server *s, const char *node, const struct wire_record *r)
{
	struct attribution at;
	struct server_zone_pair *z;
	int cross;

	if (!s->index)
		return;
	if (r->encap_bytes)
		endpoint_attribute_tunnelled(s->index, node, r->src, r->dst, &at);
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
static void server_account_report(struct server *s, const char *node, const struct wire_stats *st)
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
		&s->out_dropped,       &s->log_dropped,
		&s->agents_closed,     &s->accept_errors,
		&s->input_held,	       &s->input_waits,
		&s->dedup_nodes,       &s->dedup_evicted,
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
static void server_watch(struct server *s, int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = {.events = events, .data.ptr = ptr};

	if (epoll_ctl(s->epoll_fd, op, fd, &ev) != 0 && op != EPOLL_CTL_DEL)
		server_log("epoll_ctl: %s", strerror(errno)); /* ENOMEM: nothing else to do */
}

/* server_bury keeps a closed connection's memory until the turn ends (its events may follow). */
static void server_bury(struct server *s, void *p)
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

/*
 * server_input_fits reports whether more bytes of agent input fit the budget. A buffer of up
 * to SERVER_SMALL_BUFFER (what an ordinary report needs) may also use a reserve of a quarter
 * of the budget, so peers sending huge frames cannot keep ordinary reports out.
 */
static int server_input_fits(const struct server *s, size_t more, size_t total)
{
	size_t budget = s->input_budget + (total <= SERVER_SMALL_BUFFER ? s->input_budget / 4 : 0);

	return s->input_bytes + more <= budget;
}

/*
 * server_buffer_fits: read buffers may fill the budget only up to --max-frame below its top,
 * so that a whole frame can always be inflated and counted (which frees memory): frames that
 * are read but cannot be inflated never hold all of it.
 */
static int server_buffer_fits(const struct server *s, size_t more, size_t total)
{
	size_t budget = s->input_budget - s->max_frame +
			(total <= SERVER_SMALL_BUFFER ? s->input_budget / 4 : 0);

	return s->input_bytes + more <= budget;
}

static void server_ready_remove(struct server *s, struct server_agent *a)
{
	if (!a->ready)
		return;
	if (a->ready_prev)
		a->ready_prev->ready_next = a->ready_next;
	else
		s->ready_head = a->ready_next;
	if (a->ready_next)
		a->ready_next->ready_prev = a->ready_prev;
	else
		s->ready_tail = a->ready_prev;
	a->ready_prev = a->ready_next = NULL;
	a->ready = 0;
}

/* server_ready_add puts a at the end of the connections with input to parse. */
static void server_ready_add(struct server *s, struct server_agent *a)
{
	server_ready_remove(s, a);
	a->ready_prev = s->ready_tail;
	if (s->ready_tail)
		s->ready_tail->ready_next = a;
	else
		s->ready_head = a;
	s->ready_tail = a;
	a->ready = 1;
}

/*
 * server_agent_interest registers what the connection waits for now: input only when it has
 * none to parse, no report being accounted, and room in the budget (a peer that outpaces the
 * server waits in its own socket buffer, not in ours); output while ACKs are queued.
 */
static void server_agent_interest(struct server *s, struct server_agent *a)
{
	uint32_t ev = 0;

	if (a->fd < 0 || a->eof == 2)
		return;
	if (!a->closing && !a->eof && !a->waiting && !a->job && !a->ready)
		ev |= EPOLLIN;
	if (a->out_len)
		ev |= EPOLLOUT;
	if (ev != a->events) {
		server_watch(s, EPOLL_CTL_MOD, a->fd, ev, a);
		a->events = ev;
	}
}

/* server_agent_wait pauses the connection until the input budget has room. */
static void server_agent_wait(struct server *s, struct server_agent *a)
{
	if (a->waiting)
		return;
	a->waiting = 1;
	s->n_waiting++;
	s->stats.input_waits++;
	server_ready_remove(s, a);
}

/* server_input_release gives bytes back to the budget and wakes the connections waiting. */
static void server_input_release(struct server *s, size_t bytes)
{
	s->input_bytes -= bytes;
	if (!s->n_waiting)
		return;
	for (int i = 0; i < s->n_agents; i++) {
		struct server_agent *a = s->agents[i];
		if (!a->waiting)
			continue;
		a->waiting = 0;
		if (a->in_len)
			server_ready_add(s, a); /* it may have a whole frame to parse */
		server_agent_interest(s, a);
	}
	s->n_waiting = 0;
}

static void server_agent_set_buffer(struct server *s, struct server_agent *a, uint8_t *p,
				    size_t cap)
{
	size_t old = a->in_cap;

	a->in = p;
	a->in_cap = cap;
	if (cap >= old)
		s->input_bytes += cap - old;
	else
		server_input_release(s, old - cap);
}

/* server_agent_close closes the connection; its report being accounted goes on without it. */
static void server_agent_close(struct server *s, struct server_agent *a, const char *reason)
{
	if (a->fd < 0)
		return;
	if (reason)
		SERVER_COUNT(&s->agents_closed, 1, reason);
	if (a->hello_done)
		server_log("agent %s (%s) disconnected%s%s", a->peer, a->node, reason ? ": " : "",
			   reason ? reason : "");
	if (a->job)
		a->job->a = NULL;
	server_ready_remove(s, a);
	if (a->waiting) {
		a->waiting = 0;
		s->n_waiting--;
	}
	server_watch(s, EPOLL_CTL_DEL, a->fd, 0, NULL);
	close(a->fd);
	a->fd = -1;
	free(a->in);
	s->agents[a->slot] = s->agents[--s->n_agents];
	s->agents[a->slot]->slot = a->slot;
	server_bury(s, a);
	server_input_release(s, a->in_cap); /* after the slot is gone: it wakes only live ones */
	a->in = NULL;
	a->in_cap = a->in_len = 0;
}

/* ---- deduplication, per node ---- */

/* server_hash hashes a peer-chosen name with the process's random key (SipHash-1-3, hash.h). */
static uint64_t server_hash(const struct server *s, const char *p, size_t n)
{
	(void)s;
	return hash_bytes(p, n);
}

static struct server_node *server_node_find(struct server *s, const char *name, uint64_t h)
{
	if (!s->nodes_cap)
		return NULL;
	for (struct server_node *x = s->nodes[h & (s->nodes_cap - 1)]; x; x = x->next)
		if (x->hash == h && strcmp(x->name, name) == 0)
			return x;
	return NULL;
}

static int server_cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/*
 * server_nodes_evict forgets the eighth of the nodes that reported least recently, among
 * those with no agent connected: the table stays within its size however many names peers
 * make up, and a node that reports (or is connected) keeps its state.
 */
static void server_nodes_evict(struct server *s)
{
	long long *seen = malloc(s->nodes_len * sizeof(*seen)), cut;
	size_t n = 0, evicted = 0;

	if (!seen)
		return;
	for (int i = 0; i < s->n_agents; i++) {
		struct server_agent *a = s->agents[i];
		struct server_node *x;
		if (a->hello_done &&
		    (x = server_node_find(s, a->node, server_hash(s, a->node, strlen(a->node)))))
			x->connected = 1;
	}
	for (size_t b = 0; b < s->nodes_cap; b++)
		for (struct server_node *x = s->nodes[b]; x; x = x->next) {
			if (s->index && endpoint_node(s->index, x->name))
				x->connected = 1; /* a node of the cluster is never forgotten */
			if (!x->connected)
				seen[n++] = x->seen_ms;
		}
	if (n) {
		qsort(seen, n, sizeof(*seen), server_cmp_ll);
		cut = seen[n / 8];
		for (size_t b = 0; b < s->nodes_cap; b++) {
			struct server_node **pp = &s->nodes[b];
			while (*pp) {
				struct server_node *x = *pp;
				if (!x->connected && x->seen_ms <= cut) {
					*pp = x->next;
					free(x);
					evicted++;
					continue;
				}
				x->connected = 0;
				pp = &x->next;
			}
		}
	} else {
		for (size_t b = 0; b < s->nodes_cap; b++)
			for (struct server_node *x = s->nodes[b]; x; x = x->next)
				x->connected = 0;
	}
	s->nodes_len -= evicted;
	s->stats.dedup_evicted += evicted;
	free(seen);
}

/* server_node_get finds or makes the node's deduplication state; NULL when out of memory. */
static struct server_node *server_node_get(struct server *s, const char *name)
{
	size_t len = strlen(name);
	uint64_t h = server_hash(s, name, len);
	struct server_node *x = server_node_find(s, name, h);

	if (x)
		return x;
	if (s->nodes_len >= s->nodes_max)
		server_nodes_evict(s);
	if (s->nodes_len + 1 > s->nodes_cap) {
		size_t cap = s->nodes_cap ? s->nodes_cap * 2 : 256;
		struct server_node **b = calloc(cap, sizeof(*b));
		if (!b)
			return NULL;
		for (size_t i = 0; i < s->nodes_cap; i++) {
			while (s->nodes[i]) {
				struct server_node *y = s->nodes[i];
				s->nodes[i] = y->next;
				y->next = b[y->hash & (cap - 1)];
				b[y->hash & (cap - 1)] = y;
			}
		}
		free(s->nodes);
		s->nodes = b;
		s->nodes_cap = cap;
	}
	x = calloc(1, sizeof(*x) + len + 1);
	if (!x)
		return NULL;
	memcpy(x->name, name, len + 1);
	x->hash = h;
	x->next = s->nodes[h & (s->nodes_cap - 1)];
	s->nodes[h & (s->nodes_cap - 1)] = x;
	s->nodes_len++;
	return x;
}

/*
 * server_dedup reports whether the report (node, instance, sequence) is new, and remembers it:
 * 1 new, 0 already stored (a resend after a lost ACK). Each node keeps its own few instances,
 * so no peer can push another node's state out of a shared table.
 */
static int server_dedup(struct server *s, const char *node, uint64_t instance, uint64_t sequence,
			long long now)
{
	struct server_node *x = server_node_get(s, node);
	int k, oldest = 0;

	if (!x)
		return 1; /* out of memory: counting it beats losing it */
	x->seen_ms = now;
	for (k = 0; k < SERVER_NODE_INSTANCES; k++) {
		if (x->inst[k].seen_ms && x->inst[k].id == instance)
			break;
		if (x->inst[k].seen_ms < x->inst[oldest].seen_ms)
			oldest = k;
	}
	if (k == SERVER_NODE_INSTANCES) {
		k = oldest;
		x->inst[k].id = instance;
		x->inst[k].last_sequence = 0;
	}
	x->inst[k].seen_ms = now;
	if (sequence <= x->inst[k].last_sequence)
		return 0;
	x->inst[k].last_sequence = sequence;
	return 1;
}

/* ---- agents: frames, reports, accounting ---- */

/* server_queue appends a frame to the agent's output; frames here are small and bounded. */
static void server_agent_write(struct server_agent *a, long long now);

static void server_queue(struct server_agent *a, const uint8_t *frame, size_t len, long long now)
{
	if (a->eof == 2)
		return; /* hung up: nobody to read it */
	if (len > sizeof(a->out) - a->out_len)
		server_agent_write(a, now);
	if (len > sizeof(a->out) - a->out_len) {
		a->closing = 1; /* the peer does not read its ACKs: give up on it */
		return;
	}
	memcpy(a->out + a->out_len, frame, len);
	a->out_len += len;
	if (!a->write_since_ms)
		a->write_since_ms = now;
}

/* server_reject sends an ERROR naming the failed check, counts it, and closes after flushing. */
static void server_reject(struct server *s, struct server_agent *a, int result, uint16_t code,
			  long long now)
{
	uint8_t frame[WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + WIRE_ERROR_MESSAGE_MAX];
	long n;

	server_count_rejected(s, wire_reason(result));
	server_log("agent %s (%s): %s; closing", a->peer, a->hello_done ? a->node : "no HELLO yet",
		   wire_strerror(result));
	n = wire_error_encode(frame, sizeof(frame), code, wire_strerror(result));
	if (n > 0)
		server_queue(a, frame, (size_t)n, now);
	a->closing = 1;
}

static void server_dump_report(const struct server_job *j)
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
	    "\"tunnel_malformed_packets\":%llu,\"tunnel_malformed_bytes\":%llu}\n",
	    j->node, (unsigned long long)j->instance_id, (unsigned long long)st->sequence,
	    (unsigned long long)st->start_ns, (unsigned long long)st->end_ns, st->count,
	    (unsigned long long)st->loss.map_full_packets,
	    (unsigned long long)st->loss.map_full_bytes, (unsigned long long)st->loss.other_packets,
	    (unsigned long long)st->loss.other_bytes,
	    (unsigned long long)st->tunnel_malformed_packets,
	    (unsigned long long)st->tunnel_malformed_bytes);
	server_sink_end(&server_out);
}

static void server_dump_record(const struct server_job *j, const struct wire_record *r)
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
 * server_job_step accounts up to most records of the report; returns the work done (at
 * least 1).
 */
static long server_job_step(struct server *s, struct server_job *j, long most)
{
	uint32_t end;

	if (!j->started) {
		j->started = 1;
		if (s->dump_records)
			server_dump_report(j);
		server_account_report(s, j->node, &j->st);
	}
	end = j->st.count - j->done > (uint32_t)most ? j->done + (uint32_t)most : j->st.count;
	for (uint32_t i = j->done; i < end; i++) {
		struct wire_record r;
		wire_record_get(&j->st, i, &r);
		if (s->dump_records)
			server_dump_record(j, &r);
		server_account(s, j->node, &r);
	}
	long done = (long)(end - j->done);
	j->done = end;
	return done ? done : 1;
}

/* server_job_finish acknowledges the report (if its connection is still there) and frees it. */
static void server_job_finish(struct server *s, struct server_job *j, long long now)
{
	struct server_agent *a = j->a;

	if (a) {
		uint8_t ack[WIRE_HEADER_SIZE + WIRE_ACK_PAYLOAD_SIZE];
		server_queue(a, ack, (size_t)wire_ack_encode(ack, sizeof(ack), j->st.sequence),
			     now);
		a->job = NULL;
		if (a->in_len && !a->closing)
			server_ready_add(s, a); /* more frames may be waiting */
		server_agent_interest(s, a);
	}
	free(j->payload);
	server_input_release(s, j->mem);
	free(j);
}

/*
 * server_handle_stats decodes and deduplicates one STATS frame whose payload is at
 * payload[0..len) (in the agent's buffer). A new report becomes a job, which takes the buffer
 * when the frame is all of it; a duplicate is acknowledged at once. Returns 0, 1 when the
 * input budget has no room to inflate it now (the frame stays), or a negative wire error.
 */
static int server_handle_stats(struct server *s, struct server_agent *a, const struct wire_frame *f,
			       size_t frame_len, long long now)
{
	uint8_t *owned = NULL;
	const uint8_t *payload = f->payload;
	size_t len = f->payload_len, mem = 0;
	struct wire_stats st;
	struct server_job *j;
	int rc;

	if (f->flags & WIRE_FLAG_ZLIB) {
		long size = wire_inflated_size(f->payload, f->payload_len, s->max_frame);
		if (size < 0)
			return (int)size;
		if (!server_input_fits(s, (size_t)size, (size_t)size))
			return 1;
		owned = malloc((size_t)size);
		if (!owned)
			return WIRE_E_SPACE;
		s->input_bytes += mem = (size_t)size;
		s->work -= size / 64;
		long n = wire_inflate(f->payload, f->payload_len, owned, (size_t)size);
		if (n < 0) {
			rc = (int)n;
			goto fail;
		}
		payload = owned;
		len = (size_t)size;
	}
	rc = wire_stats_decode(payload, len, a->version, &st);
	if (rc < 0)
		goto fail;
	s->work -= 1 + st.count / 16;
	if (!server_dedup(s, a->node, a->instance_id, st.sequence, now)) {
		uint8_t ack[WIRE_HEADER_SIZE + WIRE_ACK_PAYLOAD_SIZE];

		s->stats.reports_duplicate++;
		server_log("agent %s (%s): report %llu already stored; acknowledged again", a->peer,
			   a->node, (unsigned long long)st.sequence);
		server_queue(a, ack, (size_t)wire_ack_encode(ack, sizeof(ack), st.sequence), now);
		rc = 0;
		goto fail; /* not a failure: frees what was inflated */
	}
	s->stats.reports_stored++;
	j = calloc(1, sizeof(*j));
	if (!j) {
		rc = WIRE_E_SPACE;
		goto fail;
	}
	if (!owned && frame_len == a->in_len) {
		/* The frame is the whole buffer: the job takes it rather than a copy. */
		owned = a->in;
		mem = a->in_cap;
		a->in = NULL;
		a->in_cap = a->in_len = 0;
	} else if (!owned) {
		owned = malloc(len ? len : 1);
		if (!owned) {
			free(j);
			return WIRE_E_SPACE;
		}
		memcpy(owned, payload, len);
		s->input_bytes += mem = len;
		rc = wire_stats_decode(owned, len, a->version, &st); /* re-point at the copy */
	}
	j->a = a;
	memcpy(j->node, a->node, sizeof(j->node));
	j->instance_id = a->instance_id;
	j->payload = owned;
	j->mem = mem;
	j->st = st;
	if (s->jobs_tail)
		s->jobs_tail->next = j;
	else
		s->jobs_head = j;
	s->jobs_tail = j;
	a->job = j;
	return 0;
fail:
	free(owned);
	server_input_release(s, mem);
	return rc;
}

/*
 * server_handle_frame acts on one whole frame of frame_len bytes at the start of a->in; a
 * negative result rejects the connection, 1 means "not now" (the input budget is spent).
 */
static int server_handle_frame(struct server *s, struct server_agent *a, const struct wire_frame *f,
			       size_t frame_len, long long now)
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
		return server_handle_stats(s, a, f, frame_len, now);
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

/* server_agent_shrink gives a large buffer back once what it holds is small. */
static void server_agent_shrink(struct server *s, struct server_agent *a)
{
	if (!a->in_len && a->in) {
		free(a->in);
		server_agent_set_buffer(s, a, NULL, 0);
	} else if (a->in_cap > 4 * SERVER_READ_CHUNK && a->in_len <= SERVER_READ_CHUNK) {
		uint8_t *p = realloc(a->in, 2 * SERVER_READ_CHUNK);
		if (p)
			server_agent_set_buffer(s, a, p, 2 * SERVER_READ_CHUNK);
	}
}

/* server_agent_parse handles the first frame in the connection's buffer, if it is whole. */
static void server_agent_parse(struct server *s, struct server_agent *a, long long now)
{
	struct wire_frame f;
	long n;
	int rc;

	if (a->closing || a->job) {
		server_ready_remove(s, a);
		return;
	}
	n = wire_frame_parse(a->in, a->in_len, server_frame_limit(s, a), &f);
	s->work--;
	if (n == WIRE_E_PARTIAL) {
		server_ready_remove(s, a);
		server_agent_shrink(s, a);
		server_agent_interest(s, a);
		return;
	}
	if (n < 0) {
		server_reject(s, a, (int)n, WIRE_ERR_PROTOCOL, now);
		server_ready_remove(s, a);
		server_agent_interest(s, a);
		return;
	}
	rc = server_handle_frame(s, a, &f, (size_t)n, now);
	if (rc == 1) { /* no room to inflate it now: wait for memory, the frame stays */
		server_agent_wait(s, a);
		server_agent_interest(s, a);
		return;
	}
	if (rc < 0) {
		server_reject(s, a, rc,
			      rc == WIRE_E_VERSION		    ? WIRE_ERR_VERSION
			      : !a->hello_done && rc == WIRE_E_TYPE ? WIRE_ERR_EXPECTED_HELLO
								    : WIRE_ERR_PROTOCOL,
			      now);
		server_ready_remove(s, a);
		server_agent_interest(s, a);
		return;
	}
	if (a->in_len >= (size_t)n) { /* not taken by a job */
		memmove(a->in, a->in + n, a->in_len - (size_t)n);
		a->in_len -= (size_t)n;
	}
	a->frame_started_ms = a->in_len ? now : 0;
	if (a->job || !a->in_len || a->closing)
		server_ready_remove(s, a);
	else
		server_ready_add(s, a); /* to the back: one frame per turn of the list */
	server_agent_shrink(s, a);
	server_agent_interest(s, a);
}

/*
 * server_agent_read reads what the agent sent, growing its buffer as the frame being received
 * needs, within the input budget; then its frames wait on the ready list to be parsed.
 */
static void server_agent_read(struct server *s, struct server_agent *a, long long now)
{
	for (;;) {
		ssize_t n;

		if (a->in_cap - a->in_len < 4096) {
			size_t limit = (size_t)server_frame_limit(s, a) + WIRE_LENGTH_SIZE;
			size_t cap = a->in_cap ? a->in_cap * 2 : a->hello_done ? 16384 : limit;
			uint8_t *p;

			/* Enough for the frame being received and a chunk more; never more. */
			if (a->in_len >= WIRE_LENGTH_SIZE) {
				size_t want = (size_t)wire_get32(a->in) + WIRE_LENGTH_SIZE;
				if (want > limit)
					break; /* parsing it rejects the frame */
				if (cap > want + SERVER_READ_CHUNK)
					cap = want + SERVER_READ_CHUNK;
			} else if (cap > limit + SERVER_READ_CHUNK) {
				cap = limit + SERVER_READ_CHUNK;
			}
			if (!a->hello_done && cap > limit)
				cap = limit; /* before HELLO: a HELLO's worth, outside the budget */
			if (cap <= a->in_cap)
				break; /* a whole frame is here: parse it first */
			if (a->hello_done && !server_buffer_fits(s, cap - a->in_cap, cap)) {
				server_agent_wait(s, a);
				break;
			}
			p = realloc(a->in, cap);
			if (!p) {
				server_log("agent %s: out of memory", a->peer);
				a->closing = 2;
				return;
			}
			server_agent_set_buffer(s, a, p, cap);
		}
		n = read(a->fd, a->in + a->in_len, a->in_cap - a->in_len);
		if (n > 0) {
			if (!a->in_len)
				a->frame_started_ms = now;
			a->in_len += (size_t)n;
			continue;
		}
		if (n == 0) {
			a->eof = 1; /* count and acknowledge what came with it, then close */
		} else if (errno != EAGAIN && errno != EINTR) {
			server_log("agent %s: read: %s", a->peer, strerror(errno));
			a->closing = 2;
		}
		break;
	}
	if (a->in_len && a->closing != 2)
		server_ready_add(s, a);
	server_agent_shrink(s, a);
}

static void server_agent_write(struct server_agent *a, long long now)
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
		a->write_since_ms = a->out_len ? now : 0;
	}
}

/* server_agent_settle closes the connection when it is done, else updates its interest. */
static void server_agent_settle(struct server *s, struct server_agent *a)
{
	if (a->fd < 0)
		return;
	if (a->closing == 2 || (a->closing && a->out_len == 0) ||
	    (a->eof && !a->job && !a->ready && !a->waiting && a->out_len == 0))
		server_agent_close(s, a, NULL);
	else
		server_agent_interest(s, a);
}

static void server_agent_event(struct server *s, struct server_agent *a, uint32_t ev, long long now)
{
	if (a->fd < 0)
		return;
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		a->last_activity_ms = now;
		if (!a->closing && !a->eof && !a->waiting && !a->job && !a->ready)
			server_agent_read(s, a, now);
		if (ev & EPOLLERR) {
			a->closing = 2;
		} else if ((ev & EPOLLHUP) && !a->closing) {
			/*
			 * Hung up both ways: epoll would report it every turn, so stop watching;
			 * frames already read are still counted (an ACK cannot reach it: the
			 * agent resends, and the resend is known as a duplicate).
			 */
			a->eof = 2;
			a->out_len = 0;
			a->write_since_ms = 0;
			server_watch(s, EPOLL_CTL_DEL, a->fd, 0, NULL);
		}
	}
	if (a->out_len)
		server_agent_write(a, now);
	server_agent_settle(s, a);
}

/*
 * server_work does the turn's share of the work: a slice of the first report being accounted
 * and one frame of the first connection with input, in turn, until the turn's budget is spent
 * or nothing is left. Returns whether work is left for the next turn.
 */
static int server_work(struct server *s, long long now, int unbounded)
{
	s->work = SERVER_TURN_WORK;
	while ((s->work > 0 || unbounded) && (s->jobs_head || s->ready_head)) {
		struct server_job *j = s->jobs_head;
		if (j) {
			s->jobs_head = j->next;
			if (!s->jobs_head)
				s->jobs_tail = NULL;
			j->next = NULL;
			s->work -= server_job_step(s, j,
						   s->work < SERVER_JOB_SLICE && !unbounded
							   ? (s->work > 0 ? s->work : 1)
							   : SERVER_JOB_SLICE);
			if (j->done == j->st.count) {
				struct server_agent *a = j->a;
				server_job_finish(s, j, now);
				if (a)
					server_agent_settle(s, a);
			} else {
				if (s->jobs_tail)
					s->jobs_tail->next = j;
				else
					s->jobs_head = j;
				s->jobs_tail = j;
			}
		}
		if (s->ready_head && (s->work > 0 || unbounded)) {
			struct server_agent *a = s->ready_head;
			server_agent_parse(s, a, now);
			server_agent_settle(s, a);
		}
	}
	return s->jobs_head || s->ready_head;
}

/* server_agent_deadlines closes the connections that overstayed the state they are in. */
static void server_agent_deadlines(struct server *s, long long now)
{
	for (int i = s->n_agents - 1; i >= 0; i--) {
		struct server_agent *a = s->agents[i];
		const char *why = NULL;

		if (!a->hello_done && now - a->connected_ms > SERVER_HELLO_TIMEOUT_MS)
			why = "hello_timeout";
		else if (a->write_since_ms && now - a->write_since_ms > SERVER_WRITE_TIMEOUT_MS)
			why = "write_timeout";
		else if (a->in_len && !a->job && a->frame_started_ms &&
			 (now - a->frame_started_ms > SERVER_FRAME_TIMEOUT_MS ||
			  (!a->waiting && !a->ready &&
			   now - a->last_activity_ms > SERVER_FRAME_STALL_MS)))
			why = "frame_timeout";
		else if (!a->job && now - a->last_activity_ms > SERVER_IDLE_TIMEOUT_MS)
			why = "idle_timeout";
		if (why)
			server_agent_close(s, a, why);
	}
}

/*
 * server_accept_failed handles a failed accept(): EMFILE and its kin leave the connection in
 * the backlog and the listener readable, so the listener pauses for a moment (rather than the
 * loop spinning on it), and the log says so at most every ten seconds.
 */
static void server_accept_failed(struct server *s, int which, long long now)
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
 * server_agent_victim is the connection to close for a new one: the oldest without a HELLO,
 * else the one quiet longest if it has been quiet for a minute (an agent reports every 10 s),
 * else none.
 */
static struct server_agent *server_agent_victim(struct server *s, long long now)
{
	struct server_agent *v = NULL, *quiet = NULL;

	for (int i = 0; i < s->n_agents; i++) {
		struct server_agent *a = s->agents[i];
		if (!a->hello_done && (!v || a->connected_ms < v->connected_ms))
			v = a;
		if (a->hello_done && !a->job && now - a->last_activity_ms > 60000 &&
		    (!quiet || a->last_activity_ms < quiet->last_activity_ms))
			quiet = a;
	}
	return v ? v : quiet;
}

static void server_agent_accept(struct server *s, long long now)
{
	for (int k = 0; k < 256; k++) { /* the rest next turn: accepting is work too */
		int fd = accept4(s->agent_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct server_agent *a;
		int one = 1;

		if (fd < 0) {
			server_accept_failed(s, 0, now);
			return;
		}
		if (s->n_agents == s->agents_max) {
			struct server_agent *v = server_agent_victim(s, now);
			if (v) {
				server_agent_close(s, v, "evicted");
			} else {
				uint8_t frame[64];
				long n =
					wire_error_encode(frame, sizeof(frame), WIRE_ERR_OVERLOADED,
							  "too many agent connections");
				if (write(fd, frame, (size_t)n) < 0) {
					/* best effort: the peer learns why or just sees the close */
				}
				close(fd);
				server_count_rejected(s, "too_many_connections");
				continue;
			}
		}
		a = calloc(1, sizeof(*a));
		if (!a) {
			close(fd);
			server_log("accept (agent): out of memory");
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		a->kind = FD_AGENT;
		a->fd = fd;
		a->slot = s->n_agents;
		a->events = EPOLLIN;
		a->connected_ms = a->last_activity_ms = now;
		server_peer_name(fd, a->peer, sizeof(a->peer));
		s->agents[s->n_agents++] = a;
		server_watch(s, EPOLL_CTL_ADD, fd, EPOLLIN, a);
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
				      &s->malformed_packets, &s->malformed_bytes};

	for (int i = 0; i < s->n_agents; i++) {
		const struct server_agent *a = s->agents[i];
		if (!a->hello_done)
			continue;
		for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
			/* Series with a reason label: both reasons. */
			static const char *const reasons[] = {"map_full", "other"};
			struct metrics_series *x;
			if (f[k]->nlabels == 1) {
				if ((x = metrics_find(f[k], (const char *const[]){a->node})))
					x->generation = s->node_generation;
			} else {
				for (int r = 0; r < 2; r++)
					if ((x = metrics_find(f[k], (const char *const[]){
									    a->node, reasons[r]})))
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
		"  --kube-token-file FILE      bearer token, read again every minute and on 401\n"
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

	while (s->jobs_head) {
		struct server_job *j = s->jobs_head;
		s->jobs_head = j->next;
		free(j->payload);
		free(j);
	}
	for (size_t b = 0; b < s->nodes_cap; b++)
		while (s->nodes[b]) {
			struct server_node *x = s->nodes[b];
			s->nodes[b] = x->next;
			free(x);
		}
	free(s->nodes);
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
					server_agent_event(&s, events[i].data.ptr, ev, now);
				else if (kind == FD_HTTP)
					server_http_event(&s, events[i].data.ptr, ev, now);
				else if (kind == FD_AGENT_LISTEN)
					server_agent_accept(&s, now);
				else if (kind == FD_HTTP_LISTEN)
					server_http_accept(&s, now);
			}
		}
		if (s.kube)
			server_kube_step(&s, pfds + k0, nk, now);
		server_work(&s, now, 0);
		if (s.n_http_again)
			server_http_again(&s, now);
		if (now >= next_tick) {
			server_agent_deadlines(&s, now);
			server_http_deadlines(&s, now);
			server_listeners_resume(&s, now);
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
	server_work(&s, log_now_ms(), 1);
	for (int i = 0; i < s.n_agents; i++)
		if (s.agents[i]->out_len)
			server_agent_write(s.agents[i], log_now_ms());
	server_log("stopping: %llu reports stored, %llu duplicates", s.stats.reports_stored,
		   s.stats.reports_duplicate);
	server_sink_flush(&server_out, 1);
	server_sink_flush(&server_err, 1);
	server_log_buffered = 0;
	for (int i = s.n_agents - 1; i >= 0; i--)
		server_agent_close(&s, s.agents[i], NULL);
	for (int i = s.n_http - 1; i >= 0; i--)
		server_http_close(&s, s.http[i], NULL);
	server_free_dead(&s);
	rc = 0;
out:
	server_free(&s);
	return rc;
}
