/* SPDX-License-Identifier: Apache-2.0 */
/* k8s/client.c: see client.h. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client.h"
#include "../version.h"

enum { K8S_IDLE, K8S_CONNECTING, K8S_HANDSHAKE, K8S_SENDING, K8S_HEAD, K8S_BODY };

#define K8S_BACKOFF_MIN	  800
#define K8S_BACKOFF_MAX	  30000
#define K8S_HEALTHY_RESET 120000     /* ms of health before the back-off starts again from 800 */
#define K8S_STEP_BUDGET	  (1u << 20) /* bytes read from one connection in one step */

static unsigned k8s_random(unsigned below)
{
	unsigned v = 0;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = (unsigned)rand();
	return below ? v % below : 0;
}

/* ---- configuration ---- */

/* k8s_token_record notes which file (as fstat saw the one read) the token came from. */
static void k8s_token_record(struct k8s_client *c, const struct stat *st)
{
	c->token_dev = (uint64_t)st->st_dev;
	c->token_ino = (uint64_t)st->st_ino;
	c->token_size = (uint64_t)st->st_size;
	c->token_mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/*
 * k8s_token_changed returns 1 when the path names another file than the one last read (the
 * kubelet's symlink swap, a rename over it) or that file was written since, else 0.
 */
static int k8s_token_changed(const struct k8s_client *c)
{
	struct stat st;

	if (stat(c->token_file, &st) != 0)
		return 0; /* gone for a moment (a symlink being swapped): the next request looks again */
	return (uint64_t)st.st_dev != c->token_dev || (uint64_t)st.st_ino != c->token_ino ||
	       (uint64_t)st.st_size != c->token_size ||
	       (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != c->token_mtime_ns;
}

/*
 * k8s_read_token reads the token file by path. 0, or -1 with the reason in err. Either way
 * it records the file it opened, so that k8s_token_changed reports only a later change.
 */
static int k8s_read_token(struct k8s_client *c, char *err, size_t err_len)
{
	char buf[K8S_TOKEN_MAX];
	ssize_t n;
	size_t len = 0;
	struct stat st;
	int fd = open(c->token_file, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, err_len, "cannot open the token file %s: %s", c->token_file,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	k8s_token_record(c, &st);
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (len == sizeof(buf)) {
		snprintf(err, err_len, "the token in %s is too long", c->token_file);
		return -1;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		len--;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e) {
			snprintf(err, err_len, "the token in %s is not printable ASCII",
				 c->token_file);
			return -1;
		}
	if (!len) {
		snprintf(err, err_len, "the token file %s is empty", c->token_file);
		return -1;
	}
	memcpy(c->token, buf, len);
	c->token[len] = '\0';
	return 0;
}

/* k8s_parse_url takes http[s]://HOST[:PORT][/] with HOST a name, IPv4 or [IPv6]. */
static int k8s_parse_url(struct k8s_client *c, const char *url)
{
	const char *h, *end, *colon;
	size_t hl;

	if (strncmp(url, "https://", 8) == 0) {
		c->tls = 1;
		h = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		h = url + 7;
	} else {
		return -1;
	}
	end = h + strcspn(h, "/");
	if (*end && strcmp(end, "/") != 0)
		return -1; /* no path prefix */
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));
		if (!rb)
			return -1;
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
		if (!colon && rb + 1 != end)
			return -1;
		hl = (size_t)(rb + 1 - h);
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		hl = (size_t)((colon ? colon : end) - h);
	}
	if (!hl || hl >= sizeof(c->host))
		return -1;
	memcpy(c->host, h, hl);
	c->host[hl] = '\0';
	if (c->host[0] == '[') {
		memcpy(c->name, c->host + 1, hl - 2);
		c->name[hl - 2] = '\0';
	} else {
		memcpy(c->name, c->host, hl + 1);
	}
	if (colon) {
		size_t pl = (size_t)(end - colon - 1);
		if (!pl || pl >= sizeof(c->port) || strspn(colon + 1, "0123456789") < pl)
			return -1;
		memcpy(c->port, colon + 1, pl);
		c->port[pl] = '\0';
	} else {
		strcpy(c->port, c->tls ? "443" : "80");
	}
	return 0;
}

static void k8s_ssl_error(char *err, size_t err_len, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[200] = "unknown error";

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, err_len, "%s: %s", what, buf);
}

int k8s_client_init(struct k8s_client *c, const struct k8s_options *o, char *err, size_t err_len)
{
	const char *ca = o->ca_file;
	char sa_ca[4200];

	memset(c, 0, sizeof(*c));
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : K8S_TIMEOUT_DEFAULT;
	for (int i = 0; i < 2; i++)
		c->watches[i].fd = -1;
	if (o->url) {
		if (k8s_parse_url(c, o->url) != 0) {
			snprintf(err, err_len,
				 "want http://HOST:PORT or https://HOST:PORT (IPv6 in brackets), "
				 "got '%s'",
				 o->url);
			return -1;
		}
		if (o->token_file)
			snprintf(c->token_file, sizeof(c->token_file), "%s", o->token_file);
	} else {
		const char *host = getenv("KUBERNETES_SERVICE_HOST");
		const char *port = getenv("KUBERNETES_SERVICE_PORT");
		const char *dir = o->sa_dir ? o->sa_dir : K8S_SA_DIR;
		char url[512];

		if (!host || !*host || !port || !*port) {
			snprintf(err, err_len,
				 "not in a cluster (KUBERNETES_SERVICE_HOST and "
				 "KUBERNETES_SERVICE_PORT are not set): use --kube-api or "
				 "--topology");
			return -1;
		}
		snprintf(url, sizeof(url), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
			 host, port);
		if (k8s_parse_url(c, url) != 0) {
			snprintf(err, err_len, "bad KUBERNETES_SERVICE_HOST/PORT: %s", url);
			return -1;
		}
		snprintf(c->token_file, sizeof(c->token_file), "%s/token", dir);
		if (!ca) {
			snprintf(sa_ca, sizeof(sa_ca), "%s/ca.crt", dir);
			ca = sa_ca;
			if (access(ca, R_OK) != 0) {
				snprintf(err, err_len,
					 "cannot read the cluster CA %s: %s (refusing to talk to "
					 "an API server that cannot be verified)",
					 ca, strerror(errno));
				return -1;
			}
		}
	}
	if (c->tls) {
		if (!(c->ssl_ctx = SSL_CTX_new(TLS_client_method()))) {
			k8s_ssl_error(err, err_len, "TLS set-up");
			return -1;
		}
		if (ca ? SSL_CTX_load_verify_locations(c->ssl_ctx, ca, NULL) != 1
		       : SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
			char what[4200];
			snprintf(what, sizeof(what), "cannot load the CA %.4000s",
				 ca ? ca : "(system default)");
			k8s_ssl_error(err, err_len, what);
			return -1;
		}
		SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
		SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
						     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
		/* HTTP framing says whether a body is complete; a bare close is just an EOF. */
		SSL_CTX_set_options(c->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	} else if (ca) {
		snprintf(err, err_len, "--kube-ca needs an https:// API server URL");
		return -1;
	}
	if (c->token_file[0] && k8s_read_token(c, err, err_len) != 0)
		return -1;
	c->store = k8s_store_new();
	if (!c->store) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		struct k8s_watch *w = &c->watches[i];
		w->kind = i == 0 ? K8S_NODE : K8S_POD;
		w->resource = i == 0 ? "nodes" : "pods";
		w->listing = 1;
		w->backoff_ms = K8S_BACKOFF_MIN;
	}
	return 0;
}

void k8s_client_free(struct k8s_client *c)
{
	for (int i = 0; i < 2; i++) {
		struct k8s_watch *w = &c->watches[i];
		if (w->ssl)
			SSL_free(w->ssl);
		if (w->fd >= 0)
			close(w->fd);
		free(w->body);
		free(w->request);
	}
	if (c->ssl_ctx)
		SSL_CTX_free(c->ssl_ctx);
	k8s_tokens_free(&c->tokens);
	k8s_store_free(c->store);
	memset(c->token, 0, sizeof(c->token));
}

/* ---- connection life ---- */

static void k8s_close(struct k8s_watch *w)
{
	if (w->ssl)
		SSL_free(w->ssl);
	w->ssl = NULL;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->state = K8S_IDLE;
	w->head_len = w->head_seen = w->body_len = w->body_pos = w->line_scanned = 0;
}

/* k8s_fail closes the connection and schedules a retry after a jittered back-off. */
static void k8s_fail(struct k8s_watch *w, long long now, const char *why)
{
	snprintf(w->last_error, sizeof(w->last_error), "%s", why);
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

/* k8s_escape percent-encodes s for a query (continue tokens are opaque). */
static void k8s_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s && o + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
}

static int k8s_build_request(struct k8s_client *c, struct k8s_watch *w, unsigned timeout)
{
	char query[7000], auth[K8S_TOKEN_MAX + 32] = "";
	size_t cap = sizeof(query) + sizeof(auth) + 512;
	int n;

	if (w->listing) {
		char cont[6200];
		k8s_escape(w->continue_token, cont, sizeof(cont));
		/*
		 * The first list may come from the API server's cache (resourceVersion=0); a
		 * relist after an expired resourceVersion reads the latest state (no
		 * resourceVersion). Continued pages carry only the token.
		 */
		if (w->unpaged)
			snprintf(query, sizeof(query), "%s", w->synced ? "" : "resourceVersion=0");
		else if (w->continue_token[0])
			snprintf(query, sizeof(query), "limit=500&continue=%s", cont);
		else
			snprintf(query, sizeof(query), "limit=500%s",
				 w->synced ? "" : "&resourceVersion=0");
	} else {
		char rv[200];
		k8s_escape(w->resource_version, rv, sizeof(rv));
		snprintf(query, sizeof(query),
			 "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
			 rv, timeout);
	}
	if (c->token[0])
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", c->token);
	if (!w->request && !(w->request = malloc(cap)))
		return -1;
	n = snprintf(w->request, cap,
		     "GET /api/v1/%s%s%s HTTP/1.1\r\nHost: %s:%s\r\n%s"
		     "User-Agent: kubezonnet-server/" KUBEZONNET_VERSION "\r\n"
		     "Accept: application/json\r\nConnection: close\r\n\r\n",
		     w->resource, query[0] ? "?" : "", query, c->host, c->port, auth);
	if (n <= 0 || (size_t)n >= cap)
		return -1;
	w->request_len = (size_t)n;
	w->request_off = 0;
	return 0;
}

static void k8s_start(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	unsigned timeout = 300 + k8s_random(301);

	if (c->token_file[0] && (!c->token_read_ms || now - c->token_read_ms >= K8S_TOKEN_REREAD ||
				 k8s_token_changed(c))) {
		char err[512];
		if (k8s_read_token(c, err, sizeof(err)) != 0)
			snprintf(w->last_error, sizeof(w->last_error),
				 "%.200s (keeping the last token)", err);
		c->token_read_ms = now;
	}
	w->deadline_ms = now + c->timeout_ms + (w->listing ? 0 : (long long)timeout * 1000);
	if (k8s_build_request(c, w, timeout) != 0) {
		k8s_relist(w);
		k8s_fail(w, now, "request too long");
		return;
	}
	w->first_page = w->listing && !w->continue_token[0];
	w->started_ms = now;
	w->events_at_start = w->events;
	if (getaddrinfo(c->name, c->port, &hints, &res) != 0 || !res) {
		k8s_fail(w, now, "cannot resolve the API server");
		return;
	}
	w->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->fd < 0 ||
	    (connect(w->fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS)) {
		char why[128];
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		freeaddrinfo(res);
		k8s_fail(w, now, why);
		return;
	}
	freeaddrinfo(res);
	w->state = K8S_CONNECTING;
	w->want = POLLOUT;
	w->status = 0;
	w->chunked = 0;
	w->body_complete = 0;
	w->page_done = 0;
	w->continue_unusable = 0;
	w->content_left = -1;
	memset(&w->dechunk, 0, sizeof(w->dechunk));
	memset(&w->list, 0, sizeof(w->list));
	w->head_len = w->head_seen = w->body_len = w->body_pos = w->line_scanned = 0;
}

/* k8s_tls_begin creates the TLS session: SNI for names, and the name or IP to verify. */
static int k8s_tls_begin(struct k8s_client *c, struct k8s_watch *w)
{
	SSL *ssl = SSL_new(c->ssl_ctx);

	if (!ssl)
		return -1;
	w->ssl = ssl;
	if (!SSL_set_fd(ssl, w->fd))
		return -1;
	if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->name) == 1) {
		/* an IP address: checked against the certificate's IP SANs, no SNI */
	} else if (!SSL_set_tlsext_host_name(ssl, c->name) || !SSL_set1_host(ssl, c->name)) {
		return -1;
	}
	SSL_set_connect_state(ssl);
	return 0;
}

/*
 * k8s_io maps an SSL result: 1 progress, 0 would block (w->want set), -1 closed or failed
 * (why says how).
 */
static int k8s_ssl_result(struct k8s_watch *w, int rc, char *why, size_t why_len)
{
	int e = SSL_get_error(w->ssl, rc);

	if (rc > 0)
		return 1;
	if (e == SSL_ERROR_WANT_READ) {
		w->want = POLLIN;
		return 0;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		w->want = POLLOUT;
		return 0;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(why, why_len, "closed");
		return -1;
	}
	if (e == SSL_ERROR_SSL && SSL_get_verify_result(w->ssl) != X509_V_OK) {
		snprintf(why, why_len, "TLS: the API server's certificate is not trusted: %s",
			 X509_verify_cert_error_string(SSL_get_verify_result(w->ssl)));
		ERR_clear_error();
		return -2;
	}
	if (e == SSL_ERROR_SYSCALL && errno) {
		snprintf(why, why_len, "TLS: %s", strerror(errno));
		ERR_clear_error();
		return -2;
	}
	if (e == SSL_ERROR_SYSCALL) {
		snprintf(why, why_len, "closed");
		ERR_clear_error();
		return -1;
	}
	k8s_ssl_error(why, why_len, "TLS");
	return -2;
}

/* k8s_recv reads into buf. Returns bytes (> 0), 0 at EOF, -1 would block, -2 failed. */
static long k8s_recv(struct k8s_watch *w, char *buf, size_t cap, char *why, size_t why_len)
{
	if (w->ssl) {
		int rc = SSL_read(w->ssl, buf, cap > 1 << 30 ? 1 << 30 : (int)cap);
		int r = k8s_ssl_result(w, rc, why, why_len);
		return r > 0 ? rc : r == 0 ? -1 : r == -1 ? 0 : -2;
	}
	ssize_t n = read(w->fd, buf, cap);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EINTR)
		return -1;
	snprintf(why, why_len, "read: %s", strerror(errno));
	return -2;
}

/* ---- bodies ---- */

static int k8s_body_append(struct k8s_watch *w, const char *p, size_t n)
{
	if (w->body_pos) { /* drop what was consumed */
		memmove(w->body, w->body + w->body_pos, w->body_len - w->body_pos);
		w->body_len -= w->body_pos;
		w->body_pos = 0;
	}
	if (w->body_len + n > K8S_ITEM_MAX + 65536)
		return -1;
	if (w->body_cap - w->body_len < n + 1) {
		size_t nc = w->body_cap ? w->body_cap : 65536;
		char *q;
		while (nc - w->body_len < n + 1)
			nc *= 2;
		q = realloc(w->body, nc);
		if (!q)
			return -1;
		w->body = q;
		w->body_cap = nc;
	}
	memcpy(w->body + w->body_len, p, n);
	w->body_len += n;
	return 0;
}

/* k8s_list_meta takes continue and resourceVersion from a list's metadata. */
static void k8s_list_meta(struct k8s_client *c, struct k8s_watch *w, const char *js, size_t len)
{
	const struct json_token *t;

	if (k8s_tokens_parse(&c->tokens, js, len) <= 0)
		return;
	t = c->tokens.t;
	int ci = json_get(js, t, 0, "continue");
	if (json_string(js, t, ci, w->next_continue, sizeof(w->next_continue)) < 0) {
		w->next_continue[0] = '\0';
		/* A token we cannot keep: not the last page, so list again in full. */
		if (ci >= 0 && t[ci].type == JSON_STRING && t[ci].end > t[ci].start)
			w->continue_unusable = 1;
	}
	json_string(js, t, json_get(js, t, 0, "resourceVersion"), w->resource_version,
		    sizeof(w->resource_version));
}

/* k8s_list_feed applies every complete item of a list page. Returns 1 on change, -1 on error. */
static int k8s_list_feed(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	static struct k8s_event ev;
	int changed = 0;

	for (;;) {
		size_t s, e;
		int r = json_list_next(&w->list, w->body, w->body_len, &w->body_pos, "items", &s,
				       &e);

		if (r == JSON_E_PART) {
			if (w->body_len - w->body_pos > K8S_ITEM_MAX) {
				k8s_fail(w, now, "a list item is larger than 4 MiB");
				return -1;
			}
			return changed;
		}
		if (r < 0) {
			k8s_relist(w);
			k8s_fail(w, now, "the list is not JSON");
			return -1;
		}
		if (r == JSON_LIST_END) {
			w->page_done = 1; /* only white space may follow */
			continue;
		}
		if (r == JSON_LIST_MEMBER) {
			if (strcmp(w->list.key, "metadata") == 0)
				k8s_list_meta(c, w, w->body + s, e - s);
			continue;
		}
		memset(&ev, 0, sizeof(ev));
		ev.type = K8S_ADDED;
		ev.kind = w->kind;
		int n = k8s_tokens_parse(&c->tokens, w->body + s, e - s);
		if (n <= 0 ||
		    (w->kind == K8S_POD ? k8s_pod_decode(w->body + s, c->tokens.t, 0, &ev.pod)
					: k8s_node_decode(w->body + s, c->tokens.t, 0, &ev.node))) {
			w->rejected++; /* an object we cannot use: skip it, keep the rest */
			continue;
		}
		if (k8s_store_apply(c->store, &ev) == 0)
			changed = 1;
	}
}

/* k8s_page_end finishes a list page that arrived whole. */
static void k8s_page_end(struct k8s_client *c, struct k8s_watch *w)
{
	if (w->continue_unusable && !w->unpaged) {
		w->continue_unusable = 0;
		snprintf(w->last_error, sizeof(w->last_error),
			 "a continue token over 2 KiB: listing again without pages");
		k8s_relist(w);
		w->unpaged = 1;
		return;
	}
	w->continue_unusable = 0;
	if (w->next_continue[0] && !w->unpaged) {
		memcpy(w->continue_token, w->next_continue, sizeof(w->continue_token));
		return;
	}
	w->continue_token[0] = '\0';
	w->unpaged = 0;
	k8s_store_end_relist(c->store, w->kind);
	w->listing = 0;
	w->synced = 1;
}

/* k8s_events applies every whole line of the body as a watch event. 1 on change, -1 closed. */
static int k8s_events(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	static struct k8s_event ev;
	int changed = 0;

	for (;;) {
		char *line = w->body + w->body_pos;
		/* An event that arrives in many reads is searched for its end once, not per read. */
		char *nl = memchr(line + w->line_scanned, '\n',
				  w->body_len - w->body_pos - w->line_scanned);
		size_t len;

		if (!nl) {
			w->line_scanned = w->body_len - w->body_pos;
			if (w->line_scanned > K8S_ITEM_MAX) {
				k8s_fail(w, now, "a watch event is larger than 4 MiB");
				return -1;
			}
			return changed;
		}
		len = (size_t)(nl - line);
		w->body_pos += len + 1;
		w->line_scanned = 0;
		while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
			len--;
		if (!len)
			continue;
		if (k8s_event_decode(line, len, &ev, &c->tokens) != 0) {
			/* One we cannot use: watch again from the last good resourceVersion. */
			w->rejected++;
			k8s_fail(w, now, "malformed watch event");
			return -1;
		}
		w->events++;
		if (ev.type == K8S_ERROR) {
			char why[64];
			snprintf(why, sizeof(why), "watch ERROR event, code %d", ev.code);
			snprintf(w->last_error, sizeof(w->last_error), "%s", why);
			if (ev.code == 410) {
				k8s_relist(w); /* expired: list again at once */
				k8s_close(w);
				w->retry_at_ms = now;
			} else {
				k8s_fail(w, now, why);
			}
			return -1;
		}
		if (ev.resource_version[0])
			memcpy(w->resource_version, ev.resource_version,
			       sizeof(w->resource_version));
		if (ev.type != K8S_BOOKMARK && k8s_store_apply(c->store, &ev) == 0)
			changed = 1;
	}
}

/* k8s_head handles the response head. 0 go on, -1 closed. */
static int k8s_head(struct k8s_client *c, struct k8s_watch *w, long long now, size_t *used)
{
	struct http_response r;
	int h = http_parse_response(w->head, w->head_len, w->head_seen, &r);
	const struct http_header *x;
	char why[160];

	if (h == HTTP_E_PARTIAL) {
		w->head_seen = w->head_len;
		*used = w->head_len;
		return 0;
	}
	if (h < 0) {
		k8s_fail(w, now, "malformed response head");
		return -1;
	}
	*used = (size_t)h;
	w->status = r.status;
	x = http_response_header(&r, "Transfer-Encoding");
	w->chunked = x && http_accepts_token(x->value, x->value_len, "chunked");
	x = http_response_header(&r, "Content-Length");
	w->content_left = x && !w->chunked ? strtoll(x->value, NULL, 10) : -1;
	w->state = K8S_BODY;
	switch (w->status) {
	case 200:
		if (!w->healthy_since_ms)
			w->healthy_since_ms = now;
		if (w->listing && w->first_page)
			k8s_store_begin_relist(c->store, w->kind);
		w->next_continue[0] = '\0';
		return 0;
	case 410: /* an expired continue token or resourceVersion */
		if (w->listing && w->continue_token[0])
			w->unpaged = 1; /* recover with one full list */
		k8s_relist(w);		/* not a failure: no back-off */
		k8s_close(w);
		w->retry_at_ms = now;
		return -1;
	case 401:
		w->unauthorized++;
		c->token_read_ms = 0; /* read the token again before the next request */
		k8s_fail(w, now, "401 Unauthorized (reading the token file again)");
		return -1;
	default:
		snprintf(why, sizeof(why), "HTTP status %d%s", w->status,
			 w->status == 403 ? " (the server needs list and watch on pods and nodes)"
					  : "");
		k8s_fail(w, now, why);
		return -1;
	}
}

/* k8s_body takes decoded-as-needed body bytes. 1 change, 0 none, -1 closed. */
static int k8s_body(struct k8s_client *c, struct k8s_watch *w, char *p, size_t n, long long now)
{
	int r;

	if (w->chunked) {
		long rc = http_chunked_decode(&w->dechunk, p, &n);
		if (rc == HTTP_E_INVALID) {
			k8s_fail(w, now, "malformed chunked body");
			return -1;
		}
		if (rc >= 0)
			w->body_complete = 1;
	} else if (w->content_left >= 0) {
		if ((long long)n >= w->content_left) {
			n = (size_t)w->content_left;
			w->body_complete = 1;
		}
		w->content_left -= (long long)n;
	}
	if (n && k8s_body_append(w, p, n) != 0) {
		k8s_fail(w, now, "out of memory for the response");
		return -1;
	}
	r = w->listing ? k8s_list_feed(c, w, now) : k8s_events(c, w, now);
	return r;
}

/* k8s_finish ends a response whose body is complete (or closed: complete says which). */
static void k8s_finish(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	int complete = w->body_complete || (!w->chunked && w->content_left < 0);

	if (!complete || (w->listing && !w->page_done)) {
		k8s_fail(w, now,
			 w->listing		     ? "the list was cut short"
			 : w->body_len > w->body_pos ? "the watch was cut mid-event"
						     : "the watch was cut (no last chunk)");
		return;
	}
	if (!w->listing && w->events == w->events_at_start && now - w->started_ms < 1000) {
		/* A watch that ends at once with nothing: not a reason to ask again at once. */
		k8s_fail(w, now, "the watch ended at once with no events");
		return;
	}
	if (w->listing)
		k8s_page_end(c, w);
	k8s_close(w);
	w->retry_at_ms = now; /* the next page, or the watch again, at once */
}

/* k8s_read reads what arrived, at most K8S_STEP_BUDGET bytes. Returns 1 on change. */
static int k8s_read(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	static char buf[65536];
	size_t total = 0;
	int changed = 0;
	char why[256] = "";

	while (w->state == K8S_HEAD || w->state == K8S_BODY) {
		long n;
		int r;

		if (total >= K8S_STEP_BUDGET) {
			c->busy = 1;
			break;
		}
		n = k8s_recv(w, buf, sizeof(buf), why, sizeof(why));
		if (n == -1)
			break;
		if (n == -2) {
			k8s_fail(w, now, why);
			break;
		}
		if (n == 0) {
			if (w->state == K8S_HEAD)
				k8s_fail(w, now, "connection closed before the response");
			else
				k8s_finish(c, w, now);
			break;
		}
		total += (size_t)n;
		if (w->state == K8S_HEAD) {
			size_t room = sizeof(w->head) - w->head_len,
			       take = (size_t)n < room ? (size_t)n : room, used;
			size_t before = w->head_len;
			memcpy(w->head + w->head_len, buf, take);
			w->head_len += take;
			if (k8s_head(c, w, now, &used) < 0)
				break;
			if (w->state == K8S_HEAD) {
				if (w->head_len == sizeof(w->head)) {
					k8s_fail(w, now, "response head larger than 64 KiB");
					break;
				}
				continue;
			}
			/* The bytes after the head start the body. */
			size_t off = used - before;
			memmove(buf, buf + off, (size_t)n - off);
			n -= (long)off;
		}
		r = k8s_body(c, w, buf, (size_t)n, now);
		if (r < 0)
			break;
		changed |= r;
		if (w->body_complete) {
			k8s_finish(c, w, now);
			break;
		}
	}
	return changed;
}

int k8s_client_pollfds(struct k8s_client *c, struct pollfd *pfds)
{
	int n = 0;

	for (int i = 0; i < 2; i++) {
		struct k8s_watch *w = &c->watches[i];
		if (w->fd >= 0)
			pfds[n++] = (struct pollfd){.fd = w->fd, .events = w->want};
	}
	return n;
}

/* k8s_progress moves one connection on as far as it can go without blocking. */
static int k8s_progress(struct k8s_client *c, struct k8s_watch *w, long long now)
{
	char why[256] = "";

	if (w->state == K8S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			snprintf(why, sizeof(why), "connect: %s", strerror(err));
			k8s_fail(w, now, why);
			return 0;
		}
		if (c->tls) {
			if (k8s_tls_begin(c, w) != 0) {
				k8s_ssl_error(why, sizeof(why), "TLS set-up");
				k8s_fail(w, now, why);
				return 0;
			}
			w->state = K8S_HANDSHAKE;
		} else {
			w->state = K8S_SENDING;
		}
	}
	if (w->state == K8S_HANDSHAKE) {
		int r = k8s_ssl_result(w, SSL_do_handshake(w->ssl), why, sizeof(why));
		if (r == 0)
			return 0;
		if (r < 0) {
			k8s_fail(w, now, r == -1 ? "TLS: closed during the handshake" : why);
			return 0;
		}
		w->state = K8S_SENDING;
	}
	if (w->state == K8S_SENDING) {
		while (w->request_off < w->request_len) {
			size_t left = w->request_len - w->request_off;
			if (w->ssl) {
				int rc = SSL_write(w->ssl, w->request + w->request_off, (int)left);
				int r = k8s_ssl_result(w, rc, why, sizeof(why));
				if (r == 0)
					return 0;
				if (r < 0) {
					k8s_fail(w, now, why);
					return 0;
				}
				w->request_off += (size_t)rc;
			} else {
				ssize_t s = send(w->fd, w->request + w->request_off, left,
						 MSG_NOSIGNAL);
				if (s < 0 && (errno == EAGAIN || errno == EINTR)) {
					w->want = POLLOUT;
					return 0;
				}
				if (s < 0) {
					snprintf(why, sizeof(why), "send: %s", strerror(errno));
					k8s_fail(w, now, why);
					return 0;
				}
				w->request_off += (size_t)s;
			}
		}
		w->state = K8S_HEAD;
		w->want = POLLIN;
	}
	return k8s_read(c, w, now);
}

int k8s_client_step(struct k8s_client *c, const struct pollfd *pfds, int n, long long now)
{
	int changed = 0, busy = c->busy;

	c->busy = 0;
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
		if (w->healthy_since_ms && now - w->healthy_since_ms > K8S_HEALTHY_RESET)
			w->backoff_ms = K8S_BACKOFF_MIN;
		if (now > w->deadline_ms) {
			k8s_fail(w, now,
				 w->state == K8S_BODY && !w->listing
					 ? "the watch outlived its timeout"
					 : "the API server did not answer in time");
			continue;
		}
		if (re || busy || (w->ssl && SSL_pending(w->ssl)))
			changed |= k8s_progress(c, w, now);
	}
	if (changed)
		c->changed = 1;
	return changed;
}

int k8s_client_synced(const struct k8s_client *c)
{
	return c->watches[0].synced && c->watches[1].synced;
}
