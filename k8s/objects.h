/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s/objects.h: what the endpoint index needs from a Kubernetes Pod and Node, decoded from
 * the API's JSON (already tokenised by json.c), and the rules that turn them into
 * endpoints (see ../shared/K8S-API.md, "What the index needs"):
 * - a pod's workload comes from its owner references without extra API calls: a controller
 *   ReplicaSet named <deployment>-<pod-template-hash> is that Deployment, a controller Job
 *   named <cronjob>-<8 to 10 digits> is that CronJob (both only for pods with a
 *   generateName), otherwise the owner's kind and name, and a pod with no owner is its own
 *   workload;
 * - a node's zone and region come from topology.kubernetes.io/{zone,region}, else the
 *   deprecated failure-domain.beta.kubernetes.io/{zone,region}, else "unknown".
 */
#ifndef KUBEZONNET_K8S_OBJECTS_H
#define KUBEZONNET_K8S_OBJECTS_H

#include <stdint.h>

#include "../endpoint.h"
#include "../json.h"

#define K8S_NAME_MAX 254 /* a DNS subdomain (253) and its NUL */
#define K8S_KIND_MAX 64
#define K8S_UID_MAX  64
#define K8S_MAX_IPS  4

enum k8s_phase {
	K8S_PHASE_UNKNOWN,
	K8S_PHASE_PENDING,
	K8S_PHASE_RUNNING,
	K8S_PHASE_SUCCEEDED,
	K8S_PHASE_FAILED,
};

struct k8s_pod {
	char uid[K8S_UID_MAX];
	char namespace[K8S_NAME_MAX];
	char name[K8S_NAME_MAX];
	char node[K8S_NAME_MAX]; /* spec.nodeName; empty while unscheduled */
	char workload[K8S_NAME_MAX];
	char workload_kind[K8S_KIND_MAX];
	int host_network;
	enum k8s_phase phase;
	uint8_t ips[K8S_MAX_IPS][16]; /* status.podIPs (or podIP), 16-byte form */
	int n_ips;
};

struct k8s_node {
	char name[K8S_NAME_MAX];
	char zone[K8S_NAME_MAX];
	char region[K8S_NAME_MAX];
	uint8_t ips[K8S_MAX_IPS][16]; /* status.addresses of type InternalIP and ExternalIP */
	int n_ips;
	uint8_t pod_cidrs[K8S_MAX_IPS][16]; /* spec.podCIDRs (or podCIDR), 16-byte form */
	uint8_t pod_cidr_len[K8S_MAX_IPS];  /* their prefix lengths on that form */
	int n_pod_cidrs;
	/* tunnel device addresses the CNI publishes as annotations (Calico, Cilium) */
	uint8_t tunnel_ips[K8S_MAX_IPS][16];
	int n_tunnel_ips;
};

/* A growing token buffer, reused from one object to the next. */
struct k8s_tokens {
	struct json_token *t;
	uint32_t cap;
};

/* k8s_tokens_parse parses js[0..len) into b->t. Returns the token count, or a json_error. */
int k8s_tokens_parse(struct k8s_tokens *b, const char *js, size_t len);
void k8s_tokens_free(struct k8s_tokens *b);

/*
 * k8s_pod_decode fills *pod from the Pod object at tokens[obj]. Returns 0, or -1 when the
 * object lacks metadata.name, metadata.namespace or metadata.uid, or a field does not fit.
 */
int k8s_pod_decode(const char *js, const struct json_token *tokens, int obj, struct k8s_pod *pod);

/* k8s_node_decode fills *node from the Node object at tokens[obj]. Returns 0 or -1. */
int k8s_node_decode(const char *js, const struct json_token *tokens, int obj,
		    struct k8s_node *node);

/*
 * k8s_pod_owns_ips reports whether the pod's addresses are its own in the index: it is
 * scheduled, not hostNetwork (its addresses are its node's), and not Succeeded or Failed
 * (their podIP stays set after the address is freed for reuse).
 */
int k8s_pod_owns_ips(const struct k8s_pod *pod);
int k8s_owns_ips(const char *node, int host_network, enum k8s_phase phase);

/*
 * k8s_index_from_lists builds an endpoint index from a NodeList and a PodList (JSON
 * documents). Pods on nodes missing from the NodeList get a node in zone "unknown". Returns
 * NULL and a message in err on malformed input.
 */
struct endpoint_index *k8s_index_from_lists(const char *nodes, size_t nodes_len, const char *pods,
					    size_t pods_len, char *err, size_t err_len);

#endif /* KUBEZONNET_K8S_OBJECTS_H */
