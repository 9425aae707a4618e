/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s/store.c: see store.h. Pods and nodes live in arrays with a generation mark for
 * relists; lookups by UID or name are linear in this first version (an index is rebuilt
 * from the store, not updated in place), which is fine for thousands of pods.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct k8s_stored_pod {
	struct k8s_pod pod;
	unsigned long long changed; /* order of the last change: later owners win addresses */
	int marked;
};

struct k8s_store {
	struct k8s_stored_pod *pods;
	size_t n_pods, cap_pods;
	struct k8s_node *nodes;
	int *node_marked;
	size_t n_nodes, cap_nodes;
	unsigned long long clock;
	int relisting[3];
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
	json_string(js, t, json_get(js, t, json_get(js, t, obj, "metadata"), "resourceVersion"),
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

void k8s_store_free(struct k8s_store *s)
{
	if (!s)
		return;
	free(s->pods);
	free(s->nodes);
	free(s->node_marked);
	free(s);
}

static long k8s_find_pod(const struct k8s_store *s, const char *uid)
{
	for (size_t i = 0; i < s->n_pods; i++)
		if (strcmp(s->pods[i].pod.uid, uid) == 0)
			return (long)i;
	return -1;
}

static long k8s_find_node(const struct k8s_store *s, const char *name)
{
	for (size_t i = 0; i < s->n_nodes; i++)
		if (strcmp(s->nodes[i].name, name) == 0)
			return (long)i;
	return -1;
}

int k8s_store_apply(struct k8s_store *s, const struct k8s_event *ev)
{
	long i;

	if (ev->type != K8S_ADDED && ev->type != K8S_MODIFIED && ev->type != K8S_DELETED)
		return 0;
	if (ev->kind == K8S_POD) {
		i = k8s_find_pod(s, ev->pod.uid);
		if (ev->type == K8S_DELETED) {
			if (i >= 0)
				s->pods[i] = s->pods[--s->n_pods];
			return 0;
		}
		if (i < 0) {
			if (s->n_pods == s->cap_pods) {
				size_t cap = s->cap_pods ? s->cap_pods * 2 : 64;
				struct k8s_stored_pod *p = realloc(s->pods, cap * sizeof(*p));
				if (!p)
					return -ENOMEM;
				s->pods = p;
				s->cap_pods = cap;
			}
			i = (long)s->n_pods++;
		}
		s->pods[i].pod = ev->pod;
		s->pods[i].changed = ++s->clock;
		s->pods[i].marked = 1;
		return 0;
	}
	i = k8s_find_node(s, ev->node.name);
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

void k8s_store_begin_relist(struct k8s_store *s, enum k8s_kind kind)
{
	if (kind == K8S_POD)
		for (size_t i = 0; i < s->n_pods; i++)
			s->pods[i].marked = 0;
	else
		for (size_t i = 0; i < s->n_nodes; i++)
			s->node_marked[i] = 0;
}

void k8s_store_end_relist(struct k8s_store *s, enum k8s_kind kind)
{
	for (size_t i = 0; kind == K8S_POD && i < s->n_pods;) {
		if (!s->pods[i].marked)
			s->pods[i] = s->pods[--s->n_pods];
		else
			i++;
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

static int k8s_by_change(const void *a, const void *b)
{
	const struct k8s_stored_pod *x = *(const struct k8s_stored_pod *const *)a;
	const struct k8s_stored_pod *y = *(const struct k8s_stored_pod *const *)b;

	return (x->changed > y->changed) - (x->changed < y->changed);
}

struct endpoint_index *k8s_store_index(const struct k8s_store *s)
{
	struct endpoint_index *x = endpoint_index_new();
	const struct k8s_stored_pod **order = malloc((s->n_pods + 1) * sizeof(*order));

	if (!x || !order)
		goto fail;
	for (size_t i = 0; i < s->n_nodes; i++) {
		struct endpoint *e = endpoint_add_node(x, s->nodes[i].name, s->nodes[i].zone,
						       s->nodes[i].region);
		for (int k = 0; e && k < s->nodes[i].n_ips; k++)
			if (endpoint_add_address(x, s->nodes[i].ips[k], e) != 0)
				goto fail;
	}
	/* Oldest change first, so that the last pod to claim an address owns it. */
	for (size_t i = 0; i < s->n_pods; i++)
		order[i] = &s->pods[i];
	qsort(order, s->n_pods, sizeof(*order), k8s_by_change);
	for (size_t i = 0; i < s->n_pods; i++) {
		const struct k8s_pod *p = &order[i]->pod;
		struct endpoint *e;

		if (!k8s_pod_owns_ips(p))
			continue;
		if (!endpoint_node(x, p->node) &&
		    !endpoint_add_node(x, p->node, "unknown", "unknown"))
			goto fail;
		e = endpoint_add_pod(x, p->namespace, p->name, p->workload, p->workload_kind,
				     p->node);
		if (!e)
			goto fail;
		for (int k = 0; k < p->n_ips; k++)
			if (endpoint_add_address(x, p->ips[k], e) != 0)
				goto fail;
	}
	free(order);
	return x;
fail:
	free(order);
	endpoint_index_free(x);
	return NULL;
}
