/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * kubezonnet.bpf.c: counts bytes and packets per flow at netfilter POSTROUTING, for IPv4 and
 * IPv6, and always lets the packet through.
 *
 * Lossless draining: the program adds into whichever of two flow maps kzn_active[0] names.
 * The agent switches it to the other (empty) map, then updates the kzn_grace map-in-map,
 * which the kernel answers only after an RCU grace period: when it returns, no running
 * program still adds to the old map, and the agent reads it at leisure while new packets go
 * to the new one. Nothing added during a drain is missed or counted twice.
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
#include "kubezonnet_parse.h"

#define EEXIST 17

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

/* Slot 0: which flow map packets are added to now, 0 (kzn_flows_a) or 1 (kzn_flows_b). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kzn_active SEC(".maps");

/*
 * Not used by the program: the agent updates it after switching kzn_active, because the
 * kernel answers an update of a map-in-map only after an RCU grace period, that is once every
 * program that could still be adding to the old flow map has finished.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, KZN_FLOWS_MAP());
} kzn_grace SEC(".maps");

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

/*
 * kzn_count adds one packet's bytes to its flow in flows. Inlined once per flow map, so that
 * each call site sees one known map and the verifier can inline the hash lookup.
 */
static __always_inline void kzn_count(void *flows, const struct kzn_flow_key *key,
				      const struct kzn_packet *pkt)
{
	struct kzn_flow_value *value = bpf_map_lookup_elem(flows, key);

	if (!value) {
		struct kzn_flow_value init = {
			.bytes = pkt->bytes,
			.packets = pkt->packets,
			.encap_bytes = pkt->encap_bytes,
		};
		long err = bpf_map_update_elem(flows, key, &init, BPF_NOEXIST);

		if (err == 0)
			return;
		/* Another CPU inserted the same flow first: add to its entry. */
		if (err == -EEXIST)
			value = bpf_map_lookup_elem(flows, key);
		if (!value) {
			loss_add(KZN_LOSS_MAP_FULL_PACKETS, pkt->packets, pkt->bytes);
			return;
		}
	}
	__sync_fetch_and_add(&value->bytes, pkt->bytes);
	__sync_fetch_and_add(&value->packets, pkt->packets);
	if (pkt->encap_bytes)
		__sync_fetch_and_add(&value->encap_bytes, pkt->encap_bytes);
}

/*
 * Slot 0: the counting program (kzn_postrouting) that kzn_dispatch hands every packet to.
 * Replacing it is one atomic pointer swap: each packet runs either the old or the new
 * counting program, never both and never neither, which is how an upgrade loses nothing.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kzn_progs SEC(".maps");

/* The socket-level hook's counting program (cgroup_skb), as kzn_progs is the netfilter one's. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kzn_socket_progs SEC(".maps");

/* kzn_account counts a parsed packet (result: enum kzn_parse_result) in the active map. */
static __always_inline void kzn_account(int result, const struct kzn_flow_key *key,
					const struct kzn_packet *pkt)
{
	__u32 zero = 0, *active;

	switch (result) {
	case KZN_UNPARSED:
		loss_add(KZN_LOSS_UNPARSED_PACKETS, pkt->packets, pkt->bytes);
		return;
	case KZN_SKIP:
		return;
	case KZN_MALFORMED_INNER:
		loss_add(KZN_LOSS_MALFORMED_INNER_PACKETS, pkt->packets, pkt->bytes);
		break;
	}
	active = bpf_map_lookup_elem(&kzn_active, &zero);
	if (!active)
		loss_add(KZN_LOSS_NO_MAP_PACKETS, pkt->packets, pkt->bytes);
	else if (*active)
		kzn_count(&kzn_flows_b, key, pkt);
	else
		kzn_count(&kzn_flows_a, key, pkt);
}

SEC("netfilter")
int kzn_postrouting(struct bpf_nf_ctx *ctx)
{
	struct kzn_flow_key key = {};
	struct kzn_packet pkt;

	kzn_account(kzn_parse(ctx, &key, &pkt), &key, &pkt);
	return NF_ACCEPT;
}

/* The socket-level hook (--hook cgroup): what sockets under the cgroup send. */
SEC("cgroup_skb/egress")
int kzn_socket_egress(struct __sk_buff *skb)
{
	struct kzn_flow_key key = {};
	struct kzn_packet pkt;

	kzn_account(kzn_parse_socket(skb, &key, &pkt), &key, &pkt);
	return 1; /* allow */
}

/*
 * What the netfilter links run: a tail call into the counting program in kzn_progs. Its
 * instructions must never change from one release to the next: a new agent recognises a
 * running dispatcher by its tag and keeps its link (attaching anew leaves a gap in which
 * packets pass uncounted), then swaps in its own counting program. The tail call never fails
 * while the agent is installed: the slot is filled before the first link is attached and
 * emptied only after the last one is gone (--uninstall).
 */
SEC("netfilter")
int kzn_dispatch(struct bpf_nf_ctx *ctx)
{
	bpf_tail_call(ctx, &kzn_progs, 0);
	return NF_ACCEPT;
}

/* What the cgroup link runs, as kzn_dispatch for netfilter: a tail call that never changes. */
SEC("cgroup_skb/egress")
int kzn_socket_dispatch(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &kzn_socket_progs, 0);
	return 1;
}

/* GPL-compatible, as the kernel requires for the helpers it uses. */
char LICENSE[] SEC("license") = "GPL";
