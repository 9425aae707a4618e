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
 * The kfuncs' parameter type; only its name matters (libbpf matches kfunc prototypes against
 * the kernel's by struct name, and a forward declaration does not match).
 */
struct __sk_buff {
	__u32 len;
};

/* Kernel-internal types, relocated by CO-RE. */

struct sk_buff {
	unsigned int len;
	unsigned char *head;
	unsigned int end;
	__u16 transport_header;
	__u16 network_header;
} __attribute__((preserve_access_index));

struct skb_shared_info {
	unsigned short gso_size;
	unsigned short gso_segs;
	unsigned int gso_type;
} __attribute__((preserve_access_index));

struct net_device {
	int ifindex;
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
