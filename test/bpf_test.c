/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The BPF program itself, run by the kernel with BPF_PROG_TEST_RUN on packets built here, as
 * in the kernel's selftests: a table of packets and the flow key each must land under (with
 * malformed and tricky packets as rows), the loss counters of a full map, two threads
 * inserting the same new flows in lock step, where every byte must be counted, and the parse
 * without helper calls against the general parse on thousands of generated packets.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/netfilter.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/kubezonnet.h"
#include "kubezonnet.skel.h"
#include "../wire.h"
#include "test.h"
#include "bpf_run.h"

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

/*
 * The common case's parse without helper calls (kzn_parse_nf_direct, kzn_parse_skb_direct)
 * against the general parse it stands in for: a second copy of the program, loaded with
 * kzn_direct = 0, takes the general parse for every packet. Both run the same packets at
 * both hooks: valid IPv4 and IPv6 packets of every protocol, and the same mutated (header
 * lengths, versions, fragments, IPv6 extension header chains, L4 headers cut short, tiny
 * packets, random bytes), from a seeded generator so that a failure repeats. After each
 * packet both flow maps and both sets of per-CPU loss counters must be equal, entry by entry.
 * A netfilter test run's skb has no GSO, so there the header length (what each extra GSO
 * segment repeats) is not seen; at the cgroup hook the context sets gso_size and gso_segs,
 * and packets above the device's MTU are counted as its fragments, from the IP header length.
 */
#define DIFF_PACKETS 4000 /* per hook and family */
#define DIFF_MAX_LEN 1600 /* above a device MTU of 1500: counted as fragments at cgroup */
#define DIFF_SEED    0x6b7a6e2d64696666ull
#define DIFF_FLOWS   4 /* flows one packet can leave (it leaves one at most) */

struct diff_side {
	const char *name;
	struct kubezonnet_bpf *skel;
	int nf_fd, socket_fd, flows_fd, loss_fd;
};

struct diff_packet {
	uint8_t b[DIFF_MAX_LEN];
	size_t len, l4_off; /* l4_off: where the valid packet's L4 header began */
	int family;	    /* 4 or 6: the hook's protocol family, whatever the bytes say */
	uint32_t gso_size, gso_segs;
};

static uint64_t diff_state;

/* diff_random: splitmix64, the same numbers from the same seed on every machine. */
static uint32_t diff_random(void)
{
	uint64_t z = (diff_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static uint32_t diff_below(uint32_t n)
{
	return diff_random() % n;
}

/* diff_port: any port, a well-known one, or one of a few (source and destination may tie). */
static uint16_t diff_port(void)
{
	switch (diff_below(3)) {
	case 0:
		return (uint16_t)diff_random();
	case 1:
		return (uint16_t)diff_below(1024);
	}
	return (uint16_t)(1 + diff_below(3));
}

/* diff_l4 writes a valid header of protocol at h; returns its length (0: none). */
static size_t diff_l4(uint8_t *h, uint8_t protocol)
{
	size_t doff;

	switch (protocol) {
	case IPPROTO_TCP:
		doff = 5 + (diff_below(4) ? 0 : diff_below(11));
		wire_put16(h, diff_port());
		wire_put16(h + 2, diff_port());
		h[12] = (uint8_t)(doff << 4);
		return doff * 4;
	case IPPROTO_UDP:
		wire_put16(h, diff_port());
		wire_put16(h + 2, diff_port());
		return 8;
	case IPPROTO_SCTP:
		wire_put16(h, diff_port());
		wire_put16(h + 2, diff_port());
		return 12;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
	case IPPROTO_ESP:
		return 8;
	}
	return 0;
}

/*
 * diff_valid builds in p a valid packet of p->family: IPv4 with or without options, IPv6
 * with or without a chain of extension headers (every kind, fragments first or later), then
 * TCP, UDP, ICMP, SCTP, ESP or another protocol, and a payload of random bytes.
 */
static void diff_valid(struct diff_packet *p)
{
	static const uint8_t v4_protocols[] = {IPPROTO_TCP,  IPPROTO_TCP,  IPPROTO_UDP, IPPROTO_UDP,
					       IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_ESP, IPPROTO_GRE,
					       IPPROTO_IPIP, IPPROTO_IPV6, 255};
	static const uint8_t v6_protocols[] = {IPPROTO_TCP, IPPROTO_TCP,    IPPROTO_UDP,
					       IPPROTO_UDP, IPPROTO_ICMPV6, IPPROTO_SCTP,
					       IPPROTO_ESP, 59 /* none */,  255};
	static const uint8_t extensions[] = {IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT,
					     IPPROTO_AH,      IPPROTO_DSTOPTS, IPPROTO_MH};
	uint8_t protocol;
	size_t off, l4_len, payload, room;

	for (size_t i = 0; i < sizeof(p->b); i++)
		p->b[i] = (uint8_t)diff_random();
	if (p->family == 4) {
		protocol = v4_protocols[diff_below(sizeof(v4_protocols))];
		if (protocol == 255)
			protocol = (uint8_t)diff_random();
		off = 20 + (diff_below(4) ? 0 : 4 * diff_below(11));
		p->b[0] = (uint8_t)(0x40 | off / 4);
		wire_put16(p->b + 6, diff_below(2) ? 0x4000 : 0); /* DF or not, offset 0 */
		p->b[9] = protocol;
	} else {
		uint8_t *next = p->b + 6;
		size_t n = diff_below(3) ? 0 : 1 + diff_below(KZN_IPV6_EXT_MAX + 2);

		protocol = v6_protocols[diff_below(sizeof(v6_protocols))];
		if (protocol == 255)
			protocol = (uint8_t)diff_random();
		p->b[0] = (uint8_t)(0x60 | (p->b[0] & 0x0f));
		off = 40;
		for (size_t i = 0; i < n; i++) {
			uint8_t type = extensions[diff_below(sizeof(extensions))];

			*next = type;
			next = p->b + off;
			if (type == IPPROTO_FRAGMENT) {
				/* Mostly the first fragment (offset 0, M set or not). */
				uint16_t frag = (uint16_t)(diff_below(3) ? diff_below(2)
									 : diff_random() & 0xfff9);

				wire_put16(p->b + off + 2, frag);
				off += 8;
			} else if (type == IPPROTO_AH) {
				p->b[off + 1] = (uint8_t)(1 + diff_below(4)); /* 12 to 24 bytes */
				off += ((size_t)p->b[off + 1] + 2) * 4;
			} else {
				p->b[off + 1] = (uint8_t)diff_below(3); /* 8 to 24 bytes */
				off += ((size_t)p->b[off + 1] + 1) * 8;
			}
		}
		*next = protocol;
	}
	p->l4_off = off;
	l4_len = diff_l4(p->b + off, protocol);
	room = sizeof(p->b) - off - l4_len;
	payload = diff_below(8) ? diff_below(65) : diff_below((uint32_t)room + 1);
	p->len = off + l4_len + payload;
	if (p->family == 4)
		wire_put16(p->b + 2, (uint16_t)p->len);
	else
		wire_put16(p->b + 4, (uint16_t)(p->len - 40));
	if (protocol == IPPROTO_UDP)
		wire_put16(p->b + off + 4, (uint16_t)(p->len - off));
}

/* diff_mutate changes one thing in p, as a broken or hostile sender might. */
static void diff_mutate(struct diff_packet *p)
{
	static const uint16_t v4_frags[] = {0x2000, 0x0001, 0x2001, 0x1fff, 0x3fff, 0x8000, 0x6000};
	static const uint8_t protocols[] = {0,	1,  4,	6,  17,	 41,  43,  44,	47, 50,
					    51, 58, 59, 60, 132, 135, 139, 140, 255};
	size_t at, end = p->l4_off + 24 < p->len ? p->l4_off + 24 : p->len;

	switch (diff_below(10)) {
	case 0: /* IHL 0 to 15; IPv6: the payload length */
		if (p->family == 4)
			p->b[0] = (uint8_t)((p->b[0] & 0xf0) | diff_below(16));
		else
			wire_put16(p->b + 4, (uint16_t)diff_random());
		break;
	case 1: /* a version nibble, mostly a wrong one */
		p->b[0] = (uint8_t)(diff_below(16) << 4 | (p->b[0] & 0x0f));
		break;
	case 2: /* the total length short or long (neither parse reads it) */
		wire_put16(p->b + (p->family == 4 ? 2 : 4),
			   (uint16_t)(p->len + diff_below(64) - 32));
		break;
	case 3: /* fragments: IPv4 offset and MF; IPv6 a fragment header put in front */
		if (p->family == 4 && diff_below(2)) {
			wire_put16(p->b + 6, diff_below(2)
						     ? v4_frags[diff_below(sizeof(v4_frags) /
									   sizeof(v4_frags[0]))]
						     : (uint16_t)diff_random());
		} else if (p->family == 4) {
			/* One bit of the offset, with or without MF and DF. */
			wire_put16(p->b + 6,
				   (uint16_t)(1u << diff_below(13) | diff_below(4) << 13));
		} else if (p->len >= 40 && p->len + 8 <= sizeof(p->b)) {
			memmove(p->b + 48, p->b + 40, p->len - 40);
			p->b[40] = p->b[6];
			p->b[41] = 0;
			wire_put16(p->b + 42, (uint16_t)(diff_below(2) ? diff_below(2)
								       : diff_random() & 0xfff9));
			p->b[6] = IPPROTO_FRAGMENT;
			p->len += 8, p->l4_off += 8;
		}
		break;
	case 4: /* cut short, mostly inside the L4 header */
		p->len = diff_below(2) ? p->l4_off + diff_below(20) : 1 + diff_below(80);
		if (p->len > sizeof(p->b))
			p->len = sizeof(p->b);
		break;
	case 5: /* a TCP data offset of 0 to 15 */
		if (p->l4_off + 12 < sizeof(p->b))
			p->b[p->l4_off + 12] = (uint8_t)(diff_below(16) << 4);
		break;
	case 6: /* tiny */
		p->len = 1 + diff_below(40);
		break;
	case 7: /* random bytes, half of them with the right version */
		for (size_t i = 0; i < p->len; i++)
			p->b[i] = (uint8_t)diff_random();
		if (diff_below(2))
			p->b[0] = (uint8_t)(p->family << 4 | (p->b[0] & 0x0f));
		break;
	case 8: /* one byte of the headers changed */
		at = diff_below((uint32_t)(end ? end : 1));
		p->b[at] ^= (uint8_t)(1 + diff_below(255));
		break;
	case 9: /* the protocol or next header, often one that has a header of its own */
		p->b[p->family == 4 ? 9 : 6] = diff_below(4)
						       ? protocols[diff_below(sizeof(protocols))]
						       : (uint8_t)diff_random();
		break;
	}
	if (p->len == 0)
		p->len = 1;
}

static void diff_packet(struct diff_packet *p, int family, int cgroup)
{
	p->family = family;
	diff_valid(p);
	if (diff_below(4))
		for (uint32_t n = 1 + diff_below(3); n > 0; n--)
			diff_mutate(p);
	p->gso_size = p->gso_segs = 0;
	if (cgroup && !diff_below(4)) {
		p->gso_size = 1 + diff_below(diff_below(2) ? 64 : 1500);
		p->gso_segs = diff_below(2) ? 0 : diff_below(64);
	}
}

/* diff_run runs p through side's program at the hook; the verdict, or -errno. */
static int diff_run(const struct diff_side *s, const struct diff_packet *p, int cgroup, int ifindex)
{
	uint8_t frame[14 + DIFF_MAX_LEN] = {0};
	struct test_nf_state st = {.hook = NF_INET_LOCAL_OUT,
				   .pf = p->family == 4 ? NFPROTO_IPV4 : NFPROTO_IPV6};
	struct __sk_buff ctx = {
		.ifindex = (__u32)ifindex, .gso_size = p->gso_size, .gso_segs = p->gso_segs};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .repeat = 1);

	if (cgroup) {
		wire_put16(frame + 12, p->family == 4 ? 0x0800 : 0x86dd);
		memcpy(frame + 14, p->b, p->len);
		opts.data_in = frame, opts.data_size_in = (__u32)(14 + p->len);
		opts.ctx_in = &ctx, opts.ctx_size_in = sizeof(ctx);
	} else {
		opts.data_in = p->b, opts.data_size_in = (__u32)p->len;
		opts.ctx_in = &st, opts.ctx_size_in = sizeof(st);
	}
	if (bpf_prog_test_run_opts(cgroup ? s->socket_fd : s->nf_fd, &opts) != 0)
		return -errno;
	return (int)opts.retval;
}

/* diff_take empties side's flow map into keys and values; returns how many it held. */
static int diff_take(const struct diff_side *s, struct kzn_flow_key *keys,
		     struct kzn_flow_value *values)
{
	int n = 0;

	while (n < DIFF_FLOWS && bpf_map_get_next_key(s->flows_fd, NULL, &keys[n]) == 0) {
		memset(&values[n], 0, sizeof(values[n]));
		bpf_map_lookup_elem(s->flows_fd, &keys[n], &values[n]);
		bpf_map_delete_elem(s->flows_fd, &keys[n]);
		n++;
	}
	return n;
}

static void diff_flow_text(char *out, size_t size, const struct kzn_flow_key *k,
			   const struct kzn_flow_value *v)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];

	inet_ntop(AF_INET6, k->src, src, sizeof(src));
	inet_ntop(AF_INET6, k->dst, dst, sizeof(dst));
	snprintf(out, size, "family %u protocol %u port %u %s > %s: %llu bytes, %llu packets",
		 k->family, k->protocol, k->port, src, dst, (unsigned long long)v->bytes,
		 (unsigned long long)v->packets);
}

/*
 * diff_compare checks that both sides counted the packet alike (the same verdict, the same
 * flows and values, the same loss counters on every CPU) and empties both for the next one.
 * Returns 0, or 1 with the first difference written to why. *flows and *unparsed count what
 * the general parse did with the packet.
 */
static int diff_compare(const struct diff_side s[2], const int verdict[2], char *why, size_t size,
			int *flows, int *unparsed)
{
	static const char *const slots[KZN_LOSS_SLOTS] = {
		"map full packets",	   "map full bytes",
		"no map packets",	   "no map bytes",
		"unparsed packets",	   "unparsed bytes",
		"malformed inner packets", "malformed inner bytes"};
	struct kzn_flow_key keys[2][DIFF_FLOWS];
	struct kzn_flow_value values[2][DIFF_FLOWS];
	int n[2], cpus = libbpf_num_possible_cpus(), differ = 0;
	char a[160], b[160];

	n[0] = diff_take(&s[0], keys[0], values[0]);
	n[1] = diff_take(&s[1], keys[1], values[1]);
	*flows += n[1] > 0;
	if (verdict[0] != verdict[1]) {
		snprintf(why, size, "verdict %d (%s), %d (%s)", verdict[0], s[0].name, verdict[1],
			 s[1].name);
		differ = 1;
	}
	for (int i = 0; i < n[0] && !differ; i++) {
		int j = 0;

		while (j < n[1] && memcmp(&keys[0][i], &keys[1][j], sizeof(keys[0][i])) != 0)
			j++;
		if (j < n[1] && memcmp(&values[0][i], &values[1][j], sizeof(values[0][i])) == 0)
			continue;
		diff_flow_text(a, sizeof(a), &keys[0][i], &values[0][i]);
		if (j < n[1])
			diff_flow_text(b, sizeof(b), &keys[1][j], &values[1][j]);
		else if (n[1] > 0)
			diff_flow_text(b, sizeof(b), &keys[1][0], &values[1][0]);
		else
			snprintf(b, sizeof(b), "no flow");
		snprintf(why, size, "%s: %s; %s: %s", s[0].name, a, s[1].name, b);
		differ = 1;
	}
	if (!differ && n[0] != n[1]) {
		if (n[1] > 0)
			diff_flow_text(b, sizeof(b), &keys[1][0], &values[1][0]);
		snprintf(why, size, "%d flows (%s), %d (%s)%s%s", n[0], s[0].name, n[1], s[1].name,
			 n[1] > 0 ? "; the latter's: " : "", n[1] > 0 ? b : "");
		differ = 1;
	}
	for (__u32 slot = 0; slot < KZN_LOSS_SLOTS; slot++) {
		__u64 v[2][cpus], any = 0, general = 0;

		memset(v, 0, sizeof(v));
		bpf_map_lookup_elem(s[0].loss_fd, &slot, v[0]);
		bpf_map_lookup_elem(s[1].loss_fd, &slot, v[1]);
		for (int c = 0; c < cpus; c++) {
			any |= v[0][c] | v[1][c];
			general += v[1][c];
			if (v[0][c] != v[1][c] && !differ) {
				snprintf(why, size, "loss %s on CPU %d: %llu (%s), %llu (%s)",
					 slots[slot], c, (unsigned long long)v[0][c], s[0].name,
					 (unsigned long long)v[1][c], s[1].name);
				differ = 1;
			}
		}
		if (slot == KZN_LOSS_UNPARSED_PACKETS)
			*unparsed += general != 0;
		if (any) {
			memset(v, 0, sizeof(v));
			bpf_map_update_elem(s[0].loss_fd, &slot, v[0], BPF_ANY);
			bpf_map_update_elem(s[1].loss_fd, &slot, v[1], BPF_ANY);
		}
	}
	return differ;
}

static void diff_hex(char *out, size_t size, const struct diff_packet *p)
{
	size_t n = p->len < 64 ? p->len : 64, used = 0;

	out[0] = 0;
	for (size_t i = 0; i < n && used + 4 < size; i++)
		used += (size_t)snprintf(out + used, size - used, "%02x", p->b[i]);
	if (n < p->len && used + 4 < size)
		snprintf(out + used, size - used, "...");
}

/*
 * test_direct_parse runs DIFF_PACKETS packets of family (4 or 6) through both sides at one
 * hook (cgroup: the socket-level one, on device ifindex) and prints its line.
 */
static void test_direct_parse(const struct diff_side s[2], int family, int cgroup, int ifindex)
{
	static struct diff_packet p;
	int flows = 0, unparsed = 0, differ = 0;
	char why[512], hex[160];

	diff_state = DIFF_SEED + (uint64_t)family * 2 + (uint64_t)cgroup;
	for (int i = 0; i < DIFF_PACKETS; i++) {
		int verdict[2];

		diff_packet(&p, family, cgroup);
		verdict[0] = diff_run(&s[0], &p, cgroup, ifindex);
		verdict[1] = diff_run(&s[1], &p, cgroup, ifindex);
		if (!diff_compare(s, verdict, why, sizeof(why), &flows, &unparsed))
			continue;
		if (differ++ > 0)
			continue; /* the first is told in full, the rest counted */
		diff_hex(hex, sizeof(hex), &p);
		test_fail(__FILE__, __LINE__,
			  "packet %d (%zu bytes, gso_size %u gso_segs %u: %s): %s", i, p.len,
			  p.gso_size, p.gso_segs, hex, why);
	}
	if (differ > 1)
		test_fail(__FILE__, __LINE__, "%d of %d packets differ", differ, DIFF_PACKETS);
	test_result("bpf direct parse: IPv%d %s, %d packets (%d under a flow, %d unparsed), same "
		    "keys, bytes, packets and loss as the general parse",
		    family, cgroup ? "cgroup" : "netfilter", DIFF_PACKETS, flows, unparsed);
}

/*
 * test_direct_parses loads the program a second time with kzn_direct = 0 and runs both
 * copies at both hooks on the same packets. The thread stays on one CPU meanwhile, so that
 * the per-CPU loss counters of both copies can be compared entry by entry.
 */
static void test_direct_parses(void)
{
	struct diff_side s[2] = {{.name = "direct", .skel = skel}, {.name = "general"}};
	cpu_set_t was, one;
	struct bpf_map *map;
	__u32 zero = 0;
	int ifindex = a_device();

	s[1].skel = kubezonnet_bpf__open();
	if (!s[1].skel) {
		printf("not ok - bpf direct parse: open\n");
		test_failed_cases++;
		return;
	}
	bpf_object__for_each_map(map, s[1].skel->obj) bpf_map__set_pin_path(map, NULL);
	bpf_map__set_max_entries(s[1].skel->maps.kzn_flows_a, KZN_MAP_ENTRIES_MIN);
	bpf_map__set_max_entries(s[1].skel->maps.kzn_flows_b, KZN_MAP_ENTRIES_MIN);
	s[1].skel->rodata->kzn_vxlan_port = skel->rodata->kzn_vxlan_port;
	s[1].skel->rodata->kzn_direct = 0;
	if (kubezonnet_bpf__load(s[1].skel) != 0) {
		printf("not ok - bpf direct parse: load with kzn_direct = 0: %s\n",
		       strerror(errno));
		test_failed_cases++;
		kubezonnet_bpf__destroy(s[1].skel);
		return;
	}
	for (int i = 0; i < 2; i++) {
		s[i].nf_fd = bpf_program__fd(s[i].skel->progs.kzn_postrouting);
		s[i].socket_fd = bpf_program__fd(s[i].skel->progs.kzn_socket_egress);
		s[i].flows_fd = bpf_map__fd(s[i].skel->maps.kzn_flows_a);
		s[i].loss_fd = bpf_map__fd(s[i].skel->maps.kzn_loss);
		bpf_map_update_elem(bpf_map__fd(s[i].skel->maps.kzn_active), &zero, &zero, BPF_ANY);
	}
	clear_maps();
	sched_getaffinity(0, sizeof(was), &was);
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	sched_setaffinity(0, sizeof(one), &one);
	for (int cgroup = 0; cgroup < 2; cgroup++) {
		for (int family = 4; family <= 6; family += 2) {
			if (cgroup && !ifindex)
				printf("ok - bpf direct parse: IPv%d cgroup # SKIP no device but "
				       "loopback\n",
				       family);
			else
				test_direct_parse(s, family, cgroup, ifindex);
		}
	}
	sched_setaffinity(0, sizeof(was), &was);
	kubezonnet_bpf__destroy(s[1].skel);
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
	test_direct_parses();
	kubezonnet_bpf__destroy(skel);
	return test_done();
}
