/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * kubezonnet.bpf.c: the netfilter POSTROUTING program. It sees every packet leaving the node's
 * network namespace and always lets it through.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kubezonnet.h"

/* Packets seen, per CPU: proves the hook runs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kzn_seen SEC(".maps");

SEC("netfilter")
int kzn_postrouting(struct bpf_nf_ctx *ctx)
{
	__u32 zero = 0;
	__u64 *seen = bpf_map_lookup_elem(&kzn_seen, &zero);

	if (seen)
		(*seen)++;
	return NF_ACCEPT;
}

/* GPL-compatible, as the kernel requires for the helpers it uses. */
char LICENSE[] SEC("license") = "GPL";
