/* SPDX-License-Identifier: Apache-2.0 */
/*
 * endpoint.h: the endpoint index: what an IPv4 or IPv6 address is (a pod, a node, or an
 * external network) and where it lives (node, zone, region). Addresses are 16 bytes, IPv4 as
 * IPv4-mapped IPv6, as on the wire. An index is built whole and then only read; a new source
 * of truth (a reloaded topology file) builds a new index and the server swaps it in.
 */
#ifndef KUBEZONNET_ENDPOINT_H
#define KUBEZONNET_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

enum endpoint_kind {
	ENDPOINT_POD = 1,
	ENDPOINT_NODE = 2, /* a node's own address; hostNetwork pods resolve here too */
	ENDPOINT_EXTERNAL = 3,
};

struct endpoint {
	enum endpoint_kind kind;
	const char *namespace; /* pods only */
	const char *name;      /* pod, node or external network name */
	const char *workload;  /* pods: the owning workload (the pod itself if none) */
	const char *workload_kind;
	const struct endpoint *node; /* pods: their node; nodes: themselves; externals: NULL */
	const char *zone;	     /* NULL when unknown (externals without a zone) */
	const char *region;	     /* NULL when unknown */
	void *user;		     /* the server's per-endpoint state (metric series) */
};

struct endpoint_index;

/* endpoint_index_new returns an empty index, or NULL when out of memory. */
struct endpoint_index *endpoint_index_new(void);

/* endpoint_index_free frees the index and every string it copied. NULL is allowed. */
void endpoint_index_free(struct endpoint_index *index);

/*
 * endpoint_add_node adds a node with its addresses. Strings are copied; zone and region may
 * be NULL. Returns the endpoint, or NULL when out of memory or the name is already a node.
 */
struct endpoint *endpoint_add_node(struct endpoint_index *index, const char *name, const char *zone,
				   const char *region);

/*
 * endpoint_add_pod adds a pod on node (which must have been added). workload may be NULL
 * (the pod is its own workload, of kind "Pod"). Returns the endpoint, or NULL.
 */
struct endpoint *endpoint_add_pod(struct endpoint_index *index, const char *namespace,
				  const char *name, const char *workload, const char *workload_kind,
				  const char *node);

/* endpoint_add_external adds an external network (its CIDRs come through endpoint_add_cidr). */
struct endpoint *endpoint_add_external(struct endpoint_index *index, const char *name,
				       const char *zone, const char *region);

/*
 * endpoint_add_address maps one address to e. A later mapping of the same address replaces
 * the earlier one. Returns 0 or -ENOMEM.
 */
int endpoint_add_address(struct endpoint_index *index, const uint8_t addr[16], struct endpoint *e);

/* endpoint_add_cidr maps addr/prefix_len (prefix counted on the 16-byte form) to e. */
int endpoint_add_cidr(struct endpoint_index *index, const uint8_t addr[16], unsigned int prefix_len,
		      struct endpoint *e);

/*
 * endpoint_add_node_source records addr as an address node's agent may connect from besides
 * the node's own: a bridge or tunnel device of the node, to which its connections to a pod
 * are source-NATed. It says who a connection comes from (endpoint_is_node_address), not what
 * an address is: endpoint_lookup does not use it. Returns 0, -EINVAL (node is not a node) or
 * -ENOMEM.
 */
int endpoint_add_node_source(struct endpoint_index *index, const uint8_t addr[16],
			     struct endpoint *node);

/*
 * endpoint_add_node_cidr records the first two addresses of the node's pod CIDR
 * addr/prefix_len, the network address and the first host address, as sources of the node
 * (endpoint_add_node_source): the ones its bridge and tunnel devices take (flannel.1 and
 * cni0, kubenet's cbr0). Not the rest of the CIDR: a pod could answer for an unused address
 * there (ARP), but not for one the node itself holds. Returns 0, -EINVAL or -ENOMEM.
 */
int endpoint_add_node_cidr(struct endpoint_index *index, const uint8_t addr[16],
			   unsigned int prefix_len, struct endpoint *node);

/*
 * endpoint_is_node_address returns 1 when addr is node's own: mapped to node exactly, or
 * mapped to nothing exactly and one of node's sources (endpoint_add_node_source). 0
 * otherwise, and for a NULL or non-node endpoint.
 */
int endpoint_is_node_address(const struct endpoint_index *index, const struct endpoint *node,
			     const uint8_t addr[16]);

/*
 * endpoint_lookup returns the endpoint of addr: an exact address first, then the longest
 * matching CIDR, else NULL.
 */
const struct endpoint *endpoint_lookup(const struct endpoint_index *index, const uint8_t addr[16]);

/* endpoint_node returns the node named name, or NULL. */
const struct endpoint *endpoint_node(const struct endpoint_index *index, const char *name);

/* endpoint_count returns how many endpoints of kind the index holds. */
size_t endpoint_count(const struct endpoint_index *index, enum endpoint_kind kind);

/*
 * endpoint_index_merge adds to dst what src knows and dst does not: src's nodes that dst lacks
 * (by name), its pods and external networks, its addresses that dst does not map, and all
 * its CIDRs. What dst already maps stays (the Kubernetes API wins over a topology file).
 * src's endpoints' user fields are overwritten: src must not be a live index. 0 or -ENOMEM.
 */
int endpoint_index_merge(struct endpoint_index *dst, struct endpoint_index *src);

/* endpoint_each calls fn for every endpoint. */
void endpoint_each(struct endpoint_index *index, void (*fn)(struct endpoint *e, void *arg),
		   void *arg);

/*
 * endpoint_parse_address parses an IPv4 or IPv6 address (optionally "/prefix") into 16 bytes
 * and a prefix length on that form (IPv4 /24 is 120). Returns 0, or -1 when it is not one.
 */
int endpoint_parse_address(const char *s, uint8_t addr[16], unsigned int *prefix_len);

/* endpoint_format_address writes addr as text (IPv4 for mapped addresses) into buf. */
void endpoint_format_address(const uint8_t addr[16], char *buf, size_t len);

enum traffic_class {
	TRAFFIC_SAME_ZONE,
	TRAFFIC_CROSS_ZONE,   /* same region (or regions unknown), different zones */
	TRAFFIC_CROSS_REGION, /* different regions */
	TRAFFIC_EXTERNAL,     /* to or from an external network with no zone */
	TRAFFIC_UNKNOWN,      /* an address the index does not know */
	TRAFFIC_CLASSES,
};

enum traffic_direction { TRAFFIC_SENT, TRAFFIC_RECEIVED };

struct attribution {
	int counted; /* 0: another node's agent reports these bytes; ignore this record */
	enum traffic_class class;
	enum traffic_direction direction;
	const struct endpoint *src, *dst; /* NULL when unknown */
	const struct endpoint *subject;	  /* the pod or node the bytes belong to, or NULL */
	const char *unknown_reason;	  /* TRAFFIC_UNKNOWN: src_unknown, dst_unknown, ... */
};

/*
 * endpoint_attribute decides what a record that the agent on node reported means. Each
 * packet between pods on different nodes passes POSTROUTING on both nodes: it counts only
 * where its source lives (direction sent). Traffic from outside every node (an external
 * network or an unknown address) to a pod or node counts where it is received (direction
 * received). Traffic between two unknown addresses counts where it is seen.
 */
void endpoint_attribute(const struct endpoint_index *index, const char *node, const uint8_t src[16],
			const uint8_t dst[16], struct attribution *out);

/*
 * endpoint_attribute_sent is endpoint_attribute for a record of packets the reporting node
 * sent itself: a tunnel's outer packets (the record has encapsulation bytes), or what a socket
 * under the node's cgroup sent (the agent's socket-level hook). An unknown source is then the
 * reporting node itself, whose host network sends into a tunnel from the tunnel device's own
 * address (flannel.1, tunl0, cilium_host), which is no node address.
 */
void endpoint_attribute_sent(const struct endpoint_index *index, const char *node,
			     const uint8_t src[16], const uint8_t dst[16], struct attribution *out);

/* traffic_class_name returns same_zone, cross_zone, cross_region, external or unknown. */
const char *traffic_class_name(enum traffic_class c);

#endif /* KUBEZONNET_ENDPOINT_H */
