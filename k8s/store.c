/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s/store.c: see store.h. Sized for 100,000 pods: a pod is one allocation (its UID and
 * name inline, its addresses after them) pointing at interned namespace, node and workload
 * strings shared by every pod that names them; pods are found by UID through a hash table
 * and kept in a list ordered by their last change (so an index is built oldest change
 * first without sorting). Nodes are few: an array searched by name.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../hash.h"
#include "store.h"

/* An interned string, shared by reference count. */
struct k8s_str {
	struct k8s_str *next;
	uint32_t hash, refs;
	char s[];
};

struct k8s_spod {
	struct k8s_spod *hnext;		/* UID hash chain */
	struct k8s_spod *older, *newer; /* the change-order list */
	struct k8s_str *ns, *node, *workload, *kind;
	uint32_t hash;
	uint8_t phase, host_network, n_ips, marked;
	uint16_t name_off; /* the name follows the UID in text */
	char text[];	   /* uid NUL name NUL, then n_ips addresses of 16 bytes */
};

struct k8s_store {
	struct k8s_spod **pods; /* hash buckets by UID */
	size_t n_pods, pod_buckets;
	struct k8s_spod *oldest, *newest;
	struct k8s_str **strs; /* interned strings */
	size_t n_strs, str_buckets;
	struct k8s_node *nodes;
	int *node_marked;
	size_t n_nodes, cap_nodes;
};

int k8s_event_decode(const char *js, size_t len, struct k8s_event *ev, struct k8s_tokens *tokens)
{
	static const char *const types[] = {NULL,      "ADDED",	   "MODIFIED",
					    "DELETED", "BOOKMARK", "ERROR"};
	int n = k8s_tokens_parse(tokens, js, len), type, obj;
	const struct json_token *t = tokens->t;

	memset(ev, 0, sizeof(*ev));
	if (n <= 0)
		return -1;
	type = json_get(js, t, 0, "type");
	obj = json_get(js, t, 0, "object");
	for (int k = K8S_ADDED; k <= K8S_ERROR; k++)
		if (json_is(js, t, type, types[k]))
			ev->type = (enum k8s_event_type)k;
	if (!ev->type || obj < 0 || t[obj].type != JSON_OBJECT)
		return -1;
	if (ev->type == K8S_ERROR) {
		int code = json_get(js, t, obj, "code");
		char num[16];
		if (code >= 0 && t[code].type == JSON_NUMBER &&
		    t[code].end - t[code].start < sizeof(num)) {
			memcpy(num, js + t[code].start, t[code].end - t[code].start);
			num[t[code].end - t[code].start] = '\0';
			ev->code = atoi(num);
		}
		return 0;
	}
	json_string(js, t, json_path(js, t, obj, "metadata", "resourceVersion", NULL),
		    ev->resource_version, sizeof(ev->resource_version));
	if (ev->type == K8S_BOOKMARK) {
		return 0;
	}
	if (json_is(js, t, json_get(js, t, obj, "kind"), "Node")) {
		ev->kind = K8S_NODE;
		return k8s_node_decode(js, t, obj, &ev->node);
	} else {
		ev->kind = K8S_POD; /* watch events of a pod watch may omit kind */
		return k8s_pod_decode(js, t, obj, &ev->pod);
	}
}

struct k8s_store *k8s_store_new(void)
{
	return calloc(1, sizeof(struct k8s_store));
}

/* UIDs and names come from the API server and its users: a keyed hash (hash.h). */
static uint32_t k8s_hash(const char *s)
{
	return (uint32_t)hash_string(s);
}

/* ---- interned strings ---- */

static struct k8s_str *k8s_intern(struct k8s_store *st, const char *s)
{
	uint32_t h = k8s_hash(s);
	struct k8s_str *x;
	size_t len;

	if (st->n_strs >= st->str_buckets) {
		size_t nb = st->str_buckets ? st->str_buckets * 2 : 256;
		struct k8s_str **b = calloc(nb, sizeof(*b));
		if (!b)
			return NULL;
		for (size_t i = 0; i < st->str_buckets; i++)
			while ((x = st->strs[i])) {
				st->strs[i] = x->next;
				x->next = b[x->hash & (nb - 1)];
				b[x->hash & (nb - 1)] = x;
			}
		free(st->strs);
		st->strs = b;
		st->str_buckets = nb;
	}
	for (x = st->strs[h & (st->str_buckets - 1)]; x; x = x->next)
		if (x->hash == h && strcmp(x->s, s) == 0) {
			x->refs++;
			return x;
		}
	len = strlen(s);
	x = malloc(sizeof(*x) + len + 1);
	if (!x)
		return NULL;
	x->hash = h;
	x->refs = 1;
	memcpy(x->s, s, len + 1);
	x->next = st->strs[h & (st->str_buckets - 1)];
	st->strs[h & (st->str_buckets - 1)] = x;
	st->n_strs++;
	return x;
}

static void k8s_unintern(struct k8s_store *st, struct k8s_str *x)
{
	struct k8s_str **pp;

	if (!x || --x->refs)
		return;
	for (pp = &st->strs[x->hash & (st->str_buckets - 1)]; *pp != x; pp = &(*pp)->next)
		;
	*pp = x->next;
	st->n_strs--;
	free(x);
}

/* ---- pods ---- */

static const char *k8s_spod_name(const struct k8s_spod *p)
{
	return p->text + p->name_off;
}

static const uint8_t *k8s_spod_ip(const struct k8s_spod *p, int k)
{
	return (const uint8_t *)p->text + p->name_off + strlen(k8s_spod_name(p)) + 1 + 16 * k;
}

static struct k8s_spod **k8s_pod_slot(struct k8s_store *st, const char *uid, uint32_t h)
{
	struct k8s_spod **pp = &st->pods[h & (st->pod_buckets - 1)];

	while (*pp && ((*pp)->hash != h || strcmp((*pp)->text, uid) != 0))
		pp = &(*pp)->hnext;
	return pp;
}

static void k8s_unlink(struct k8s_store *st, struct k8s_spod *p)
{
	if (p->older)
		p->older->newer = p->newer;
	else
		st->oldest = p->newer;
	if (p->newer)
		p->newer->older = p->older;
	else
		st->newest = p->older;
	p->older = p->newer = NULL;
}

static void k8s_append_newest(struct k8s_store *st, struct k8s_spod *p)
{
	p->older = st->newest;
	p->newer = NULL;
	if (st->newest)
		st->newest->newer = p;
	else
		st->oldest = p;
	st->newest = p;
}

static void k8s_spod_free(struct k8s_store *st, struct k8s_spod *p)
{
	k8s_unintern(st, p->ns);
	k8s_unintern(st, p->node);
	k8s_unintern(st, p->workload);
	k8s_unintern(st, p->kind);
	free(p);
}

/* k8s_pod_remove takes the pod at *pp out of the table and the list and frees it. */
static void k8s_pod_remove(struct k8s_store *st, struct k8s_spod **pp)
{
	struct k8s_spod *p = *pp;

	*pp = p->hnext;
	k8s_unlink(st, p);
	k8s_spod_free(st, p);
	st->n_pods--;
}

static int k8s_pods_grow(struct k8s_store *st)
{
	size_t nb = st->pod_buckets ? st->pod_buckets * 2 : 1024;
	struct k8s_spod **b = calloc(nb, sizeof(*b)), *p;

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < st->pod_buckets; i++)
		while ((p = st->pods[i])) {
			st->pods[i] = p->hnext;
			p->hnext = b[p->hash & (nb - 1)];
			b[p->hash & (nb - 1)] = p;
		}
	free(st->pods);
	st->pods = b;
	st->pod_buckets = nb;
	return 0;
}

static int k8s_pod_put(struct k8s_store *st, const struct k8s_pod *pod)
{
	uint32_t h = k8s_hash(pod->uid);
	size_t ul = strlen(pod->uid), nl = strlen(pod->name);
	struct k8s_spod **pp, *p;

	if (st->n_pods >= st->pod_buckets && k8s_pods_grow(st) != 0)
		return -ENOMEM;
	p = malloc(sizeof(*p) + ul + 1 + nl + 1 + 16 * (size_t)pod->n_ips);
	if (!p)
		return -ENOMEM;
	memset(p, 0, sizeof(*p));
	p->hash = h;
	p->phase = (uint8_t)pod->phase;
	p->host_network = (uint8_t)pod->host_network;
	p->n_ips = (uint8_t)pod->n_ips;
	p->marked = 1;
	p->name_off = (uint16_t)(ul + 1);
	memcpy(p->text, pod->uid, ul + 1);
	memcpy(p->text + ul + 1, pod->name, nl + 1);
	memcpy(p->text + ul + 1 + nl + 1, pod->ips, 16 * (size_t)pod->n_ips);
	p->ns = k8s_intern(st, pod->namespace);
	p->node = k8s_intern(st, pod->node);
	p->workload = k8s_intern(st, pod->workload);
	p->kind = k8s_intern(st, pod->workload_kind);
	if (!p->ns || !p->node || !p->workload || !p->kind) {
		k8s_spod_free(st, p);
		return -ENOMEM;
	}
	pp = k8s_pod_slot(st, pod->uid, h);
	if (*pp)
		k8s_pod_remove(st, pp); /* replaced: the new one is the newest change */
	pp = &st->pods[h & (st->pod_buckets - 1)];
	p->hnext = *pp;
	*pp = p;
	k8s_append_newest(st, p);
	st->n_pods++;
	return 0;
}

/* ---- nodes ---- */

static long k8s_find_node(const struct k8s_store *s, const char *name)
{
	for (size_t i = 0; i < s->n_nodes; i++)
		if (strcmp(s->nodes[i].name, name) == 0)
			return (long)i;
	return -1;
}

static int k8s_node_put(struct k8s_store *s, const struct k8s_event *ev)
{
	long i = k8s_find_node(s, ev->node.name);

	if (ev->type == K8S_DELETED) {
		if (i >= 0) {
			s->n_nodes--;
			s->nodes[i] = s->nodes[s->n_nodes];
			s->node_marked[i] = s->node_marked[s->n_nodes];
		}
		return 0;
	}
	if (i < 0) {
		if (s->n_nodes == s->cap_nodes) {
			size_t cap = s->cap_nodes ? s->cap_nodes * 2 : 16;
			struct k8s_node *n = realloc(s->nodes, cap * sizeof(*n));
			int *m = n ? realloc(s->node_marked, cap * sizeof(*m)) : NULL;
			if (n)
				s->nodes = n;
			if (!m)
				return -ENOMEM;
			s->node_marked = m;
			s->cap_nodes = cap;
		}
		i = (long)s->n_nodes++;
	}
	s->nodes[i] = ev->node;
	s->node_marked[i] = 1;
	return 0;
}

/* ---- the store ---- */

void k8s_store_free(struct k8s_store *s)
{
	if (!s)
		return;
	while (s->oldest) {
		struct k8s_spod *p = s->oldest;
		k8s_unlink(s, p);
		k8s_spod_free(s, p);
	}
	free(s->pods);
	free(s->strs);
	free(s->nodes);
	free(s->node_marked);
	free(s);
}

int k8s_store_apply(struct k8s_store *s, const struct k8s_event *ev)
{
	if (ev->type != K8S_ADDED && ev->type != K8S_MODIFIED && ev->type != K8S_DELETED)
		return 0;
	if (ev->kind == K8S_NODE)
		return k8s_node_put(s, ev);
	if (ev->type != K8S_DELETED)
		return k8s_pod_put(s, &ev->pod);
	if (s->pod_buckets) {
		struct k8s_spod **pp = k8s_pod_slot(s, ev->pod.uid, k8s_hash(ev->pod.uid));
		if (*pp)
			k8s_pod_remove(s, pp);
	}
	return 0;
}

void k8s_store_begin_relist(struct k8s_store *s, enum k8s_kind kind)
{
	if (kind == K8S_POD)
		for (struct k8s_spod *p = s->oldest; p; p = p->newer)
			p->marked = 0;
	else
		for (size_t i = 0; i < s->n_nodes; i++)
			s->node_marked[i] = 0;
}

void k8s_store_end_relist(struct k8s_store *s, enum k8s_kind kind)
{
	for (struct k8s_spod *p = kind == K8S_POD ? s->oldest : NULL, *next; p; p = next) {
		next = p->newer;
		if (!p->marked)
			k8s_pod_remove(s, k8s_pod_slot(s, p->text, p->hash));
	}
	for (size_t i = 0; kind == K8S_NODE && i < s->n_nodes;) {
		if (!s->node_marked[i]) {
			s->n_nodes--;
			s->nodes[i] = s->nodes[s->n_nodes];
			s->node_marked[i] = s->node_marked[s->n_nodes];
		} else {
			i++;
		}
	}
}

size_t k8s_store_count(const struct k8s_store *s, enum k8s_kind kind)
{
	return kind == K8S_POD ? s->n_pods : s->n_nodes;
}

struct endpoint_index *k8s_store_index(const struct k8s_store *s)
{
	struct endpoint_index *x = endpoint_index_new();

	if (!x)
		return NULL;
	for (size_t i = 0; i < s->n_nodes; i++) {
		struct endpoint *e = endpoint_add_node(x, s->nodes[i].name, s->nodes[i].zone,
						       s->nodes[i].region);
		for (int k = 0; e && k < s->nodes[i].n_pod_cidrs; k++)
			if (endpoint_add_node_cidr(x, s->nodes[i].pod_cidrs[k],
						   s->nodes[i].pod_cidr_len[k], e) != 0)
				goto fail;
		for (int k = 0; e && k < s->nodes[i].n_tunnel_ips; k++)
			if (endpoint_add_node_source(x, s->nodes[i].tunnel_ips[k], e) != 0)
				goto fail;
		for (int k = 0; e && k < s->nodes[i].n_ips; k++)
			if (endpoint_add_address(x, s->nodes[i].ips[k], e) != 0)
				goto fail;
	}
	/* Oldest change first, so that the last pod to claim an address owns it. */
	for (const struct k8s_spod *p = s->oldest; p; p = p->newer) {
		struct endpoint *e;

		if (!k8s_owns_ips(p->node->s, p->host_network, (enum k8s_phase)p->phase))
			continue;
		if (!endpoint_node(x, p->node->s) &&
		    !endpoint_add_node(x, p->node->s, "unknown", "unknown"))
			goto fail;
		e = endpoint_add_pod(x, p->ns->s, k8s_spod_name(p), p->workload->s, p->kind->s,
				     p->node->s);
		if (!e)
			goto fail;
		for (int k = 0; k < p->n_ips; k++)
			if (endpoint_add_address(x, k8s_spod_ip(p, k), e) != 0)
				goto fail;
	}
	return x;
fail:
	endpoint_index_free(x);
	return NULL;
}
