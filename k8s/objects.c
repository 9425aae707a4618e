/* SPDX-License-Identifier: Apache-2.0 */
/* k8s/objects.c: see objects.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objects.h"

int k8s_tokens_parse(struct k8s_tokens *b, const char *js, size_t len)
{
	int n = b->t ? json_parse(js, len, b->t, b->cap, NULL) : JSON_E_NOMEM;
	struct json_token *t;

	if (n != JSON_E_NOMEM)
		return n;
	n = json_parse(js, len, NULL, 0, NULL);
	if (n <= 0)
		return n;
	t = realloc(b->t, sizeof(*t) * (size_t)n);
	if (!t)
		return JSON_E_NOMEM;
	b->t = t;
	b->cap = (uint32_t)n;
	return json_parse(js, len, b->t, b->cap, NULL);
}

void k8s_tokens_free(struct k8s_tokens *b)
{
	free(b->t);
	b->t = NULL;
	b->cap = 0;
}

/* k8s_first returns the first element of the array at tokens[i], or -1 (not an array, empty). */
static int k8s_first(const struct json_token *t, int i)
{
	return i >= 0 && t[i].type == JSON_ARRAY ? json_first(t, i) : -1;
}

/* k8s_copy decodes the string at tokens[i] into out; an absent value leaves it empty. */
static int k8s_copy(const char *js, const struct json_token *t, int i, char *out, size_t cap)
{
	out[0] = '\0';
	if (i < 0 || t[i].type == JSON_NULL)
		return 0;
	return json_string(js, t, i, out, cap) < 0 ? -1 : 0;
}

static enum k8s_phase k8s_phase_of(const char *s)
{
	if (strcmp(s, "Pending") == 0)
		return K8S_PHASE_PENDING;
	if (strcmp(s, "Running") == 0)
		return K8S_PHASE_RUNNING;
	if (strcmp(s, "Succeeded") == 0)
		return K8S_PHASE_SUCCEEDED;
	if (strcmp(s, "Failed") == 0)
		return K8S_PHASE_FAILED;
	return K8S_PHASE_UNKNOWN;
}

static void k8s_add_ip(uint8_t ips[][16], int *n, const char *s)
{
	uint8_t a[16];

	if (*n >= K8S_MAX_IPS || endpoint_parse_address(s, a, NULL) != 0)
		return;
	for (int k = 0; k < *n; k++)
		if (memcmp(ips[k], a, 16) == 0)
			return;
	memcpy(ips[(*n)++], a, 16);
}

/* k8s_digit_suffix returns where a trailing -<min..max digits> starts in name, or 0. */
static size_t k8s_digit_suffix(const char *name, size_t min, size_t max)
{
	size_t n = strlen(name), d = 0;

	while (d < n && name[n - 1 - d] >= '0' && name[n - 1 - d] <= '9')
		d++;
	if (d < min || d > max || d + 1 >= n || name[n - 1 - d] != '-')
		return 0;
	return n - 1 - d;
}

/* k8s_workload applies the owner-reference rules to pod (see objects.h). */
static int k8s_workload(const char *js, const struct json_token *t, int meta, struct k8s_pod *pod)
{
	int owners = json_get(js, t, meta, "ownerReferences"), owner = -1;
	char gen[K8S_NAME_MAX], hash[K8S_NAME_MAX], kind[K8S_KIND_MAX], name[K8S_NAME_MAX];

	if (k8s_copy(js, t, json_get(js, t, meta, "generateName"), gen, sizeof(gen)) ||
	    k8s_copy(js, t, json_path(js, t, meta, "labels", "pod-template-hash", NULL), hash,
		     sizeof(hash)))
		return -1;
	/* The controller owner, else the first owner. */
	for (int o = k8s_first(t, owners); o >= 0; o = json_next(t, owners, o)) {
		int c = json_get(js, t, o, "controller");
		if (owner < 0)
			owner = o;
		if (c >= 0 && t[c].type == JSON_TRUE) {
			owner = o;
			break;
		}
	}
	if (owner < 0) {
		snprintf(pod->workload_kind, sizeof(pod->workload_kind), "Pod");
		memcpy(pod->workload, pod->name, sizeof(pod->workload));
		return 0;
	}
	if (k8s_copy(js, t, json_get(js, t, owner, "kind"), kind, sizeof(kind)) ||
	    k8s_copy(js, t, json_get(js, t, owner, "name"), name, sizeof(name)) || !kind[0] ||
	    !name[0])
		return -1;
	if (gen[0] && strcmp(kind, "ReplicaSet") == 0 && hash[0]) {
		size_t n = strlen(name), h = strlen(hash);
		if (n > h + 1 && name[n - h - 1] == '-' && strcmp(name + n - h, hash) == 0) {
			snprintf(pod->workload_kind, sizeof(pod->workload_kind), "Deployment");
			snprintf(pod->workload, sizeof(pod->workload), "%.*s", (int)(n - h - 1),
				 name);
			return 0;
		}
	}
	if (gen[0] && strcmp(kind, "Job") == 0) {
		size_t cut = k8s_digit_suffix(name, 8, 10);
		if (cut) {
			snprintf(pod->workload_kind, sizeof(pod->workload_kind), "CronJob");
			snprintf(pod->workload, sizeof(pod->workload), "%.*s", (int)cut, name);
			return 0;
		}
	}
	memcpy(pod->workload_kind, kind, sizeof(pod->workload_kind));
	memcpy(pod->workload, name, sizeof(pod->workload));
	return 0;
}

int k8s_pod_decode(const char *js, const struct json_token *t, int obj, struct k8s_pod *pod)
{
	int meta = json_get(js, t, obj, "metadata"), spec = json_get(js, t, obj, "spec");
	int status = json_get(js, t, obj, "status"), hn, ips;
	char phase[32], ip[64];

	memset(pod, 0, sizeof(*pod));
	if (meta < 0 || k8s_copy(js, t, json_get(js, t, meta, "uid"), pod->uid, sizeof(pod->uid)) ||
	    k8s_copy(js, t, json_get(js, t, meta, "namespace"), pod->namespace,
		     sizeof(pod->namespace)) ||
	    k8s_copy(js, t, json_get(js, t, meta, "name"), pod->name, sizeof(pod->name)) ||
	    !pod->uid[0] || !pod->namespace[0] || !pod->name[0])
		return -1;
	if (k8s_copy(js, t, json_get(js, t, spec, "nodeName"), pod->node, sizeof(pod->node)))
		return -1;
	hn = json_get(js, t, spec, "hostNetwork");
	pod->host_network = hn >= 0 && t[hn].type == JSON_TRUE;
	if (k8s_copy(js, t, json_get(js, t, status, "phase"), phase, sizeof(phase)))
		return -1;
	pod->phase = k8s_phase_of(phase);
	ips = json_get(js, t, status, "podIPs");
	for (int e = k8s_first(t, ips); e >= 0 && pod->n_ips < K8S_MAX_IPS;
	     e = json_next(t, ips, e))
		if (k8s_copy(js, t, json_get(js, t, e, "ip"), ip, sizeof(ip)) == 0)
			k8s_add_ip(pod->ips, &pod->n_ips, ip);
	if (k8s_copy(js, t, json_get(js, t, status, "podIP"), ip, sizeof(ip)) == 0 && ip[0])
		k8s_add_ip(pod->ips, &pod->n_ips, ip);
	return k8s_workload(js, t, meta, pod);
}

/* k8s_add_pod_cidr adds the CIDR string at token i (if it is one) to the node's pod CIDRs. */
static void k8s_add_pod_cidr(const char *js, const struct json_token *t, int i,
			     struct k8s_node *node)
{
	char cidr[64];
	uint8_t addr[16];
	unsigned int prefix;

	if (node->n_pod_cidrs >= K8S_MAX_IPS || k8s_copy(js, t, i, cidr, sizeof(cidr)) ||
	    !strchr(cidr, '/') || endpoint_parse_address(cidr, addr, &prefix) != 0)
		return;
	memcpy(node->pod_cidrs[node->n_pod_cidrs], addr, 16);
	node->pod_cidr_len[node->n_pod_cidrs++] = (uint8_t)prefix;
}

int k8s_node_decode(const char *js, const struct json_token *t, int obj, struct k8s_node *node)
{
	int meta = json_get(js, t, obj, "metadata"), labels = json_get(js, t, meta, "labels");
	int addrs = json_path(js, t, obj, "status", "addresses", NULL);
	int spec = json_get(js, t, obj, "spec"), cidrs = json_get(js, t, spec, "podCIDRs");
	int annotations = json_get(js, t, meta, "annotations");
	/*
	 * Where a node's host network connections to pods come from when they go through a
	 * tunnel device whose address is outside spec.podCIDRs (Calico's IP pools, Cilium's
	 * cluster-pool IPAM): its agent may connect from there (endpoint_add_node_source).
	 */
	static const char *const tunnel_keys[] = {
		"projectcalico.org/IPv4IPIPTunnelAddr",
		"projectcalico.org/IPv4VXLANTunnelAddr",
		"projectcalico.org/IPv6VXLANTunnelAddr",
		"projectcalico.org/IPv4WireguardInterfaceAddr",
		"network.cilium.io/ipv4-cilium-host",
		"network.cilium.io/ipv6-cilium-host",
		"io.cilium.network.ipv4-cilium-host",
		"io.cilium.network.ipv6-cilium-host",
	};
	static const char *const zone_keys[] = {"topology.kubernetes.io/zone",
						"failure-domain.beta.kubernetes.io/zone"};
	static const char *const region_keys[] = {"topology.kubernetes.io/region",
						  "failure-domain.beta.kubernetes.io/region"};

	memset(node, 0, sizeof(*node));
	if (k8s_copy(js, t, json_get(js, t, meta, "name"), node->name, sizeof(node->name)) ||
	    !node->name[0])
		return -1;
	for (int k = 0; k < 2 && !node->zone[0]; k++)
		if (k8s_copy(js, t, json_get(js, t, labels, zone_keys[k]), node->zone,
			     sizeof(node->zone)))
			return -1;
	for (int k = 0; k < 2 && !node->region[0]; k++)
		if (k8s_copy(js, t, json_get(js, t, labels, region_keys[k]), node->region,
			     sizeof(node->region)))
			return -1;
	if (!node->zone[0])
		snprintf(node->zone, sizeof(node->zone), "unknown");
	if (!node->region[0])
		snprintf(node->region, sizeof(node->region), "unknown");
	for (int a = k8s_first(t, addrs); a >= 0 && node->n_ips < K8S_MAX_IPS;
	     a = json_next(t, addrs, a)) {
		char type[32], ip[64];
		if (k8s_copy(js, t, json_get(js, t, a, "type"), type, sizeof(type)) ||
		    k8s_copy(js, t, json_get(js, t, a, "address"), ip, sizeof(ip)))
			continue;
		if (strcmp(type, "InternalIP") == 0 || strcmp(type, "ExternalIP") == 0)
			k8s_add_ip(node->ips, &node->n_ips, ip);
	}
	for (int a = k8s_first(t, cidrs); a >= 0; a = json_next(t, cidrs, a))
		k8s_add_pod_cidr(js, t, a, node);
	if (!node->n_pod_cidrs)
		k8s_add_pod_cidr(js, t, json_get(js, t, spec, "podCIDR"), node);
	for (size_t k = 0; k < sizeof(tunnel_keys) / sizeof(tunnel_keys[0]); k++) {
		char ip[64];
		char *slash;
		if (k8s_copy(js, t, json_get(js, t, annotations, tunnel_keys[k]), ip, sizeof(ip)) ||
		    !ip[0])
			continue;
		if ((slash = strchr(ip, '/')))
			*slash = '\0'; /* Calico's IPv4Address form, "10.0.0.5/24" */
		k8s_add_ip(node->tunnel_ips, &node->n_tunnel_ips, ip);
	}
	return 0;
}

int k8s_owns_ips(const char *node, int host_network, enum k8s_phase phase)
{
	return node[0] && !host_network && phase != K8S_PHASE_SUCCEEDED &&
	       phase != K8S_PHASE_FAILED;
}

int k8s_pod_owns_ips(const struct k8s_pod *pod)
{
	return k8s_owns_ips(pod->node, pod->host_network, pod->phase);
}

/* k8s_tokens parses a whole document into a malloc'd token array; NULL on error. */
static struct json_token *k8s_tokens(const char *js, size_t len, int *n, char *err, size_t err_len,
				     const char *what)
{
	size_t at = 0;
	struct json_token *t;

	*n = json_parse(js, len, NULL, 0, &at);
	if (*n < 0) {
		unsigned line, col;
		json_line_column(js, at, &line, &col);
		snprintf(err, err_len, "%s: line %u, column %u: %s", what, line, col,
			 json_error_string(*n));
		return NULL;
	}
	t = malloc(sizeof(*t) * (size_t)*n);
	if (!t || json_parse(js, len, t, (uint32_t)*n, NULL) != *n) {
		free(t);
		snprintf(err, err_len, "%s: out of memory", what);
		return NULL;
	}
	return t;
}

struct endpoint_index *k8s_index_from_lists(const char *nodes, size_t nodes_len, const char *pods,
					    size_t pods_len, char *err, size_t err_len)
{
	struct endpoint_index *x = endpoint_index_new();
	struct json_token *nt = NULL, *pt = NULL;
	int nn, pn, items;
	struct k8s_node node;
	struct k8s_pod *pod = malloc(sizeof(*pod));

	if (!x || !pod)
		goto fail;
	nt = k8s_tokens(nodes, nodes_len, &nn, err, err_len, "NodeList");
	pt = nt ? k8s_tokens(pods, pods_len, &pn, err, err_len, "PodList") : NULL;
	if (!pt)
		goto fail;
	items = json_get(nodes, nt, 0, "items");
	for (int k = k8s_first(nt, items); k >= 0; k = json_next(nt, items, k)) {
		struct endpoint *e;
		if (k8s_node_decode(nodes, nt, k, &node) != 0)
			continue;
		e = endpoint_add_node(x, node.name, node.zone, node.region);
		for (int i = 0; e && i < node.n_ips; i++)
			endpoint_add_address(x, node.ips[i], e);
		for (int i = 0; e && i < node.n_pod_cidrs; i++)
			endpoint_add_node_cidr(x, node.pod_cidrs[i], node.pod_cidr_len[i], e);
		for (int i = 0; e && i < node.n_tunnel_ips; i++)
			endpoint_add_node_source(x, node.tunnel_ips[i], e);
	}
	items = json_get(pods, pt, 0, "items");
	for (int k = k8s_first(pt, items); k >= 0; k = json_next(pt, items, k)) {
		struct endpoint *e;
		if (k8s_pod_decode(pods, pt, k, pod) != 0 || !k8s_pod_owns_ips(pod))
			continue;
		if (!endpoint_node(x, pod->node))
			endpoint_add_node(x, pod->node, "unknown", "unknown");
		e = endpoint_add_pod(x, pod->namespace, pod->name, pod->workload,
				     pod->workload_kind, pod->node);
		for (int i = 0; e && i < pod->n_ips; i++)
			endpoint_add_address(x, pod->ips[i], e);
	}
	free(nt);
	free(pt);
	free(pod);
	return x;
fail:
	free(nt);
	free(pt);
	free(pod);
	endpoint_index_free(x);
	return NULL;
}
