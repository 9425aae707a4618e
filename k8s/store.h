/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s/store.h: what the server keeps of the Kubernetes API: pods by UID and nodes by name,
 * changed by list results and watch events, from which it builds endpoint indexes.
 *
 * - A pod is keyed by UID: a pod recreated with the same name is a new pod.
 * - A relist (k8s_store_begin_relist, ADDED for each item, k8s_store_end_relist) replaces the
 *   whole kind: what the new list lacks is deleted.
 * - When two pods claim one address (an address freed and reused while the old pod's
 *   deletion is still on its way), the one changed last owns it; deleting the other pod
 *   does not take the address from its new owner.
 */
#ifndef KUBEZONNET_K8S_STORE_H
#define KUBEZONNET_K8S_STORE_H

#include <stddef.h>

#include "objects.h"

enum k8s_event_type {
	K8S_ADDED = 1,
	K8S_MODIFIED,
	K8S_DELETED,
	K8S_BOOKMARK,
	K8S_ERROR,
};

enum k8s_kind { K8S_POD = 1, K8S_NODE };

/* One watch event, decoded. */
struct k8s_event {
	enum k8s_event_type type;
	enum k8s_kind kind;	   /* for ADDED, MODIFIED, DELETED */
	char resource_version[64]; /* of the object (or the bookmark); empty for ERROR */
	int code;		   /* ERROR: the Status code (410: relist) */
	struct k8s_pod pod;	   /* kind K8S_POD */
	struct k8s_node node;	   /* kind K8S_NODE */
};

/*
 * k8s_event_decode decodes one watch event line js[0..len). Returns 0, or -1 for anything
 * that is not a valid event (a type other than the five, an object that does not decode).
 * tokens is a buffer kept between calls.
 */
int k8s_event_decode(const char *js, size_t len, struct k8s_event *ev, struct k8s_tokens *tokens);

struct k8s_store;

struct k8s_store *k8s_store_new(void);
void k8s_store_free(struct k8s_store *store);

/* k8s_store_apply applies an ADDED, MODIFIED or DELETED event; others are ignored. 0 or -ENOMEM. */
int k8s_store_apply(struct k8s_store *store, const struct k8s_event *ev);

/* A relist of one kind: everything of that kind not ADDED between the two calls is deleted. */
void k8s_store_begin_relist(struct k8s_store *store, enum k8s_kind kind);
void k8s_store_end_relist(struct k8s_store *store, enum k8s_kind kind);

/* k8s_store_count returns how many objects of kind the store holds. */
size_t k8s_store_count(const struct k8s_store *store, enum k8s_kind kind);

/* k8s_store_index builds an endpoint index of the store now (NULL when out of memory). */
struct endpoint_index *k8s_store_index(const struct k8s_store *store);

#endif /* KUBEZONNET_K8S_STORE_H */
