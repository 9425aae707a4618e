/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s/client.h: list and watch of Pods and Nodes over plain HTTP (an API server behind
 * `kubectl proxy`, --kube-api http://HOST:PORT), driven by the server's poll() loop: every
 * socket is non-blocking, every step does only what is ready, so a slow or hung API server
 * never delays /metrics or agent ingest.
 *
 * Per kind: a paginated list (limit=500, continue) that replaces the store's objects of that
 * kind, then a watch from the list's resourceVersion with bookmarks and a random timeout in
 * [300, 600] s, resumed from the last resourceVersion when it ends; an expired
 * resourceVersion (HTTP 410, or an ERROR event with code 410) starts a new list. Failures
 * back off from 800 ms, doubling to 30 s, with jitter in [d, 2d).
 */
#ifndef KUBEZONNET_K8S_CLIENT_H
#define KUBEZONNET_K8S_CLIENT_H

#include <poll.h>

#include "../http.h"
#include "store.h"

#define K8S_PAGE_MAX  (64u << 20) /* one list page */
#define K8S_EVENT_MAX (4u << 20)  /* one watch event */

struct k8s_watch {
	enum k8s_kind kind;
	const char *resource; /* "pods" or "nodes" */
	int fd;
	int state;   /* enum in client.c */
	int listing; /* 1: listing (pages), 0: watching */
	int synced;  /* a full list has completed */
	char resource_version[64];
	char continue_token[2048];
	char request[4096];
	size_t request_len, request_off;
	char *in; /* bytes read and not yet consumed */
	size_t in_len, in_cap;
	size_t head_seen;
	int status, chunked;
	long long content_left; /* -1: until close */
	struct http_chunked dechunk;
	char *body; /* decoded body: a list page, or watch lines not yet complete */
	size_t body_len, body_cap;
	unsigned backoff_ms;
	long long retry_at_ms, healthy_since_ms;
	long long deadline_ms; /* a hung API server is given up on then */
	unsigned long long events, relists, errors;
};

struct k8s_client {
	char host[256];
	char port[8];
	struct k8s_watch watches[2];
	struct k8s_store *store;
	int changed; /* the store changed since the caller last took an index */
	char last_error[256];
};

/* k8s_client_init parses url (http://HOST:PORT) and prepares both watches. 0 or -1. */
int k8s_client_init(struct k8s_client *c, const char *url);

/* k8s_client_pollfds adds the client's sockets to pfds; returns how many it added (0..2). */
int k8s_client_pollfds(struct k8s_client *c, struct pollfd *pfds);

/*
 * k8s_client_step advances both watches: pfds are the entries k8s_client_pollfds filled (in
 * the same order), now is CLOCK_MONOTONIC in ms. Returns 1 when the store changed.
 */
int k8s_client_step(struct k8s_client *c, const struct pollfd *pfds, int n, long long now);

/* k8s_client_synced reports whether both kinds have been listed in full at least once. */
int k8s_client_synced(const struct k8s_client *c);

void k8s_client_free(struct k8s_client *c);

#endif /* KUBEZONNET_K8S_CLIENT_H */
