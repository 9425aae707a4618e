/* SPDX-License-Identifier: Apache-2.0 */
/*
 * agentsim: one process that simulates many kubezonnet agents on one epoll loop, plus
 * Prometheus-like scrapers of the server's /metrics, for bench/server_scale.sh and
 * test/server_scale.sh.
 *
 * Each agent opens its own TCP connection, sends a HELLO (its node name, a random instance
 * id) and then, every --period seconds, a zlib-compressed STATS frame of --records records,
 * and waits for its ACK before the next. The agents' report times are spread evenly over the
 * period (agent i reports at start + period * (i + 0.5) / N, then every period). A connection
 * that breaks is reopened after a back-off, and the unacknowledged report is sent again with
 * its sequence (the server deduplicates). An ERROR frame is counted by code and treated like a
 * close.
 *
 * The simulated cluster (--write-topology FILE writes it as the server's --topology JSON):
 *   node i (0 <= i < N): "simnode-%05d", zone "sim-a", "sim-b" or "sim-c" (i % 3), region
 *     "sim", address 100.64.1.0 + i.
 *   pod j of node i (0 <= j < P, --pods-per-node): namespace "team-%d" (i % 7), name
 *     "simnode-%05d-p%d", workload "app-%d" (j), kind Deployment, address 10.0.1.0 + i * P + j.
 * The record plan: record k (0 <= k < R) of agent i's report with sequence s is
 *   src    pod (i, k % P)
 *   dst    pod (d, k % P) with d = (i + 1 + (k / P) % (N - 1)) % N (never node i)
 *   proto  17 for odd k, else 6; port 1024 + k
 *   bytes  64 + (i * 2654435761 + s * 40503 + k * 2246822519) % 1000003
 *   packets 1 + bytes / 1500
 * so anyone holding the topology and the list of acknowledged (agent, sequence) pairs can
 * compute what the server must have counted (test/server_scale.sh does, in Python).
 *
 * --server-pid PID samples the server's CPU time (the sum of /proc/PID/task/T/schedstat, in
 * nanoseconds; /proc/PID/stat's utime + stime in clock ticks where schedstat is missing) and
 * its VmRSS every --sample-interval seconds from the first report on, and once more when the
 * run ends (agents still connected), next to the reports acknowledged in each interval.
 *
 * Output (--output kv, one "key value..." per line; text is the same for people):
 *   agents, connected_max (connections up at once, as the simulator sees them), agents_done,
 *   reports_sent, reports_acked, reports_resent, records_sent, records_acked, records_unacked
 *   (sent, never acknowledged), report_bytes_avg (a compressed frame), errors_overloaded, errors_other (ERROR frames by code),
 *   reconnects, connect_failures, reports_late (a report fell due while the previous one waited
 *   for its ACK), ack_p50_ms, ack_p99_ms, scrapes, scrape_errors, scrape_p50_ms, scrape_p99_ms,
 *   scrape_max_ms, scrape_bytes (the last body's size), cpu_source, server_rss_kb (at the end),
 *   server_rss_max_kb (of the samples), and one line per sample interval:
 *   "sample N PHASE SECONDS SERVER_CPU_NS REPORTS_ACKED RECORDS_ACKED SCRAPES", PHASE being
 *   ingest (reports only), scrape (reports and scrapers), drain (waiting for the last ACKs after
 *   the last report fell due) or mixed (a boundary inside the interval).
 * --acked FILE writes "AGENT SEQUENCE" for each agent's highest acknowledged sequence (every
 * sequence below it was acknowledged too).
 *
 * Exit status: 0 when the run ended as planned (with --reports: every agent acknowledged
 * every report before --deadline), 1 otherwise, 2 for bad usage.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "wire.h"

#define SIM_ZONES	     3
#define SIM_NAMESPACES	     7
#define SIM_PORT_BASE	     1024
#define SIM_RECORDS_MAX	     60000 /* ports 1024 + k stay below 65536 */
#define SIM_BACKOFF_MIN_MS   500
#define SIM_BACKOFF_MAX_MS   5000
#define SIM_HTTP_HEAD_MAX    8192
#define SIM_DRAIN_SECONDS    10.0 /* after the last report falls due: wait for its ACK */
#define SIM_SAMPLES_MAX	     4096
#define SIM_AGENT_IN_MAX     (WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + WIRE_ERROR_MESSAGE_MAX)
#define SIM_HELLO_FRAME_SIZE (WIRE_HEADER_SIZE + WIRE_HELLO_MAX_PAYLOAD)
#define SIM_SCRAPER_TAG	     (1ull << 32)

enum sim_agent_state { SIM_NEW, SIM_DOWN, SIM_CONNECTING, SIM_UP }; /* SIM_NEW: not yet dialled */

struct sim_agent {
	int fd;
	enum sim_agent_state state;
	uint64_t instance_id;
	uint64_t seq_built; /* sequence of the newest report built (0: none) */
	uint64_t seq_acked;
	uint8_t *frame; /* the report in flight, kept until its ACK (resent after a reconnect) */
	size_t frame_len, frame_off;
	uint8_t hello[SIM_HELLO_FRAME_SIZE];
	size_t hello_len, hello_off;
	uint8_t in[SIM_AGENT_IN_MAX];
	size_t in_len;
	int due;	      /* a report fell due and is not built yet */
	double frame_sent_at; /* for the ACK latency */
	double reconnect_at;  /* SIM_DOWN: when to try again */
	unsigned int backoff_ms;
	int want_out; /* EPOLLOUT registered */
};

struct sim_scraper {
	int fd;
	int busy; /* a request is out */
	double next_at, sent_at;
	char head[SIM_HTTP_HEAD_MAX];
	size_t head_len;
	int head_done, close_after;
	long long body_left;
	size_t body_len;
};

struct sim_samples { /* a growable array of latencies in ms */
	double *v;
	size_t len, cap;
};

struct sim_sample {
	double at; /* monotonic seconds */
	unsigned long long cpu_ns, reports, records, scrapes;
	unsigned long rss_kb; /* the server's VmRSS */
};

struct sim {
	/* options */
	int n_agents, records, pods, wire_version, n_scrapers, reports_per_agent;
	double period, duration, scrape_interval, scrape_delay, sample_interval, deadline, hold;
	double connect_rate;
	int server_pid;
	struct sockaddr_storage agent_addr, http_addr;
	socklen_t agent_addr_len, http_addr_len;
	char http_host[128];
	int kv;
	const char *acked_out;

	int epfd;
	struct sim_agent *agents;
	struct sim_scraper *scrapers;
	uint8_t *scratch; /* one uncompressed STATS frame */
	size_t scratch_cap;
	double t0, t_start, t_reports_end, t_scrape_start;
	unsigned long long next_slot;
	int next_connect, n_down, n_up, connected_max, agents_done;

	struct {
		unsigned long long reports_sent, reports_acked, reports_resent, records_sent,
			records_acked, errors_overloaded, errors_other, reconnects,
			connect_failures, reports_late, scrapes, scrape_errors, scrape_bytes,
			frame_bytes;
	} count;
	struct sim_samples ack_ms, scrape_ms;
	struct sim_sample samples[SIM_SAMPLES_MAX];
	int n_samples;
	const char *cpu_source;
};

static volatile sig_atomic_t sim_stop;

static void sim_on_signal(int sig)
{
	(void)sig;
	sim_stop = 1;
}

static double sim_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t sim_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sim_samples_add(struct sim_samples *s, double v)
{
	if (s->len == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		double *p = realloc(s->v, cap * sizeof(*p));

		if (!p)
			return; /* a latency sample lost to memory, not a count */
		s->v = p;
		s->cap = cap;
	}
	s->v[s->len++] = v;
}

static int sim_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* sim_percentile returns the nearest-rank p-th percentile (0 for no samples); sorts s. */
static double sim_percentile(struct sim_samples *s, double p)
{
	size_t rank;

	if (s->len == 0)
		return 0;
	qsort(s->v, s->len, sizeof(*s->v), sim_cmp_double);
	rank = (size_t)ceil(p / 100.0 * (double)s->len);
	return s->v[rank ? rank - 1 : 0];
}

/* ---- the simulated cluster and the record plan (see the comment at the top) ---- */

static uint32_t sim_pod_ipv4(const struct sim *s, int node, int pod)
{
	return 0x0a000100u + (uint32_t)node * (uint32_t)s->pods + (uint32_t)pod;
}

static uint32_t sim_node_ipv4(int node)
{
	return 0x64400100u + (uint32_t)node;
}

static void sim_mapped(uint8_t out[16], uint32_t v4)
{
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	wire_put32(out + 12, v4);
}

static void sim_record(const struct sim *s, int i, uint64_t seq, uint32_t k, struct wire_record *r)
{
	int j = (int)(k % (uint32_t)s->pods);
	int d = (int)((i + 1 + (k / (uint32_t)s->pods) % (uint32_t)(s->n_agents - 1)) %
		      (uint32_t)s->n_agents);

	memset(r, 0, sizeof(*r));
	r->family = 4;
	r->protocol = k % 2 ? 17 : 6;
	r->port = (uint16_t)(SIM_PORT_BASE + k);
	sim_mapped(r->src, sim_pod_ipv4(s, i, j));
	sim_mapped(r->dst, sim_pod_ipv4(s, d, j));
	r->bytes =
		64 + ((uint64_t)i * 2654435761ull + seq * 40503ull + (uint64_t)k * 2246822519ull) %
			     1000003ull;
	r->packets = 1 + r->bytes / 1500;
}

static void sim_ipv4_text(uint32_t v, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u", v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255);
}

static int sim_write_topology(const struct sim *s, const char *path)
{
	FILE *f = fopen(path, "w");
	char ip[16];

	if (!f) {
		fprintf(stderr, "agentsim: open %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\"nodes\": [\n");
	for (int i = 0; i < s->n_agents; i++) {
		sim_ipv4_text(sim_node_ipv4(i), ip, sizeof(ip));
		fprintf(f,
			" {\"name\": \"simnode-%05d\", \"zone\": \"sim-%c\", \"region\": \"sim\", "
			"\"ips\": [\"%s\"]}%s\n",
			i, 'a' + i % SIM_ZONES, ip, i + 1 < s->n_agents ? "," : "");
	}
	fprintf(f, "],\n\"pods\": [\n");
	for (int i = 0; i < s->n_agents; i++)
		for (int j = 0; j < s->pods; j++) {
			sim_ipv4_text(sim_pod_ipv4(s, i, j), ip, sizeof(ip));
			fprintf(f,
				" {\"namespace\": \"team-%d\", \"name\": \"simnode-%05d-p%d\", "
				"\"node\": \"simnode-%05d\", \"workload\": \"app-%d\", "
				"\"workload_kind\": \"Deployment\", \"ips\": [\"%s\"]}%s\n",
				i % SIM_NAMESPACES, i, j, i, j, ip,
				i + 1 < s->n_agents || j + 1 < s->pods ? "," : "");
		}
	fprintf(f, "]}\n");
	if (fclose(f) != 0) {
		fprintf(stderr, "agentsim: write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- agents ---- */

static void sim_watch(struct sim *s, int fd, uint64_t tag, int out, int op)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u64 = tag};

	if (epoll_ctl(s->epfd, op, fd, &ev) != 0) {
		fprintf(stderr, "agentsim: epoll_ctl: %s\n", strerror(errno));
		exit(1);
	}
}

static void sim_agent_want_out(struct sim *s, int i, int out)
{
	struct sim_agent *a = &s->agents[i];

	if (a->fd >= 0 && a->want_out != out) {
		a->want_out = out;
		sim_watch(s, a->fd, (uint64_t)i, out, EPOLL_CTL_MOD);
	}
}

static void sim_agent_down(struct sim *s, int i, double now)
{
	struct sim_agent *a = &s->agents[i];

	if (a->fd >= 0)
		close(a->fd); /* also leaves the epoll set */
	if (a->state == SIM_UP)
		s->n_up--;
	a->fd = -1;
	a->state = SIM_DOWN;
	a->in_len = 0;
	a->want_out = 0;
	if (a->frame) { /* sent again, whole, after the next HELLO */
		a->frame_off = 0;
		s->count.reports_resent++;
	}
	/* Back-off with jitter in [backoff/2, backoff], doubling up to the maximum. */
	a->reconnect_at =
		now + (a->backoff_ms / 2 + (unsigned)rand() % (a->backoff_ms / 2 + 1)) / 1e3;
	a->backoff_ms =
		a->backoff_ms * 2 > SIM_BACKOFF_MAX_MS ? SIM_BACKOFF_MAX_MS : a->backoff_ms * 2;
	s->n_down++;
}

static void sim_agent_connect(struct sim *s, int i, double now)
{
	struct sim_agent *a = &s->agents[i];
	int fd = socket(s->agent_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	a->fd = fd;
	a->state = SIM_CONNECTING;
	if (fd < 0) {
		fprintf(stderr, "agentsim: socket: %s\n", strerror(errno));
		s->count.connect_failures++;
		sim_agent_down(s, i, now);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	a->hello_off = 0;
	a->in_len = 0;
	if (connect(fd, (struct sockaddr *)&s->agent_addr, s->agent_addr_len) != 0 &&
	    errno != EINPROGRESS) {
		s->count.connect_failures++;
		sim_agent_down(s, i, now);
		return;
	}
	a->want_out = 1;
	sim_watch(s, fd, (uint64_t)i, 1, EPOLL_CTL_ADD);
}

/* sim_agent_build makes the agent's next report (a due one) its frame in flight. */
static int sim_agent_build(struct sim *s, int i)
{
	struct sim_agent *a = &s->agents[i];
	size_t record_size = wire_record_size((uint16_t)s->wire_version);
	struct wire_stats st = {.version = (uint16_t)s->wire_version,
				.sequence = a->seq_built + 1,
				.count = (uint32_t)s->records};
	uint64_t now_ns = sim_realtime_ns();
	uint8_t *p;
	long n;

	st.start_ns = now_ns - (uint64_t)(s->period * 1e9);
	st.end_ns = now_ns;
	p = wire_stats_encode(s->scratch, s->scratch_cap, &st);
	if (!p)
		return -1;
	for (uint32_t k = 0; k < st.count; k++, p += record_size) {
		struct wire_record r;

		sim_record(s, i, st.sequence, k, &r);
		if (s->wire_version == WIRE_VERSION_2)
			wire_record_put_v2(p, &r);
		else
			wire_record_put(p, &r);
	}
	size_t raw = wire_stats_size_version((uint16_t)s->wire_version, st.count);
	size_t cap = wire_deflate_bound(raw - WIRE_HEADER_SIZE);

	a->frame = malloc(cap);
	if (!a->frame)
		return -1;
	n = wire_deflate(s->scratch, raw, a->frame, cap, Z_BEST_SPEED);
	if (n < 0) {
		free(a->frame);
		a->frame = NULL;
		return -1;
	}
	a->frame_len = (size_t)n;
	s->count.frame_bytes += (unsigned long long)n;
	a->frame_off = 0;
	a->seq_built = st.sequence;
	a->due = 0;
	s->count.reports_sent++;
	s->count.records_sent += st.count;
	return 0;
}

/* sim_agent_flush writes what the agent has to send: HELLO first, then its report. */
static void sim_agent_flush(struct sim *s, int i, double now)
{
	struct sim_agent *a = &s->agents[i];

	if (a->state != SIM_UP)
		return;
	if (!a->frame && a->due && sim_agent_build(s, i) != 0) {
		fprintf(stderr, "agentsim: cannot build a report of %d records\n", s->records);
		exit(1);
	}
	while (a->hello_off < a->hello_len || (a->frame && a->frame_off < a->frame_len)) {
		int hello = a->hello_off < a->hello_len;
		const uint8_t *p = hello ? a->hello + a->hello_off : a->frame + a->frame_off;
		size_t left = hello ? a->hello_len - a->hello_off : a->frame_len - a->frame_off;
		ssize_t n;

		if (!hello && a->frame_off == 0)
			a->frame_sent_at = now;
		n = write(a->fd, p, left);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				sim_agent_want_out(s, i, 1);
				return;
			}
			sim_agent_down(s, i, now);
			return;
		}
		if (hello)
			a->hello_off += (size_t)n;
		else
			a->frame_off += (size_t)n;
	}
	sim_agent_want_out(s, i, 0);
}

static void sim_agent_frame(struct sim *s, int i, const struct wire_frame *f, double now)
{
	struct sim_agent *a = &s->agents[i];

	if (f->type == WIRE_ACK) {
		uint64_t seq;

		if (wire_ack_decode(f->payload, f->payload_len, &seq) != 0 || !a->frame ||
		    seq != a->seq_built) {
			fprintf(stderr, "agentsim: agent %d: unexpected ACK\n", i);
			s->count.errors_other++;
			sim_agent_down(s, i, now);
			return;
		}
		sim_samples_add(&s->ack_ms, (now - a->frame_sent_at) * 1e3);
		free(a->frame);
		a->frame = NULL;
		a->seq_acked = seq;
		a->backoff_ms = SIM_BACKOFF_MIN_MS;
		s->count.reports_acked++;
		s->count.records_acked += (unsigned long long)s->records;
		if (s->reports_per_agent && seq == (uint64_t)s->reports_per_agent)
			s->agents_done++;
		return;
	}
	if (f->type == WIRE_ERROR) {
		struct wire_error e;

		if (wire_error_decode(f->payload, f->payload_len, &e) == 0 &&
		    e.code == WIRE_ERR_OVERLOADED) {
			s->count.errors_overloaded++;
		} else {
			s->count.errors_other++;
			if (s->count.errors_other <= 10)
				fprintf(stderr, "agentsim: agent %d: server error %u: %.*s\n", i,
					e.code, (int)e.message_len, e.message);
		}
	} else {
		s->count.errors_other++;
		fprintf(stderr, "agentsim: agent %d: unexpected frame type %u\n", i, f->type);
	}
	sim_agent_down(s, i, now);
}

static void sim_agent_read(struct sim *s, int i, double now)
{
	struct sim_agent *a = &s->agents[i];

	for (;;) {
		ssize_t n = read(a->fd, a->in + a->in_len, sizeof(a->in) - a->in_len);
		size_t pos = 0;

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			sim_agent_down(s, i, now);
			return;
		}
		if (n < 0)
			return;
		a->in_len += (size_t)n;
		for (;;) {
			struct wire_frame f;
			long len = wire_frame_parse(a->in + pos, a->in_len - pos,
						    SIM_AGENT_IN_MAX - WIRE_LENGTH_SIZE, &f);

			if (len == WIRE_E_PARTIAL)
				break;
			if (len < 0) {
				fprintf(stderr, "agentsim: agent %d: bad frame from server: %s\n",
					i, wire_strerror((int)len));
				s->count.errors_other++;
				sim_agent_down(s, i, now);
				return;
			}
			sim_agent_frame(s, i, &f, now);
			if (a->state != SIM_UP)
				return;
			pos += (size_t)len;
		}
		memmove(a->in, a->in + pos, a->in_len - pos);
		a->in_len -= pos;
	}
}

static void sim_agent_event(struct sim *s, int i, uint32_t events, double now)
{
	struct sim_agent *a = &s->agents[i];

	if (a->state == SIM_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			s->count.connect_failures++;
			sim_agent_down(s, i, now);
			return;
		}
		a->state = SIM_UP;
		if (++s->n_up > s->connected_max)
			s->connected_max = s->n_up;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		sim_agent_read(s, i, now);
		if (a->state != SIM_UP)
			return;
	}
	sim_agent_flush(s, i, now);
}

/* ---- scrapers ---- */

static void sim_scraper_close(struct sim *s, struct sim_scraper *c)
{
	(void)s;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->busy = 0;
}

static void sim_scraper_send(struct sim *s, int m, double now)
{
	struct sim_scraper *c = &s->scrapers[m];
	char req[256];
	int n = snprintf(req, sizeof(req),
			 "GET /metrics HTTP/1.1\r\nHost: %s\r\nAccept-Encoding: gzip\r\n"
			 "User-Agent: agentsim\r\n\r\n",
			 s->http_host);

	if (c->fd < 0) {
		/* Connected blocking (loopback, before the request's clock starts), then used
		 * non-blocking. */
		int one = 1;

		c->fd = socket(s->http_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0 ||
		    connect(c->fd, (struct sockaddr *)&s->http_addr, s->http_addr_len) != 0 ||
		    fcntl(c->fd, F_SETFL, O_NONBLOCK) != 0) {
			s->count.scrape_errors++;
			sim_scraper_close(s, c);
			c->next_at = now + s->scrape_interval;
			return;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		sim_watch(s, c->fd, SIM_SCRAPER_TAG + (uint64_t)m, 0, EPOLL_CTL_ADD);
	}
	now = sim_now();
	/* A request is a few hundred bytes: it fits the empty send buffer of an idle socket. */
	if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		s->count.scrape_errors++;
		sim_scraper_close(s, c);
		c->next_at = now + s->scrape_interval;
		return;
	}
	c->busy = 1;
	c->sent_at = now;
	c->head_len = 0;
	c->head_done = 0;
	c->close_after = 0;
	c->body_left = -1;
	c->body_len = 0;
}

/* sim_scraper_head parses a response head; returns 0, or -1 when it is not a 200 we can frame. */
static int sim_scraper_head(struct sim_scraper *c, size_t head_end)
{
	char *line = c->head, *end = c->head + head_end;
	int status = 0;

	if (sscanf(c->head, "HTTP/1.%*d %d", &status) != 1 || status != 200)
		return -1;
	while ((line = memchr(line, '\n', (size_t)(end - line))) && ++line < end) {
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			c->body_left = strtoll(line + 15, NULL, 10);
		else if (strncasecmp(line, "Connection:", 11) == 0 && strstr(line, "close"))
			c->close_after = 1;
	}
	return c->body_left < 0 ? -1 : 0;
}

static void sim_scraper_done(struct sim *s, struct sim_scraper *c, double now)
{
	sim_samples_add(&s->scrape_ms, (now - c->sent_at) * 1e3);
	s->count.scrapes++;
	s->count.scrape_bytes = c->body_len;
	c->busy = 0;
	/* The next scrape keeps the scraper's own beat; late, it goes at once. */
	c->next_at += s->scrape_interval;
	if (c->close_after)
		sim_scraper_close(s, c);
}

static void sim_scraper_event(struct sim *s, int m)
{
	struct sim_scraper *c = &s->scrapers[m];
	static char sink[1 << 16];

	for (;;) {
		ssize_t n;

		if (!c->head_done) {
			n = read(c->fd, c->head + c->head_len, sizeof(c->head) - 1 - c->head_len);
		} else {
			n = read(c->fd, sink, sizeof(sink));
		}
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			s->count.scrape_errors++;
			sim_scraper_close(s, c);
			c->next_at += s->scrape_interval;
			return;
		}
		if (n < 0)
			return;
		if (!c->head_done) {
			char *end;

			c->head_len += (size_t)n;
			c->head[c->head_len] = '\0';
			end = strstr(c->head, "\r\n\r\n");
			if (!end) {
				if (c->head_len == sizeof(c->head) - 1)
					goto bad;
				continue;
			}
			if (sim_scraper_head(c, (size_t)(end + 4 - c->head)) != 0)
				goto bad;
			c->head_done = 1;
			n = (ssize_t)(c->head + c->head_len - (end + 4));
		}
		if (n > c->body_left)
			goto bad; /* more than one response: we never pipeline */
		c->body_left -= n;
		c->body_len += (size_t)n;
		if (c->body_left == 0) {
			sim_scraper_done(s, c, sim_now());
			return;
		}
	}
bad:
	s->count.scrape_errors++;
	sim_scraper_close(s, c);
	c->next_at += s->scrape_interval;
}

/* ---- the server's CPU ---- */

/* sim_server_cpu_ns returns the server's CPU time so far in nanoseconds, or 0 when unknown. */
static unsigned long long sim_server_cpu_ns(struct sim *s)
{
	char path[64];
	unsigned long long total = 0;
	struct dirent *d;
	DIR *dir;
	FILE *f;

	if (!s->server_pid)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/task", s->server_pid);
	dir = opendir(path);
	while (dir && (d = readdir(dir))) {
		char p[300];
		unsigned long long ns;

		if (d->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", s->server_pid, d->d_name);
		f = fopen(p, "r");
		if (f && fscanf(f, "%llu", &ns) == 1)
			total += ns;
		if (f)
			fclose(f);
	}
	if (dir)
		closedir(dir);
	if (total) {
		s->cpu_source = "schedstat";
		return total;
	}
	/* No schedstat: utime and stime (fields 14 and 15, after the parenthesised name). */
	snprintf(path, sizeof(path), "/proc/%d/stat", s->server_pid);
	f = fopen(path, "r");
	if (f) {
		char buf[1024];
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		char *close_paren;
		unsigned long long ut, st;

		buf[n] = '\0';
		close_paren = strrchr(buf, ')');
		if (close_paren &&
		    sscanf(close_paren + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			   &ut, &st) == 2) {
			total = (ut + st) *
				(1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
			s->cpu_source = "stat";
		}
		fclose(f);
	}
	return total;
}

/* sim_server_rss_kb returns the server's resident memory (VmRSS) in KiB, or 0 when unknown. */
static unsigned long sim_server_rss_kb(const struct sim *s)
{
	char path[64], line[256];
	unsigned long kb = 0;
	FILE *f;

	if (!s->server_pid)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/status", s->server_pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lu", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void sim_take_sample(struct sim *s, double now)
{
	struct sim_sample *x;

	if (s->n_samples == SIM_SAMPLES_MAX)
		return;
	x = &s->samples[s->n_samples++];
	x->at = now;
	x->cpu_ns = sim_server_cpu_ns(s);
	x->rss_kb = sim_server_rss_kb(s);
	x->reports = s->count.reports_acked;
	x->records = s->count.records_acked;
	x->scrapes = s->count.scrapes;
}

/*
 * sim_phase names what ran from a to b: "ingest" (reports only), "scrape" (reports and
 * scrapers), "drain" (after the last report fell due) or "mixed" (a boundary inside).
 */
static const char *sim_phase(const struct sim *s, double a, double b)
{
	double slack = 0.05 * s->sample_interval;

	if (a >= s->t_reports_end - slack)
		return "drain";
	if (b > s->t_reports_end + slack)
		return "mixed";
	if (s->n_scrapers == 0 || b <= s->t_scrape_start + slack)
		return "ingest";
	return a >= s->t_scrape_start - slack ? "scrape" : "mixed";
}

/* ---- set-up and the loop ---- */

static int sim_parse_address(const char *spec, struct sockaddr_storage *ss, socklen_t *len,
			     char *host_out, size_t host_len)
{
	const char *colon = strrchr(spec, ':');
	char host[INET6_ADDRSTRLEN + 2];
	size_t hlen;
	long port;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	hlen = (size_t)(colon - spec);
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (port < 1 || port > 65535)
		return -1;
	if (host_out)
		snprintf(host_out, host_len, "%s", spec);
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		host[hlen - 1] = '\0';
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)port);
	*len = sizeof(*a4);
	return inet_pton(AF_INET, host[0] ? host : "127.0.0.1", &a4->sin_addr) == 1 ? 0 : -1;
}

static void sim_usage(FILE *out)
{
	fprintf(out,
		"usage: agentsim [options]\n"
		"\n"
		"Simulates many kubezonnet agents (one connection each) and /metrics scrapers.\n"
		"\n"
		"  --agents N             simulated agents, at least 2 (default 100)\n"
		"  --records R            records per report, 1..%d (default 1000)\n"
		"  --pods-per-node P      pods per simulated node (default 2)\n"
		"  --period SECONDS       report interval of each agent (default 10)\n"
		"  --duration SECONDS     report for this long, then wait for the last ACKs\n"
		"                         (default 30)\n"
		"  --reports K            instead: each agent sends K reports, then stops; the "
		"run\n"
		"                         ends when all are acknowledged or at --deadline\n"
		"  --deadline SECONDS     give up after this long (default: duration + 60)\n"
		"  --hold SECONDS         then keep the connections open this long, or until\n"
		"                         SIGTERM (default 0)\n"
		"  --wire-version 1|2     the protocol version the agents speak (default 2)\n"
		"  --connect-rate N       new connections per second at start (default 2000)\n"
		"  --scrapers M           concurrent /metrics scrapers (default 0)\n"
		"  --scrape-interval S    seconds between one scraper's requests (default 1)\n"
		"  --scrape-delay S       scrapers start this long after the first report\n"
		"                         (default 0)\n"
		"  --agent-addr HOST:PORT the server's agent port (default 127.0.0.1:8081)\n"
		"  --http-addr HOST:PORT  the server's HTTP port (default 127.0.0.1:8080)\n"
		"  --server-pid PID       sample the server's CPU time\n"
		"  --sample-interval S    seconds between samples (default: the period)\n"
		"  --write-topology FILE  write the simulated cluster as a topology file and exit\n"
		"  --acked FILE           write each agent's highest acknowledged sequence\n"
		"  --output text|kv       the result for people or for scripts (default text)\n",
		SIM_RECORDS_MAX);
}

static void sim_output(struct sim *s, int kv, FILE *out)
{
	const char *fmt = kv ? "%s %s\n" : "%-20s %s\n";
	char v[64];

#define OUT_U(k, x)                                                                                \
	do {                                                                                       \
		snprintf(v, sizeof(v), "%llu", (unsigned long long)(x));                           \
		fprintf(out, fmt, k, v);                                                           \
	} while (0)
#define OUT_F(k, x)                                                                                \
	do {                                                                                       \
		snprintf(v, sizeof(v), "%.3f", (double)(x));                                       \
		fprintf(out, fmt, k, v);                                                           \
	} while (0)
	OUT_U("agents", s->n_agents);
	OUT_U("records_per_report", s->records);
	OUT_U("connected_max", s->connected_max);
	OUT_U("agents_done", s->agents_done);
	OUT_U("reports_sent", s->count.reports_sent);
	OUT_U("reports_acked", s->count.reports_acked);
	OUT_U("reports_resent", s->count.reports_resent);
	OUT_U("records_sent", s->count.records_sent);
	OUT_U("records_acked", s->count.records_acked);
	OUT_U("records_unacked", s->count.records_sent - s->count.records_acked);
	OUT_U("report_bytes_avg",
	      s->count.reports_sent ? s->count.frame_bytes / s->count.reports_sent : 0);
	OUT_U("errors_overloaded", s->count.errors_overloaded);
	OUT_U("errors_other", s->count.errors_other);
	OUT_U("reconnects", s->count.reconnects);
	OUT_U("connect_failures", s->count.connect_failures);
	OUT_U("reports_late", s->count.reports_late);
	OUT_F("ack_p50_ms", sim_percentile(&s->ack_ms, 50));
	OUT_F("ack_p99_ms", sim_percentile(&s->ack_ms, 99));
	OUT_U("scrapes", s->count.scrapes);
	OUT_U("scrape_errors", s->count.scrape_errors);
	OUT_F("scrape_p50_ms", sim_percentile(&s->scrape_ms, 50));
	OUT_F("scrape_p99_ms", sim_percentile(&s->scrape_ms, 99));
	OUT_F("scrape_max_ms", s->scrape_ms.len ? s->scrape_ms.v[s->scrape_ms.len - 1] : 0);
	OUT_U("scrape_bytes", s->count.scrape_bytes);
	fprintf(out, fmt, "cpu_source", s->cpu_source);
	unsigned long rss_max = 0;
	for (int n = 0; n < s->n_samples; n++)
		rss_max = s->samples[n].rss_kb > rss_max ? s->samples[n].rss_kb : rss_max;
	OUT_U("server_rss_kb", s->n_samples ? s->samples[s->n_samples - 1].rss_kb : 0);
	OUT_U("server_rss_max_kb", rss_max);
#undef OUT_U
#undef OUT_F
	for (int n = 1; n < s->n_samples; n++) {
		const struct sim_sample *a = &s->samples[n - 1], *b = &s->samples[n];

		fprintf(out, "sample %d %s %.3f %llu %llu %llu %llu\n", n,
			sim_phase(s, a->at, b->at), b->at - a->at, b->cpu_ns - a->cpu_ns,
			b->reports - a->reports, b->records - a->records, b->scrapes - a->scrapes);
	}
}

/* sim_write_acked writes the file whole or not at all (a reader may be waiting for it). */
static int sim_write_acked(const struct sim *s, const char *path)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "agentsim: open %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	for (int i = 0; i < s->n_agents; i++)
		fprintf(f, "%d %llu\n", i, (unsigned long long)s->agents[i].seq_acked);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "agentsim: write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * sim_finish prints the result and writes --acked, before any --hold: a script can read them
 * and then look at the server while every agent is still connected. Returns the exit status.
 */
static int sim_finish(struct sim *s)
{
	int rc = 0;

	sim_output(s, s->kv, stdout);
	fflush(stdout);
	if (s->acked_out && sim_write_acked(s, s->acked_out) != 0)
		rc = 1;
	if (s->reports_per_agent && s->agents_done != s->n_agents)
		rc = 1;
	return rc;
}

static double sim_slot_time(const struct sim *s, unsigned long long slot)
{
	unsigned long long round = slot / (unsigned long long)s->n_agents;
	int i = (int)(slot % (unsigned long long)s->n_agents);

	return s->t_start + s->period * ((double)round + ((double)i + 0.5) / s->n_agents);
}

/* sim_raise_nofile lifts the soft descriptor limit to what the run needs, up to the hard one. */
static int sim_raise_nofile(int need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur >= (rlim_t)need)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need) {
		fprintf(stderr, "agentsim: need %d descriptors, the hard limit is %llu\n", need,
			(unsigned long long)rl.rlim_max);
		return -1;
	}
	rl.rlim_cur = (rlim_t)need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		fprintf(stderr, "agentsim: setrlimit RLIMIT_NOFILE %d: %s\n", need,
			strerror(errno));
		return -1;
	}
	return 0;
}

static int sim_option_number(const char *name, const char *v, double min, double max, double *out)
{
	char *end;
	double x = strtod(v, &end);

	if (end == v || *end || x < min || x > max) {
		fprintf(stderr, "agentsim: %s: want %g..%g, got '%s'\n", name, min, max, v);
		return -1;
	}
	*out = x;
	return 0;
}

/* sim_run runs the simulation and returns sim_finish's exit status. */
static int sim_run(struct sim *s)
{
	struct epoll_event events[256];
	double next_sample, drain_end = 0, hold_end = 0;
	int finished = 0, rc = 1;

	s->t0 = sim_now();
	/* Reports start once the ramp of connections is through. */
	s->t_start = s->t0 + s->n_agents / s->connect_rate + 0.5;
	s->t_reports_end = s->reports_per_agent ? INFINITY : s->t_start + s->duration;
	s->t_scrape_start = s->t_start + s->scrape_delay;
	next_sample = s->t_start;
	for (int m = 0; m < s->n_scrapers; m++)
		s->scrapers[m].next_at = s->t_scrape_start + s->scrape_interval * m / s->n_scrapers;
	while (!sim_stop) {
		double now = sim_now(), next = now + 0.1;
		int n;

		/* Connections, at --connect-rate. */
		while (s->next_connect < s->n_agents &&
		       now >= s->t0 + s->next_connect / s->connect_rate)
			sim_agent_connect(s, s->next_connect++, now);
		if (s->next_connect < s->n_agents)
			next = fmin(next, s->t0 + s->next_connect / s->connect_rate);
		/* Reconnections after a back-off (a scan, only while any connection is down). */
		if (s->n_down) {
			for (int i = 0; i < s->n_agents; i++) {
				struct sim_agent *a = &s->agents[i];

				if (a->state != SIM_DOWN || now < a->reconnect_at)
					continue;
				s->n_down--;
				s->count.reconnects++;
				sim_agent_connect(s, i, now);
			}
		}
		/* Reports falling due. */
		while (!finished && sim_slot_time(s, s->next_slot) <= now &&
		       sim_slot_time(s, s->next_slot) < s->t_reports_end) {
			int i = (int)(s->next_slot++ % (unsigned long long)s->n_agents);
			struct sim_agent *a = &s->agents[i];

			if (s->reports_per_agent &&
			    a->seq_built + (uint64_t)a->due >= (uint64_t)s->reports_per_agent)
				continue;
			if (a->due || a->frame)
				s->count.reports_late++;
			if (a->due)
				continue;
			a->due = 1;
			if (!a->frame)
				sim_agent_flush(s, i, now);
		}
		if (!finished)
			next = fmin(next, sim_slot_time(s, s->next_slot));
		/* Scrapers, from --scrape-delay until the reports end. */
		for (int m = 0; m < s->n_scrapers && now < s->t_reports_end && !finished; m++) {
			struct sim_scraper *c = &s->scrapers[m];

			if (c->busy)
				continue;
			if (now >= c->next_at)
				sim_scraper_send(s, m, now);
			if (!c->busy)
				next = fmin(next, c->next_at);
		}
		/* Samples of the server's CPU, until the last report falls due. */
		if (!finished && now >= next_sample && next_sample < s->t_reports_end) {
			sim_take_sample(s, now);
			next_sample += s->sample_interval;
		}
		if (!finished && next_sample < s->t_reports_end)
			next = fmin(next, next_sample);
		/* The end: every report acknowledged, or the deadline, or the drain after it. */
		if (!finished) {
			int in_flight = 0;

			if (s->reports_per_agent) {
				finished = s->agents_done == s->n_agents;
			} else if (now >= s->t_reports_end) {
				for (int i = 0; i < s->n_agents && !in_flight; i++)
					in_flight = s->agents[i].frame || s->agents[i].due;
				if (!drain_end)
					drain_end = now + SIM_DRAIN_SECONDS;
				finished = !in_flight || now >= drain_end;
			}
			if (now - s->t0 >= s->deadline)
				finished = 1;
			if (finished) {
				sim_take_sample(s, now);
				for (int m = 0; m < s->n_scrapers; m++)
					sim_scraper_close(s, &s->scrapers[m]);
				rc = sim_finish(s);
				hold_end = now + s->hold;
			}
		}
		if (finished && now >= hold_end)
			break;
		if (finished)
			next = fmin(now + 0.1, hold_end);
		int timeout = next > now ? (int)ceil((next - now) * 1e3) : 0;
		n = epoll_wait(s->epfd, events, 256, timeout);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "agentsim: epoll_wait: %s\n", strerror(errno));
			exit(1);
		}
		now = sim_now();
		for (int e = 0; e < n; e++) {
			uint64_t tag = events[e].data.u64;

			if (tag >= SIM_SCRAPER_TAG) {
				struct sim_scraper *c = &s->scrapers[tag - SIM_SCRAPER_TAG];
				if (c->fd >= 0 && c->busy)
					sim_scraper_event(s, (int)(tag - SIM_SCRAPER_TAG));
				else if (c->fd >= 0) /* closed by the server while idle */
					sim_scraper_close(s, c);
			} else if (s->agents[tag].fd >= 0) {
				sim_agent_event(s, (int)tag, events[e].events, now);
			}
		}
	}
	if (!finished) { /* stopped by a signal: what there is, and a failure */
		sim_take_sample(s, sim_now());
		sim_finish(s);
	}
	return rc;
}

int main(int argc, char **argv)
{
	enum {
		OPT_AGENTS = 256,
		OPT_RECORDS,
		OPT_PODS,
		OPT_PERIOD,
		OPT_DURATION,
		OPT_REPORTS,
		OPT_DEADLINE,
		OPT_HOLD,
		OPT_WIRE_VERSION,
		OPT_CONNECT_RATE,
		OPT_SCRAPERS,
		OPT_SCRAPE_INTERVAL,
		OPT_SCRAPE_DELAY,
		OPT_AGENT_ADDR,
		OPT_HTTP_ADDR,
		OPT_SERVER_PID,
		OPT_SAMPLE_INTERVAL,
		OPT_WRITE_TOPOLOGY,
		OPT_ACKED,
		OPT_OUTPUT,
	};
	static const struct option options[] = {
		{"agents", required_argument, NULL, OPT_AGENTS},
		{"records", required_argument, NULL, OPT_RECORDS},
		{"pods-per-node", required_argument, NULL, OPT_PODS},
		{"period", required_argument, NULL, OPT_PERIOD},
		{"duration", required_argument, NULL, OPT_DURATION},
		{"reports", required_argument, NULL, OPT_REPORTS},
		{"deadline", required_argument, NULL, OPT_DEADLINE},
		{"hold", required_argument, NULL, OPT_HOLD},
		{"wire-version", required_argument, NULL, OPT_WIRE_VERSION},
		{"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
		{"scrapers", required_argument, NULL, OPT_SCRAPERS},
		{"scrape-interval", required_argument, NULL, OPT_SCRAPE_INTERVAL},
		{"scrape-delay", required_argument, NULL, OPT_SCRAPE_DELAY},
		{"agent-addr", required_argument, NULL, OPT_AGENT_ADDR},
		{"http-addr", required_argument, NULL, OPT_HTTP_ADDR},
		{"server-pid", required_argument, NULL, OPT_SERVER_PID},
		{"sample-interval", required_argument, NULL, OPT_SAMPLE_INTERVAL},
		{"write-topology", required_argument, NULL, OPT_WRITE_TOPOLOGY},
		{"acked", required_argument, NULL, OPT_ACKED},
		{"output", required_argument, NULL, OPT_OUTPUT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct sim s;
	const char *agent_addr = "127.0.0.1:8081", *http_addr = "127.0.0.1:8080";
	const char *topology_out = NULL;
	double x, deadline = -1;
	int opt;
	struct sigaction sa = {.sa_handler = sim_on_signal};

	s.n_agents = 100;
	s.records = 1000;
	s.pods = 2;
	s.period = 10;
	s.duration = 30;
	s.wire_version = WIRE_VERSION_2;
	s.connect_rate = 2000;
	s.scrape_interval = 1;
	s.sample_interval = -1;
	s.cpu_source = "none";
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
#define NUMBER(min, max, dst)                                                                      \
	do {                                                                                       \
		if (sim_option_number(options[opt - OPT_AGENTS].name, optarg, min, max, &x) != 0)  \
			return 2;                                                                  \
		dst = x;                                                                           \
	} while (0)
		case OPT_AGENTS:
			NUMBER(2, 1 << 20, s.n_agents);
			break;
		case OPT_RECORDS:
			NUMBER(1, SIM_RECORDS_MAX, s.records);
			break;
		case OPT_PODS:
			NUMBER(1, 64, s.pods);
			break;
		case OPT_PERIOD:
			NUMBER(0.01, 3600, s.period);
			break;
		case OPT_DURATION:
			NUMBER(0, 86400, s.duration);
			break;
		case OPT_REPORTS:
			NUMBER(1, 1000000, s.reports_per_agent);
			break;
		case OPT_DEADLINE:
			NUMBER(0.1, 86400, deadline);
			break;
		case OPT_HOLD:
			NUMBER(0, 86400, s.hold);
			break;
		case OPT_WIRE_VERSION:
			NUMBER(WIRE_VERSION_1, WIRE_VERSION_2, s.wire_version);
			break;
		case OPT_CONNECT_RATE:
			NUMBER(1, 1e6, s.connect_rate);
			break;
		case OPT_SCRAPERS:
			NUMBER(0, 1000, s.n_scrapers);
			break;
		case OPT_SCRAPE_INTERVAL:
			NUMBER(0, 3600, s.scrape_interval);
			break;
		case OPT_SCRAPE_DELAY:
			NUMBER(0, 86400, s.scrape_delay);
			break;
		case OPT_SERVER_PID:
			NUMBER(1, 1 << 30, s.server_pid);
			break;
		case OPT_SAMPLE_INTERVAL:
			NUMBER(0.01, 86400, s.sample_interval);
			break;
#undef NUMBER
		case OPT_AGENT_ADDR:
			agent_addr = optarg;
			break;
		case OPT_HTTP_ADDR:
			http_addr = optarg;
			break;
		case OPT_WRITE_TOPOLOGY:
			topology_out = optarg;
			break;
		case OPT_ACKED:
			s.acked_out = optarg;
			break;
		case OPT_OUTPUT:
			if (strcmp(optarg, "kv") != 0 && strcmp(optarg, "text") != 0) {
				fprintf(stderr, "agentsim: --output: want text or kv\n");
				return 2;
			}
			s.kv = strcmp(optarg, "kv") == 0;
			break;
		case 'h':
			sim_usage(stdout);
			return 0;
		default:
			sim_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "agentsim: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (topology_out)
		return sim_write_topology(&s, topology_out) == 0 ? 0 : 1;
	if (sim_parse_address(agent_addr, &s.agent_addr, &s.agent_addr_len, NULL, 0) != 0 ||
	    sim_parse_address(http_addr, &s.http_addr, &s.http_addr_len, s.http_host,
			      sizeof(s.http_host)) != 0) {
		fprintf(stderr, "agentsim: want HOST:PORT with a numeric IPv4 or [IPv6] host\n");
		return 2;
	}
	if (s.sample_interval < 0)
		s.sample_interval = s.period;
	s.deadline = deadline > 0 ? deadline
				  : (s.reports_per_agent ? s.period * (s.reports_per_agent + 3)
							 : s.duration) +
					    s.n_agents / s.connect_rate + 60;
	if (sim_raise_nofile(s.n_agents + s.n_scrapers + 64) != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	srand((unsigned)(getpid() ^ time(NULL)));
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	s.agents = calloc((size_t)s.n_agents, sizeof(*s.agents));
	s.scrapers = calloc((size_t)s.n_scrapers + 1, sizeof(*s.scrapers));
	s.scratch_cap = wire_stats_size_version((uint16_t)s.wire_version, (uint32_t)s.records);
	s.scratch = malloc(s.scratch_cap);
	if (s.epfd < 0 || !s.agents || !s.scrapers || !s.scratch) {
		fprintf(stderr, "agentsim: out of memory for %d agents\n", s.n_agents);
		return 1;
	}
	uint64_t salt = ((uint64_t)rand() << 40) ^ ((uint64_t)getpid() << 20) ^ sim_realtime_ns();
	for (int i = 0; i < s.n_agents; i++) {
		struct sim_agent *a = &s.agents[i];
		char node[32];
		struct wire_hello h = {.version = (uint16_t)s.wire_version, .node = node};
		long n;

		a->fd = -1;
		a->backoff_ms = SIM_BACKOFF_MIN_MS;
		a->instance_id = salt * 0x9e3779b97f4a7c15ull + (uint64_t)i;
		h.instance_id = a->instance_id;
		h.node_len = (uint16_t)snprintf(node, sizeof(node), "simnode-%05d", i);
		h.agent_version = "agentsim";
		h.agent_version_len = 8;
		n = wire_hello_encode(a->hello, sizeof(a->hello), &h);
		if (n < 0) {
			fprintf(stderr, "agentsim: HELLO: %s\n", wire_strerror((int)n));
			return 1;
		}
		a->hello_len = (size_t)n;
		a->hello_off = a->hello_len; /* nothing to send until connected */
	}
	for (int m = 0; m < s.n_scrapers; m++)
		s.scrapers[m].fd = -1;

	return sim_run(&s);
}
