// SPDX-License-Identifier: GPL-2.0
/*
 * test/hostroute.bpf.c: eBPF host routing for the namespace tests (test/agent_cgroup.sh), as
 * a CNI that routes pods in BPF does it (Cilium without legacy host routing, Calico's eBPF
 * data plane): at tc ingress of the node's side of every pod's veth, and of the node's
 * uplink, an IPv4 or IPv6 packet that the node would forward is looked up in the node's FIB
 * and sent straight out of the device the route names, with bpf_redirect_neigh. It never
 * enters the node's IP stack, so the node's netfilter (PREROUTING, FORWARD, POSTROUTING, and
 * the agent's hook there) never sees it.
 *
 * Why bpf_redirect_neigh: the next hop's MAC address is the kernel's neighbour table's
 * business (ARP, neighbour discovery, queueing while unresolved); the program only names the
 * device and the next hop. bpf_redirect (plain) would need the MAC addresses written in by
 * the program, which then needs its own neighbour handling; bpf_redirect_peer reaches only a
 * local pod (the peer of a veth in this node) and skips the veth's transmit, so it cannot
 * send out of the uplink, and a packet that arrived from the uplink would keep the uplink's
 * MAC address. bpf_redirect_neigh serves both directions with one rule.
 *
 * What is left to the stack (TC_ACT_OK): anything not IP (ARP), anything the FIB does not
 * forward (addresses of the node itself, multicast, link-local neighbour discovery), a TTL
 * about to run out and a packet too big for the route (the stack answers both with ICMP).
 * The test counts, in the node's netfilter, every pod packet left to the stack.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define HOSTROUTE_AF_INET  2
#define HOSTROUTE_AF_INET6 10

/* Counts for the test's log: packets redirected, and packets left to the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} hostroute_stats SEC(".maps");

static __always_inline int hostroute_pass(int redirected)
{
	__u32 key = redirected ? 0 : 1;
	__u64 *n = bpf_map_lookup_elem(&hostroute_stats, &key);

	if (n)
		(*n)++;
	return redirected ? TC_ACT_REDIRECT : TC_ACT_OK;
}

SEC("tc")
int hostroute(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	long rc;

	if ((void *)(eth + 1) > data_end)
		return hostroute_pass(0);
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end || ip->ttl <= 1)
			return hostroute_pass(0);
		fib.family = HOSTROUTE_AF_INET;
		fib.tos = ip->tos;
		fib.l4_protocol = ip->protocol;
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = ip->daddr;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
			return hostroute_pass(0);
		fib.family = HOSTROUTE_AF_INET6;
		fib.l4_protocol = ip6->nexthdr;
		__builtin_memcpy(fib.ipv6_src, &ip6->saddr, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, sizeof(fib.ipv6_dst));
	} else {
		return hostroute_pass(0);
	}
	/*
	 * No tot_len: the kernel then checks the skb against the route's device MTU as the
	 * forwarding path does, which lets a GSO packet through (it is cut to the MTU on the way
	 * out); a tot_len would compare the whole GSO packet with the MTU and refuse it.
	 * SKIP_NEIGH: only the route; bpf_redirect_neigh resolves the next hop itself.
	 */
	fib.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return hostroute_pass(0);

	/* A router's duty: one hop less (the checksum follows the TTL; IPv6 has none). */
	if (fib.family == HOSTROUTE_AF_INET) {
		struct iphdr *ip = (void *)(eth + 1);
		__u16 old = *(__u16 *)&ip->ttl, new;

		if ((void *)(ip + 1) > data_end)
			return hostroute_pass(0);
		ip->ttl--;
		new = *(__u16 *)&ip->ttl;
		bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old,
				    new, 2);
		nh.nh_family = HOSTROUTE_AF_INET;
		nh.ipv4_nh = fib.ipv4_dst; /* the gateway, or the destination when on link */
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return hostroute_pass(0);
		ip6->hop_limit--;
		nh.nh_family = HOSTROUTE_AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, sizeof(nh.ipv6_nh));
	}
	return hostroute_pass(bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0) ==
			      TC_ACT_REDIRECT);
}

char LICENSE[] SEC("license") = "GPL";
