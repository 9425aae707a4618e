/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubezonnet.h: what the BPF program and the agent share: the flow key and value, the loss
 * counter slots, the agent's pinned state, and the netfilter hook priority. Plain fixed-width
 * types only, so the same header compiles for the BPF target and for the agent.
 */
#ifndef KUBEZONNET_BPF_H
#define KUBEZONNET_BPF_H

/*
 * Hook priority at NF_INET_POST_ROUTING: before source NAT (the nat table's POSTROUTING runs
 * at NF_IP_PRI_NAT_SRC = 100), so a pod's own address is seen before masquerading, and after
 * destination NAT (which happened at PREROUTING/OUTPUT), so a Service's backend is seen.
 */
#define KZN_NF_PRIORITY 99

#define KZN_MAP_ENTRIES_DEFAULT 65536
#define KZN_MAP_ENTRIES_MIN	1024
/* A full map must fit one STATS frame: 262144 records of 52 bytes is 13 MiB < 16 MiB. */
#define KZN_MAP_ENTRIES_MAX 262144

/* IPv6 extension headers walked to find the L4 header; a longer chain counts with port 0. */
#define KZN_IPV6_EXT_MAX 6

/*
 * Tunnel devices the agent tells the program about (kzn_tunnel_devs), by ifindex, with what
 * the program does with the packets that leave by them and that they send (flags).
 */
#define KZN_TUNNEL_DEVS_MAX    256
#define KZN_DEV_OUT_SKIP       1 /* leaving by it: the hook sees them again encapsulated */
#define KZN_DEV_IN_DECAPSULATE 2 /* sent by it: read the packet inside */
#define KZN_DEV_OUT_OVERHEAD   4 /* leaving by it: count with an encryption's overhead */
#define KZN_DEV_IN_SKIP	       8 /* sent by it: counted already, as they went in */
#define KZN_DEV_TUNNEL	       (KZN_DEV_OUT_SKIP | KZN_DEV_IN_DECAPSULATE)
#define KZN_DEV_WIREGUARD      (KZN_DEV_OUT_OVERHEAD | KZN_DEV_IN_SKIP)

/*
 * One flow: address family (4 or 6), L4 protocol, one port (the smaller of source and
 * destination port for TCP, UDP and SCTP; 0 otherwise and for non-first fragments), and the
 * addresses as 16 bytes (IPv4 as IPv4-mapped IPv6). Port is in host byte order.
 */
struct kzn_flow_key {
	__u8 family;
	__u8 protocol;
	__u16 port;
	__u8 src[16];
	__u8 dst[16];
};

/*
 * Bytes at L3 as on the wire (GSO super-packets expanded to their segments) and packets; of
 * the bytes, those of a tunnel's encapsulation (outer headers, or WireGuard's overhead).
 */
struct kzn_flow_value {
	__u64 bytes;
	__u64 packets;
	__u64 encap_bytes;
};

/* Slots of the per-CPU kzn_loss array: counts that could not be stored under their flow. */
enum kzn_loss_slot {
	KZN_LOSS_MAP_FULL_PACKETS = 0, /* the flow map had no room for a new flow */
	KZN_LOSS_MAP_FULL_BYTES,
	KZN_LOSS_NO_MAP_PACKETS, /* no active flow map (never expected; counted, not dropped) */
	KZN_LOSS_NO_MAP_BYTES,
	KZN_LOSS_UNPARSED_PACKETS, /* no readable IP header */
	KZN_LOSS_UNPARSED_BYTES,
	/* Not loss: tunnel packets whose inner headers could not be read, counted under their
	 * outer flow (so as node traffic), and reported apart. */
	KZN_LOSS_MALFORMED_INNER_PACKETS,
	KZN_LOSS_MALFORMED_INNER_BYTES,
	KZN_LOSS_SLOTS,
};

/*
 * The agent's own state, pinned with the maps (slot 0 of kzn_state) so that an agent that
 * restarts, even after kill -9, continues the same report stream: the same instance id, the
 * next sequence number, and the sequence and loss figures of a report that was built from the
 * frozen flow map but not yet acknowledged. The BPF program never touches it.
 */
struct kzn_agent_state {
	__u64 instance_id;
	__u64 next_sequence;
	__u64 pending_sequence; /* 0: the frozen map's contents have no sequence yet */
	__u64 pending_start_ns;
	__u64 pending_end_ns;
	__u64 interval_start_ns; /* when the active map became active */
	/* Cumulative loss figures (sums over CPUs of kzn_loss) already put in a report. */
	__u64 loss_reported[KZN_LOSS_SLOTS];
	/* Loss figures of the pending report, so that a resend carries the same numbers. */
	__u64 pending_loss[KZN_LOSS_SLOTS];
};

#endif /* KUBEZONNET_BPF_H */
