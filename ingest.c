/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ingest.c: the server's agent side. Connections, from accept to close; the handshake; frames
 * read within the input memory budget and parsed one a turn per connection; reports
 * deduplicated per node and accounted a slice at a time (server_account, in server.c); ACKs.
 * Every peer is untrusted: lengths are checked before a buffer grows, every state has a
 * deadline, and a bad frame costs only the connection that sent it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"
#include "secret.h"
#include "server.h"
#include "wire.h"

/*
 * ingest_input_fits reports whether more bytes of agent input fit the budget. A buffer of up
 * to SERVER_SMALL_BUFFER (what an ordinary report needs) may also use a reserve of a quarter
 * of the budget, so peers sending huge frames cannot keep ordinary reports out.
 */
static int ingest_input_fits(const struct server *s, size_t more, size_t total)
{
	size_t budget = s->input_budget + (total <= SERVER_SMALL_BUFFER ? s->input_budget / 4 : 0);

	return s->input_bytes + more <= budget;
}

/*
 * ingest_buffer_fits: read buffers may fill the budget only up to --max-frame below its top,
 * so that a whole frame can always be inflated and counted (which frees memory): frames that
 * are read but cannot be inflated never hold all of it.
 */
static int ingest_buffer_fits(const struct server *s, size_t more, size_t total)
{
	size_t budget = s->input_budget - s->max_frame +
			(total <= SERVER_SMALL_BUFFER ? s->input_budget / 4 : 0);

	return s->input_bytes + more <= budget;
}

static void ingest_ready_remove(struct server *s, struct server_agent *a)
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

/* ingest_ready_add puts a at the end of the connections with input to parse. */
static void ingest_ready_add(struct server *s, struct server_agent *a)
{
	ingest_ready_remove(s, a);
	a->ready_prev = s->ready_tail;
	if (s->ready_tail)
		s->ready_tail->ready_next = a;
	else
		s->ready_head = a;
	s->ready_tail = a;
	a->ready = 1;
}

/*
 * ingest_interest registers what the connection waits for now: input only when it has
 * none to parse, no report being accounted, and room in the budget (a peer that outpaces the
 * server waits in its own socket buffer, not in ours); output while ACKs are queued.
 */
static void ingest_interest(struct server *s, struct server_agent *a)
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

/* ingest_wait pauses the connection until the input budget has room. */
static void ingest_wait(struct server *s, struct server_agent *a)
{
	if (a->waiting)
		return;
	a->waiting = 1;
	s->n_waiting++;
	s->stats.input_waits++;
	ingest_ready_remove(s, a);
}

/* ingest_input_release gives bytes back to the budget and wakes the connections waiting. */
static void ingest_input_release(struct server *s, size_t bytes)
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
			ingest_ready_add(s, a); /* it may have a whole frame to parse */
		ingest_interest(s, a);
	}
	s->n_waiting = 0;
}

static void ingest_set_buffer(struct server *s, struct server_agent *a, uint8_t *p, size_t cap)
{
	size_t old = a->in_cap;

	a->in = p;
	a->in_cap = cap;
	if (cap >= old)
		s->input_bytes += cap - old;
	else
		ingest_input_release(s, old - cap);
}

/* ingest_close closes the connection; its report being accounted goes on without it. */
void ingest_close(struct server *s, struct server_agent *a, const char *reason)
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
	ingest_ready_remove(s, a);
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
	ingest_input_release(s, a->in_cap); /* after the slot is gone: it wakes only live ones */
	a->in = NULL;
	a->in_cap = a->in_len = 0;
}

/* ---- deduplication, per node ---- */

/* ingest_hash hashes a peer-chosen name with the process's random key (SipHash-1-3, hash.h). */
static uint64_t ingest_hash(const struct server *s, const char *p, size_t n)
{
	(void)s;
	return hash_bytes(p, n);
}

static struct server_node *ingest_node_find(struct server *s, const char *name, uint64_t h)
{
	if (!s->nodes_cap)
		return NULL;
	for (struct server_node *x = s->nodes[h & (s->nodes_cap - 1)]; x; x = x->next)
		if (x->hash == h && strcmp(x->name, name) == 0)
			return x;
	return NULL;
}

static int ingest_cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/*
 * ingest_nodes_evict forgets the eighth of the nodes that reported least recently, among
 * those with no agent connected: the table stays within its size however many names peers
 * make up, and a node that reports (or is connected) keeps its state.
 */
static void ingest_nodes_evict(struct server *s)
{
	long long *seen = malloc(s->nodes_len * sizeof(*seen)), cut;
	size_t n = 0, evicted = 0;

	if (!seen)
		return;
	for (int i = 0; i < s->n_agents; i++) {
		struct server_agent *a = s->agents[i];
		struct server_node *x;
		if (a->hello_done &&
		    (x = ingest_node_find(s, a->node, ingest_hash(s, a->node, strlen(a->node)))))
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
		qsort(seen, n, sizeof(*seen), ingest_cmp_ll);
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

/* ingest_node_get finds or makes the node's deduplication state; NULL when out of memory. */
static struct server_node *ingest_node_get(struct server *s, const char *name)
{
	size_t len = strlen(name);
	uint64_t h = ingest_hash(s, name, len);
	struct server_node *x = ingest_node_find(s, name, h);

	if (x)
		return x;
	if (s->nodes_len >= s->nodes_max)
		ingest_nodes_evict(s);
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
 * ingest_dedup reports whether the report (node, instance, sequence) is new, and remembers it:
 * 1 new, 0 already stored (a resend after a lost ACK). Each node keeps its own few instances,
 * so no peer can push another node's state out of a shared table.
 */
static int ingest_dedup(struct server *s, const char *node, uint64_t instance, uint64_t sequence,
			long long now)
{
	struct server_node *x = ingest_node_get(s, node);
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

/* ingest_queue appends a frame to the agent's output; frames here are small and bounded. */
void ingest_write(struct server_agent *a, long long now);

static void ingest_queue(struct server_agent *a, const uint8_t *frame, size_t len, long long now)
{
	if (a->eof == 2)
		return; /* hung up: nobody to read it */
	if (len > sizeof(a->out) - a->out_len)
		ingest_write(a, now);
	if (len > sizeof(a->out) - a->out_len) {
		a->closing = 1; /* the peer does not read its ACKs: give up on it */
		return;
	}
	memcpy(a->out + a->out_len, frame, len);
	a->out_len += len;
	if (!a->write_since_ms)
		a->write_since_ms = now;
}

/* ingest_reject sends an ERROR naming the failed check, counts it, and closes after flushing. */
static void ingest_reject(struct server *s, struct server_agent *a, int result, uint16_t code,
			  long long now)
{
	uint8_t frame[WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + WIRE_ERROR_MESSAGE_MAX];
	long n;

	server_count_rejected(s, wire_reason(result));
	server_log("agent %s (%s): %s; closing", a->peer, a->hello_done ? a->node : "no HELLO yet",
		   wire_strerror(result));
	n = wire_error_encode(frame, sizeof(frame), code, wire_strerror(result));
	if (n > 0)
		ingest_queue(a, frame, (size_t)n, now);
	a->closing = 1;
}

/* ---- who an agent is: its node's address, and the shared secret (wire.h, version 3) ---- */

static EVP_MAC *ingest_mac_alg; /* HMAC, fetched once before the sandbox */

/* ingest_hmac computes HMAC-SHA-256 (OpenSSL) with key over the parts, in order. */
static int ingest_hmac(const uint8_t *key, size_t key_len, const void *const parts[],
		       const size_t lens[], int n, uint8_t out[WIRE_MAC_SIZE])
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX *c = ingest_mac_alg ? EVP_MAC_CTX_new(ingest_mac_alg) : NULL;
	size_t out_len = 0;
	int ok = c && EVP_MAC_init(c, key, key_len, params);

	for (int i = 0; ok && i < n; i++)
		ok = EVP_MAC_update(c, parts[i], lens[i]);
	ok = ok && EVP_MAC_final(c, out, &out_len, WIRE_MAC_SIZE) && out_len == WIRE_MAC_SIZE;
	EVP_MAC_CTX_free(c);
	return ok ? 0 : -1;
}

/* ingest_derive computes label's value for the connection: a proof or the session key. */
static int ingest_derive(const struct server *s, int k, const char *label,
			 const struct server_agent *a, uint8_t out[WIRE_MAC_SIZE])
{
	const void *parts[] = {label, a->transcript, a->nonce};
	const size_t lens[] = {strlen(label), sizeof(a->transcript), sizeof(a->nonce)};

	return ingest_hmac(s->secrets->key[k], s->secrets->len[k], parts, lens, 3, out);
}

/* ingest_frame_mac computes the MAC of frame[0..len) (header included) in a direction. */
static int ingest_frame_mac(const struct server_agent *a, uint8_t direction, uint64_t counter,
			    const uint8_t *frame, size_t len, uint8_t out[WIRE_MAC_SIZE])
{
	uint8_t prefix[WIRE_MAC_PREFIX_SIZE];
	const void *parts[] = {prefix, frame};
	const size_t lens[] = {sizeof(prefix), len};

	wire_mac_prefix(prefix, direction, counter);
	return ingest_hmac(a->session, sizeof(a->session), parts, lens, 2, out);
}

/* ingest_send_ack queues the ACK of sequence, with its MAC in an authenticated session. */
static void ingest_send_ack(struct server_agent *a, uint64_t sequence, long long now)
{
	uint8_t ack[WIRE_HEADER_SIZE + WIRE_ACK_PAYLOAD_SIZE + WIRE_MAC_SIZE];
	size_t n = (size_t)wire_ack_encode(ack, sizeof(ack), sequence);

	if (a->auth == INGEST_AUTH_DONE) {
		wire_header_put(ack, WIRE_ACK, WIRE_FLAG_MAC,
				WIRE_ACK_PAYLOAD_SIZE + WIRE_MAC_SIZE);
		if (ingest_frame_mac(a, WIRE_DIRECTION_SERVER, a->mac_out++, ack, n, ack + n) !=
		    0) {
			a->closing = 2; /* no ACK is better than an ACK the agent must refuse */
			return;
		}
		n += WIRE_MAC_SIZE;
	}
	ingest_queue(a, ack, n, now);
}

/*
 * ingest_refuse ends a handshake: the agent gets an ERROR with code and the message, the
 * refusal is counted by reason, and the connection closes once the ERROR is out.
 */
static void ingest_refuse(struct server *s, struct server_agent *a, uint16_t code,
			  const char *reason, long long now, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void ingest_refuse(struct server *s, struct server_agent *a, uint16_t code,
			  const char *reason, long long now, const char *fmt, ...)
{
	uint8_t frame[WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + WIRE_ERROR_MESSAGE_MAX];
	char message[WIRE_ERROR_MESSAGE_MAX + 1];
	va_list ap;
	long n;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	SERVER_COUNT(&s->handshakes_rejected, 1, reason);
	server_log("agent %s (node %s): refused: %s", a->peer, a->node, message);
	n = wire_error_encode(frame, sizeof(frame), code, message);
	if (n > 0)
		ingest_queue(a, frame, (size_t)n, now);
	a->closing = 1;
}

/* ingest_checks_address: the identity check is on, with a source of nodes to check against. */
static int ingest_checks_address(const struct server *s)
{
	return s->address_check && (s->kube || s->topology_path);
}

/*
 * ingest_identity checks that the connection comes from the node its HELLO names: one of the
 * node's addresses, or an address in its pod CIDRs that no pod has (its bridge or tunnel
 * device, where host-network connections to a pod come from). Only with a source of nodes
 * (the Kubernetes API, a topology file), and unless --no-agent-address-check. Returns 0, or
 * -1 after refusing.
 */
static int ingest_identity(struct server *s, struct server_agent *a, long long now)
{
	const struct endpoint *node;
	char addr[INET6_ADDRSTRLEN];

	if (!ingest_checks_address(s))
		return 0;
	node = s->index ? endpoint_node(s->index, a->node) : NULL;
	if (!node) {
		ingest_refuse(s, a, WIRE_ERR_RETRY, "unknown_node", now,
			      "node %s is not known to the server (yet); try again", a->node);
		return -1;
	}
	if (endpoint_is_node_address(s->index, node, a->addr))
		return 0;
	endpoint_format_address(a->addr, addr, sizeof(addr));
	ingest_refuse(s, a, WIRE_ERR_IDENTITY, "node_address", now,
		      "the connection comes from %s, which is not an address of node %s (behind "
		      "source NAT, start the server with --no-agent-address-check)",
		      addr, a->node);
	return -1;
}

void ingest_recheck_identity(struct server *s)
{
	if (!ingest_checks_address(s) || !s->index)
		return;
	for (int i = s->n_agents - 1; i >= 0; i--) {
		struct server_agent *a = s->agents[i];
		const struct endpoint *node;

		if (!a->hello_done && a->auth != INGEST_AUTH_CHALLENGED)
			continue;
		node = endpoint_node(s->index, a->node);
		if (node && endpoint_is_node_address(s->index, node, a->addr))
			continue;
		server_log("agent %s (node %s): %s; closing", a->peer, a->node,
			   node ? "its address is no longer one of its node's"
				: "its node is no longer known");
		ingest_close(s, a, "node_address");
	}
}

/* ingest_ready makes the connection one whose reports count, and says so. */
static void ingest_ready(struct server_agent *a)
{
	a->hello_done = 1;
	server_log("agent %s connected: node %s, instance %016llx, version %s, protocol %u%s%s",
		   a->peer, a->node, (unsigned long long)a->instance_id, a->agent_version,
		   a->version,
		   a->hook == WIRE_HOOK_CGROUP	    ? ", cgroup hook"
		   : a->hook == WIRE_HOOK_NETFILTER ? ", netfilter hook"
						    : "",
		   a->auth == INGEST_AUTH_DONE ? ", secret proved" : "");
}

/*
 * ingest_auth checks the agent's proof against every secret the server holds (during a
 * rotation, old and new); with a match, the server proves it holds that secret too, and the
 * session's frames are authenticated from here. Returns 0 (refusing is not an error).
 */
static int ingest_auth(struct server *s, struct server_agent *a, const uint8_t *proof,
		       long long now)
{
	uint8_t want[WIRE_MAC_SIZE], frame[WIRE_HEADER_SIZE + WIRE_MAC_SIZE];
	int k;

	for (k = 0; k < s->secrets->n; k++)
		if (ingest_derive(s, k, WIRE_LABEL_AGENT, a, want) == 0 &&
		    CRYPTO_memcmp(want, proof, WIRE_MAC_SIZE) == 0)
			break;
	if (k == s->secrets->n) {
		ingest_refuse(s, a, WIRE_ERR_AUTH, "auth_failed", now,
			      "the agent's proof matches no agent secret of this server");
		return 0;
	}
	if (ingest_derive(s, k, WIRE_LABEL_SERVER, a, want) != 0 ||
	    ingest_derive(s, k, WIRE_LABEL_SESSION, a, a->session) != 0) {
		server_log("agent %s: HMAC failed (OpenSSL); closing", a->peer);
		a->closing = 2;
		return 0;
	}
	memcpy(a->fingerprint, s->secret_fingerprints[k], sizeof(a->fingerprint));
	wire_blob_encode(frame, sizeof(frame), WIRE_AUTH, want);
	ingest_queue(a, frame, sizeof(frame), now);
	a->auth = INGEST_AUTH_DONE;
	ingest_ready(a);
	return 0;
}

/*
 * ingest_hello takes the first frame: who the agent is. Then the identity check, and with a
 * secret the challenge (a version 3 HELLO is required); without one, version 3 is refused (the
 * agent would trust a server that cannot prove the secret). Returns 0 or a wire error.
 */
static int ingest_hello(struct server *s, struct server_agent *a, const struct wire_frame *f,
			long long now)
{
	struct wire_hello h;
	uint8_t frame[WIRE_HEADER_SIZE + WIRE_NONCE_SIZE];
	int rc;

	if (f->type != WIRE_HELLO)
		return WIRE_E_TYPE;
	rc = wire_hello_decode(f->payload, f->payload_len, f->flags, &h);
	if (rc < 0)
		return rc;
	memcpy(a->node, h.node, h.node_len);
	a->node[h.node_len] = '\0';
	memcpy(a->agent_version, h.agent_version, h.agent_version_len);
	a->agent_version[h.agent_version_len] = '\0';
	a->instance_id = h.instance_id;
	a->version = h.version;
	a->hook = h.hook;
	if (ingest_identity(s, a, now) != 0)
		return 0;
	if (!s->secrets) {
		if (h.nonce) {
			ingest_refuse(s, a, WIRE_ERR_AUTH, "no_secret", now,
				      "this server has no agent secret (--agent-secret-file): it "
				      "cannot prove one");
			return 0;
		}
		ingest_ready(a);
		return 0;
	}
	if (!h.nonce) {
		ingest_refuse(s, a, WIRE_ERR_AUTH, "secret_required", now,
			      "this server requires the agent secret (--agent-secret-file, wire "
			      "protocol version 3)");
		return 0;
	}
	SHA256(f->payload, f->payload_len, a->transcript);
	if (getrandom(a->nonce, sizeof(a->nonce), 0) != (ssize_t)sizeof(a->nonce)) {
		server_log("agent %s: getrandom: %s; closing", a->peer, strerror(errno));
		a->closing = 2;
		return 0;
	}
	wire_blob_encode(frame, sizeof(frame), WIRE_CHALLENGE, a->nonce);
	ingest_queue(a, frame, sizeof(frame), now);
	a->auth = INGEST_AUTH_CHALLENGED;
	return 0;
}

/*
 * ingest_check_mac checks and strips the MAC of an authenticated session's frame (at the
 * start of a->in); the counter moves on once the frame is taken (ingest_frame).
 */
static int ingest_check_mac(struct server_agent *a, struct wire_frame *f)
{
	uint8_t want[WIRE_MAC_SIZE];
	const uint8_t *mac;

	if (!(f->flags & WIRE_FLAG_MAC) || f->payload_len < WIRE_MAC_SIZE)
		return WIRE_E_MAC;
	f->payload_len -= WIRE_MAC_SIZE;
	mac = f->payload + f->payload_len;
	if (ingest_frame_mac(a, WIRE_DIRECTION_AGENT, a->mac_in, a->in,
			     WIRE_HEADER_SIZE + f->payload_len, want) != 0 ||
	    CRYPTO_memcmp(want, mac, WIRE_MAC_SIZE) != 0)
		return WIRE_E_MAC;
	f->flags &= (uint16_t)~WIRE_FLAG_MAC;
	return 0;
}

/* ingest_fingerprints keeps a SHA-256 of each secret: which one a session proved. */
static void ingest_fingerprints(struct server *s)
{
	for (int k = 0; k < s->secrets->n; k++)
		SHA256(s->secrets->key[k], s->secrets->len[k], s->secret_fingerprints[k]);
}

int ingest_init(struct server *s, char *err, size_t err_len)
{
	if (!s->secret_path)
		return 0;
	ingest_mac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
	s->secrets = calloc(1, sizeof(*s->secrets));
	if (!ingest_mac_alg || !s->secrets) {
		snprintf(err, err_len, "%s", s->secrets ? "OpenSSL has no HMAC" : "out of memory");
		return -1;
	}
	if (secret_load(s->secret_path, s->secrets, err, err_len) != 0)
		return -1;
	ingest_fingerprints(s);
	return 0;
}

void ingest_secret_tick(struct server *s, long long now)
{
	char err[300];
	int closed = 0;

	if (!s->secrets || now - s->secret_checked_ms < 1000)
		return;
	s->secret_checked_ms = now;
	if (!secret_changed(s->secret_path, s->secrets))
		return;
	if (secret_load(s->secret_path, s->secrets, err, sizeof(err)) != 0) {
		server_log("agent secret file: %s; keeping the secrets read before", err);
		SERVER_COUNT(&s->secret_reloads, 1, "error");
		return;
	}
	ingest_fingerprints(s);
	SERVER_COUNT(&s->secret_reloads, 1, "ok");
	/* A session proved with a secret no longer there ends now (it was revoked). */
	for (int i = s->n_agents - 1; i >= 0; i--) {
		struct server_agent *a = s->agents[i];
		int k;
		if (a->auth != INGEST_AUTH_DONE)
			continue;
		for (k = 0; k < s->secrets->n; k++)
			if (memcmp(a->fingerprint, s->secret_fingerprints[k],
				   SHA256_DIGEST_LENGTH) == 0)
				break;
		if (k == s->secrets->n) {
			ingest_close(s, a, "secret_removed");
			closed++;
		}
	}
	server_log("agent secret file %s read again: %d secret%s; %d session%s proved with a "
		   "removed one closed",
		   s->secret_path, s->secrets->n, s->secrets->n == 1 ? "" : "s", closed,
		   closed == 1 ? "" : "s");
}

/*
 * ingest_job_step accounts up to most records of the report; returns the work done (at
 * least 1).
 */
static long ingest_job_step(struct server *s, struct server_job *j, long most)
{
	uint32_t end;

	if (!j->started) {
		j->started = 1;
		if (s->dump_records)
			server_dump_report(j);
		server_account_report(s, j->node, &j->st);
		if (j->st.version >= WIRE_VERSION_3)
			server_account_hook(s, j->node, j->hook, &j->st);
	}
	end = j->st.count - j->done > (uint32_t)most ? j->done + (uint32_t)most : j->st.count;
	for (uint32_t i = j->done; i < end; i++) {
		struct wire_record r;
		wire_record_get(&j->st, i, &r);
		if (s->dump_records)
			server_dump_record(j, &r);
		server_account(s, j->node, j->hook, &r);
	}
	long done = (long)(end - j->done);
	j->done = end;
	return done ? done : 1;
}

/* ingest_job_finish acknowledges the report (if its connection is still there) and frees it. */
static void ingest_job_finish(struct server *s, struct server_job *j, long long now)
{
	struct server_agent *a = j->a;

	if (a) {
		ingest_send_ack(a, j->st.sequence, now);
		a->job = NULL;
		if (a->in_len && !a->closing)
			ingest_ready_add(s, a); /* more frames may be waiting */
		ingest_interest(s, a);
	}
	free(j->payload);
	ingest_input_release(s, j->mem);
	free(j);
}

/*
 * ingest_stats decodes and deduplicates one STATS frame whose payload is at
 * payload[0..len) (in the agent's buffer). A new report becomes a job, which takes the buffer
 * when the frame is all of it; a duplicate is acknowledged at once. Returns 0, 1 when the
 * input budget has no room to inflate it now (the frame stays), or a negative wire error.
 */
static int ingest_stats(struct server *s, struct server_agent *a, const struct wire_frame *f,
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
		if (!ingest_input_fits(s, (size_t)size, (size_t)size))
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
	if (!ingest_dedup(s, a->node, a->instance_id, st.sequence, now)) {
		s->stats.reports_duplicate++;
		server_log("agent %s (%s): report %llu already stored; acknowledged again", a->peer,
			   a->node, (unsigned long long)st.sequence);
		ingest_send_ack(a, st.sequence, now);
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
	j->hook = a->hook;
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
	ingest_input_release(s, mem);
	return rc;
}

/*
 * ingest_frame acts on one whole frame of frame_len bytes at the start of a->in; a
 * negative result rejects the connection, 1 means "not now" (the input budget is spent).
 */
static int ingest_frame(struct server *s, struct server_agent *a, const struct wire_frame *f,
			size_t frame_len, long long now)
{
	struct wire_frame g = *f;
	int rc;

	if (!a->hello_done) {
		if (a->auth != INGEST_AUTH_CHALLENGED)
			return ingest_hello(s, a, f, now);
		if (f->type != WIRE_AUTH)
			return WIRE_E_HANDSHAKE;
		rc = wire_blob_decode(f->payload, f->payload_len);
		return rc < 0 ? rc : ingest_auth(s, a, f->payload, now);
	}
	if (a->auth == INGEST_AUTH_DONE && f->type == WIRE_STATS) {
		rc = ingest_check_mac(a, &g);
		if (rc < 0)
			return rc;
		rc = ingest_stats(s, a, &g, frame_len, now);
		if (rc != 1)
			a->mac_in++; /* taken (1: it waits for memory, and is checked again) */
		return rc;
	}
	if (f->flags & WIRE_FLAG_MAC)
		return WIRE_E_FLAGS; /* a MAC outside an authenticated session */
	switch (f->type) {
	case WIRE_STATS:
		return ingest_stats(s, a, f, frame_len, now);
	case WIRE_ERROR: {
		struct wire_error e;
		rc = wire_error_decode(f->payload, f->payload_len, &e);
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
 * ingest_frame_limit is the largest frame length a connection may send now: before its HELLO,
 * a HELLO's (a peer that has not said who it is gets no megabytes of buffer); then
 * --max-frame.
 */
static uint32_t ingest_frame_limit(const struct server *s, const struct server_agent *a)
{
	return a->hello_done ? s->max_frame
			     : WIRE_HEADER_SIZE - WIRE_LENGTH_SIZE + WIRE_HELLO_MAX_PAYLOAD;
}

/* ingest_shrink gives a large buffer back once what it holds is small. */
static void ingest_shrink(struct server *s, struct server_agent *a)
{
	if (!a->in_len && a->in) {
		free(a->in);
		ingest_set_buffer(s, a, NULL, 0);
	} else if (a->in_cap > 4 * SERVER_READ_CHUNK && a->in_len <= SERVER_READ_CHUNK) {
		uint8_t *p = realloc(a->in, 2 * SERVER_READ_CHUNK);
		if (p)
			ingest_set_buffer(s, a, p, 2 * SERVER_READ_CHUNK);
	}
}

/* ingest_parse handles the first frame in the connection's buffer, if it is whole. */
static void ingest_parse(struct server *s, struct server_agent *a, long long now)
{
	struct wire_frame f;
	long n;
	int rc;

	if (a->closing || a->job) {
		ingest_ready_remove(s, a);
		return;
	}
	n = wire_frame_parse(a->in, a->in_len, ingest_frame_limit(s, a), &f);
	s->work--;
	if (n == WIRE_E_PARTIAL) {
		ingest_ready_remove(s, a);
		ingest_shrink(s, a);
		ingest_interest(s, a);
		return;
	}
	if (n < 0) {
		ingest_reject(s, a, (int)n, WIRE_ERR_PROTOCOL, now);
		ingest_ready_remove(s, a);
		ingest_interest(s, a);
		return;
	}
	rc = ingest_frame(s, a, &f, (size_t)n, now);
	if (rc == 1) { /* no room to inflate it now: wait for memory, the frame stays */
		ingest_wait(s, a);
		ingest_interest(s, a);
		return;
	}
	if (rc < 0) {
		ingest_reject(s, a, rc,
			      rc == WIRE_E_VERSION		    ? WIRE_ERR_VERSION
			      : !a->hello_done && rc == WIRE_E_TYPE ? WIRE_ERR_EXPECTED_HELLO
								    : WIRE_ERR_PROTOCOL,
			      now);
		ingest_ready_remove(s, a);
		ingest_interest(s, a);
		return;
	}
	if (a->in_len >= (size_t)n) { /* not taken by a job */
		memmove(a->in, a->in + n, a->in_len - (size_t)n);
		a->in_len -= (size_t)n;
	}
	a->frame_started_ms = a->in_len ? now : 0;
	if (a->job || !a->in_len || a->closing)
		ingest_ready_remove(s, a);
	else
		ingest_ready_add(s, a); /* to the back: one frame per turn of the list */
	ingest_shrink(s, a);
	ingest_interest(s, a);
}

/*
 * ingest_read reads what the agent sent, growing its buffer as the frame being received
 * needs, within the input budget; then its frames wait on the ready list to be parsed.
 */
static void ingest_read(struct server *s, struct server_agent *a, long long now)
{
	for (;;) {
		ssize_t n;

		if (a->in_cap - a->in_len < 4096) {
			size_t limit = (size_t)ingest_frame_limit(s, a) + WIRE_LENGTH_SIZE;
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
			if (a->hello_done && !ingest_buffer_fits(s, cap - a->in_cap, cap)) {
				ingest_wait(s, a);
				break;
			}
			p = realloc(a->in, cap);
			if (!p) {
				server_log("agent %s: out of memory", a->peer);
				a->closing = 2;
				return;
			}
			ingest_set_buffer(s, a, p, cap);
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
		ingest_ready_add(s, a);
	ingest_shrink(s, a);
}

void ingest_write(struct server_agent *a, long long now)
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

/* ingest_settle closes the connection when it is done, else updates its interest. */
static void ingest_settle(struct server *s, struct server_agent *a)
{
	if (a->fd < 0)
		return;
	if (a->closing == 2 || (a->closing && a->out_len == 0) ||
	    (a->eof && !a->job && !a->ready && !a->waiting && a->out_len == 0))
		ingest_close(s, a, NULL);
	else
		ingest_interest(s, a);
}

void ingest_event(struct server *s, struct server_agent *a, uint32_t ev, long long now)
{
	if (a->fd < 0)
		return;
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		a->last_activity_ms = now;
		if (!a->closing && !a->eof && !a->waiting && !a->job && !a->ready)
			ingest_read(s, a, now);
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
		ingest_write(a, now);
	ingest_settle(s, a);
}

/*
 * ingest_work does the turn's share of the work: a slice of the first report being accounted
 * and one frame of the first connection with input, in turn, until the turn's budget is spent
 * or nothing is left. Returns whether work is left for the next turn.
 */
int ingest_work(struct server *s, long long now, int unbounded)
{
	s->work = SERVER_TURN_WORK;
	while ((s->work > 0 || unbounded) && (s->jobs_head || s->ready_head)) {
		struct server_job *j = s->jobs_head;
		if (j) {
			s->jobs_head = j->next;
			if (!s->jobs_head)
				s->jobs_tail = NULL;
			j->next = NULL;
			s->work -= ingest_job_step(s, j,
						   s->work < SERVER_JOB_SLICE && !unbounded
							   ? (s->work > 0 ? s->work : 1)
							   : SERVER_JOB_SLICE);
			if (j->done == j->st.count) {
				struct server_agent *a = j->a;
				ingest_job_finish(s, j, now);
				if (a)
					ingest_settle(s, a);
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
			ingest_parse(s, a, now);
			ingest_settle(s, a);
		}
	}
	return s->jobs_head || s->ready_head;
}

/* ingest_deadlines closes the connections that overstayed the state they are in. */
void ingest_deadlines(struct server *s, long long now)
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
			ingest_close(s, a, why);
	}
}

/*
 * ingest_victim is the connection to close for a new one: the oldest without a HELLO,
 * else the one quiet longest if it has been quiet for a minute (an agent reports every 10 s),
 * else none.
 */
static struct server_agent *ingest_victim(struct server *s, long long now)
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

/* ingest_peer_address writes fd's peer address in the 16-byte form (zeros if unknown). */
static void ingest_peer_address(int fd, uint8_t addr[16])
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(addr, 0, 16);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		memcpy(addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	}
}

void ingest_accept(struct server *s, long long now)
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
			struct server_agent *v = ingest_victim(s, now);
			if (v) {
				ingest_close(s, v, "evicted");
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
		ingest_peer_address(fd, a->addr);
		s->agents[s->n_agents++] = a;
		server_watch(s, EPOLL_CTL_ADD, fd, EPOLLIN, a);
	}
}

void ingest_free(struct server *s)
{
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
	if (s->secrets) {
		secret_wipe(s->secrets);
		free(s->secrets);
	}
	EVP_MAC_free(ingest_mac_alg);
	ingest_mac_alg = NULL;
}
