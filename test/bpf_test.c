/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The BPF program itself, run by the kernel with BPF_PROG_TEST_RUN on packets built here, as
 * in the kernel's selftests: a table of packets and the flow key each must land under (with
 * malformed and tricky packets as rows), the loss counters of a full map, and two threads
 * inserting the same new flows in lock step, where every byte must be counted.
 */
#include <errno.h>
#include <pthread.h>
#include <linux/netfilter.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/kubezonnet.h"
#include "kubezonnet.skel.h"
#include "../wire.h"
#include "test.h"

/*
 * The kernel's struct nf_hook_state as BPF_PROG_TEST_RUN takes it: hook and pf, rest zero.
 * At NF_INET_LOCAL_OUT the test run takes a raw IP packet (other hooks want an Ethernet
 * header in front); the program does not look at the hook.
 */
struct test_nf_state {
	uint8_t hook;
	uint8_t pf;
	uint8_t pad[6];
	void *in, *out, *sk, *net, *okfn;
};

static struct kubezonnet_bpf *skel;
static int prog_fd, flows_fd, loss_fd;

struct packet {
	uint8_t b[256];
	size_t len;
	int pf;
};

static void ipv4(struct packet *p, uint8_t proto, size_t l4_len, uint16_t frag, int options)
{
	size_t ihl = 20 + (size_t)options * 4;

	memset(p, 0, sizeof(*p));
	p->pf = NFPROTO_IPV4;
	p->len = ihl + l4_len;
	p->b[0] = (uint8_t)(0x40 | ihl / 4);
	wire_put16(p->b + 2, (uint16_t)p->len);
	wire_put16(p->b + 6, frag);
	p->b[8] = 64;
	p->b[9] = proto;
	wire_put32(p->b + 12, 0x0a000001); /* 10.0.0.1 */
	wire_put32(p->b + 16, 0x0a000102); /* 10.0.1.2 */
}

/* ipv6 builds a header, n 8-byte extension headers of the types in ext, then proto's room. */
static size_t ipv6(struct packet *p, uint8_t proto, const uint8_t *ext, size_t n, size_t l4_len)
{
	size_t off = 40;
	uint8_t *next = p->b + 6;

	memset(p, 0, sizeof(*p));
	p->pf = NFPROTO_IPV6;
	p->b[0] = 0x60;
	p->b[7] = 64;
	p->b[8] = 0xfd;
	p->b[23] = 1;
	p->b[24] = 0xfd;
	p->b[25] = 1;
	p->b[39] = 2;
	for (size_t i = 0; i < n; i++) {
		*next = ext[i];
		next = p->b + off;
		p->b[off + 1] = 0; /* 8 bytes long (fragment: fixed 8) */
		off += 8;
	}
	*next = proto;
	p->len = off + l4_len;
	wire_put16(p->b + 4, (uint16_t)(p->len - 40));
	return off;
}

static void ports(struct packet *p, size_t off, uint16_t sport, uint16_t dport)
{
	wire_put16(p->b + off, sport);
	wire_put16(p->b + off + 2, dport);
	p->b[off + 12] = 0x50; /* a TCP data offset of 5; payload for other protocols */
}

static int run(const struct packet *p)
{
	struct test_nf_state st = {.hook = NF_INET_LOCAL_OUT, .pf = (uint8_t)p->pf};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = p->b, .data_size_in = (__u32)p->len,
		    .ctx_in = &st, .ctx_size_in = sizeof(st), .repeat = 1);
	int rc = bpf_prog_test_run_opts(prog_fd, &opts);

	if (rc != 0)
		return -errno;
	return (int)opts.retval;
}

/*
 * run_from_device runs p as a packet that came from a device with the given KZN_DEV_* flags.
 * BPF_PROG_TEST_RUN gives the hook no input device at NF_INET_LOCAL_OUT: the program takes
 * that for ifindex 0, which the agent never names, and the test names it for the run.
 */
static int run_from_device(const struct packet *p, __u32 kind)
{
	__u32 none = 0;
	int fd = bpf_map__fd(skel->maps.kzn_tunnel_devs), rc;

	bpf_map_update_elem(fd, &none, &kind, BPF_ANY);
	skel->bss->kzn_have_tunnel_devs = 1;
	rc = run(p);
	skel->bss->kzn_have_tunnel_devs = 0;
	bpf_map_delete_elem(fd, &none);
	return rc;
}

static void clear_maps(void)
{
	struct kzn_flow_key k;
	__u64 zero[256] = {0};

	while (bpf_map_get_next_key(flows_fd, NULL, &k) == 0)
		bpf_map_delete_elem(flows_fd, &k);
	for (__u32 s = 0; s < KZN_LOSS_SLOTS; s++)
		bpf_map_update_elem(loss_fd, &s, zero, BPF_ANY);
}

static int count_flows(void)
{
	struct kzn_flow_key k, next;
	int n = 0;

	if (bpf_map_get_next_key(flows_fd, NULL, &k) != 0)
		return 0;
	do {
		n++;
	} while (bpf_map_get_next_key(flows_fd, &k, &next) == 0 && (k = next, 1));
	return n;
}

static __u64 loss(__u32 slot)
{
	__u64 v[256] = {0}, sum = 0;
	int n = libbpf_num_possible_cpus();

	bpf_map_lookup_elem(loss_fd, &slot, v);
	for (int i = 0; i < n && i < 256; i++)
		sum += v[i];
	return sum;
}

/* key_of builds the key the program should use for p with the given port. */
static void key_of(const struct packet *p, uint16_t port, struct kzn_flow_key *k)
{
	memset(k, 0, sizeof(*k));
	k->port = port;
	if (p->pf == NFPROTO_IPV4) {
		k->family = 4;
		k->protocol = p->b[9];
		k->src[10] = k->src[11] = k->dst[10] = k->dst[11] = 0xff;
		memcpy(k->src + 12, p->b + 12, 4);
		memcpy(k->dst + 12, p->b + 16, 4);
	} else {
		k->family = 6;
		memcpy(k->src, p->b + 8, 16);
		memcpy(k->dst, p->b + 24, 16);
	}
}

enum build {
	V4_TCP,
	V4_UDP,
	V4_ICMP,
	V4_SCTP,
	V4_OPTIONS_TCP,
	V4_FIRST_FRAGMENT,
	V4_LATER_FRAGMENT,
	V4_TRUNCATED_TCP,
	V6_TCP,
	V6_EXT_UDP,
	V6_FIRST_FRAGMENT,
	V6_LATER_FRAGMENT,
	V6_TOO_MANY_EXT,
	V6_ICMP,
};

static const struct {
	const char *name;
	enum build build;
	uint16_t sport, dport;
	uint8_t protocol; /* the key's protocol */
	uint16_t want_port;
} cases[] = {
	{"IPv4 TCP: the smaller port (the service's)", V4_TCP, 40000, 443, 6, 443},
	{"IPv4 UDP reply: the smaller port either way", V4_UDP, 53, 33000, 17, 53},
	{"IPv4 ICMP: port 0", V4_ICMP, 0, 0, 1, 0},
	{"IPv4 SCTP: ports read", V4_SCTP, 5000, 6000, 132, 5000},
	{"IPv4 with options: ports after the options", V4_OPTIONS_TCP, 8080, 50000, 6, 8080},
	{"IPv4 first fragment: ports read", V4_FIRST_FRAGMENT, 7000, 40000, 17, 7000},
	{"IPv4 later fragment: payload never read as ports", V4_LATER_FRAGMENT, 1234, 4321, 17, 0},
	{"IPv4 TCP header cut short: counted with port 0", V4_TRUNCATED_TCP, 1, 2, 6, 0},
	{"IPv6 TCP: the smaller port", V6_TCP, 443, 50000, 6, 443},
	{"IPv6 hop-by-hop, routing, dest-opts then UDP", V6_EXT_UDP, 40000, 53, 17, 53},
	{"IPv6 first fragment: ports read", V6_FIRST_FRAGMENT, 7000, 40000, 17, 7000},
	{"IPv6 later fragment: payload never read as ports", V6_LATER_FRAGMENT, 1234, 4321, 17, 0},
	{"IPv6 extension chain over the limit: port 0", V6_TOO_MANY_EXT, 1, 2, 60, 0},
	{"IPv6 ICMPv6: port 0", V6_ICMP, 0, 0, 58, 0},
};

static void build(struct packet *p, enum build b, uint16_t sport, uint16_t dport)
{
	static const uint8_t exts[] = {0, 43, 60}; /* hop-by-hop, routing, destination options */
	static const uint8_t frag[] = {44};
	static const uint8_t many[] = {60, 60, 60, 60, 60, 60, 60};
	size_t off;

	switch (b) {
	case V4_TCP:
		ipv4(p, 6, 40, 0, 0), ports(p, 20, sport, dport);
		break;
	case V4_UDP:
		ipv4(p, 17, 100, 0, 0), ports(p, 20, sport, dport);
		break;
	case V4_ICMP:
		ipv4(p, 1, 64, 0, 0);
		break;
	case V4_SCTP:
		ipv4(p, 132, 28, 0, 0), ports(p, 20, sport, dport);
		break;
	case V4_OPTIONS_TCP:
		ipv4(p, 6, 20, 0, 2), ports(p, 28, sport, dport);
		break;
	case V4_FIRST_FRAGMENT:
		ipv4(p, 17, 200, 0x2000, 0), ports(p, 20, sport, dport);
		break;
	case V4_LATER_FRAGMENT:
		ipv4(p, 17, 200, 185, 0), ports(p, 20, sport, dport);
		break;
	case V4_TRUNCATED_TCP:
		ipv4(p, 6, 2, 0, 0);
		p->b[20] = 0, p->b[21] = 1;
		break;
	case V6_TCP:
		off = ipv6(p, 6, NULL, 0, 20), ports(p, off, sport, dport);
		break;
	case V6_EXT_UDP:
		off = ipv6(p, 17, exts, sizeof(exts), 60), ports(p, off, sport, dport);
		break;
	case V6_FIRST_FRAGMENT:
		off = ipv6(p, 17, frag, 1, 100);
		p->b[40 + 3] = 1; /* M flag, offset 0 */
		ports(p, off, sport, dport);
		break;
	case V6_LATER_FRAGMENT:
		off = ipv6(p, 17, frag, 1, 100);
		wire_put16(p->b + 42, 185 << 3);
		ports(p, off, sport, dport);
		break;
	case V6_TOO_MANY_EXT:
		off = ipv6(p, 17, many, sizeof(many), 20), ports(p, off, sport, dport);
		break;
	case V6_ICMP:
		ipv6(p, 58, NULL, 0, 24);
		break;
	}
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct packet p;
		struct kzn_flow_key want;
		struct kzn_flow_value v = {0};

		clear_maps();
		build(&p, cases[i].build, cases[i].sport, cases[i].dport);
		EXPECT_EQ(run(&p), NF_ACCEPT);
		EXPECT_EQ(run(&p), NF_ACCEPT);
		key_of(&p, cases[i].want_port, &want);
		want.protocol = cases[i].protocol;
		if (bpf_map_lookup_elem(flows_fd, &want, &v) != 0) {
			struct kzn_flow_key got;
			if (bpf_map_get_next_key(flows_fd, NULL, &got) == 0)
				test_fail(__FILE__, __LINE__,
					  "no flow under the expected key; found family %u proto "
					  "%u port %u",
					  got.family, got.protocol, got.port);
			else
				test_fail(__FILE__, __LINE__, "no flow at all");
		} else {
			EXPECT_EQ(v.packets, 2);
			EXPECT_EQ(v.bytes, 2 * p.len);
		}
		EXPECT_EQ(count_flows(), 1);
		test_result("bpf: %s", cases[i].name);
	}
}

/*
 * Tunnels: an outer packet carrying one of the table's packets counts under the inner packet's
 * flow, with the outer packet's bytes, and the outer headers (up to the inner IP header) as
 * its encapsulation bytes. Built here from the RFCs' header layouts, outer IPv4 or IPv6.
 */
enum tunnel {
	T_VXLAN,	 /* UDP 4789, VXLAN (I flag), Ethernet */
	T_VXLAN_8472,	 /* flannel's port */
	T_VXLAN_4790,	 /* a port of the user's (--tunnel-port vxlan:4790) */
	T_UDP_4791,	 /* a port nobody named: plain UDP */
	T_VXLAN_VLAN,	 /* an 802.1Q tag in the inner Ethernet header */
	T_GENEVE,	 /* UDP 6081, Geneve with 8 bytes of options, Ethernet */
	T_GENEVE_IP,	 /* Geneve carrying IP directly (protocol type 0x0800 / 0x86dd) */
	T_IPIP,		 /* IP protocol 4 or 41 */
	T_GRE,		 /* GRE, IP directly */
	T_GRE_KEY_CSUM,	 /* GRE with checksum and key, Ethernet (0x6558) */
	T_VXLAN_NO_I,	 /* malformed: VXLAN without the I flag */
	T_VXLAN_ARP,	 /* malformed: no IP inside (ARP) */
	T_VXLAN_CUT,	 /* malformed: the inner IP header cut short */
	T_VXLAN_VERSION, /* malformed: the EtherType says IPv4, the header is not */
	T_GRE_V1,	 /* malformed: GRE version 1 (PPTP) */
	T_WIREGUARD,	 /* UDP 51820: an encrypted tunnel's outer packet, not counted */
	T_ESP,		 /* IPsec ESP: not counted */
};

/* ether writes an Ethernet header for type at b (optionally VLAN-tagged); returns its length. */
static size_t ether(uint8_t *b, uint16_t type, int vlan)
{
	memset(b, 0x02, 12);
	if (vlan) {
		wire_put16(b + 12, 0x8100);
		wire_put16(b + 14, 7);
		wire_put16(b + 16, type);
		return 18;
	}
	wire_put16(b + 12, type);
	return 14;
}

/*
 * encap builds in p an outer packet (IPv6 when outer6) of the tunnel t around inner, and
 * returns the length of the outer headers in front of the inner IP header.
 */
static size_t encap(struct packet *p, const struct packet *inner, int outer6, enum tunnel t)
{
	uint8_t h[96];
	size_t n = 0, l3 = outer6 ? 40 : 20, room;
	uint8_t proto = 17;
	uint16_t type = inner->pf == NFPROTO_IPV4 ? 0x0800 : 0x86dd;
	int udp = 1;

	memset(h, 0, sizeof(h));
	switch (t) {
	case T_VXLAN:
	case T_VXLAN_8472:
	case T_VXLAN_4790:
	case T_UDP_4791:
	case T_VXLAN_VLAN:
	case T_VXLAN_NO_I:
	case T_VXLAN_ARP:
	case T_VXLAN_CUT:
	case T_VXLAN_VERSION:
		wire_put16(h + 2, t == T_VXLAN_8472   ? 8472
				  : t == T_VXLAN_4790 ? 4790
				  : t == T_UDP_4791   ? 4791
						      : 4789);
		h[8] = t == T_VXLAN_NO_I ? 0 : 0x08;
		h[12] = 0x2a; /* VNI 42 */
		n = 16 + ether(h + 16, t == T_VXLAN_ARP ? 0x0806 : type, t == T_VXLAN_VLAN);
		break;
	case T_GENEVE:
		wire_put16(h + 2, 6081);
		h[8] = 2; /* version 0, 2 words of options */
		wire_put16(h + 10, 0x6558);
		n = 16 + 8 + ether(h + 24, type, 0);
		break;
	case T_GENEVE_IP:
		wire_put16(h + 2, 6081);
		wire_put16(h + 10, type);
		n = 16;
		break;
	case T_IPIP:
		proto = inner->pf == NFPROTO_IPV4 ? 4 : 41, udp = 0;
		break;
	case T_GRE:
		proto = 47, udp = 0;
		wire_put16(h + 2, type);
		n = 4;
		break;
	case T_GRE_KEY_CSUM:
		proto = 47, udp = 0;
		wire_put16(h, 0xa000); /* C and K */
		wire_put16(h + 2, 0x6558);
		n = 12 + ether(h + 12, type, 0);
		break;
	case T_GRE_V1:
		proto = 47, udp = 0;
		wire_put16(h, 0x0001);
		wire_put16(h + 2, type);
		n = 4;
		break;
	case T_WIREGUARD:
		wire_put16(h + 2, 51820);
		h[8] = 4; /* a data message */
		n = 16;
		break;
	case T_ESP:
		proto = 50, udp = 0;
		n = 8;
		break;
	}
	if (udp)
		wire_put16(h, 33333); /* the source port; the destination port is set above */
	if (outer6) {
		ipv6(p, proto, NULL, 0, 0);
	} else {
		ipv4(p, proto, 0, 0, 0);
		wire_put32(p->b + 12, 0x0a580001); /* 10.88.0.1, a node */
		wire_put32(p->b + 16, 0x0a580002);
	}
	room = sizeof(p->b) - l3 - n;
	memcpy(p->b + l3, h, n);
	memcpy(p->b + l3 + n, inner->b, inner->len < room ? inner->len : room);
	p->len = l3 + n + inner->len;
	if (t == T_VXLAN_CUT)
		p->len = l3 + n + 10;
	if (t == T_VXLAN_VERSION)
		p->b[l3 + n] = 0x75; /* version 7 */
	if (udp)
		wire_put16(p->b + l3 + 4, (uint16_t)(p->len - l3));
	if (outer6)
		wire_put16(p->b + 4, (uint16_t)(p->len - 40));
	else
		wire_put16(p->b + 2, (uint16_t)p->len);
	return l3 + n;
}

static const struct {
	const char *name;
	enum tunnel tunnel;
	enum build inner;
	int outer6;
	/* 0: counted under the inner flow; 1: under the outer (malformed); 2: not counted;
	 * 3: under the outer flow, as no tunnel */
	int result;
	/* the device it comes from: its KZN_DEV_* flags, or 0 for a local socket's */
	__u32 from;
} tunnel_cases[] = {
	{"VXLAN, IPv4 TCP inside", T_VXLAN, V4_TCP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"VXLAN on 8472 (flannel), IPv6 TCP inside", T_VXLAN_8472, V6_TCP, 0, 0,
	 KZN_DEV_IN_DECAPSULATE},
	{"VXLAN over IPv6, IPv4 UDP inside", T_VXLAN, V4_UDP, 1, 0, KZN_DEV_IN_DECAPSULATE},
	{"VXLAN on a port named with --tunnel-port", T_VXLAN_4790, V4_TCP, 0, 0,
	 KZN_DEV_IN_DECAPSULATE},
	{"VXLAN-shaped UDP on a port nobody named: plain UDP", T_UDP_4791, V4_TCP, 0, 3,
	 KZN_DEV_IN_DECAPSULATE},
	{"VXLAN, a VLAN tag inside, IPv6 TCP", T_VXLAN_VLAN, V6_TCP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"VXLAN, IPv6 with extension headers inside", T_VXLAN, V6_EXT_UDP, 0, 0,
	 KZN_DEV_IN_DECAPSULATE},
	{"Geneve with options, IPv4 TCP inside", T_GENEVE, V4_TCP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"Geneve with options, IPv6 TCP inside", T_GENEVE, V6_TCP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"Geneve carrying IP directly", T_GENEVE_IP, V4_UDP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"IP in IPv4", T_IPIP, V4_TCP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"IPv6 in IPv4", T_IPIP, V6_TCP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"IPv4 in IPv6", T_IPIP, V4_UDP, 1, 0, KZN_DEV_IN_DECAPSULATE},
	{"GRE, IPv4 inside", T_GRE, V4_TCP, 0, 0, KZN_DEV_IN_DECAPSULATE},
	{"GRE with checksum and key, Ethernet, IPv6 inside", T_GRE_KEY_CSUM, V6_TCP, 0, 0,
	 KZN_DEV_IN_DECAPSULATE},
	{"VXLAN, IPv4 later fragment inside: port 0", T_VXLAN, V4_LATER_FRAGMENT, 0, 0,
	 KZN_DEV_IN_DECAPSULATE},
	{"malformed: VXLAN without the I flag", T_VXLAN_NO_I, V4_TCP, 0, 1, KZN_DEV_IN_DECAPSULATE},
	{"malformed: VXLAN carrying ARP", T_VXLAN_ARP, V4_TCP, 0, 1, KZN_DEV_IN_DECAPSULATE},
	{"malformed: inner IPv4 header cut short", T_VXLAN_CUT, V4_TCP, 0, 1,
	 KZN_DEV_IN_DECAPSULATE},
	{"malformed: inner header of another version", T_VXLAN_VERSION, V4_TCP, 0, 1,
	 KZN_DEV_IN_DECAPSULATE},
	{"malformed: GRE version 1", T_GRE_V1, V4_TCP, 0, 1, KZN_DEV_IN_DECAPSULATE},
	{"WireGuard's outer packet, from its device: not counted", T_WIREGUARD, V4_TCP, 0, 2,
	 KZN_DEV_IN_SKIP},
	{"the node's own ESP: not counted", T_ESP, V4_TCP, 0, 2, 0},
	{"a pod's UDP to 4789, VXLAN-shaped: plain UDP", T_VXLAN, V4_TCP, 0, 3, 0},
	{"a pod's UDP to 51820: plain UDP", T_WIREGUARD, V4_TCP, 0, 3, 0},
};

static void test_tunnels(void)
{
	for (size_t i = 0; i < sizeof(tunnel_cases) / sizeof(tunnel_cases[0]); i++) {
		struct packet inner, p;
		struct kzn_flow_key want;
		struct kzn_flow_value v = {0};
		size_t outer_len;
		int result = tunnel_cases[i].result;

		clear_maps();
		build(&inner, tunnel_cases[i].inner, 40000, 443);
		outer_len = encap(&p, &inner, tunnel_cases[i].outer6, tunnel_cases[i].tunnel);
		for (int k = 0; k < 2; k++)
			EXPECT_EQ(tunnel_cases[i].from ? run_from_device(&p, tunnel_cases[i].from)
						       : run(&p),
				  NF_ACCEPT);
		if (result == 0) {
			uint16_t port = tunnel_cases[i].inner == V4_LATER_FRAGMENT ? 0 : 443;
			key_of(&inner, port, &want);
			if (inner.pf == NFPROTO_IPV6)
				want.protocol = tunnel_cases[i].inner == V6_EXT_UDP ? 17 : 6;
		} else {
			/* The outer flow: UDP's smaller port, or none. */
			uint16_t dport = (uint16_t)(p.b[22] << 8 | p.b[23]);
			key_of(&p, p.b[9] != 17 ? 0 : dport < 33333 ? dport : 33333, &want);
		}
		if (result == 2) {
			EXPECT_EQ(count_flows(), 0);
			EXPECT_EQ(loss(KZN_LOSS_MALFORMED_INNER_PACKETS), 0);
		} else if (bpf_map_lookup_elem(flows_fd, &want, &v) != 0) {
			struct kzn_flow_key got = {0};

			bpf_map_get_next_key(flows_fd, NULL, &got);
			test_fail(__FILE__, __LINE__,
				  "no flow under the expected key (%d flows; the first: family %u "
				  "protocol %u port %u, %u.%u.%u.%u)",
				  count_flows(), got.family, got.protocol, got.port, got.src[12],
				  got.src[13], got.src[14], got.src[15]);
		} else {
			EXPECT_EQ(v.packets, 2);
			EXPECT_EQ(v.bytes, 2 * p.len);
			EXPECT_EQ(v.encap_bytes, result == 0 ? 2 * outer_len : 0);
			EXPECT_EQ(count_flows(), 1);
			EXPECT_EQ(loss(KZN_LOSS_MALFORMED_INNER_PACKETS), result == 1 ? 2 : 0);
		}
		test_result("bpf tunnel: %s", tunnel_cases[i].name);
	}
}

static void test_tcp_and_udp_are_separate(void)
{
	struct packet t, u;

	clear_maps();
	build(&t, V4_TCP, 40000, 443);
	build(&u, V4_UDP, 40000, 443);
	run(&t);
	run(&u);
	EXPECT_EQ(count_flows(), 2);
}

static void test_wrong_version_is_counted_as_unparsed(void)
{
	struct packet p;

	clear_maps();
	build(&p, V6_TCP, 1, 2);
	p.pf = NFPROTO_IPV4; /* an IPv6 packet at the IPv4 hook: no IPv4 header to read */
	EXPECT_EQ(run(&p), NF_ACCEPT);
	EXPECT_EQ(count_flows(), 0);
	EXPECT_EQ(loss(KZN_LOSS_UNPARSED_PACKETS), 1);
	EXPECT_EQ(loss(KZN_LOSS_UNPARSED_BYTES), p.len);
}

static void test_full_map_goes_to_loss(void)
{
	__u64 total = 0;
	unsigned int entries = bpf_map__max_entries(skel->maps.kzn_flows_a);

	clear_maps();
	for (unsigned int i = 0; i < entries + 100; i++) {
		struct packet p;
		build(&p, V4_UDP, 40000, (uint16_t)(1 + i));
		run(&p);
		total += p.len;
	}
	EXPECT_EQ(count_flows(), entries);
	EXPECT_EQ(loss(KZN_LOSS_MAP_FULL_PACKETS), 100);
	/* every flow was a 120-byte packet: what the map holds plus the loss is everything */
	EXPECT_EQ(loss(KZN_LOSS_MAP_FULL_BYTES) + (__u64)entries * 120, total);
}

/*
 * Two threads run the program on the same 1,000 new flows, released together for each flow by
 * a spinning barrier (a futex wake-up would be too slow to make the first packets of a flow
 * race each other in the kernel).
 */
#define LOCKSTEP_FLOWS 1000
static _Atomic int lockstep_arrived[LOCKSTEP_FLOWS];

static void *lockstep_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < LOCKSTEP_FLOWS; i++) {
		struct packet p;
		build(&p, V6_TCP, (uint16_t)(10000 + i), 60000);
		lockstep_arrived[i]++;
		while (lockstep_arrived[i] < 2)
			;
		run(&p);
	}
	return NULL;
}

static void test_lockstep_new_flows(void)
{
	pthread_t t[2];
	int missing = 0;

	clear_maps();
	pthread_create(&t[0], NULL, lockstep_thread, NULL);
	pthread_create(&t[1], NULL, lockstep_thread, NULL);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	for (int i = 0; i < LOCKSTEP_FLOWS; i++) {
		struct packet p;
		struct kzn_flow_key k;
		struct kzn_flow_value v = {0};

		build(&p, V6_TCP, (uint16_t)(10000 + i), 60000);
		key_of(&p, (uint16_t)(10000 + i), &k);
		k.protocol = 6;
		bpf_map_lookup_elem(flows_fd, &k, &v);
		if (v.packets != 2 || v.bytes != 2 * p.len)
			missing++;
	}
	if (missing)
		test_fail(__FILE__, __LINE__, "%d of %d flows lost a count", missing,
			  LOCKSTEP_FLOWS);
}

int main(void)
{
	__u32 zero = 0;
	struct bpf_map *map;
	const char *skip = NULL;

	if (geteuid() != 0)
		skip = "needs root";
	else if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
		skip = "needs kernel BTF";
	if (skip) {
		printf("ok - bpf: program tests # SKIP %s\n", skip);
		return 0;
	}
	libbpf_set_print(NULL);
	skel = kubezonnet_bpf__open();
	if (!skel) {
		printf("not ok - bpf: open\n");
		return 1;
	}
	bpf_object__for_each_map(map, skel->obj) bpf_map__set_pin_path(map, NULL);
	bpf_map__set_max_entries(skel->maps.kzn_flows_a, KZN_MAP_ENTRIES_MIN);
	bpf_map__set_max_entries(skel->maps.kzn_flows_b, KZN_MAP_ENTRIES_MIN);
	skel->rodata->kzn_vxlan_port = 4790; /* as --tunnel-port vxlan:4790 sets it */
	if (kubezonnet_bpf__load(skel) != 0) {
		printf("not ok - bpf: load: %s\n", strerror(errno));
		return 1;
	}
	prog_fd = bpf_program__fd(skel->progs.kzn_postrouting);
	flows_fd = bpf_map__fd(skel->maps.kzn_flows_a);
	loss_fd = bpf_map__fd(skel->maps.kzn_loss);
	bpf_map_update_elem(bpf_map__fd(skel->maps.kzn_active), &zero, &zero, BPF_ANY);

	test_table();
	test_tunnels();
	RUN(test_tcp_and_udp_are_separate);
	RUN(test_wrong_version_is_counted_as_unparsed);
	RUN(test_full_map_goes_to_loss);
	RUN(test_lockstep_new_flows);
	kubezonnet_bpf__destroy(skel);
	return test_done();
}
