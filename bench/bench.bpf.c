/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Baselines for the per-packet benchmark: a program that only returns NF_ACCEPT, and one that
 * parses as kubezonnet.bpf.c did before tunnels were read (bench/parse_yardstick.h, a fixed
 * yardstick) and stores nothing; and for the socket-level hook, a cgroup_skb program that only
 * allows.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kubezonnet.h"
#include "parse_yardstick.h"

/* Keeps the parse from being optimised away. */
volatile __u64 kzn_bench_sink;

SEC("netfilter")
int kzn_bench_empty(struct bpf_nf_ctx *ctx)
{
	return NF_ACCEPT;
}

SEC("netfilter")
int kzn_bench_parse(struct bpf_nf_ctx *ctx)
{
	struct kzn_flow_key key = {};
	__u64 bytes, packets;

	kzn_parse(ctx, &key, &bytes, &packets);
	kzn_bench_sink += bytes + packets + key.port + key.src[15];
	return NF_ACCEPT;
}

/* The socket-level hook's baseline (--hook cgroup): a cgroup_skb program that only allows. */
SEC("cgroup_skb/egress")
int kzn_bench_socket_empty(struct __sk_buff *skb)
{
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
