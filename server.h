/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.h: what the server's two files share. server.c is the loop that ties the parts
 * together (listeners, attribution, metrics, flow logs, HTTP, the Kubernetes source, main);
 * ingest.c is the agent side (connections, handshake, authentication, frames, deduplication,
 * reports being accounted). Not a public API: the server is one program.
 */
#ifndef KUBEZONNET_SERVER_H
#define KUBEZONNET_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"
#include "http.h"
#include "k8s/client.h"
#include "metrics.h"
#include "secret.h"
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
	uint16_t hook;	  /* from a version 3 HELLO: enum wire_hook; 0 before */
	char node[WIRE_NODE_NAME_MAX + 1];
	char agent_version[WIRE_AGENT_VERSION_MAX + 1];
	uint64_t instance_id;
	uint8_t addr[16]; /* the peer's address, 16-byte form */
	/* version 3: the handshake, then the session's MACs (ingest.c) */
	enum { INGEST_AUTH_NONE, INGEST_AUTH_CHALLENGED, INGEST_AUTH_DONE } auth;
	uint8_t transcript[32]; /* SHA-256 of the HELLO payload */
	uint8_t nonce[WIRE_NONCE_SIZE];
	uint8_t session[WIRE_MAC_SIZE];
	uint8_t fingerprint[32]; /* SHA-256 of the secret it proved */
	uint64_t mac_in, mac_out;
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
	uint16_t hook;	  /* the agent's, as its HELLO said (version 3) */
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
	int address_check; /* a HELLO only from its node's addresses (--no-agent-address-check) */
	const char *secret_path;    /* --agent-secret-file, or NULL */
	struct secret_set *secrets; /* read from it, or NULL */
	uint8_t secret_fingerprints[SECRET_MAX][32];
	long long secret_checked_ms;

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
	struct metrics_family handshakes_rejected, secret_reloads;
	struct metrics_family device_bytes, hook_blind;
	unsigned long long kube_errors_logged[2];
};

/* ---- server.c, for ingest.c ---- */

/* server_log writes one line to the log (rate-limited, never blocking the loop). */
void server_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* server_count adds n to the series of f with the label values given. */
void server_count(struct metrics_family *f, uint64_t n, const char *const values[]);
#define SERVER_COUNT(f, n, ...) server_count(f, n, (const char *const[]){__VA_ARGS__})
/* server_count_rejected counts a rejected agent frame by reason. */
void server_count_rejected(struct server *s, const char *reason);
/* server_watch registers (op EPOLL_CTL_ADD), changes or removes fd's interest. */
void server_watch(struct server *s, int op, int fd, uint32_t events, void *ptr);
/* server_bury keeps a closed connection's memory until the turn ends (its events may follow). */
void server_bury(struct server *s, void *p);
/* server_peer_name writes "address:port" of fd's peer. */
void server_peer_name(int fd, char *buf, size_t len);
/* server_accept_failed handles a failed accept() on listener which (0 agents, 1 HTTP). */
void server_accept_failed(struct server *s, int which, long long now);
/* server_account_report and server_account attribute a report's losses and one record. */
void server_account_report(struct server *s, const char *node, const struct wire_stats *st);
void server_account(struct server *s, const char *node, int hook, const struct wire_record *r);
/* server_account_hook exports what a version 3 report says of its agent's hook. */
void server_account_hook(struct server *s, const char *node, uint16_t hook,
			 const struct wire_stats *st);
/* server_dump_report and server_dump_record write --dump-records lines. */
void server_dump_report(const struct server_job *j);
void server_dump_record(const struct server_job *j, const struct wire_record *r);

/* ---- ingest.c ---- */

/* ingest_accept takes new agent connections from the listener (at most 256 a call). */
void ingest_accept(struct server *s, long long now);
/* ingest_event handles epoll events ev on the agent connection a. */
void ingest_event(struct server *s, struct server_agent *a, uint32_t ev, long long now);
/*
 * ingest_work does the turn's share of the work (reports accounted, frames parsed); with
 * unbounded, all of it. Returns whether work is left for the next turn.
 */
int ingest_work(struct server *s, long long now, int unbounded);
/* ingest_deadlines closes the connections that overstayed the state they are in. */
void ingest_deadlines(struct server *s, long long now);
/* ingest_write writes what is queued for the agent, as far as its socket takes it. */
void ingest_write(struct server_agent *a, long long now);
/* ingest_close closes the connection (reason counted unless NULL); its report goes on. */
void ingest_close(struct server *s, struct server_agent *a, const char *reason);
/*
 * ingest_init readies the agent side once the flags are read: with --agent-secret-file, the
 * secrets and OpenSSL's HMAC (before the sandbox). 0, or -1 with err saying why.
 */
int ingest_init(struct server *s, char *err, size_t err_len);
/*
 * ingest_recheck_identity closes the sessions whose address is no longer their node's (or
 * whose node is gone) in the index just swapped in: the identity check holds for the whole
 * session, not only at its HELLO.
 */
void ingest_recheck_identity(struct server *s);
/* ingest_secret_tick reads the secret file again when it changed (at most once a second). */
void ingest_secret_tick(struct server *s, long long now);
/* ingest_free gives back the reports not yet accounted and the deduplication state. */
void ingest_free(struct server *s);

#endif
