/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s/client.h: list and watch of Pods and Nodes, driven by the server's poll() loop: every
 * socket is non-blocking (TLS included), every step does only what is ready and at most a
 * bounded amount of it, so a slow, hung or lying API server never delays /metrics or agent
 * ingest.
 *
 * Where the API server is:
 * - in a cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the service
 *   account's CA (ca.crt) and token (token) in /var/run/secrets/kubernetes.io/serviceaccount;
 * - out of one: --kube-api https://HOST:PORT with --kube-ca (else the system's CAs) and
 *   --kube-token-file, or --kube-api http://HOST:PORT for `kubectl proxy`.
 * The server's certificate is always verified, its name or IP address included. The token
 * file is opened by path (never kept open: it is a symlink swapped when the token rotates)
 * and read again before a request when it changed (its device, inode, size or modification
 * time), at least every minute, and after any 401.
 *
 * Per kind: a paginated list (limit=500, continue) that replaces the store's objects of that
 * kind, parsed item by item as the bytes arrive, then a watch from the list's
 * resourceVersion with bookmarks and a random timeout in [300, 600] s, resumed from the last
 * resourceVersion when it ends or is cut; an expired resourceVersion (HTTP 410, or an ERROR
 * event with code 410) starts a new list, an expired continue token a full list without
 * pages. Failures back off from 800 ms, doubling to 30 s, with jitter in [d, 2d), back to
 * 800 ms after two minutes of health.
 */
#ifndef KUBEZONNET_K8S_CLIENT_H
#define KUBEZONNET_K8S_CLIENT_H

#include <poll.h>
#include <stdint.h>

#include "../http.h"
#include "store.h"

#define K8S_ITEM_MAX	    (4u << 20) /* one list item or one watch event */
#define K8S_TOKEN_MAX	    16384      /* a bearer token */
#define K8S_SA_DIR	    "/var/run/secrets/kubernetes.io/serviceaccount"
#define K8S_TOKEN_REREAD    60000 /* ms: read again at least this often, changed or not */
#define K8S_TIMEOUT_DEFAULT 30000

struct k8s_options {
	const char *url;	/* NULL: in-cluster configuration from the environment */
	const char *ca_file;	/* https: the CA to verify the API server with; NULL: system */
	const char *token_file; /* NULL: no Authorization header */
	const char *sa_dir;	/* in-cluster: the service account directory (K8S_SA_DIR) */
	long long timeout_ms;	/* connect, TLS and list requests; watches get theirs + this */
};

struct k8s_watch {
	enum k8s_kind kind;
	const char *resource; /* "pods" or "nodes" */
	int fd;
	void *ssl;   /* SSL *, https only */
	int state;   /* enum in client.c */
	short want;  /* poll events the connection waits for */
	int listing; /* 1: listing (pages), 0: watching */
	int unpaged; /* the next list asks for everything at once (after an expired continue) */
	int first_page, page_done;
	int continue_unusable; /* this page's continue token did not fit */
	int synced;	       /* a full list has completed */
	char resource_version[64];
	char continue_token[2048], next_continue[2048];
	char *request;
	size_t request_len, request_off;
	char head[65536]; /* the response head as it arrives */
	size_t head_len, head_seen;
	int status, chunked, body_complete;
	long long content_left; /* -1: until close */
	struct http_chunked dechunk;
	char *body; /* decoded body not yet consumed: list bytes or watch lines */
	size_t body_len, body_cap, body_pos;
	size_t line_scanned; /* bytes from body_pos known to hold no newline (watch lines) */
	struct json_list list;
	unsigned backoff_ms;
	long long retry_at_ms, healthy_since_ms;
	long long deadline_ms; /* a hung API server is given up on then */
	long long started_ms;  /* of the current request */
	unsigned long long events_at_start;
	unsigned long long events, relists, errors, rejected, unauthorized;
	char last_error[256];
};

struct k8s_client {
	char host[256]; /* as written in a URL: an IPv6 address in brackets */
	char name[256]; /* the same without brackets: to resolve, and to verify */
	char port[8];
	int tls;
	void *ssl_ctx; /* SSL_CTX * */
	char token_file[4096];
	char token[K8S_TOKEN_MAX];
	long long token_read_ms; /* 0: read it at the next request */
	/* the token file as it was last read: what k8s_token_changed compares */
	uint64_t token_dev, token_ino, token_size;
	int64_t token_mtime_ns;
	long long timeout_ms;
	struct k8s_watch watches[2];
	struct k8s_store *store;
	struct k8s_tokens tokens;
	int changed; /* the store changed since the caller last took an index */
	int busy;    /* a step stopped with work left: poll again at once */
};

/*
 * k8s_client_init prepares the client from o: parses the URL, loads the CA, reads the token
 * once. Returns 0, or -1 with the reason in err (the server refuses to start).
 */
int k8s_client_init(struct k8s_client *c, const struct k8s_options *o, char *err, size_t err_len);

/* k8s_client_pollfds adds the client's sockets to pfds; returns how many it added (0..2). */
int k8s_client_pollfds(struct k8s_client *c, struct pollfd *pfds);

/*
 * k8s_client_step advances both watches: pfds are the entries k8s_client_pollfds filled (in
 * the same order), now is CLOCK_MONOTONIC in ms. Returns 1 when the store changed. When it
 * leaves work for later, c->busy is set: the caller should poll without waiting.
 */
int k8s_client_step(struct k8s_client *c, const struct pollfd *pfds, int n, long long now);

/* k8s_client_synced reports whether both kinds have been listed in full at least once. */
int k8s_client_synced(const struct k8s_client *c);

void k8s_client_free(struct k8s_client *c);

#endif /* KUBEZONNET_K8S_CLIENT_H */
