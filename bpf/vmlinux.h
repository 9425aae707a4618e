/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmlinux.h: only the kernel types kubezonnet.bpf.c uses, instead of a 100,000-line dump of
 * the running kernel's BTF. Kernel-internal structs carry preserve_access_index, so libbpf's
 * CO-RE relocations find each field by name in the target kernel's BTF: their layout here
 * does not need to match any kernel, only their field names and types do.
 */
#ifndef KUBEZONNET_VMLINUX_H
#define KUBEZONNET_VMLINUX_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };

/* UAPI values (include/uapi/linux/bpf.h, netfilter.h, in.h): stable ABI, not relocated. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PROG_ARRAY = 3,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	NF_DROP = 0,
	NF_ACCEPT = 1,
};

enum {
	NFPROTO_IPV4 = 2,
	NFPROTO_IPV6 = 10,
};

struct bpf_dynptr {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

/*
 * The context of socket-level (cgroup_skb) programs, and the kfuncs' parameter type. A UAPI
 * struct: the verifier rewrites each field access by its offset, so the layout is
 * include/uapi/linux/bpf.h's, field for field (the fields after napi_id are read only by
 * other program types, but give gso_segs and gso_size their offsets).
 */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	union {
		void *flow_keys;
		__u64 : 64;
	} __attribute__((aligned(8)));
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	union {
		void *sk;
		__u64 : 64;
	} __attribute__((aligned(8)));
	__u32 gso_size;
	__u8 tstamp_type;
	__u32 : 24;
	__u64 hwtstamp;
};

/* Kernel-internal types, relocated by CO-RE. */

struct net_device;

struct sk_buff {
	unsigned int len;
	unsigned int data_len;
	unsigned char *head;
	unsigned char *data;
	unsigned int end;
	__u16 transport_header;
	__u16 network_header;
	struct net_device *dev;
} __attribute__((preserve_access_index));

struct skb_shared_info {
	unsigned short gso_size;
	unsigned short gso_segs;
	unsigned int gso_type;
} __attribute__((preserve_access_index));

struct net_device {
	int ifindex;
	unsigned int mtu;
} __attribute__((preserve_access_index));

/* Headers, read through bpf_core_cast (read-only, untrusted: a bad address reads zeros). */
struct iphdr {
	__u8 ihl : 4;
	__u8 version : 4;
	__be16 frag_off;
	__u8 protocol;
	__be32 saddr;
	__be32 daddr;
} __attribute__((preserve_access_index));

struct in6_addr {
	union {
		__be32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

struct ipv6hdr {
	__u8 priority : 4;
	__u8 version : 4;
	__u8 nexthdr;
	struct in6_addr saddr;
	struct in6_addr daddr;
} __attribute__((preserve_access_index));

struct udphdr {
	__be16 source;
	__be16 dest;
} __attribute__((preserve_access_index));

struct tcphdr {
	__be16 source;
	__be16 dest;
	__u16 res1 : 4;
	__u16 doff : 4;
} __attribute__((preserve_access_index));

struct nf_hook_state {
	u8 hook;
	u8 pf;
	struct net_device *in;
	struct net_device *out;
} __attribute__((preserve_access_index));

struct bpf_nf_ctx {
	const struct nf_hook_state *state;
	struct sk_buff *skb;
} __attribute__((preserve_access_index));

#endif /* KUBEZONNET_VMLINUX_H */
