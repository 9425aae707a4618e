/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * kubezonnet.bpf.c: counts bytes and packets per flow at netfilter POSTROUTING, for IPv4 and
 * IPv6, and always lets the packet through.
 *
 * Lossless draining: the program adds into whichever of two flow maps kzn_active[0] points
 * at. The agent points it at the other (empty) map; that map-in-map update returns only after
 * an RCU grace period, so when it returns no running program still holds the old map, and
 * the agent reads it at leisure while new packets go to the new one. Nothing added during a
 * drain is missed or counted twice.
 *
 * No silent loss: a new flow is inserted with BPF_NOEXIST and looked up again on -EEXIST (two
 * CPUs inserting the same new flow both count); when the map is full, the bytes and packets
 * go to the per-CPU kzn_loss counters, which the agent reports.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "kubezonnet.h"

#define EEXIST 17

#define IPPROTO_HOPOPTS	 0
#define IPPROTO_ICMP	 1
#define IPPROTO_TCP	 6
#define IPPROTO_UDP	 17
#define IPPROTO_ROUTING	 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH	 51
#define IPPROTO_DSTOPTS	 60
#define IPPROTO_SCTP	 132
#define IPPROTO_MH	 135

extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *ptr, __u32 offset, void *buffer,
			      __u32 buffer__szk) __ksym;

/*
 * A flow map. Written as a macro because the inner map template of kzn_active needs its own
 * copy; key and value are given by size, since clang 14 emits only forward declarations for
 * struct types reached through a nested map definition, which libbpf cannot size.
 */
#define KZN_FLOWS_MAP(...)                                                                         \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, KZN_MAP_ENTRIES_DEFAULT); /* the agent sets --map-entries */   \
		__uint(key_size, sizeof(struct kzn_flow_key));                                     \
		__uint(value_size, sizeof(struct kzn_flow_value));                                 \
		__VA_ARGS__                                                                        \
	}

KZN_FLOWS_MAP(__uint(pinning, LIBBPF_PIN_BY_NAME);) kzn_flows_a SEC(".maps");
KZN_FLOWS_MAP(__uint(pinning, LIBBPF_PIN_BY_NAME);) kzn_flows_b SEC(".maps");

/* Slot 0 holds the flow map packets are added to now. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, KZN_FLOWS_MAP());
} kzn_active SEC(".maps");

/* Cumulative per-CPU counts of what could not be stored under a flow (enum kzn_loss_slot). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KZN_LOSS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kzn_loss SEC(".maps");

/* The agent's pinned state (struct kzn_agent_state); unused by the program. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kzn_agent_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kzn_state SEC(".maps");

/* Set by the agent before load: 0 disables the GSO segment expansion (see count_gso). */
const volatile __u32 kzn_count_gso = 1;

static __always_inline void loss_add(__u32 slot, __u64 packets, __u64 bytes)
{
	__u64 *v = bpf_map_lookup_elem(&kzn_loss, &slot);

	if (v)
		*v += packets;
	slot++;
	v = bpf_map_lookup_elem(&kzn_loss, &slot);
	if (v)
		*v += bytes;
}

/* L4 ports and header length at off; port stays 0 when there is none to read. */
static __always_inline void read_l4(const struct bpf_dynptr *ptr, __u32 off, __u8 protocol,
				    struct kzn_flow_key *key, __u32 *l4_len)
{
	__u8 buf[20];
	__u8 *h;

	switch (protocol) {
	case IPPROTO_TCP:
		h = bpf_dynptr_slice(ptr, off, buf, 20);
		if (!h)
			return;
		*l4_len = (h[12] >> 4) * 4;
		break;
	case IPPROTO_UDP:
		h = bpf_dynptr_slice(ptr, off, buf, 8);
		if (!h)
			return;
		*l4_len = 8;
		break;
	case IPPROTO_SCTP:
		h = bpf_dynptr_slice(ptr, off, buf, 4);
		if (!h)
			return;
		*l4_len = 12;
		break;
	default:
		return;
	}
	__u16 sport = (__u16)(h[0] << 8 | h[1]);
	__u16 dport = (__u16)(h[2] << 8 | h[3]);
	key->port = sport < dport ? sport : dport;
}

/*
 * Returns the offset of the L4 header and sets *protocol, or 0 when there is none to read:
 * a non-first fragment, or an extension header chain longer than KZN_IPV6_EXT_MAX.
 */
static __always_inline __u32 ipv6_l4(const struct bpf_dynptr *ptr, __u8 *protocol)
{
	__u32 off = 40;
	__u8 buf[8];

	for (int i = 0; i < KZN_IPV6_EXT_MAX; i++) {
		__u8 *h;

		switch (*protocol) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_MH:
			h = bpf_dynptr_slice(ptr, off, buf, 2);
			if (!h)
				return 0;
			*protocol = h[0];
			off += ((__u32)h[1] + 1) * 8;
			break;
		case IPPROTO_AH:
			h = bpf_dynptr_slice(ptr, off, buf, 2);
			if (!h)
				return 0;
			*protocol = h[0];
			off += ((__u32)h[1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			h = bpf_dynptr_slice(ptr, off, buf, 8);
			if (!h)
				return 0;
			*protocol = h[0];
			if ((h[2] << 8 | h[3]) & 0xfff8)
				return 0; /* not the first fragment: no L4 header here */
			off += 8;
			break;
		default:
			return off;
		}
	}
	return 0;
}

/*
 * The number of packets this skb becomes on the wire: gso_segs for a GSO super-packet (or,
 * if not yet computed, the payload divided by gso_size, rounded up), otherwise 1.
 */
static __always_inline __u32 wire_segments(struct sk_buff *skb, __u32 len, __u32 hdr_len)
{
	struct skb_shared_info *shinfo;
	__u16 gso_size, gso_segs;

	if (!kzn_count_gso)
		return 1;
	shinfo = (struct skb_shared_info *)(BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, end));
	gso_size = BPF_CORE_READ(shinfo, gso_size);
	if (!gso_size)
		return 1;
	gso_segs = BPF_CORE_READ(shinfo, gso_segs);
	if (gso_segs)
		return gso_segs;
	if (len <= hdr_len)
		return 1;
	return (len - hdr_len + gso_size - 1) / gso_size;
}

SEC("netfilter")
int kzn_postrouting(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct kzn_flow_key key = {};
	struct kzn_flow_value *value;
	struct bpf_dynptr ptr;
	__u32 len = skb->len, l3_len, l4_len = 0, l4_off, segs;
	__u64 bytes, packets;
	__u8 buf[40];
	__u8 *ip;
	void *flows;
	__u32 zero = 0;

	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &ptr))
		goto unparsed;
	if (ctx->state->pf == NFPROTO_IPV4) {
		ip = bpf_dynptr_slice(&ptr, 0, buf, 20);
		if (!ip || (ip[0] >> 4) != 4)
			goto unparsed;
		l3_len = (ip[0] & 0x0f) * 4;
		key.family = 4;
		key.protocol = ip[9];
		key.src[10] = key.src[11] = key.dst[10] = key.dst[11] = 0xff;
		__builtin_memcpy(&key.src[12], ip + 12, 4);
		__builtin_memcpy(&key.dst[12], ip + 16, 4);
		/* Only the first fragment (offset 0) carries the L4 header. */
		if (!((ip[6] << 8 | ip[7]) & 0x1fff))
			read_l4(&ptr, l3_len, key.protocol, &key, &l4_len);
	} else {
		ip = bpf_dynptr_slice(&ptr, 0, buf, 40);
		if (!ip || (ip[0] >> 4) != 6)
			goto unparsed;
		key.family = 6;
		key.protocol = ip[6];
		__builtin_memcpy(key.src, ip + 8, 16);
		__builtin_memcpy(key.dst, ip + 24, 16);
		l4_off = ipv6_l4(&ptr, &key.protocol);
		l3_len = l4_off ? l4_off : 40;
		if (l4_off)
			read_l4(&ptr, l4_off, key.protocol, &key, &l4_len);
	}

	/* Each extra wire segment of a GSO super-packet carries its own L3 and L4 headers. */
	segs = wire_segments(skb, len, l3_len + l4_len);
	packets = segs;
	bytes = len + (__u64)(segs - 1) * (l3_len + l4_len);

	flows = bpf_map_lookup_elem(&kzn_active, &zero);
	if (!flows) {
		loss_add(KZN_LOSS_NO_MAP_PACKETS, packets, bytes);
		return NF_ACCEPT;
	}
	value = bpf_map_lookup_elem(flows, &key);
	if (!value) {
		struct kzn_flow_value init = {.bytes = bytes, .packets = packets};
		long err = bpf_map_update_elem(flows, &key, &init, BPF_NOEXIST);

		if (err == 0)
			return NF_ACCEPT;
		/* Another CPU inserted the same flow first: add to its entry. */
		if (err == -EEXIST)
			value = bpf_map_lookup_elem(flows, &key);
		if (!value) {
			loss_add(KZN_LOSS_MAP_FULL_PACKETS, packets, bytes);
			return NF_ACCEPT;
		}
	}
	__sync_fetch_and_add(&value->bytes, bytes);
	__sync_fetch_and_add(&value->packets, packets);
	return NF_ACCEPT;

unparsed:
	loss_add(KZN_LOSS_UNPARSED_PACKETS, 1, len);
	return NF_ACCEPT;
}

/* GPL-compatible, as the kernel requires for the helpers it uses. */
char LICENSE[] SEC("license") = "GPL";
