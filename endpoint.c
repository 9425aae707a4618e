/* SPDX-License-Identifier: Apache-2.0 */
/*
 * endpoint.c: see endpoint.h. Endpoints live in blocks; strings are interned (a namespace, a
 * zone or a node name is stored once however many pods share it); addresses sit in an
 * open-addressing table; external CIDRs in a list kept longest prefix first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "hash.h"

#define ENDPOINT_BLOCK 1024

struct endpoint_block {
	struct endpoint_block *next;
	size_t used;
	struct endpoint items[ENDPOINT_BLOCK];
};

struct endpoint_slot {
	uint8_t addr[16];
	struct endpoint *e; /* NULL: empty slot */
};

struct endpoint_cidr {
	uint8_t addr[16];
	unsigned int prefix_len;
	struct endpoint *e;
};

struct endpoint_index {
	struct hash_key key; /* names and addresses are chosen by others: keyed hashes */
	struct endpoint_block *blocks;
	char **strings; /* interned strings, open addressing */
	size_t strings_cap, strings_len;
	struct endpoint_slot *slots;
	size_t slots_cap, slots_len;
	struct endpoint_cidr *cidrs;
	size_t cidrs_len, cidrs_cap;
	/* where nodes' agents may connect from besides their own addresses (bridge and tunnel
	 * devices): who a node is (endpoint_is_node_address), not what addresses are */
	struct endpoint_slot *sources;
	size_t sources_len, sources_cap;
	struct endpoint **nodes; /* by name, open addressing */
	size_t nodes_cap, nodes_len;
	size_t counts[4];
};

static uint64_t endpoint_hash(const struct endpoint_index *x, const char *s)
{
	return hash_siphash13(&x->key, s, strlen(s));
}

/*
 * endpoint_hash_addr hashes an address: the hot path, two per record. An IPv4 address (the
 * IPv4-mapped form) hashes its 4 bytes, 4 SipHash rounds rather than 6 for all 16.
 */
static uint64_t endpoint_hash_addr(const struct endpoint_index *x, const uint8_t addr[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (memcmp(addr, mapped, 12) == 0)
		return hash_siphash13_4(&x->key, addr + 12);
	return hash_siphash13_16(&x->key, addr);
}

/* endpoint_intern returns the pool's copy of s (NULL stays NULL), or NULL on ENOMEM. */
static const char *endpoint_intern(struct endpoint_index *x, const char *s, int *oom)
{
	size_t i;

	if (!s)
		return NULL;
	if (x->strings_len * 2 >= x->strings_cap) {
		size_t cap = x->strings_cap ? x->strings_cap * 2 : 256;
		char **t = calloc(cap, sizeof(*t));
		if (!t) {
			*oom = 1;
			return NULL;
		}
		for (size_t k = 0; k < x->strings_cap; k++) {
			if (!x->strings[k])
				continue;
			i = endpoint_hash(x, x->strings[k]) & (cap - 1);
			while (t[i])
				i = (i + 1) & (cap - 1);
			t[i] = x->strings[k];
		}
		free(x->strings);
		x->strings = t;
		x->strings_cap = cap;
	}
	i = endpoint_hash(x, s) & (x->strings_cap - 1);
	while (x->strings[i]) {
		if (strcmp(x->strings[i], s) == 0)
			return x->strings[i];
		i = (i + 1) & (x->strings_cap - 1);
	}
	x->strings[i] = strdup(s);
	if (!x->strings[i]) {
		*oom = 1;
		return NULL;
	}
	x->strings_len++;
	return x->strings[i];
}

struct endpoint_index *endpoint_index_new(void)
{
	struct endpoint_index *x = calloc(1, sizeof(*x));

	if (x)
		x->key = *hash_process_key();
	return x;
}

void endpoint_index_free(struct endpoint_index *x)
{
	if (!x)
		return;
	while (x->blocks) {
		struct endpoint_block *b = x->blocks;
		x->blocks = b->next;
		free(b);
	}
	for (size_t i = 0; i < x->strings_cap; i++)
		free(x->strings[i]);
	free(x->strings);
	free(x->slots);
	free(x->cidrs);
	free(x->sources);
	free(x->nodes);
	free(x);
}

static struct endpoint *endpoint_new(struct endpoint_index *x, enum endpoint_kind kind)
{
	if (!x->blocks || x->blocks->used == ENDPOINT_BLOCK) {
		struct endpoint_block *b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		b->next = x->blocks;
		x->blocks = b;
	}
	struct endpoint *e = &x->blocks->items[x->blocks->used++];
	e->kind = kind;
	x->counts[kind]++;
	return e;
}

const struct endpoint *endpoint_node(const struct endpoint_index *x, const char *name)
{
	size_t i;

	if (!x->nodes_cap)
		return NULL;
	i = endpoint_hash(x, name) & (x->nodes_cap - 1);
	while (x->nodes[i]) {
		if (strcmp(x->nodes[i]->name, name) == 0)
			return x->nodes[i];
		i = (i + 1) & (x->nodes_cap - 1);
	}
	return NULL;
}

static int endpoint_node_put(struct endpoint_index *x, struct endpoint *e)
{
	size_t i;

	if ((x->nodes_len + 1) * 2 > x->nodes_cap) {
		size_t cap = x->nodes_cap ? x->nodes_cap * 2 : 64;
		struct endpoint **t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t k = 0; k < x->nodes_cap; k++) {
			if (!x->nodes[k])
				continue;
			i = endpoint_hash(x, x->nodes[k]->name) & (cap - 1);
			while (t[i])
				i = (i + 1) & (cap - 1);
			t[i] = x->nodes[k];
		}
		free(x->nodes);
		x->nodes = t;
		x->nodes_cap = cap;
	}
	i = endpoint_hash(x, e->name) & (x->nodes_cap - 1);
	while (x->nodes[i])
		i = (i + 1) & (x->nodes_cap - 1);
	x->nodes[i] = e;
	x->nodes_len++;
	return 0;
}

struct endpoint *endpoint_add_node(struct endpoint_index *x, const char *name, const char *zone,
				   const char *region)
{
	struct endpoint *e;
	int oom = 0;

	if (endpoint_node(x, name))
		return NULL;
	e = endpoint_new(x, ENDPOINT_NODE);
	if (!e)
		return NULL;
	e->name = endpoint_intern(x, name, &oom);
	e->zone = endpoint_intern(x, zone, &oom);
	e->region = endpoint_intern(x, region, &oom);
	e->node = e;
	if (oom || endpoint_node_put(x, e) != 0)
		return NULL;
	return e;
}

struct endpoint *endpoint_add_pod(struct endpoint_index *x, const char *namespace, const char *name,
				  const char *workload, const char *workload_kind, const char *node)
{
	const struct endpoint *n = endpoint_node(x, node);
	struct endpoint *e;
	int oom = 0;

	if (!n)
		return NULL;
	e = endpoint_new(x, ENDPOINT_POD);
	if (!e)
		return NULL;
	e->namespace = endpoint_intern(x, namespace, &oom);
	e->name = endpoint_intern(x, name, &oom);
	e->workload = endpoint_intern(x, workload ? workload : name, &oom);
	e->workload_kind = endpoint_intern(x, workload ? workload_kind : "Pod", &oom);
	e->node = n;
	e->zone = n->zone;
	e->region = n->region;
	return oom ? NULL : e;
}

struct endpoint *endpoint_add_external(struct endpoint_index *x, const char *name, const char *zone,
				       const char *region)
{
	struct endpoint *e = endpoint_new(x, ENDPOINT_EXTERNAL);
	int oom = 0;

	if (!e)
		return NULL;
	e->name = endpoint_intern(x, name, &oom);
	e->zone = endpoint_intern(x, zone, &oom);
	e->region = endpoint_intern(x, region, &oom);
	return oom ? NULL : e;
}

int endpoint_add_address(struct endpoint_index *x, const uint8_t addr[16], struct endpoint *e)
{
	size_t i;

	if ((x->slots_len + 1) * 2 > x->slots_cap) {
		size_t cap = x->slots_cap ? x->slots_cap * 2 : 1024;
		struct endpoint_slot *t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t k = 0; k < x->slots_cap; k++) {
			if (!x->slots[k].e)
				continue;
			i = endpoint_hash_addr(x, x->slots[k].addr) & (cap - 1);
			while (t[i].e)
				i = (i + 1) & (cap - 1);
			t[i] = x->slots[k];
		}
		free(x->slots);
		x->slots = t;
		x->slots_cap = cap;
	}
	i = endpoint_hash_addr(x, addr) & (x->slots_cap - 1);
	while (x->slots[i].e && memcmp(x->slots[i].addr, addr, 16) != 0)
		i = (i + 1) & (x->slots_cap - 1);
	if (!x->slots[i].e)
		x->slots_len++;
	memcpy(x->slots[i].addr, addr, 16);
	x->slots[i].e = e;
	return 0;
}

/* endpoint_cidr_insert adds addr/prefix_len to the list, longest prefixes first. */
static int endpoint_cidr_insert(struct endpoint_cidr **list, size_t *len, size_t *cap,
				const uint8_t addr[16], unsigned int prefix_len, struct endpoint *e)
{
	size_t i;

	if (prefix_len > 128)
		return -EINVAL;
	if (*len == *cap) {
		size_t n = *cap ? *cap * 2 : 16;
		struct endpoint_cidr *t = realloc(*list, n * sizeof(*t));
		if (!t)
			return -ENOMEM;
		*list = t;
		*cap = n;
	}
	/* Insert keeping the longest prefixes first: the first match is the longest. */
	for (i = *len; i > 0 && (*list)[i - 1].prefix_len < prefix_len; i--)
		(*list)[i] = (*list)[i - 1];
	memset(&(*list)[i], 0, sizeof((*list)[i]));
	for (unsigned int b = 0; b < prefix_len; b++)
		(*list)[i].addr[b / 8] |= addr[b / 8] & (0x80 >> (b % 8));
	(*list)[i].prefix_len = prefix_len;
	(*list)[i].e = e;
	(*len)++;
	return 0;
}

int endpoint_add_cidr(struct endpoint_index *x, const uint8_t addr[16], unsigned int prefix_len,
		      struct endpoint *e)
{
	return endpoint_cidr_insert(&x->cidrs, &x->cidrs_len, &x->cidrs_cap, addr, prefix_len, e);
}

int endpoint_add_node_source(struct endpoint_index *x, const uint8_t addr[16],
			     struct endpoint *node)
{
	if (!node || node->kind != ENDPOINT_NODE)
		return -EINVAL;
	if (x->sources_len == x->sources_cap) {
		size_t cap = x->sources_cap ? x->sources_cap * 2 : 16;
		struct endpoint_slot *t = realloc(x->sources, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		x->sources = t;
		x->sources_cap = cap;
	}
	memcpy(x->sources[x->sources_len].addr, addr, 16);
	x->sources[x->sources_len++].e = node;
	return 0;
}

int endpoint_add_node_cidr(struct endpoint_index *x, const uint8_t addr[16],
			   unsigned int prefix_len, struct endpoint *node)
{
	uint8_t a[16] = {0};
	int rc;

	if (prefix_len > 128)
		return -EINVAL;
	if (prefix_len > 126)
		return 0; /* a CIDR of one or two addresses: no device's among them */
	for (unsigned int b = 0; b < prefix_len; b++)
		a[b / 8] |= addr[b / 8] & (0x80 >> (b % 8));
	rc = endpoint_add_node_source(x, a, node); /* the network address (flannel.1) */
	a[15] |= 1;
	return rc ? rc : endpoint_add_node_source(x, a, node); /* the first host (cni0) */
}

static int endpoint_cidr_match(const struct endpoint_cidr *c, const uint8_t addr[16])
{
	unsigned int full = c->prefix_len / 8, rest = c->prefix_len % 8;

	if (memcmp(c->addr, addr, full) != 0)
		return 0;
	return rest == 0 || ((addr[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* endpoint_exact returns the endpoint of exactly addr, or NULL. */
static struct endpoint *endpoint_exact(const struct endpoint_index *x, const uint8_t addr[16])
{
	if (x->slots_cap) {
		size_t i = endpoint_hash_addr(x, addr) & (x->slots_cap - 1);
		while (x->slots[i].e) {
			if (memcmp(x->slots[i].addr, addr, 16) == 0)
				return x->slots[i].e;
			i = (i + 1) & (x->slots_cap - 1);
		}
	}
	return NULL;
}

const struct endpoint *endpoint_lookup(const struct endpoint_index *x, const uint8_t addr[16])
{
	const struct endpoint *e = endpoint_exact(x, addr);

	if (e)
		return e;
	for (size_t i = 0; i < x->cidrs_len; i++)
		if (endpoint_cidr_match(&x->cidrs[i], addr))
			return x->cidrs[i].e;
	return NULL;
}

int endpoint_is_node_address(const struct endpoint_index *x, const struct endpoint *node,
			     const uint8_t addr[16])
{
	const struct endpoint *e = endpoint_exact(x, addr);

	if (!node || node->kind != ENDPOINT_NODE)
		return 0;
	if (e)
		return e == node;
	for (size_t i = 0; i < x->sources_len; i++)
		if (x->sources[i].e == node && memcmp(x->sources[i].addr, addr, 16) == 0)
			return 1;
	return 0;
}

size_t endpoint_count(const struct endpoint_index *x, enum endpoint_kind kind)
{
	return kind >= ENDPOINT_POD && kind <= ENDPOINT_EXTERNAL ? x->counts[kind] : 0;
}

void endpoint_each(struct endpoint_index *x, void (*fn)(struct endpoint *e, void *arg), void *arg)
{
	for (struct endpoint_block *b = x->blocks; b; b = b->next)
		for (size_t i = 0; i < b->used; i++)
			fn(&b->items[i], arg);
}

int endpoint_parse_address(const char *s, uint8_t addr[16], unsigned int *prefix_len)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long bits = 128;
	int v4;

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(addr, 0, 16);
	v4 = inet_pton(AF_INET, buf, addr + 12) == 1;
	if (v4)
		addr[10] = addr[11] = 0xff;
	else if (inet_pton(AF_INET6, buf, addr) != 1)
		return -1;
	if (slash) {
		char *end;
		bits = strtoul(slash + 1, &end, 10);
		if (end == slash + 1 || *end || bits > (v4 ? 32u : 128u))
			return -1;
		if (v4)
			bits += 96;
	}
	if (prefix_len)
		*prefix_len = (unsigned int)bits;
	else if (slash)
		return -1;
	return 0;
}

void endpoint_format_address(const uint8_t addr[16], char *buf, size_t len)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (memcmp(addr, mapped, 12) == 0)
		inet_ntop(AF_INET, addr + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, addr, buf, (socklen_t)len);
}

const char *traffic_class_name(enum traffic_class c)
{
	static const char *const names[TRAFFIC_CLASSES] = {"same_zone", "cross_zone",
							   "cross_region", "external", "unknown"};
	return c < TRAFFIC_CLASSES ? names[c] : "unknown";
}

static int endpoint_on_node(const struct endpoint *e, const char *node)
{
	return e && e->node && strcmp(e->node->name, node) == 0;
}

/* endpoint_attribute_ends attributes a record between the endpoints s and d (NULL: unknown). */
static void endpoint_attribute_ends(const char *node, const struct endpoint *s,
				    const struct endpoint *d, struct attribution *out)
{
	*out = (struct attribution){.src = s, .dst = d};
	if (endpoint_on_node(s, node)) {
		out->counted = 1;
		out->direction = TRAFFIC_SENT;
		out->subject = s;
	} else if ((!s || !s->node) && endpoint_on_node(d, node)) {
		out->counted = 1;
		out->direction = TRAFFIC_RECEIVED;
		out->subject = d;
	} else if (!s && !d) {
		out->counted = 1;
	}
	if (!s || !d) {
		out->class = TRAFFIC_UNKNOWN;
		out->unknown_reason = !s && !d ? "src_and_dst_unknown"
				      : !s     ? "src_unknown"
					       : "dst_unknown";
	} else if (s->region && d->region && strcmp(s->region, d->region) != 0) {
		out->class = TRAFFIC_CROSS_REGION;
	} else if (!s->zone || !d->zone) {
		out->class = TRAFFIC_EXTERNAL;
	} else if (strcmp(s->zone, d->zone) == 0) {
		out->class = TRAFFIC_SAME_ZONE;
	} else {
		out->class = TRAFFIC_CROSS_ZONE;
	}
}

void endpoint_attribute(const struct endpoint_index *x, const char *node, const uint8_t src[16],
			const uint8_t dst[16], struct attribution *out)
{
	endpoint_attribute_ends(node, endpoint_lookup(x, src), endpoint_lookup(x, dst), out);
}

void endpoint_attribute_sent(const struct endpoint_index *x, const char *node,
			     const uint8_t src[16], const uint8_t dst[16], struct attribution *out)
{
	const struct endpoint *s = endpoint_lookup(x, src);

	if (!s)
		s = endpoint_node(x, node);
	endpoint_attribute_ends(node, s, endpoint_lookup(x, dst), out);
}

/* endpoint_copy adds a copy of src's endpoint e to dst (pods onto dst's node of that name). */
static struct endpoint *endpoint_copy(struct endpoint_index *dst, const struct endpoint *e)
{
	switch (e->kind) {
	case ENDPOINT_NODE: {
		struct endpoint *n = (struct endpoint *)endpoint_node(dst, e->name);
		return n ? n : endpoint_add_node(dst, e->name, e->zone, e->region);
	}
	case ENDPOINT_POD:
		if (!endpoint_node(dst, e->node->name) &&
		    !endpoint_add_node(dst, e->node->name, e->node->zone, e->node->region))
			return NULL;
		return endpoint_add_pod(dst, e->namespace, e->name, e->workload, e->workload_kind,
					e->node->name);
	default:
		return endpoint_add_external(dst, e->name, e->zone, e->region);
	}
}

int endpoint_index_merge(struct endpoint_index *dst, struct endpoint_index *src)
{
	/* Nodes first, so that pods find theirs; src's user fields map to dst's endpoints. */
	for (int pass = 0; pass < 2; pass++)
		for (struct endpoint_block *b = src->blocks; b; b = b->next)
			for (size_t i = 0; i < b->used; i++) {
				struct endpoint *e = &b->items[i];
				if ((e->kind == ENDPOINT_NODE) != (pass == 0))
					continue;
				if (!(e->user = endpoint_copy(dst, e)))
					return -ENOMEM;
			}
	for (size_t i = 0; i < src->slots_cap; i++)
		if (src->slots[i].e && !endpoint_exact(dst, src->slots[i].addr) &&
		    endpoint_add_address(dst, src->slots[i].addr, src->slots[i].e->user) != 0)
			return -ENOMEM;
	for (size_t i = 0; i < src->cidrs_len; i++)
		if (endpoint_add_cidr(dst, src->cidrs[i].addr, src->cidrs[i].prefix_len,
				      src->cidrs[i].e->user) != 0)
			return -ENOMEM;
	for (size_t i = 0; i < src->sources_len; i++)
		if (endpoint_add_node_source(dst, src->sources[i].addr, src->sources[i].e->user) !=
		    0)
			return -ENOMEM;
	return 0;
}
