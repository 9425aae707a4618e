/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * A lower bound for the forwarding benchmark (bench/veth_bench.sh): kubezonnet's own parse,
 * then one atomic add into a 64-byte line of a table as large as a default flow map, chosen by
 * the flow, and nothing else (no key kept, no insert, flows that share a line share a count).
 * Any program that keeps a count per flow touches at least that one line per packet; when many
 * flows take turns, it is no longer in the CPU's caches, and that miss is what this program
 * costs over the parse.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "kubezonnet.h"
#include "kubezonnet_parse.h"

#define FLOOR_LINES 65536 /* KZN_MAP_ENTRIES_DEFAULT */

struct floor_line {
	__u64 bytes;
	__u64 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOOR_LINES);
	__type(key, __u32);
	__type(value, struct floor_line);
} kzn_floor_lines SEC(".maps");

SEC("netfilter")
int kzn_bench_one_add(struct bpf_nf_ctx *ctx)
{
	struct kzn_flow_key key = {};
	struct kzn_packet pkt;
	const __u32 *w = (const __u32 *)&key;
	__u32 h = 0x9e3779b9, i;
	struct floor_line *line;

	if (kzn_parse(ctx, &key, &pkt) != KZN_PARSED)
		return NF_ACCEPT;
	for (i = 0; i < sizeof(key) / 4; i++) {
		h = (h ^ w[i]) * 0x85ebca6b;
		h ^= h >> 15;
	}
	i = h % FLOOR_LINES;
	line = bpf_map_lookup_elem(&kzn_floor_lines, &i);
	if (line)
		__sync_fetch_and_add(&line->bytes, pkt.bytes);
	return NF_ACCEPT;
}

char LICENSE[] SEC("license") = "GPL";
