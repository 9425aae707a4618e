/* SPDX-License-Identifier: Apache-2.0 */
/* k8s/client.c: see client.h. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

enum { K8S_IDLE, K8S_CONNECTING, K8S_SENDING, K8S_HEAD, K8S_BODY };

#define K8S_BACKOFF_MIN	  800
#define K8S_BACKOFF_MAX	  30000
#define K8S_HEALTHY_RESET 120000 /* ms of health before the back-off starts again from 800 */

static unsigned k8s_random(unsigned below)
{
	unsigned v = 0;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = (unsigned)rand();
	return below ? v % below : 0;
}

int k8s_client_init(struct k8s_client *c, const char *url)
{
	const char *h, *colon, *end;

	memset(c, 0, sizeof(*c));
	if (strncmp(url, "http://", 7) != 0)
		return -1;
	h = url + 7;
	end = h + strcspn(h, "/");
	colon = memchr(h, ':', (size_t)(end - h));
	if (!colon || colon == h || (size_t)(colon - h) >= sizeof(c->host) ||
	    (size_t)(end - colon - 1) >= sizeof(c->port) || end == colon + 1)
		return -1;
	memcpy(c->host, h, (size_t)(colon - h));
	memcpy(c->port, colon + 1, (size_t)(end - colon - 1));
	c->store = k8s_store_new();
	if (!c->store)
		return -1;
	for (int i = 0; i < 2; i++) {
		struct k8s_watch *w = &c->watches[i];
		w->kind = i == 0 ? K8S_NODE : K8S_POD;
		w->resource = i == 0 ? "nodes" : "pods";
		w->fd = -1;
		w->listing = 1;
		w->backoff_ms = K8S_BACKOFF_MIN;
	}
	return 0;
}

void k8s_client_free(struct k8s_client *c)
{
	for (int i = 0; i < 2; i++) {
		if (c->watches[i].fd >= 0)
			close(c->watches[i].fd);
		free(c->watches[i].in);
		free(c->watches[i].body);
	}
	k8s_store_free(c->store);
}

static void k8s_close(struct k8s_watch *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->state = K8S_IDLE;
	w->in_len = w->body_len = w->head_seen = 0;
}

/* k8s_fail closes the connection and schedules a retry after a jittered back-off. */
static void k8s_fail(struct k8s_client *c, struct k8s_watch *w, long long now, const char *why)
{
	snprintf(c->last_error, sizeof(c->last_error), "%s: %s", w->resource, why);
	w->errors++;
	k8s_close(w);
	w->retry_at_ms = now + w->backoff_ms + k8s_random(w->backoff_ms);
	w->backoff_ms = w->backoff_ms * 2 > K8S_BACKOFF_MAX ? K8S_BACKOFF_MAX : w->backoff_ms * 2;
	w->healthy_since_ms = 0;
}

static void k8s_relist(struct k8s_watch *w)
{
	w->listing = 1;
	w->continue_token[0] = '\0';
	w->relists++;
}

static int k8s_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n, size_t max)
{
	if (*len + n > max)
		return -1;
	if (*cap - *len < n + 1) {
		size_t nc = *cap ? *cap : 65536;
		char *q;
		while (nc - *len < n + 1)
			nc *= 2;
		q = realloc(*buf, nc);
		if (!q)
			return -1;
		*buf = q;
		*cap = nc;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static void k8s_start(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int n;

	unsigned timeout = 300 + k8s_random(301);

	w->deadline_ms = now + (w->listing ? 60000 : (long long)(timeout + 60) * 1000);
	if (w->listing)
		n = snprintf(w->request, sizeof(w->request),
			     "GET /api/v1/%s?limit=500%s%s HTTP/1.1\r\nHost: %s\r\n"
			     "Accept: application/json\r\nConnection: close\r\n\r\n",
			     w->resource, w->continue_token[0] ? "&continue=" : "",
			     w->continue_token, c->host);
	else
		n = snprintf(
			w->request, sizeof(w->request),
			"GET /api/v1/%s?watch=1&resourceVersion=%s&allowWatchBookmarks=true"
			"&timeoutSeconds=%u HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
			"Connection: close\r\n\r\n",
			w->resource, w->resource_version, timeout, c->host);
	if (n <= 0 || (size_t)n >= sizeof(w->request)) {
		k8s_relist(w);
		k8s_fail(c, w, now, "request too long");
		return;
	}
	w->request_len = (size_t)n;
	w->request_off = 0;
	if (getaddrinfo(c->host, c->port, &hints, &res) != 0 || !res) {
		k8s_fail(c, w, now, "cannot resolve the API server");
		return;
	}
	w->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->fd < 0 ||
	    (connect(w->fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS)) {
		freeaddrinfo(res);
		k8s_fail(c, w, now, strerror(errno));
		return;
	}
	freeaddrinfo(res);
	w->state = K8S_CONNECTING;
	w->status = 0;
	w->chunked = 0;
	w->content_left = -1;
	memset(&w->dechunk, 0, sizeof(w->dechunk));
	w->in_len = w->body_len = w->head_seen = 0;
}

/* k8s_page handles one whole list page in w->body. Returns 1 when the store changed. */
static int k8s_page(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	int n = json_parse(w->body, w->body_len, NULL, 0, NULL), items, meta;
	struct json_token *t;
	static struct k8s_event ev;

	if (n <= 0 || !(t = malloc(sizeof(*t) * (size_t)n))) {
		k8s_relist(w);
		k8s_fail(c, w, now, "list page is not JSON");
		return 0;
	}
	json_parse(w->body, w->body_len, t, (uint32_t)n, NULL);
	if (!w->continue_token[0])
		k8s_store_begin_relist(c->store, w->kind);
	items = json_get(w->body, t, 0, "items");
	for (uint32_t k = 0; items >= 0 && t[items].type == JSON_ARRAY && k < t[items].size; k++) {
		int o = json_child(t, items, k);
		memset(&ev, 0, sizeof(ev));
		ev.type = K8S_ADDED;
		ev.kind = w->kind;
		if (w->kind == K8S_POD ? k8s_pod_decode(w->body, t, o, &ev.pod)
				       : k8s_node_decode(w->body, t, o, &ev.node))
			continue; /* an object we cannot use: skip it, keep the rest */
		k8s_store_apply(c->store, &ev);
	}
	meta = json_get(w->body, t, 0, "metadata");
	if (json_string(w->body, t, json_get(w->body, t, meta, "continue"), w->continue_token,
			sizeof(w->continue_token)) <= 0) {
		w->continue_token[0] = '\0';
		json_string(w->body, t, json_get(w->body, t, meta, "resourceVersion"),
			    w->resource_version, sizeof(w->resource_version));
		k8s_store_end_relist(c->store, w->kind);
		w->listing = 0;
		w->synced = 1;
	}
	free(t);
	return 1;
}

/* k8s_events applies every whole line of w->body as a watch event. Returns 1 on change. */
static int k8s_events(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	static struct k8s_event ev;
	size_t start = 0;
	int changed = 0;

	for (;;) {
		char *nl = memchr(w->body + start, '\n', w->body_len - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (w->body + start));
		if (len && k8s_event_decode(w->body + start, len, &ev) == 0) {
			w->events++;
			if (ev.type == K8S_ERROR) {
				if (ev.code == 410)
					k8s_relist(w);
				k8s_close(w); /* re-list or re-watch at once */
				return changed;
			}
			if (ev.resource_version[0])
				memcpy(w->resource_version, ev.resource_version,
				       sizeof(w->resource_version));
			if (ev.type != K8S_BOOKMARK && k8s_store_apply(c->store, &ev) == 0)
				changed = 1;
		} else if (len) {
			k8s_fail(c, w, now, "malformed watch event");
			return changed;
		}
		start += len + 1;
	}
	memmove(w->body, w->body + start, w->body_len - start);
	w->body_len -= start;
	return changed;
}

/* k8s_read reads what arrived and moves the response on. Returns 1 when the store changed. */
static int k8s_read(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	char chunk[65536];
	int changed = 0, eof = 0;

	for (;;) {
		ssize_t n = read(w->fd, chunk, sizeof(chunk));
		if (n > 0) {
			if (k8s_append(&w->in, &w->in_len, &w->in_cap, chunk, (size_t)n,
				       K8S_PAGE_MAX)) {
				k8s_fail(c, w, now, "response too large");
				return changed;
			}
			continue;
		}
		if (n == 0)
			eof = 1;
		else if (errno != EAGAIN && errno != EINTR) {
			k8s_fail(c, w, now, strerror(errno));
			return changed;
		}
		break;
	}
	if (w->state == K8S_HEAD) {
		struct http_response r;
		int h = http_parse_response(w->in, w->in_len, w->head_seen, &r);
		const struct http_header *x;

		if (h == HTTP_E_PARTIAL) {
			w->head_seen = w->in_len;
			if (eof)
				k8s_fail(c, w, now, "connection closed before the response");
			return 0;
		}
		if (h < 0) {
			k8s_fail(c, w, now, "malformed response head");
			return 0;
		}
		w->status = r.status;
		x = http_response_header(&r, "Transfer-Encoding");
		w->chunked = x && http_accepts_token(x->value, x->value_len, "chunked");
		x = http_response_header(&r, "Content-Length");
		w->content_left = x ? strtoll(x->value, NULL, 10) : -1;
		memmove(w->in, w->in + h, w->in_len - (size_t)h);
		w->in_len -= (size_t)h;
		w->state = K8S_BODY;
		if (w->status == 410) {
			k8s_relist(w); /* an expired continue token or resourceVersion */
			k8s_fail(c, w, now, "410 Gone: listing again");
			w->retry_at_ms = now;
			return 0;
		}
		if (w->status != 200) {
			char why[64];
			snprintf(why, sizeof(why), "HTTP status %d", w->status);
			k8s_fail(c, w, now, why);
			return 0;
		}
	}
	/* Decode what arrived into w->body. */
	if (w->in_len) {
		size_t n = w->in_len;
		long rc = HTTP_E_PARTIAL;
		if (w->chunked) {
			rc = http_chunked_decode(&w->dechunk, w->in, &n);
			if (rc == HTTP_E_INVALID) {
				k8s_fail(c, w, now, "malformed chunked body");
				return 0;
			}
		} else if (w->content_left >= 0 && (long long)n > w->content_left) {
			n = (size_t)w->content_left;
		}
		if (k8s_append(&w->body, &w->body_len, &w->body_cap, w->in, n,
			       w->listing ? K8S_PAGE_MAX : K8S_EVENT_MAX)) {
			k8s_fail(c, w, now, "page or event too large");
			return 0;
		}
		if (!w->chunked && w->content_left >= 0)
			w->content_left -= (long long)n;
		w->in_len = 0;
		if (rc >= 0 || (!w->chunked && w->content_left == 0))
			eof = 1; /* the body is complete */
	}
	if (!w->listing)
		changed = k8s_events(c, w, now);
	if (w->state == K8S_IDLE)
		return changed;
	if (eof) {
		if (w->listing)
			changed |= k8s_page(c, w, now);
		else if (w->body_len)
			changed |= k8s_events(c, w, now);
		if (w->state != K8S_IDLE) /* a list page or a watch that ended: go on at once */
			k8s_close(w);
		w->retry_at_ms = now;
		if (!w->healthy_since_ms)
			w->healthy_since_ms = now;
		else if (now - w->healthy_since_ms > K8S_HEALTHY_RESET)
			w->backoff_ms = K8S_BACKOFF_MIN;
	}
	return changed;
}

int k8s_client_pollfds(struct k8s_client *c, struct pollfd *pfds)
{
	int n = 0;

	for (int i = 0; i < 2; i++) {
		struct k8s_watch *w = &c->watches[i];
		if (w->fd < 0)
			continue;
		pfds[n++] = (struct pollfd){
			.fd = w->fd,
			.events = (short)(w->state == K8S_CONNECTING || w->state == K8S_SENDING
						  ? POLLOUT
						  : POLLIN)};
	}
	return n;
}

int k8s_client_step(struct k8s_client *c, const struct pollfd *pfds, int n, long long now)
{
	int changed = 0;

	for (int i = 0; i < 2; i++) {
		struct k8s_watch *w = &c->watches[i];
		short re = 0;

		for (int k = 0; k < n; k++)
			if (pfds[k].fd == w->fd && w->fd >= 0)
				re = pfds[k].revents;
		if (w->fd < 0) {
			if (now >= w->retry_at_ms)
				k8s_start(c, w, now);
			continue;
		}
		if (now > w->deadline_ms) {
			k8s_fail(c, w, now, "the API server did not answer in time");
			continue;
		}
		if (w->state == K8S_CONNECTING && (re & (POLLOUT | POLLERR | POLLHUP))) {
			int err = 0;
			socklen_t len = sizeof(err);
			getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err) {
				k8s_fail(c, w, now, strerror(err));
				continue;
			}
			w->state = K8S_SENDING;
		}
		if (w->state == K8S_SENDING && (re & POLLOUT)) {
			ssize_t s = send(w->fd, w->request + w->request_off,
					 w->request_len - w->request_off, MSG_NOSIGNAL);
			if (s < 0 && errno != EAGAIN && errno != EINTR) {
				k8s_fail(c, w, now, strerror(errno));
				continue;
			}
			if (s > 0)
				w->request_off += (size_t)s;
			if (w->request_off == w->request_len)
				w->state = K8S_HEAD;
			continue;
		}
		if ((w->state == K8S_HEAD || w->state == K8S_BODY) &&
		    (re & (POLLIN | POLLHUP | POLLERR)))
			changed |= k8s_read(c, w, now);
	}
	if (changed)
		c->changed = 1;
	return changed;
}

int k8s_client_synced(const struct k8s_client *c)
{
	return c->watches[0].synced && c->watches[1].synced;
}
