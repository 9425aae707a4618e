/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * kubezonnet_parse.h: reads a packet at netfilter POSTROUTING into a flow key and the bytes
 * and packets it puts on the wire, looking through the tunnels that overlay networks carry
 * pod traffic in.
 *
 * Tunnels (the rule, README.md "Overlay networks"): each byte on the wire is counted once and
 * charged to the pod whose packet it carries.
 * - A tunnel whose packets can be read (VXLAN on UDP 4789 and 8472, Geneve on 6081, IP in
 *   IPv4 or IPv6, GRE): the outer packet, which a tunnel device of the node sends (the hook's
 *   input device is that device: kzn_tunnel_devs), is counted under the inner packet's flow,
 *   with its whole wire size; the outer headers are its encapsulation bytes. The inner
 *   packet, seen earlier on its way into the tunnel device, is not counted. So a kernel
 *   tunnel device (flannel, Calico) and a tunnel made in BPF before the host stack (Cilium,
 *   whose packets still leave through its tunnel device) come out the same. Packets that
 *   only look like a tunnel's (a pod's UDP to port 4789) are counted as what they are.
 * - An encrypted tunnel (WireGuard): the inner packet is counted on its way into the
 *   WireGuard device, with the outer headers and padding it will get as encapsulation; the
 *   outer packet, which that device sends, is not counted. The node's own IPsec ESP packets
 *   (sent locally, or by the transform of a packet already routed: the input device is then
 *   the output device) are not counted either; their inner packets count as they are (ESP's
 *   overhead depends on the algorithms).
 * - Inner headers that cannot be read (truncated, unknown inner protocol) are never guessed:
 *   the packet counts under its outer flow and in a counter of its own.
 *
 * Shared by the program and by the tests that run it on crafted packets.
 */
#ifndef KUBEZONNET_PARSE_H
#define KUBEZONNET_PARSE_H

#define IPPROTO_HOPOPTS	 0
#define IPPROTO_ICMP	 1
#define IPPROTO_IPIP	 4
#define IPPROTO_TCP	 6
#define IPPROTO_UDP	 17
#define IPPROTO_IPV6	 41
#define IPPROTO_ROUTING	 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_GRE	 47
#define IPPROTO_ESP	 50
#define IPPROTO_AH	 51
#define IPPROTO_DSTOPTS	 60
#define IPPROTO_SCTP	 132
#define IPPROTO_MH	 135

#define KZN_ETH_P_IP	0x0800
#define KZN_ETH_P_IPV6	0x86dd
#define KZN_ETH_P_8021Q 0x8100
#define KZN_ETH_P_TEB	0x6558 /* transparent Ethernet bridging: an Ethernet frame inside */

extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *ptr, __u32 offset, void *buffer,
			      __u32 buffer__szk) __ksym;
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Set by the agent before load: 0 disables the GSO segment expansion (see kzn_wire_segments). */
const volatile __u32 kzn_count_gso = 1;
/* Set by the agent before load: tunnel ports beyond the well-known ones (0: none). */
const volatile __u16 kzn_vxlan_port = 0;
const volatile __u16 kzn_geneve_port = 0;
/*
 * 0 turns off the common case's parse without a helper call (kzn_parse_nf_direct,
 * kzn_parse_skb_direct), so that every packet takes the general parse. The agent never
 * changes it; test/bpf_test.c loads the program both ways and checks that they count every
 * packet alike. A constant at load time: the verifier drops the branch it rules out.
 */
const volatile __u32 kzn_direct = 1;
/* Set by the agent: whether kzn_tunnel_devs holds any device (spares the lookup otherwise). */
volatile __u32 kzn_have_tunnel_devs = 0;

/*
 * The devices the agent found whose packets get an outer header the hook sees again
 * (KZN_DEV_TUNNEL) or that encrypt them (KZN_DEV_WIREGUARD), by ifindex.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KZN_TUNNEL_DEVS_MAX);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kzn_tunnel_devs SEC(".maps");

/* What kzn_parse found: the bytes and packets on the wire, and the encapsulation's part. */
struct kzn_packet {
	__u64 bytes;
	__u64 packets;
	__u64 encap_bytes;
};

enum kzn_parse_result {
	KZN_PARSED = 0,
	KZN_UNPARSED = -1,	 /* no readable IP header: count as loss "other" */
	KZN_SKIP = 1,		 /* counted elsewhere (the other side of a tunnel) */
	KZN_MALFORMED_INNER = 2, /* counted under the outer flow, and in its own counter */
};

/*
 * L4 ports and header length at off; port stays 0 when there is none to read. ports[] gets
 * the source and destination port.
 */
static __always_inline void kzn_read_l4(const struct bpf_dynptr *ptr, __u32 off, __u8 protocol,
					struct kzn_flow_key *key, __u32 *l4_len, __u16 ports[2])
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
	ports[0] = (__u16)(h[0] << 8 | h[1]);
	ports[1] = (__u16)(h[2] << 8 | h[3]);
	key->port = ports[0] < ports[1] ? ports[0] : ports[1];
}

/*
 * Returns the offset of the L4 header of the IPv6 packet at ip_off and sets *protocol, or 0
 * when there is none to read: a non-first fragment, or an extension header chain longer than
 * KZN_IPV6_EXT_MAX.
 */
static __always_inline __u32 kzn_ipv6_l4(const struct bpf_dynptr *ptr, __u32 ip_off, __u8 *protocol)
{
	__u32 off = ip_off + 40;
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
 * kzn_parse_ip reads the IP packet of family 4 or 6 at off into key. Sets *l3_len and *l4_len
 * to its IP and L4 header bytes (*l4_len 0 when there is no L4 header to read) and ports[] to
 * its L4 ports. Returns 0, or -1 when there is no IP header of that family there.
 */
static __always_inline int kzn_parse_ip(const struct bpf_dynptr *ptr, __u32 off, int family,
					struct kzn_flow_key *key, __u32 *l3_len, __u32 *l4_len,
					__u16 ports[2])
{
	__u32 l4_off;
	__u8 buf[40];
	__u8 *ip;

	*l4_len = 0;
	ports[0] = ports[1] = 0;
	key->port = 0;
	if (family == 4) {
		ip = bpf_dynptr_slice(ptr, off, buf, 20);
		if (!ip || (ip[0] >> 4) != 4)
			return -1;
		*l3_len = (ip[0] & 0x0f) * 4;
		key->family = 4;
		key->protocol = ip[9];
		__builtin_memset(key->src, 0, 10);
		__builtin_memset(key->dst, 0, 10);
		key->src[10] = key->src[11] = key->dst[10] = key->dst[11] = 0xff;
		__builtin_memcpy(&key->src[12], ip + 12, 4);
		__builtin_memcpy(&key->dst[12], ip + 16, 4);
		/* Only the first fragment (offset 0) carries the L4 header. */
		if (!((ip[6] << 8 | ip[7]) & 0x1fff))
			kzn_read_l4(ptr, off + *l3_len, key->protocol, key, l4_len, ports);
	} else {
		ip = bpf_dynptr_slice(ptr, off, buf, 40);
		if (!ip || (ip[0] >> 4) != 6)
			return -1;
		key->family = 6;
		key->protocol = ip[6];
		__builtin_memcpy(key->src, ip + 8, 16);
		__builtin_memcpy(key->dst, ip + 24, 16);
		l4_off = kzn_ipv6_l4(ptr, off, &key->protocol);
		*l3_len = l4_off ? l4_off - off : 40;
		if (l4_off)
			kzn_read_l4(ptr, l4_off, key->protocol, key, l4_len, ports);
	}
	return 0;
}

/*
 * kzn_inner_after_ethernet returns the offset of the IP packet in the Ethernet frame at off
 * (one VLAN tag allowed) and sets *family, or 0 when it carries no IP packet.
 */
static __always_inline __u32 kzn_inner_after_ethernet(const struct bpf_dynptr *ptr, __u32 off,
						      int *family)
{
	__u8 buf[18];
	__u8 *eth = bpf_dynptr_slice(ptr, off, buf, 18);
	__u16 type;

	if (!eth)
		return 0;
	type = (__u16)(eth[12] << 8 | eth[13]);
	off += 14;
	if (type == KZN_ETH_P_8021Q) {
		type = (__u16)(eth[16] << 8 | eth[17]);
		off += 4;
	}
	*family = type == KZN_ETH_P_IP ? 4 : type == KZN_ETH_P_IPV6 ? 6 : 0;
	return *family ? off : 0;
}

/* kzn_inner_by_type: the inner packet of a GRE or Geneve protocol type at off, or 0. */
static __always_inline __u32 kzn_inner_by_type(const struct bpf_dynptr *ptr, __u32 off, __u16 type,
					       int *family)
{
	if (type == KZN_ETH_P_TEB)
		return kzn_inner_after_ethernet(ptr, off, family);
	*family = type == KZN_ETH_P_IP ? 4 : type == KZN_ETH_P_IPV6 ? 6 : 0;
	return *family ? off : 0;
}

/*
 * kzn_tunnel_inner: for the packet a tunnel device sent, whose IP header of family 4 or 6 is
 * at offset 0, the offset of the inner IP packet (setting *family); 0 when it is a tunnel
 * packet whose inner headers cannot be read; -1 when it is no tunnel packet. Only the fixed
 * IP header is read (an IPv6 outer header with extension headers is taken for no tunnel):
 * this runs before the full parse, so that the verifier walks the inner parse from few
 * states.
 */
static __always_inline long kzn_tunnel_inner(const struct bpf_dynptr *ptr, int outer_family,
					     int *family)
{
	__u8 buf[40];
	__u8 *h;
	__u32 l3_end;
	__u16 dport;
	__u8 protocol;

	if (outer_family == 4) {
		h = bpf_dynptr_slice(ptr, 0, buf, 20);
		if (!h)
			return -1;
		if ((h[6] << 8 | h[7]) & 0x3fff)
			return -1; /* a fragment: no tunnel header to read in it */
		protocol = h[9];
		l3_end = (h[0] & 0x0f) * 4;
	} else {
		h = bpf_dynptr_slice(ptr, 0, buf, 40);
		if (!h)
			return -1;
		protocol = h[6];
		l3_end = 40;
	}
	switch (protocol) {
	case IPPROTO_IPIP:
		*family = 4;
		return l3_end;
	case IPPROTO_IPV6:
		*family = 6;
		return l3_end;
	case IPPROTO_GRE: {
		__u16 flags, type;

		h = bpf_dynptr_slice(ptr, l3_end, buf, 4);
		if (!h)
			return 0;
		flags = (__u16)(h[0] << 8 | h[1]);
		type = (__u16)(h[2] << 8 | h[3]);
		if (flags & 0x0007)
			return 0; /* GRE version 1 (PPTP) and others: not a pod tunnel */
		l3_end += 4 + (flags & 0x8000 ? 4 : 0) + (flags & 0x2000 ? 4 : 0) +
			  (flags & 0x1000 ? 4 : 0);
		return kzn_inner_by_type(ptr, l3_end, type, family);
	}
	case IPPROTO_UDP:
		break;
	default:
		return -1;
	}
	h = bpf_dynptr_slice(ptr, l3_end, buf, 16);
	if (!h)
		return -1;
	dport = (__u16)(h[2] << 8 | h[3]);
	if (dport == 4789 || dport == 8472 || (kzn_vxlan_port && dport == kzn_vxlan_port)) {
		if (!(h[8] & 0x08))
			return 0; /* no VXLAN header with a valid VNI */
		return kzn_inner_after_ethernet(ptr, l3_end + 16, family);
	}
	if (dport == 6081 || (kzn_geneve_port && dport == kzn_geneve_port)) {
		if ((h[8] >> 6) != 0)
			return 0; /* Geneve version 0 only */
		return kzn_inner_by_type(ptr, l3_end + 16 + (h[8] & 0x3f) * 4,
					 (__u16)(h[10] << 8 | h[11]), family);
	}
	return -1;
}

/*
 * The number of packets this skb becomes on the wire: gso_segs for a GSO super-packet (or,
 * if not yet computed, the payload divided by gso_size, rounded up), otherwise 1. Read
 * through a read-only cast of the skb's shared info: plain loads, no helper call.
 */
static __always_inline __u32 kzn_wire_segments(struct sk_buff *skb, __u32 len, __u32 hdr_len)
{
	struct skb_shared_info *shinfo;
	__u32 size, segs;

	if (!kzn_count_gso)
		return 1;
	shinfo = bpf_core_cast(skb->head + skb->end, struct skb_shared_info);
	size = shinfo->gso_size;
	if (!size)
		return 1;
	segs = shinfo->gso_segs;
	if (segs)
		return segs;
	if (len <= hdr_len)
		return 1;
	return (len - hdr_len + size - 1) / size;
}

/*
 * kzn_set_v4 fills key's addresses with IPv4 ones, as IPv4-mapped IPv6 addresses.
 */
static __always_inline void kzn_set_v4(struct kzn_flow_key *key, __u32 src, __u32 dst)
{
	key->family = 4;
	key->src[10] = key->src[11] = key->dst[10] = key->dst[11] = 0xff;
	__builtin_memcpy(&key->src[12], &src, 4);
	__builtin_memcpy(&key->dst[12], &dst, 4);
}

/*
 * The common case without a helper or kfunc call (kzn_parse_nf_direct, kzn_parse_skb_direct):
 * TCP, UDP or another protocol without ports over IPv4 (options allowed, fragments too) or
 * IPv6 without extension headers, its headers in the skb's linear part. Anything else is
 * KZN_SLOW, for the general parse.
 */
#define KZN_SLOW 3

/* kzn_ipv6_slow: whether IPv6's next header is one the general parse walks (or skips). */
static __always_inline int kzn_ipv6_slow(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_AH:
	case IPPROTO_DSTOPTS:
	case IPPROTO_MH:
	case IPPROTO_ESP:
		return 1;
	}
	return 0;
}

/*
 * kzn_ports_nf sets key->port and *l4_len from the TCP or UDP header at l4 (read through a
 * read-only cast); returns 0, or KZN_SLOW when the header is not all in the linear part (room:
 * the bytes there from l4 on) or is SCTP's.
 */
static __always_inline int kzn_ports_nf(unsigned char *l4, __u32 room, __u8 protocol,
					struct kzn_flow_key *key, __u32 *l4_len)
{
	struct udphdr *uh;
	__u16 sport, dport;

	if (protocol == IPPROTO_TCP) {
		struct tcphdr *th = bpf_core_cast(l4, struct tcphdr);

		if (room < 20)
			return KZN_SLOW;
		*l4_len = BPF_CORE_READ_BITFIELD(th, doff) * 4;
	} else if (protocol == IPPROTO_UDP) {
		if (room < 8)
			return KZN_SLOW;
		*l4_len = 8;
	} else if (protocol == IPPROTO_SCTP) {
		return KZN_SLOW;
	} else {
		return 0;
	}
	uh = bpf_core_cast(l4, struct udphdr);
	sport = bpf_ntohs(uh->source);
	dport = bpf_ntohs(uh->dest);
	key->port = sport < dport ? sport : dport;
	return 0;
}

/*
 * kzn_parse_nf_direct: the common case at netfilter, where the skb's data is its IP header,
 * read through read-only casts. Returns KZN_PARSED with key and *hdr_len (IP and L4 headers)
 * set, or KZN_SLOW.
 */
static __always_inline int kzn_parse_nf_direct(struct sk_buff *skb, int family,
					       struct kzn_flow_key *key, __u32 *hdr_len)
{
	unsigned char *data = skb->data;
	__u32 headlen = skb->len - skb->data_len, l3_len, l4_len = 0;
	__u8 protocol;

	if (family == 4) {
		struct iphdr *ip = bpf_core_cast(data, struct iphdr);

		if (headlen < 20 || BPF_CORE_READ_BITFIELD(ip, version) != 4)
			return KZN_SLOW;
		l3_len = BPF_CORE_READ_BITFIELD(ip, ihl) * 4;
		protocol = ip->protocol;
		if (l3_len < 20 || l3_len > headlen || protocol == IPPROTO_ESP)
			return KZN_SLOW;
		kzn_set_v4(key, ip->saddr, ip->daddr);
		key->protocol = protocol;
		/* Only the first fragment (offset 0) carries the L4 header. */
		if ((bpf_ntohs(ip->frag_off) & 0x1fff) == 0 &&
		    kzn_ports_nf(data + l3_len, headlen - l3_len, protocol, key, &l4_len))
			return KZN_SLOW;
	} else {
		struct ipv6hdr *ip6 = bpf_core_cast(data, struct ipv6hdr);

		if (headlen < 40 || BPF_CORE_READ_BITFIELD(ip6, version) != 6)
			return KZN_SLOW;
		protocol = ip6->nexthdr;
		if (kzn_ipv6_slow(protocol))
			return KZN_SLOW;
		key->family = 6;
		key->protocol = protocol;
		for (int i = 0; i < 4; i++) {
			__u32 w = ip6->saddr.in6_u.u6_addr32[i];

			__builtin_memcpy(&key->src[i * 4], &w, 4);
			w = ip6->daddr.in6_u.u6_addr32[i];
			__builtin_memcpy(&key->dst[i * 4], &w, 4);
		}
		l3_len = 40;
		if (kzn_ports_nf(data + 40, headlen - 40, protocol, key, &l4_len))
			return KZN_SLOW;
	}
	*hdr_len = l3_len + l4_len;
	return KZN_PARSED;
}

/*
 * The KZN_DEV_* flags of the tunnel device dev, or 0. No device (a local socket's packet, as
 * input) is ifindex 0, which the agent never names (the tests do).
 */
static __always_inline __u32 kzn_device_kind(struct net_device *dev)
{
	__u32 ifindex, *kind;

	if (!kzn_have_tunnel_devs)
		return 0;
	ifindex = dev ? (__u32)dev->ifindex : 0;
	kind = bpf_map_lookup_elem(&kzn_tunnel_devs, &ifindex);
	return kind ? *kind : 0;
}

/*
 * kzn_parse fills key and pkt for the packet in ctx and says where it counts (enum
 * kzn_parse_result). On KZN_UNPARSED, pkt holds skb->len and one packet.
 */
static __always_inline int kzn_parse(struct bpf_nf_ctx *ctx, struct kzn_flow_key *key,
				     struct kzn_packet *pkt)
{
	struct sk_buff *skb = ctx->skb;
	struct net_device *in = ctx->state->in, *out = ctx->state->out;
	struct bpf_dynptr ptr;
	__u32 len = skb->len, l3_len, l4_len, hdr_len, segs, dev_in, dev_out;
	__u16 ports[2];
	int family = ctx->state->pf == NFPROTO_IPV4 ? 4 : 6, in_family = 0, result = KZN_PARSED;
	long inner_off = -1;

	pkt->bytes = len;
	pkt->packets = 1;
	pkt->encap_bytes = 0;
	dev_out = kzn_device_kind(out);
	if (dev_out & KZN_DEV_OUT_SKIP)
		return KZN_SKIP; /* the tunnel's outer packet is counted when it leaves */
	dev_in = kzn_device_kind(in);
	if (dev_in & KZN_DEV_IN_SKIP)
		return KZN_SKIP; /* encrypted: its inner packet was counted going in */
	if (kzn_direct && !dev_in && !dev_out &&
	    kzn_parse_nf_direct(skb, family, key, &hdr_len) == KZN_PARSED) {
		segs = kzn_wire_segments(skb, len, hdr_len);
		pkt->packets = segs;
		pkt->bytes = len + (__u64)(segs - 1) * hdr_len;
		return KZN_PARSED;
	}
	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &ptr))
		return KZN_UNPARSED;
	if (dev_in & KZN_DEV_IN_DECAPSULATE)
		inner_off = kzn_tunnel_inner(&ptr, family, &in_family);
	if (inner_off > 0 &&
	    kzn_parse_ip(&ptr, (__u32)inner_off, in_family, key, &l3_len, &l4_len, ports) == 0) {
		/* Each segment carries the outer headers and the inner ones. */
		hdr_len = (__u32)inner_off + l3_len + l4_len;
	} else {
		if (inner_off >= 0) {
			inner_off = 0;
			result = KZN_MALFORMED_INNER;
		}
		if (kzn_parse_ip(&ptr, 0, family, key, &l3_len, &l4_len, ports))
			return KZN_UNPARSED;
		/* The node's own IPsec: counted as its inner packet was. */
		if (key->protocol == IPPROTO_ESP && (!in || in == out))
			return KZN_SKIP;
		hdr_len = l3_len + l4_len;
	}

	/* Each extra wire segment of a GSO super-packet carries its own headers. */
	segs = kzn_wire_segments(skb, len, hdr_len);
	pkt->packets = segs;
	pkt->bytes = len + (__u64)(segs - 1) * hdr_len;
	if (inner_off > 0)
		pkt->encap_bytes = (__u64)segs * (__u64)inner_off;
	if (dev_out & KZN_DEV_OUT_OVERHEAD) {
		/* Outer IPv4 and UDP, WireGuard's data header and tag, and padding to 16. */
		__u64 wg = (__u64)segs * (20 + 8 + 16 + 16) + ((16 - (len & 15)) & 15);

		pkt->encap_bytes += wg;
		pkt->bytes += wg;
	}
	return result;
}

/*
 * kzn_ports_pkt is kzn_ports_nf for the packet's own bytes (direct packet access) from l4 to
 * end.
 */
static __always_inline int kzn_ports_pkt(__u8 *l4, void *end, __u8 protocol,
					 struct kzn_flow_key *key, __u32 *l4_len)
{
	__u16 sport, dport;

	if (protocol == IPPROTO_TCP) {
		if ((void *)(l4 + 20) > end)
			return KZN_SLOW;
		*l4_len = (l4[12] >> 4) * 4;
	} else if (protocol == IPPROTO_UDP) {
		if ((void *)(l4 + 8) > end)
			return KZN_SLOW;
		*l4_len = 8;
	} else if (protocol == IPPROTO_SCTP) {
		return KZN_SLOW;
	} else {
		return 0;
	}
	sport = (__u16)(l4[0] << 8 | l4[1]);
	dport = (__u16)(l4[2] << 8 | l4[3]);
	key->port = sport < dport ? sport : dport;
	return 0;
}

/*
 * kzn_parse_skb_direct: the common case at the socket-level hook, read with direct packet
 * access (the skb's data is its IP header). Returns KZN_PARSED with key, *family, *l3_len,
 * *hdr_len and *df (IPv4's don't-fragment bit) set, or KZN_SLOW.
 */
static __always_inline int kzn_parse_skb_direct(struct __sk_buff *skb, struct kzn_flow_key *key,
						int *family, __u32 *l3_len, __u32 *hdr_len, int *df)
{
	void *end = (void *)(long)skb->data_end;
	__u8 *p = (void *)(long)skb->data;
	__u32 l4_len = 0;

	if ((void *)(p + 40) > end)
		return KZN_SLOW; /* shorter than IPv6's header: left to the general parse */
	*family = p[0] >> 4;
	*df = 0;
	if (*family == 4) {
		__u32 src, dst, l3 = (p[0] & 0x0f) * 4;

		key->protocol = p[9];
		if (l3 < 20 || key->protocol == IPPROTO_ESP)
			return KZN_SLOW;
		__builtin_memcpy(&src, p + 12, 4);
		__builtin_memcpy(&dst, p + 16, 4);
		kzn_set_v4(key, src, dst);
		*df = p[6] & 0x40;
		*l3_len = l3;
		/* Only the first fragment (offset 0) carries the L4 header. */
		if (!((p[6] << 8 | p[7]) & 0x1fff) &&
		    kzn_ports_pkt(p + l3, end, key->protocol, key, &l4_len))
			return KZN_SLOW;
	} else if (*family == 6) {
		key->protocol = p[6];
		if (kzn_ipv6_slow(key->protocol))
			return KZN_SLOW;
		key->family = 6;
		__builtin_memcpy(key->src, p + 8, 16);
		__builtin_memcpy(key->dst, p + 24, 16);
		*l3_len = 40;
		if (kzn_ports_pkt(p + 40, end, key->protocol, key, &l4_len))
			return KZN_SLOW;
	} else {
		return KZN_SLOW;
	}
	*hdr_len = *l3_len + l4_len;
	return KZN_PARSED;
}

/*
 * kzn_ipv6_unfragmentable: the length of the IPv6 packet's part that every fragment repeats,
 * as the kernel finds it (ip6_find_1stfragopt): the fixed header, then hop-by-hop, routing
 * and destination options headers, up to a destination options header after a routing header
 * (which travels in the fragments) or any other header.
 */
static __always_inline __u32 kzn_ipv6_unfragmentable(const struct bpf_dynptr *ptr)
{
	__u32 off = 40;
	__u8 buf[8], *h, next;
	int routing = 0;

	h = bpf_dynptr_slice(ptr, 0, buf, 8);
	if (!h)
		return off;
	next = h[6];
	for (int i = 0; i < KZN_IPV6_EXT_MAX; i++) {
		if (next == IPPROTO_ROUTING)
			routing = 1;
		else if (next != IPPROTO_HOPOPTS && (next != IPPROTO_DSTOPTS || routing))
			return off;
		h = bpf_dynptr_slice(ptr, off, buf, 2);
		if (!h)
			return off;
		next = h[0];
		off += ((__u32)h[1] + 1) * 8;
	}
	return off;
}

/*
 * kzn_socket_fragments: a packet above its device's MTU leaves as IP fragments, which cgroup
 * egress (before fragmentation) does not see. Counted as the device's MTU cuts it: IPv4 when
 * DF is clear, each fragment repeating the IP header (the last one filled up to the MTU, the
 * others to a multiple of 8 bytes); IPv6, each repeating the headers before
 * the fragment header (l3_len: the unfragmentable part, kzn_ipv6_unfragmentable) and adding
 * its 8 bytes. (A route MTU below the device's cuts smaller: not seen here.) Otherwise the
 * packet as it is.
 */
#define KZN_FRAGMENT_MIN4 68   /* IPv4's minimum MTU (RFC 791) */
#define KZN_FRAGMENT_MIN6 1280 /* IPv6's */
static __always_inline int kzn_socket_fragments(struct __sk_buff *skb, int family, int df,
						__u32 len, __u32 l3_len, struct kzn_packet *pkt)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct net_device *dev = kskb ? kskb->dev : NULL;
	__u32 mtu = dev ? dev->mtu : 0, per, n; /* plain loads: no helper call */

	pkt->bytes = len;
	pkt->packets = 1;
	if (!mtu || len <= mtu || l3_len >= mtu)
		return KZN_PARSED;
	if (family == 4) {
		if (df) /* DF: not fragmented (refused, or segmented) */
			return KZN_PARSED;
		per = (mtu - l3_len) & ~7u;
		if (!per)
			return KZN_PARSED;
		/* Each fragment but the last carries a multiple of 8 bytes; the last, up to the
		 * MTU (ip_frag_next, __ip_append_data). */
		n = 1 + (len - mtu + per - 1) / per;
		pkt->packets = n;
		pkt->bytes = len + (__u64)(n - 1) * l3_len;
	} else {
		if (mtu < l3_len + 8 + 8)
			return KZN_PARSED;
		per = (mtu - l3_len - 8) & ~7u;
		n = (len - l3_len + per - 1) / per;
		pkt->packets = n;
		pkt->bytes = (len - l3_len) + (__u64)n * (l3_len + 8);
	}
	return KZN_PARSED;
}

/*
 * kzn_parse_socket is kzn_parse for the socket-level hook (cgroup_skb egress, --hook
 * cgroup): the packet a socket sends, before any device, tunnel or NAT of the node, so the
 * addresses are the pod's and the destination the socket's (a Service's virtual address
 * unless a socket-level load balancer translated it). The same flow key and wire bytes (GSO
 * expanded, from the context's own gso_segs and gso_size); loopback is not counted.
 */
static __always_inline int kzn_parse_socket(struct __sk_buff *skb, struct kzn_flow_key *key,
					    struct kzn_packet *pkt)
{
	struct bpf_dynptr ptr;
	__u32 len = skb->len, l3_len, l4_len, hdr_len, segs = 1, gso_size, unfrag_len = 0;
	__u16 ports[2];
	__u8 buf[8], *v;
	int family, df;

	pkt->bytes = len;
	pkt->packets = 1;
	pkt->encap_bytes = 0;
	if (skb->ifindex == 1)
		return KZN_SKIP; /* lo, in every namespace */
	if (!kzn_direct ||
	    kzn_parse_skb_direct(skb, key, &family, &l3_len, &hdr_len, &df) != KZN_PARSED) {
		if (bpf_dynptr_from_skb(skb, 0, &ptr))
			return KZN_UNPARSED;
		v = bpf_dynptr_slice(&ptr, 0, buf, 1);
		if (!v)
			return KZN_UNPARSED;
		family = v[0] >> 4;
		if ((family != 4 && family != 6) ||
		    kzn_parse_ip(&ptr, 0, family, key, &l3_len, &l4_len, ports))
			return KZN_UNPARSED;
		hdr_len = l3_len + l4_len;
		v = family == 4 ? bpf_dynptr_slice(&ptr, 0, buf, 8) : NULL;
		df = v && (v[6] & 0x40);
		/* Fragments repeat only the unfragmentable part of IPv6's extension headers. */
		if (family == 6 && l3_len > 40)
			unfrag_len = kzn_ipv6_unfragmentable(&ptr);
	}
	gso_size = skb->gso_size;
	if (kzn_count_gso && gso_size) {
		segs = skb->gso_segs;
		if (!segs && len > hdr_len)
			segs = (len - hdr_len + gso_size - 1) / gso_size;
		if (!segs)
			segs = 1;
	} else if (kzn_count_gso && len > (family == 4 ? KZN_FRAGMENT_MIN4 : KZN_FRAGMENT_MIN6)) {
		return kzn_socket_fragments(skb, family, df, len, unfrag_len ? unfrag_len : l3_len,
					    pkt);
	}
	pkt->packets = segs;
	pkt->bytes = len + (__u64)(segs - 1) * hdr_len;
	return KZN_PARSED;
}

#endif /* KUBEZONNET_PARSE_H */
