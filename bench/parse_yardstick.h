/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * bench/parse_yardstick.h: bpf/kubezonnet_parse.h as it was before tunnels were parsed (issue
 * #11), kept unchanged as the benchmark's fixed yardstick: the parse-only program is built from
 * it, so that the per-packet ratios stay comparable as the real parser changes.
 */
#ifndef KUBEZONNET_PARSE_YARDSTICK_H
#define KUBEZONNET_PARSE_YARDSTICK_H

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

/* Set by the agent before load: 0 disables the GSO segment expansion (see kzn_wire_segments). */
const volatile __u32 kzn_count_gso = 1;

/* L4 ports and header length at off; port stays 0 when there is none to read. */
static __always_inline void kzn_read_l4(const struct bpf_dynptr *ptr, __u32 off, __u8 protocol,
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
static __always_inline __u32 kzn_ipv6_l4(const struct bpf_dynptr *ptr, __u8 *protocol)
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
static __always_inline __u32 kzn_wire_segments(struct sk_buff *skb, __u32 len, __u32 hdr_len)
{
	struct skb_shared_info *shinfo;
	/* gso_size and gso_segs are adjacent: one read of both (checked against the kernel). */
	struct {
		__u16 size;
		__u16 segs;
	} gso = {};

	if (!kzn_count_gso)
		return 1;
	/* head and end are read directly from the trusted skb; only shinfo needs a probe. */
	shinfo = (struct skb_shared_info *)(skb->head + skb->end);
	if (bpf_core_field_offset(struct skb_shared_info, gso_segs) ==
	    bpf_core_field_offset(struct skb_shared_info, gso_size) + 2) {
		bpf_probe_read_kernel(&gso, sizeof(gso), &shinfo->gso_size);
	} else {
		gso.size = BPF_CORE_READ(shinfo, gso_size);
		gso.segs = BPF_CORE_READ(shinfo, gso_segs);
	}
	if (!gso.size)
		return 1;
	if (gso.segs)
		return gso.segs;
	if (len <= hdr_len)
		return 1;
	return (len - hdr_len + gso.size - 1) / gso.size;
}

/*
 * kzn_parse fills key, *bytes and *packets for the packet in ctx. Returns 0, or -1 when there
 * is no IP header to read (then *bytes is skb->len and *packets 1).
 */
static __always_inline int kzn_parse(struct bpf_nf_ctx *ctx, struct kzn_flow_key *key, __u64 *bytes,
				     __u64 *packets)
{
	struct sk_buff *skb = ctx->skb;
	struct bpf_dynptr ptr;
	__u32 len = skb->len, l3_len, l4_len = 0, l4_off, segs;
	__u8 buf[40];
	__u8 *ip;

	*bytes = len;
	*packets = 1;
	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &ptr))
		return -1;
	if (ctx->state->pf == NFPROTO_IPV4) {
		ip = bpf_dynptr_slice(&ptr, 0, buf, 20);
		if (!ip || (ip[0] >> 4) != 4)
			return -1;
		l3_len = (ip[0] & 0x0f) * 4;
		key->family = 4;
		key->protocol = ip[9];
		key->src[10] = key->src[11] = key->dst[10] = key->dst[11] = 0xff;
		__builtin_memcpy(&key->src[12], ip + 12, 4);
		__builtin_memcpy(&key->dst[12], ip + 16, 4);
		/* Only the first fragment (offset 0) carries the L4 header. */
		if (!((ip[6] << 8 | ip[7]) & 0x1fff))
			kzn_read_l4(&ptr, l3_len, key->protocol, key, &l4_len);
	} else {
		ip = bpf_dynptr_slice(&ptr, 0, buf, 40);
		if (!ip || (ip[0] >> 4) != 6)
			return -1;
		key->family = 6;
		key->protocol = ip[6];
		__builtin_memcpy(key->src, ip + 8, 16);
		__builtin_memcpy(key->dst, ip + 24, 16);
		l4_off = kzn_ipv6_l4(&ptr, &key->protocol);
		l3_len = l4_off ? l4_off : 40;
		if (l4_off)
			kzn_read_l4(&ptr, l4_off, key->protocol, key, &l4_len);
	}

	/* Each extra wire segment of a GSO super-packet carries its own L3 and L4 headers. */
	segs = kzn_wire_segments(skb, len, l3_len + l4_len);
	*packets = segs;
	*bytes = len + (__u64)(segs - 1) * (l3_len + l4_len);

	return 0;
}

#endif /* KUBEZONNET_PARSE_YARDSTICK_H */
