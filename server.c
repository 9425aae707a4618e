/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubezonnet-server: one poll() loop that takes agent reports over wire.h.
 *
 * Agents connect, say HELLO, then send STATS frames; each is decoded, deduplicated by
 * (instance id, sequence) and acknowledged. --dump-records prints every new record as one
 * JSON object per line on stdout. A bad frame costs only the connection that sent it.
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

#include "wire.h"
#include "version.h"

#define SERVER_MAX_AGENTS	1024
#define SERVER_MAX_INSTANCES	4096 /* remembered (instance, last sequence) pairs */
#define SERVER_READ_CHUNK	65536
#define SERVER_HELLO_TIMEOUT_MS 10000
#define SERVER_IDLE_TIMEOUT_MS	300000 /* an agent reports every 10 s */
#define SERVER_WRITE_BUFFER	1024

struct server_agent {
	int fd;
	char peer[64];
	int hello_done;
	char node[WIRE_NODE_NAME_MAX + 1];
	uint64_t instance_id;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t out[SERVER_WRITE_BUFFER];
	size_t out_len;
	int closing; /* flush out[], then close */
	long long connected_ms;
	long long last_activity_ms;
};

struct server_instance {
	uint64_t id;
	uint64_t last_sequence;
	long long seen_ms;
};

struct server_counters {
	unsigned long long frames_rejected[16]; /* by -wire_result */
	unsigned long long stats_accepted, stats_duplicate, records;
	unsigned long long connections_refused;
};

struct server {
	int agent_listen_fd;
	uint32_t max_frame;
	int dump_records;
	struct server_agent agents[SERVER_MAX_AGENTS];
	int n_agents;
	struct server_instance instances[SERVER_MAX_INSTANCES];
	struct server_counters counters;
};

static volatile sig_atomic_t server_stop;

static void server_on_signal(int sig)
{
	(void)sig;
	server_stop = 1;
}

static void server_log(const char *fmt, ...)
{
	char when[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s kubezonnet-server: ", when);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static long long server_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

	if (result < 0 && -result < 16)
		s->counters.frames_rejected[-result]++;
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

static void server_format_address(const uint8_t a[16], int family, char *buf, size_t len)
{
	if (family == 4)
		inet_ntop(AF_INET, a + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, a, buf, (socklen_t)len);
}

static void server_dump(const struct server_agent *a, const struct wire_stats *st)
{
	printf("{\"type\":\"report\",\"node\":\"%s\",\"instance\":\"%016llx\",\"sequence\":%llu,"
	       "\"start_ns\":%llu,\"end_ns\":%llu,\"records\":%u,"
	       "\"lost_map_full_packets\":%llu,\"lost_map_full_bytes\":%llu,"
	       "\"lost_other_packets\":%llu,\"lost_other_bytes\":%llu}\n",
	       a->node, (unsigned long long)a->instance_id, (unsigned long long)st->sequence,
	       (unsigned long long)st->start_ns, (unsigned long long)st->end_ns, st->count,
	       (unsigned long long)st->loss.map_full_packets,
	       (unsigned long long)st->loss.map_full_bytes,
	       (unsigned long long)st->loss.other_packets,
	       (unsigned long long)st->loss.other_bytes);
	for (uint32_t i = 0; i < st->count; i++) {
		struct wire_record r;
		char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];

		wire_record_get(st, i, &r);
		server_format_address(r.src, r.family, src, sizeof(src));
		server_format_address(r.dst, r.family, dst, sizeof(dst));
		printf("{\"type\":\"record\",\"node\":\"%s\",\"sequence\":%llu,\"family\":%u,"
		       "\"protocol\":%u,\"port\":%u,\"src\":\"%s\",\"dst\":\"%s\",\"bytes\":%llu,"
		       "\"packets\":%llu}\n",
		       a->node, (unsigned long long)st->sequence, r.family, r.protocol, r.port, src,
		       dst, (unsigned long long)r.bytes, (unsigned long long)r.packets);
	}
	fflush(stdout);
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
	rc = wire_stats_decode(payload, len, &st);
	if (rc < 0)
		goto out;
	in = server_instance(s, a->instance_id);
	in->seen_ms = server_now_ms();
	if (st.sequence <= in->last_sequence) {
		s->counters.stats_duplicate++;
		server_log("agent %s (%s): report %llu already stored; acknowledged again", a->peer,
			   a->node, (unsigned long long)st.sequence);
	} else {
		in->last_sequence = st.sequence;
		s->counters.stats_accepted++;
		s->counters.records += st.count;
		if (s->dump_records)
			server_dump(a, &st);
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
		a->hello_done = 1;
		server_log("agent %s connected: node %s, instance %016llx, version %.*s", a->peer,
			   a->node, (unsigned long long)a->instance_id, h.agent_version_len,
			   h.agent_version);
		return 0;
	}
	switch (f->type) {
	case WIRE_STATS:
		return server_handle_stats(s, a, f);
	case WIRE_ERROR: {
		struct wire_error e;
		int rc = wire_error_decode(f->payload, f->payload_len, &e);
		if (rc == 0) {
			server_log("agent %s (%s) sent error %u: %.*s", a->peer, a->node, e.code,
				   e.message_len, e.message);
			a->closing = 1;
		}
		return rc;
	}
	default:
		return WIRE_E_TYPE; /* HELLO twice, or ACK, which only the server sends */
	}
}

static void server_close(struct server *s, int i)
{
	struct server_agent *a = &s->agents[i];

	if (a->hello_done)
		server_log("agent %s (%s) disconnected", a->peer, a->node);
	close(a->fd);
	free(a->in);
	s->agents[i] = s->agents[--s->n_agents];
}

/* server_read reads what the agent sent and handles every whole frame in it. */
static void server_read(struct server *s, struct server_agent *a)
{
	size_t pos = 0;

	for (;;) {
		ssize_t n;

		if (a->in_cap - a->in_len < SERVER_READ_CHUNK) {
			size_t cap = a->in_cap ? a->in_cap * 2 : SERVER_READ_CHUNK * 2;
			uint8_t *p;

			if (cap > (size_t)s->max_frame + WIRE_LENGTH_SIZE + SERVER_READ_CHUNK)
				cap = (size_t)s->max_frame + WIRE_LENGTH_SIZE + SERVER_READ_CHUNK;
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
		long n = wire_frame_parse(a->in + pos, a->in_len - pos, s->max_frame, &f);
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
}

static void server_write(struct server_agent *a)
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

static void server_accept(struct server *s)
{
	for (;;) {
		int fd = accept4(s->agent_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct server_agent *a;
		int one = 1;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				server_log("accept: %s", strerror(errno));
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
			s->counters.connections_refused++;
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		a = &s->agents[s->n_agents++];
		memset(a, 0, sizeof(*a));
		a->fd = fd;
		a->connected_ms = a->last_activity_ms = server_now_ms();
		server_peer_name(fd, a->peer, sizeof(a->peer));
	}
}

static void server_usage(FILE *out)
{
	fprintf(out,
		"usage: kubezonnet-server [options]\n"
		"\n"
		"Receives the kubezonnet agents' flow reports.\n"
		"\n"
		"  --agent-listen [HOST]:PORT  agent listener (default :8081, every IPv4 and IPv6 "
		"address)\n"
		"  --max-frame BYTES           largest agent frame accepted (default %u)\n"
		"  --dump-records              print every new record as a JSON line on stdout\n"
		"  -h, --help                  this text\n"
		"  -V, --version               print the version and exit\n",
		WIRE_FRAME_MAX_DEFAULT);
}

int main(int argc, char **argv)
{
	enum { OPT_AGENT_LISTEN = 256, OPT_MAX_FRAME, OPT_DUMP };
	static const struct option options[] = {
		{"agent-listen", required_argument, NULL, OPT_AGENT_LISTEN},
		{"max-frame", required_argument, NULL, OPT_MAX_FRAME},
		{"dump-records", no_argument, NULL, OPT_DUMP},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	static struct server s;
	struct pollfd pfds[SERVER_MAX_AGENTS + 1];
	const char *agent_listen = ":8081";
	struct sigaction sa = {.sa_handler = server_on_signal};
	int opt;

	s.max_frame = WIRE_FRAME_MAX_DEFAULT;
	while ((opt = getopt_long(argc, argv, "hV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_AGENT_LISTEN:
			agent_listen = optarg;
			break;
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

	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	s.agent_listen_fd = server_listen(agent_listen);
	if (s.agent_listen_fd < 0)
		return 1;
	server_log("listening for agents on %s", agent_listen);

	while (!server_stop) {
		long long now;
		int n;

		pfds[0] = (struct pollfd){.fd = s.agent_listen_fd, .events = POLLIN};
		for (int i = 0; i < s.n_agents; i++) {
			struct server_agent *a = &s.agents[i];
			pfds[i + 1] =
				(struct pollfd){.fd = a->fd,
						.events = (short)((a->closing ? 0 : POLLIN) |
								  (a->out_len ? POLLOUT : 0))};
		}
		n = poll(pfds, (nfds_t)s.n_agents + 1, 1000);
		if (n < 0 && errno != EINTR) {
			server_log("poll: %s", strerror(errno));
			return 1;
		}
		now = server_now_ms();
		/* Walk backwards: server_close moves the last agent into the closed one's slot. */
		for (int i = s.n_agents - 1; i >= 0; i--) {
			struct server_agent *a = &s.agents[i];
			short re = n > 0 ? pfds[i + 1].revents : 0;

			if (re & (POLLIN | POLLHUP | POLLERR)) {
				a->last_activity_ms = now;
				server_read(&s, a);
			}
			if (a->out_len)
				server_write(a);
			if (!a->hello_done && now - a->connected_ms > SERVER_HELLO_TIMEOUT_MS)
				a->closing = 2;
			if (now - a->last_activity_ms > SERVER_IDLE_TIMEOUT_MS)
				a->closing = 2;
			if (a->closing == 2 || (a->closing && a->out_len == 0))
				server_close(&s, i);
		}
		if (n > 0 && (pfds[0].revents & POLLIN))
			server_accept(&s);
	}
	server_log("stopping: %llu reports stored, %llu duplicates, %llu records",
		   s.counters.stats_accepted, s.counters.stats_duplicate, s.counters.records);
	for (int i = s.n_agents - 1; i >= 0; i--)
		server_close(&s, i);
	close(s.agent_listen_fd);
	return 0;
}
