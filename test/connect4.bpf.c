// SPDX-License-Identifier: GPL-2.0
/*
 * test/connect4.bpf.c: a socket-level Service load balancer for test/agent_cgroup.sh, as
 * Cilium's (bpf_sock.c) and Calico's eBPF connect-time load balancing do it: at connect()
 * (and at sendmsg() of an unconnected UDP socket) of any socket under the cgroup it is
 * attached to, a destination that is the Service's virtual address and port is rewritten to
 * a backend's, before the socket routes or sends anything. No packet ever carries the
 * virtual address, so nothing downstream (no NAT table, no netfilter hook) sees it.
 *
 * One Service, fixed here: 10.96.0.10:80 (TCP and UDP) to the backend 10.77.3.2:8080.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define SERVICE_ADDR 0x0a60000a /* 10.96.0.10 */
#define SERVICE_PORT 80
#define BACKEND_ADDR 0x0a4d0302 /* 10.77.3.2 */
#define BACKEND_PORT 8080

/* Connections and datagrams translated, for the test's log. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} service_translated SEC(".maps");

static __always_inline int service_translate(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	__u64 *n;

	if (ctx->user_ip4 != bpf_htonl(SERVICE_ADDR) || ctx->user_port != bpf_htons(SERVICE_PORT))
		return 1;
	ctx->user_ip4 = bpf_htonl(BACKEND_ADDR);
	ctx->user_port = bpf_htons(BACKEND_PORT);
	n = bpf_map_lookup_elem(&service_translated, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 1; /* allow */
}

SEC("cgroup/connect4")
int service_connect4(struct bpf_sock_addr *ctx)
{
	return service_translate(ctx);
}

SEC("cgroup/sendmsg4")
int service_sendmsg4(struct bpf_sock_addr *ctx)
{
	return service_translate(ctx);
}

char LICENSE[] SEC("license") = "GPL";
