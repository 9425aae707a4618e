/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubezonnet-agent: counts every flow leaving this node's network namespace with the BPF
 * program in bpf/kubezonnet.bpf.c (netfilter POSTROUTING, IPv4 and IPv6) and ships the counts
 * to kubezonnet-server over wire.h every interval.
 *
 * Nothing is lost:
 * - The kernel maps, links and the agent's own state are pinned under --pin-path, so counting
 *   goes on while the agent restarts (SIGTERM, kill -9) or is upgraded, and a new agent
 *   continues the same report stream (instance id, sequence) where the old one stopped. The
 *   links run a dispatcher that never changes; an upgrade swaps the counting program behind
 *   it atomically. Only --uninstall detaches.
 * - A drain swaps the active flow map for the idle one (the swap waits for running programs),
 *   builds one STATS frame from the frozen map, and clears that map only once the server has
 *   acknowledged the frame. Until then the active map keeps counting; when it fills up, the
 *   bytes go to loss counters that the next report carries.
 * - The server deduplicates by (instance id, sequence), so a frame resent after a lost ACK or
 *   a restart is never counted twice.
 *
 * Life cycle, as in libbpf-bootstrap: open -> configure -> load -> attach -> loop -> cleanup.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/kubezonnet.h"
#include "kubezonnet.skel.h"
#include "log.h"
#include "sandbox.h"
#include "version.h"
#include "secret.h"
#include "sha256.h"
#include "wire.h"

#define AGENT_PIN_PATH_DEFAULT	 "/sys/fs/bpf/kubezonnet"
#define AGENT_INTERVAL_DEFAULT	 10000	/* ms */
#define AGENT_BACKOFF_MIN	 500	/* ms */
#define AGENT_BACKOFF_MAX	 30000	/* ms */
#define AGENT_ACK_TIMEOUT	 30000	/* ms without an ACK for a sent frame: reconnect */
#define AGENT_SHUTDOWN_WAIT	 5000	/* ms for the last report on SIGTERM */
#define AGENT_CONNECT_TIMEOUT	 5000	/* ms for a TCP handshake (SYN retries take minutes) */
#define AGENT_COMPRESS_THRESHOLD 4096	/* frames above this many bytes are zlib-compressed */
#define AGENT_REBALANCE_DEFAULT	 600000 /* ms on one connection before a new one (--rebalance) */
#define AGENT_BLIND_AFTER_DEFAULT                                                                  \
	60000 /* ms of devices' traffic the hook barely saw (--blind-after) */
#define AGENT_BLIND_MIN_BYTES (1u << 20) /* less sent by the devices says nothing */
#define AGENT_BLIND_PERCENT   1		 /* the hook saw less than this share of it: blind */
#define AGENT_PERCPU_BATCH    1024	 /* flows read at once from per-CPU flow maps */

struct agent_config {
	const char *server;
	char node[WIRE_NODE_NAME_MAX + 1];
	unsigned int interval_ms;
	unsigned int map_entries;
	unsigned int rebalance_ms; /* 0: keep a connection for as long as it works */
	/* --tunnel-port: ports beyond the well-known ones (0: none) */
	uint16_t vxlan_port, geneve_port;
	const char *pin_path;
	enum { AGENT_RUN, AGENT_UNINSTALL, AGENT_MOUNT_BPFFS } mode;
	int pause;		 /* after --uninstall or --mount-bpffs: sleep until SIGTERM */
	int no_sandbox;		 /* --no-sandbox: keep capabilities, no seccomp filter */
	const char *secret_path; /* --agent-secret-file, or NULL */
	/* --hook: where the program counts; --cgroup: the cgroup v2 directory (cgroup hook) */
	enum { AGENT_HOOK_NETFILTER, AGENT_HOOK_CGROUP } hook;
	const char *cgroup_path;
	unsigned int blind_after_ms; /* --blind-after; 0: never check */
	int per_cpu;		     /* --per-cpu-counts: a flow's counts one per CPU */
};

enum agent_conn_state { AGENT_DISCONNECTED, AGENT_CONNECTING, AGENT_CONNECTED };

struct agent {
	struct agent_config config;
	struct kubezonnet_bpf *skel;
	struct bpf_link *links[2];
	int flows_fd[2];
	int active_fd, grace_fd, loss_fd, state_fd;
	int active; /* index into flows_fd of the map packets go to */
	unsigned int map_entries;
	int ncpus;
	int per_cpu; /* the flow maps hold one value a CPU (BPF_MAP_TYPE_PERCPU_HASH) */
	struct kzn_flow_value *percpu; /* AGENT_PERCPU_BATCH flows' values of every CPU */
	struct kzn_agent_state state;

	/* The report built from the frozen map, kept until acknowledged. */
	struct kzn_flow_key *keys;
	struct kzn_flow_value *values;
	__u32 frozen_count;
	uint8_t *frame;
	size_t frame_len;
	int frame_sent; /* on the current connection */
	long long frame_sent_ms;
	int drain_due; /* an interval passed while a report was still pending */

	/* Tunnel devices (kzn_tunnel_devs): what was found last, and the link change socket. */
	__u32 tunnel_ifindex[KZN_TUNNEL_DEVS_MAX];
	unsigned int tunnel_count;
	int tunnels_adopted; /* entries a previous agent left in the pinned map are known */
	int link_events;     /* netlink, RTMGRP_LINK; -1 when unavailable */

	/*
	 * The hook's share of what the node's devices send: a netfilter hook that pod traffic
	 * bypasses (eBPF host routing), or a cgroup hook on the wrong cgroup, sees almost none.
	 */
	uint64_t device_tx_last; /* the devices' transmitted bytes at the last drain */
	int device_tx_known;
	uint64_t state_device_bytes; /* sent by the devices in the pending report's interval */
	uint64_t window_device, window_hook;
	long long window_start_ms;
	int blind; /* WIRE_HOOK_BLIND in the reports */

	/* The connection to the server. */
	enum agent_conn_state conn;
	int sock;
	char peer[300];
	uint16_t protocol; /* wire version: 3 with a secret; else 2, or 1 once a server refused 2 */
	/* Version 3: the secret, and the handshake and MACs of the connection. */
	struct secret_set secret;
	enum { AGENT_AUTH_NONE, AGENT_AUTH_CHALLENGE, AGENT_AUTH_PROOF, AGENT_AUTH_DONE } auth;
	uint8_t transcript[SHA256_DIGEST_SIZE]; /* SHA-256 of this connection's HELLO payload */
	uint8_t server_proof[WIRE_MAC_SIZE], session_key[WIRE_MAC_SIZE];
	uint8_t auth_frame[WIRE_HEADER_SIZE + WIRE_MAC_SIZE];
	uint64_t mac_sent, mac_received; /* frames authenticated each way on this connection */
	uint8_t hello[WIRE_HEADER_SIZE + WIRE_HELLO_MAX_PAYLOAD];
	size_t hello_len;
	const uint8_t *out; /* bytes being written: hello or frame */
	size_t out_len, out_off;
	int out_is_frame;
	uint8_t in[WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + WIRE_ERROR_MESSAGE_MAX +
		   WIRE_MAC_SIZE];
	size_t in_len;
	unsigned int backoff_ms;
	long long connect_started_ms;
	long long rebalance_at_ms; /* when to move to a new connection, between two reports */
	long long next_connect_ms;
	long long next_drain_ms;
};

static volatile sig_atomic_t agent_stop;

static void agent_on_signal(int sig)
{
	(void)sig;
	agent_stop = 1;
}

static void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void agent_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("kubezonnet-agent", fmt, ap);
	va_end(ap);
}

static int agent_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	fprintf(stderr, "libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

static uint64_t agent_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t agent_random64(void)
{
	uint64_t v = 0;

	while (v == 0)
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			v = (uint64_t)agent_wall_ns() ^ ((uint64_t)getpid() << 32);
	return v;
}

/* ---- pinned state ---- */

/* agent_save_state writes the state to its pinned map; returns 0 or -errno. */
static int agent_save_state(struct agent *a)
{
	__u32 zero = 0;

	if (bpf_map_update_elem(a->state_fd, &zero, &a->state, BPF_ANY) != 0) {
		int err = -errno;
		agent_log("save state to pinned map: %s", strerror(errno));
		return err;
	}
	return 0;
}

/* agent_loss_total reads the cumulative loss counters, summed over CPUs, into out[]. */
static int agent_loss_total(struct agent *a, __u64 out[KZN_LOSS_SLOTS])
{
	__u64 *percpu = calloc((size_t)a->ncpus, sizeof(__u64));

	if (!percpu)
		return -ENOMEM;
	for (__u32 slot = 0; slot < KZN_LOSS_SLOTS; slot++) {
		out[slot] = 0;
		if (bpf_map_lookup_elem(a->loss_fd, &slot, percpu) != 0) {
			int err = -errno;
			agent_log("read loss counters: %s", strerror(errno));
			free(percpu);
			return err;
		}
		for (int c = 0; c < a->ncpus; c++)
			out[slot] += percpu[c];
	}
	free(percpu);
	return 0;
}

/* agent_sum_cpus adds up n flows' per-CPU values (a CPU after the other, flow by flow). */
static void agent_sum_cpus(const struct agent *a, const struct kzn_flow_value *percpu,
			   struct kzn_flow_value *out, __u32 n)
{
	for (__u32 i = 0; i < n; i++) {
		out[i] = (struct kzn_flow_value){0};
		for (int c = 0; c < a->ncpus; c++) {
			const struct kzn_flow_value *v = &percpu[(size_t)i * a->ncpus + c];
			out[i].bytes += v->bytes;
			out[i].packets += v->packets;
			out[i].encap_bytes += v->encap_bytes;
		}
	}
}

/*
 * agent_read_frozen reads every flow of the frozen map into keys/values. Per-CPU values
 * (--per-cpu-counts) are read AGENT_PERCPU_BATCH flows at a time and summed over the CPUs.
 */
static int agent_read_frozen(struct agent *a)
{
	int fd = a->flows_fd[1 - a->active];
	__u32 batch = 0, total = 0;
	int first = 1;

	for (;;) {
		__u32 count = a->map_entries - total;
		int rc;

		if (count == 0)
			break;
		if (a->per_cpu && count > AGENT_PERCPU_BATCH)
			count = AGENT_PERCPU_BATCH;
		rc = bpf_map_lookup_batch(
			fd, first ? NULL : &batch, &batch, a->keys + total,
			a->per_cpu ? (void *)a->percpu : (void *)(a->values + total), &count, NULL);
		first = 0;
		if (a->per_cpu)
			agent_sum_cpus(a, a->percpu, a->values + total, count);
		total += count;
		if (rc != 0) {
			if (errno == ENOENT)
				break;
			agent_log("read flow map: %s", strerror(errno));
			return -errno;
		}
	}
	a->frozen_count = total;
	return 0;
}

/* agent_build_frame encodes the frozen flows and the pending loss as the pending report. */
static int agent_build_frame(struct agent *a)
{
	struct wire_stats st = {
		.sequence = a->state.pending_sequence,
		.start_ns = a->state.pending_start_ns,
		.end_ns = a->state.pending_end_ns,
		.count = a->frozen_count,
	};
	size_t len = wire_stats_size_version(a->protocol, a->frozen_count);
	uint8_t *raw, *rec;

	st.loss.map_full_packets = a->state.pending_loss[KZN_LOSS_MAP_FULL_PACKETS] +
				   a->state.pending_loss[KZN_LOSS_NO_MAP_PACKETS];
	st.loss.map_full_bytes = a->state.pending_loss[KZN_LOSS_MAP_FULL_BYTES] +
				 a->state.pending_loss[KZN_LOSS_NO_MAP_BYTES];
	st.loss.other_packets = a->state.pending_loss[KZN_LOSS_UNPARSED_PACKETS];
	st.loss.other_bytes = a->state.pending_loss[KZN_LOSS_UNPARSED_BYTES];
	st.version = a->protocol;
	st.device_bytes = a->state_device_bytes;
	st.hook_status = a->blind ? WIRE_HOOK_BLIND : 0;
	st.tunnel_malformed_packets = a->state.pending_loss[KZN_LOSS_MALFORMED_INNER_PACKETS];
	st.tunnel_malformed_bytes = a->state.pending_loss[KZN_LOSS_MALFORMED_INNER_BYTES];
	raw = len ? malloc(len) : NULL;
	rec = raw ? wire_stats_encode(raw, len, &st) : NULL;
	if (!rec) {
		agent_log("encode a report of %u flows: %s", a->frozen_count,
			  raw ? "too large" : "out of memory");
		free(raw);
		return -ENOMEM;
	}
	for (__u32 i = 0; i < a->frozen_count; i++) {
		const struct kzn_flow_key *k = &a->keys[i];
		struct wire_record r = {
			.family = k->family,
			.protocol = k->protocol,
			.port = k->port,
			.bytes = a->values[i].bytes,
			.packets = a->values[i].packets,
			/* Never above bytes (a server refuses that report, and it would be sent
			 * again and again): the program adds both for every packet, so only a
			 * wrap could, after 2^64 bytes. */
			.encap_bytes = a->values[i].encap_bytes <= a->values[i].bytes
					       ? a->values[i].encap_bytes
					       : a->values[i].bytes,
		};
		memcpy(r.src, k->src, 16);
		memcpy(r.dst, k->dst, 16);
		if (a->protocol == WIRE_VERSION_1)
			wire_record_put(rec + (size_t)i * WIRE_RECORD_SIZE_V1, &r);
		else
			wire_record_put_v2(rec + (size_t)i * WIRE_RECORD_SIZE_V2, &r);
	}
	free(a->frame);
	a->frame = raw;
	a->frame_len = len;
	if (len > AGENT_COMPRESS_THRESHOLD) {
		size_t cap = wire_deflate_bound(len - WIRE_HEADER_SIZE);
		uint8_t *z = malloc(cap);
		long zlen = z ? wire_deflate(raw, len, z, cap, Z_BEST_SPEED) : WIRE_E_SPACE;

		if (zlen > 0 && (size_t)zlen < len) {
			free(raw);
			a->frame = z;
			a->frame_len = (size_t)zlen;
		} else {
			free(z);
		}
	}
	/* Room for a MAC (version 3), written as the frame is sent on a connection. */
	raw = realloc(a->frame, a->frame_len + WIRE_MAC_SIZE);
	if (!raw) {
		agent_log("encode a report: out of memory");
		return -ENOMEM;
	}
	a->frame = raw;
	a->frame_sent = 0;
	return 0;
}

/*
 * agent_device_tx reads what the network devices of the agent's namespace (the node's) have
 * transmitted, loopback aside, from /proc/net/dev. Returns 0, or -errno.
 */
static int agent_device_tx(uint64_t *total)
{
	FILE *f = fopen("/proc/net/dev", "re");
	char line[512];

	if (!f)
		return -errno;
	*total = 0;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'), name[64];
		unsigned long long v[9];

		if (!colon) /* the two header lines */
			continue;
		*colon = '\0';
		if (sscanf(line, " %63s", name) != 1 || strcmp(name, "lo") == 0)
			continue;
		/* receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes */
		if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
			   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]) == 9)
			*total += v[8];
	}
	fclose(f);
	return 0;
}

/*
 * agent_watch_hook sets the interval's device bytes and, every --blind-after, decides whether
 * the hook is blind: the node's devices sent at least AGENT_BLIND_MIN_BYTES and the hook
 * counted less than AGENT_BLIND_PERCENT of that. The log says so when that changes.
 */
static void agent_watch_hook(struct agent *a)
{
	uint64_t tx = 0, hook = a->state.pending_loss[KZN_LOSS_MAP_FULL_BYTES] +
				a->state.pending_loss[KZN_LOSS_NO_MAP_BYTES] +
				a->state.pending_loss[KZN_LOSS_UNPARSED_BYTES];
	long long now = log_now_ms();
	int blind;

	a->state_device_bytes = 0;
	if (agent_device_tx(&tx) == 0) {
		if (a->device_tx_known && tx >= a->device_tx_last)
			a->state_device_bytes = tx - a->device_tx_last;
		a->device_tx_last = tx;
		a->device_tx_known = 1;
	}
	for (__u32 i = 0; i < a->frozen_count; i++)
		hook += a->values[i].bytes;
	if (!a->window_start_ms)
		a->window_start_ms = now;
	a->window_device += a->state_device_bytes;
	a->window_hook += hook;
	if (!a->config.blind_after_ms || now - a->window_start_ms < a->config.blind_after_ms)
		return;
	blind = a->window_device >= AGENT_BLIND_MIN_BYTES &&
		a->window_hook * 100 < a->window_device * AGENT_BLIND_PERCENT;
	if (blind && !a->blind)
		agent_log(
			"the %s hook counted %llu bytes in %lld s while the node's devices sent "
			"%llu: %s",
			a->config.hook == AGENT_HOOK_CGROUP ? "cgroup" : "netfilter",
			(unsigned long long)a->window_hook, (now - a->window_start_ms) / 1000,
			(unsigned long long)a->window_device,
			a->config.hook == AGENT_HOOK_CGROUP
				? "--cgroup likely does not hold the pods' cgroups (give it the "
				  "host's cgroup v2 root)"
				: "the network plugin likely routes pod traffic past netfilter "
				  "(Cilium's eBPF host routing, Calico's eBPF data plane): run the "
				  "agent with --hook cgroup");
	else if (!blind && a->blind)
		agent_log("the hook sees the node's traffic again (%llu of %llu bytes sent)",
			  (unsigned long long)a->window_hook, (unsigned long long)a->window_device);
	a->blind = blind;
	a->window_device = a->window_hook = 0;
	a->window_start_ms = now;
}

/*
 * agent_prepare_pending turns the frozen map (plus loss since the last report) into the
 * pending report, giving it a sequence number unless a previous agent already had.
 */
static int agent_prepare_pending(struct agent *a)
{
	int rc = agent_read_frozen(a);

	if (rc)
		return rc;
	if (a->state.pending_sequence == 0) {
		__u64 loss[KZN_LOSS_SLOTS];

		rc = agent_loss_total(a, loss);
		if (rc)
			return rc;
		for (int i = 0; i < KZN_LOSS_SLOTS; i++)
			a->state.pending_loss[i] = loss[i] - a->state.loss_reported[i];
		a->state.pending_sequence = a->state.next_sequence++;
		a->state.pending_start_ns = a->state.interval_start_ns;
		a->state.pending_end_ns = agent_wall_ns();
		a->state.interval_start_ns = a->state.pending_end_ns;
		agent_watch_hook(a);
		rc = agent_save_state(a);
		if (rc)
			return rc;
		if (a->state.pending_loss[KZN_LOSS_MAP_FULL_PACKETS] ||
		    a->state.pending_loss[KZN_LOSS_NO_MAP_PACKETS])
			agent_log(
				"loss: %llu packets (%llu bytes) not stored because the flow map "
				"was full; raise --map-entries (now %u)",
				(unsigned long long)(a->state.pending_loss
							     [KZN_LOSS_MAP_FULL_PACKETS] +
						     a->state.pending_loss
							     [KZN_LOSS_NO_MAP_PACKETS]),
				(unsigned long long)(a->state.pending_loss
							     [KZN_LOSS_MAP_FULL_BYTES] +
						     a->state.pending_loss[KZN_LOSS_NO_MAP_BYTES]),
				a->map_entries);
		if (a->state.pending_loss[KZN_LOSS_UNPARSED_PACKETS])
			agent_log("loss: %llu packets without a readable IP header",
				  (unsigned long long)
					  a->state.pending_loss[KZN_LOSS_UNPARSED_PACKETS]);
	}
	return agent_build_frame(a);
}

/*
 * agent_swap switches the program to the idle map, then waits out an RCU grace period (the
 * kernel's answer to a map-in-map update), after which no program still adds to the map
 * that was active: it is frozen.
 */
static int agent_swap(struct agent *a)
{
	__u32 zero = 0, next = (__u32)(1 - a->active);

	if (bpf_map_update_elem(a->active_fd, &zero, &next, BPF_ANY) != 0 ||
	    bpf_map_update_elem(a->grace_fd, &zero, &a->flows_fd[next], BPF_ANY) != 0) {
		agent_log("swap flow maps: %s", strerror(errno));
		return -errno;
	}
	a->active = (int)next;
	return 0;
}

/* agent_drain starts a new report unless one is still waiting for its ACK. */
static int agent_drain(struct agent *a)
{
	int rc;

	if (a->state.pending_sequence != 0) {
		a->drain_due = 1;
		return 0;
	}
	a->drain_due = 0;
	rc = agent_swap(a);
	return rc ? rc : agent_prepare_pending(a);
}

/* agent_acknowledged clears the frozen map once the server has stored its report. */
static int agent_acknowledged(struct agent *a)
{
	int fd = a->flows_fd[1 - a->active];
	__u32 count = a->frozen_count;

	if (count && bpf_map_delete_batch(fd, a->keys, &count, NULL) != 0 && errno != ENOENT) {
		agent_log("clear flow map: %s", strerror(errno));
		return -errno;
	}
	for (int i = 0; i < KZN_LOSS_SLOTS; i++) {
		a->state.loss_reported[i] += a->state.pending_loss[i];
		a->state.pending_loss[i] = 0;
	}
	a->state.pending_sequence = 0;
	a->frozen_count = 0;
	free(a->frame);
	a->frame = NULL;
	a->frame_len = 0;
	return agent_save_state(a);
}

/*
 * ---- tunnel devices ----
 * The program must know the devices that put packets in a tunnel whose outer packet it sees
 * again (it skips the inner one) and those that encrypt them (it counts the inner one, with
 * the overhead). The agent lists the links over rtnetlink at start and whenever the kernel
 * announces a change of links, and keeps kzn_tunnel_devs equal to what it found.
 */
#define AGENT_NETLINK_BUFFER 32768

/* agent_tunnel_kind maps a link kind (IFLA_INFO_KIND) to KZN_DEV_*, or 0. */
static __u32 agent_tunnel_kind(const char *kind)
{
	static const char *const tunnels[] = {"vxlan",	   "geneve", "ipip",	 "sit",
					      "gre",	   "gretap", "ip6tnl",	 "ip6gre",
					      "ip6gretap", "erspan", "ip6erspan"};

	for (size_t i = 0; i < sizeof(tunnels) / sizeof(tunnels[0]); i++)
		if (strcmp(kind, tunnels[i]) == 0)
			return KZN_DEV_TUNNEL;
	return strcmp(kind, "wireguard") == 0 ? KZN_DEV_WIREGUARD : 0;
}

/* agent_link_kind writes the IFLA_INFO_KIND of one RTM_NEWLINK message into kind. */
static void agent_link_kind(struct nlmsghdr *h, char *name, char *kind, size_t len)
{
	struct ifinfomsg *ifi = NLMSG_DATA(h);
	int left = (int)IFLA_PAYLOAD(h);

	name[0] = kind[0] = '\0';
	for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
		if (a->rta_type == IFLA_IFNAME) {
			snprintf(name, IFNAMSIZ, "%.*s", (int)RTA_PAYLOAD(a), (char *)RTA_DATA(a));
		} else if (a->rta_type == IFLA_LINKINFO) {
			int inner = (int)RTA_PAYLOAD(a);
			for (struct rtattr *i = RTA_DATA(a); RTA_OK(i, inner);
			     i = RTA_NEXT(i, inner))
				if (i->rta_type == IFLA_INFO_KIND)
					snprintf(kind, len, "%.*s", (int)RTA_PAYLOAD(i),
						 (char *)RTA_DATA(i));
		}
	}
}

/*
 * agent_scan_tunnels lists this network namespace's links and makes kzn_tunnel_devs hold
 * exactly the tunnel devices among them. Returns 0 or -errno.
 */
static int agent_scan_tunnels(struct agent *a)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = {.h = {.nlmsg_len = sizeof(req),
		       .nlmsg_type = RTM_GETLINK,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
		       .nlmsg_seq = 1},
		 .i = {.ifi_family = AF_UNSPEC}};
	__u32 found[KZN_TUNNEL_DEVS_MAX], kinds[KZN_TUNNEL_DEVS_MAX];
	char names[512] = "", *buf = malloc(AGENT_NETLINK_BUFFER);
	unsigned int n = 0;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), done = 0, rc = 0;
	int fd_map = bpf_map__fd(a->skel->maps.kzn_tunnel_devs);

	if (fd < 0 || !buf || send(fd, &req, sizeof(req), 0) < 0) {
		rc = -errno;
		agent_log("list network links (rtnetlink): %s", strerror(errno));
		goto out;
	}
	while (!done) {
		ssize_t len = recv(fd, buf, AGENT_NETLINK_BUFFER, 0);
		int left = (int)len;

		if (len < 0) {
			rc = -errno;
			agent_log("list network links (rtnetlink recv): %s", strerror(errno));
			goto out;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned int)left);
		     h = NLMSG_NEXT(h, left)) {
			char name[IFNAMSIZ], kind[32];
			__u32 k;

			if (h->nlmsg_type == NLMSG_ERROR) {
				/* A failed listing is no listing: keep what the map holds. */
				struct nlmsgerr *e = NLMSG_DATA(h);
				rc = e->error ? e->error : -EIO;
				agent_log("list network links (rtnetlink): %s", strerror(-rc));
				goto out;
			}
			if (h->nlmsg_flags & NLM_F_DUMP_INTR) {
				/* The links changed during the listing: list them again. */
				rc = -EAGAIN;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (h->nlmsg_type != RTM_NEWLINK)
				continue;
			agent_link_kind(h, name, kind, sizeof(kind));
			k = agent_tunnel_kind(kind);
			if (!k)
				continue;
			if (n == KZN_TUNNEL_DEVS_MAX) {
				agent_log("more than %d tunnel devices: %s and later ones are not "
					  "known to the program (their traffic counts twice)",
					  KZN_TUNNEL_DEVS_MAX, name);
				continue;
			}
			found[n] = (__u32)((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index;
			kinds[n++] = k;
			if (strlen(names) + strlen(name) + strlen(kind) + 8 < sizeof(names))
				snprintf(names + strlen(names), sizeof(names) - strlen(names),
					 "%s%s (%s)", names[0] ? ", " : "", name, kind);
		}
	}
	/* A previous agent's entries (the map is pinned) are ours to keep up to date too. */
	if (!a->tunnels_adopted) {
		__u32 key, next, *prev = NULL;

		while (a->tunnel_count < KZN_TUNNEL_DEVS_MAX &&
		       bpf_map_get_next_key(fd_map, prev, &next) == 0) {
			key = next;
			a->tunnel_ifindex[a->tunnel_count++] = key;
			prev = &key;
		}
		a->tunnels_adopted = 1;
	}
	/* Add what is new, then remove what is gone. */
	for (unsigned int i = 0; i < n; i++)
		if (bpf_map_update_elem(fd_map, &found[i], &kinds[i], BPF_ANY) != 0)
			agent_log("kzn_tunnel_devs: %s", strerror(errno));
	for (unsigned int i = 0; i < a->tunnel_count; i++) {
		int kept = 0;
		for (unsigned int j = 0; j < n && !kept; j++)
			kept = found[j] == a->tunnel_ifindex[i];
		if (!kept)
			bpf_map_delete_elem(fd_map, &a->tunnel_ifindex[i]);
	}
	if (n != a->tunnel_count || memcmp(found, a->tunnel_ifindex, n * sizeof(found[0])) != 0)
		agent_log("tunnel devices: %s", n ? names : "none");
	memcpy(a->tunnel_ifindex, found, n * sizeof(found[0]));
	a->tunnel_count = n;
	a->skel->bss->kzn_have_tunnel_devs = n > 0;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

/* agent_watch_links opens the socket on which the kernel announces changes of links. */
static void agent_watch_links(struct agent *a)
{
	struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};

	a->link_events = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	if (a->link_events >= 0 &&
	    bind(a->link_events, (struct sockaddr *)&addr, sizeof(addr)) == 0)
		return;
	agent_log("watch network links (rtnetlink): %s; tunnel devices are looked for at every "
		  "report instead",
		  strerror(errno));
	if (a->link_events >= 0)
		close(a->link_events);
	a->link_events = -1;
}

/* agent_links_changed drains the announcements and looks at the links again. */
static void agent_links_changed(struct agent *a)
{
	char buf[4096];

	while (a->link_events >= 0 && recv(a->link_events, buf, sizeof(buf), 0) > 0)
		;
	for (int tries = 0; tries < 3 && agent_scan_tunnels(a) == -EAGAIN; tries++)
		;
}

/* ---- BPF set-up ---- */

/*
 * ---- capabilities ----
 * A container that lacks one of the capabilities the agent needs fails in the bpf() call
 * that needs it, with a bare EPERM. The agent reads its effective set (capget, no libcap) to
 * say which one is missing.
 */
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

/* agent_has_cap tells whether cap is in this process's effective set. */
static int agent_has_cap(int cap)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};

	if (syscall(SYS_capget, &h, d) != 0)
		return 1; /* cannot tell: assume present, name nothing */
	return (d[cap / 32].effective >> (cap % 32)) & 1;
}

/* agent_seccomp_filtered tells whether a seccomp filter is installed on this process. */
static int agent_seccomp_filtered(void)
{
	char line[128];
	int filtered = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "Seccomp:", 8) == 0)
			filtered = atoi(line + 8) == 2;
	if (f)
		fclose(f);
	return filtered;
}

/*
 * agent_missing_caps writes into buf the capabilities of the agent's set (CAP_BPF,
 * CAP_NET_ADMIN, CAP_PERFMON) that this process lacks, as " (missing capability CAP_X,
 * CAP_Y)"; with all of them but under a seccomp filter (then the likely cause of an EPERM),
 * says so; else an empty string. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as in
 * the kernel.
 */
static const char *agent_missing_caps(char *buf, size_t len)
{
	static const struct {
		int cap;
		const char *name;
	} need[] = {{CAP_BPF, "CAP_BPF"},
		    {CAP_NET_ADMIN, "CAP_NET_ADMIN"},
		    {CAP_PERFMON, "CAP_PERFMON"}};
	int admin = agent_has_cap(CAP_SYS_ADMIN);
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (agent_has_cap(need[i].cap) || (admin && need[i].cap != CAP_NET_ADMIN))
			continue;
		n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s",
				      n ? ", " : " (missing capability ", need[i].name);
	}
	if (n)
		snprintf(buf + n, n < len ? len - n : 0, ")");
	else if (agent_seccomp_filtered())
		snprintf(buf, len,
			 " (a seccomp filter refused bpf(): the container runtime's "
			 "default profile allows it only with CAP_SYS_ADMIN; run the agent "
			 "with seccompProfile Unconfined, as deploy.yaml does, or a profile "
			 "that allows bpf())");
	return buf;
}

/* ---- BPF set-up ---- */

/* agent_pin_parent writes the pin path's parent directory into parent (PATH_MAX bytes). */
static int agent_pin_parent(const char *pin_path, char *parent)
{
	char *slash;

	snprintf(parent, PATH_MAX, "%s", pin_path);
	slash = strrchr(parent, '/');
	if (strlen(pin_path) >= PATH_MAX || !slash || slash == parent) {
		agent_log("--pin-path %s: want a directory below a bpf filesystem", pin_path);
		return -EINVAL;
	}
	*slash = '\0';
	return 0;
}

static int agent_is_bpffs(const char *path)
{
	struct statfs fs;

	return statfs(path, &fs) == 0 && fs.f_type == BPF_FS_MAGIC;
}

/*
 * agent_check_bpffs makes sure the pin path's parent is a bpf filesystem and creates the pin
 * directory. The agent never mounts one itself: a bpffs mounted inside the agent's container
 * would vanish with it, and its pins (the counts of a restart or upgrade) with them. It must
 * be the node's own (systemd mounts one on /sys/fs/bpf); --mount-bpffs does that, for an
 * init container that may mount on the host.
 */
static int agent_check_bpffs(const char *pin_path)
{
	char parent[PATH_MAX];

	if (agent_pin_parent(pin_path, parent) != 0)
		return -EINVAL;
	if (!agent_is_bpffs(parent)) {
		agent_log(
			"%s is not a bpf filesystem: the node must mount one there ('mount -t bpf "
			"bpf %s' on the node, or deploy.yaml's mount-bpffs init container, which "
			"runs 'kubezonnet-agent --mount-bpffs'), and the agent's container must "
			"see the node's mount (a hostPath volume)",
			parent, parent);
		return -ENOENT;
	}
	if (mkdir(pin_path, 0700) != 0 && errno != EEXIST) {
		agent_log("mkdir %s: %s", pin_path, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * agent_mount_bpffs mounts a bpf filesystem on the pin path's parent unless one is there
 * (--mount-bpffs). Needs CAP_SYS_ADMIN; in a pod, a volume with Bidirectional mount
 * propagation, so that the mount is the node's and outlives the container.
 */
static int agent_mount_bpffs(const char *pin_path)
{
	char parent[PATH_MAX];

	if (agent_pin_parent(pin_path, parent) != 0)
		return -EINVAL;
	if (agent_is_bpffs(parent)) {
		agent_log("%s is a bpf filesystem already", parent);
		return 0;
	}
	if (mkdir(parent, 0700) != 0 && errno != EEXIST) {
		agent_log("mkdir %s: %s", parent, strerror(errno));
		return -errno;
	}
	if (mount("bpf", parent, "bpf", 0, "mode=0700") != 0) {
		int err = errno;
		agent_log("mount bpf filesystem on %s: %s%s", parent, strerror(err),
			  err == EPERM && !agent_has_cap(CAP_SYS_ADMIN)
				  ? " (missing capability CAP_SYS_ADMIN)"
				  : "");
		return -err;
	}
	agent_log("mounted a bpf filesystem on %s", parent);
	return 0;
}

/*
 * agent_uninstall detaches every link pinned under the pin path (a pinned link is attached
 * for as long as its pin exists, and no agent holds one once it has exited) and removes the
 * maps and state pinned beside them, then the directory. Counts not yet shipped are lost.
 */
static int agent_uninstall(const char *pin_path)
{
	static const char *const order[] = {"link_", ""}; /* links first: stop counting */
	int removed = 0, failed = 0;
	struct statfs fs;

	if (statfs(pin_path, &fs) != 0) {
		if (errno == ENOENT) {
			agent_log("uninstall: nothing is pinned at %s", pin_path);
			return 0;
		}
		agent_log("uninstall: %s: %s", pin_path, strerror(errno));
		return -errno;
	}
	if (!agent_is_bpffs(pin_path)) {
		agent_log("uninstall: %s is not on a bpf filesystem", pin_path);
		return -EINVAL;
	}
	for (size_t pass = 0; pass < 2; pass++) {
		DIR *d = opendir(pin_path);
		struct dirent *e;

		if (!d) {
			agent_log("uninstall: opendir %s: %s", pin_path, strerror(errno));
			return -errno;
		}
		while ((e = readdir(d))) {
			char path[PATH_MAX];

			if (e->d_name[0] == '.' ||
			    strncmp(e->d_name, order[pass], strlen(order[pass])) != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", pin_path, e->d_name);
			if (unlink(path) == 0) {
				removed++;
			} else {
				agent_log("uninstall: unlink %s: %s", path, strerror(errno));
				failed++;
			}
		}
		closedir(d);
	}
	if (rmdir(pin_path) != 0) {
		agent_log("uninstall: rmdir %s: %s", pin_path, strerror(errno));
		return -errno;
	}
	if (failed)
		return -EIO;
	agent_log("uninstalled: detached the program and removed %d pins and %s", removed,
		  pin_path);
	return 0;
}

/*
 * agent_pinned_flows fills info (max_entries and type matter) from an already pinned flow map;
 * max_entries is 0 when there is none.
 */
static void agent_pinned_flows(const char *pin_path, struct bpf_map_info *info)
{
	char path[PATH_MAX];
	__u32 len = sizeof(*info);
	int fd;

	memset(info, 0, sizeof(*info));
	snprintf(path, sizeof(path), "%s/kzn_flows_a", pin_path);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	if (bpf_map_get_info_by_fd(fd, info, &len) != 0)
		info->max_entries = 0;
	close(fd);
}

/* agent_prog_tag reads the tag (a hash of the instructions) of the program behind fd. */
static int agent_prog_tag(int prog_fd, __u8 tag[BPF_TAG_SIZE])
{
	struct bpf_prog_info info = {0};
	__u32 len = sizeof(info);

	if (bpf_prog_get_info_by_fd(prog_fd, &info, &len) != 0)
		return -errno;
	memcpy(tag, info.tag, BPF_TAG_SIZE);
	return 0;
}

/*
 * agent_reuse_link returns the link pinned at path when it runs our dispatcher (kzn_dispatch
 * never changes, so any earlier agent's link qualifies): the link stays attached and counting
 * goes on. A link running anything else (an agent from before the dispatcher) is replaced;
 * packets that pass in the microseconds between are not counted, once.
 */
static struct bpf_link *agent_reuse_link(const char *path, int our_prog_fd)
{
	struct bpf_link *link = access(path, F_OK) == 0 ? bpf_link__open(path) : NULL;
	struct bpf_link_info info = {0};
	__u32 len = sizeof(info);
	__u8 ours[BPF_TAG_SIZE], theirs[BPF_TAG_SIZE];
	int prog_fd;

	if (!link)
		return NULL;
	if (bpf_link_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 &&
	    (prog_fd = bpf_prog_get_fd_by_id(info.prog_id)) >= 0) {
		int same = agent_prog_tag(prog_fd, theirs) == 0 &&
			   agent_prog_tag(our_prog_fd, ours) == 0 &&
			   memcmp(ours, theirs, BPF_TAG_SIZE) == 0;
		close(prog_fd);
		if (same)
			return link;
	}
	agent_log("replacing the program of an older agent pinned at %s", path);
	bpf_link__unpin(link);
	bpf_link__destroy(link);
	return NULL;
}

/* agent_attach attaches the dispatcher at POSTROUTING for one family, reusing a pinned link. */
/*
 * agent_cgroup_root finds the root of the cgroup v2 hierarchy in /proc/self/mountinfo: a
 * cgroup2 mount of the hierarchy's root ("/sys/fs/cgroup", or "/sys/fs/cgroup/unified" where
 * the layout is hybrid). Returns 0 with the path in buf, or -ENOENT.
 */
static int agent_cgroup_root(char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (rc && fgets(line, sizeof(line), f)) {
		char root[PATH_MAX], point[PATH_MAX];
		const char *sep = strstr(line, " - ");

		/* id parent major:minor root mount-point ... - fstype source options */
		if (!sep || strncmp(sep, " - cgroup2 ", 11) != 0 ||
		    sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2 ||
		    strcmp(root, "/") != 0)
			continue;
		snprintf(buf, len, "%s", point);
		rc = 0;
	}
	fclose(f);
	return rc;
}

/*
 * agent_attach_cgroup attaches the socket-level dispatcher to --cgroup (the host's cgroup v2
 * root by default) and pins the link, or keeps the one a previous agent pinned.
 */
static struct bpf_link *agent_attach_cgroup(struct agent *a, int *reused)
{
	struct bpf_program *prog = a->skel->progs.kzn_socket_dispatch;
	char path[PATH_MAX], caps[256], root[PATH_MAX];
	const char *cgroup = a->config.cgroup_path;
	struct bpf_link *link;
	int fd;

	struct stat st;

	if (!cgroup) {
		if (agent_cgroup_root(root, sizeof(root)) != 0) {
			agent_log("--hook cgroup: no cgroup v2 hierarchy is mounted here (none in "
				  "/proc/self/mountinfo): mount the host's and give --cgroup");
			return NULL;
		}
		cgroup = root;
	}
	snprintf(path, sizeof(path), "%s/link_cgroup", a->config.pin_path);
	link = agent_reuse_link(path, bpf_program__fd(prog));
	if (link) {
		/* Kept only on the same cgroup: its id is its directory's inode number. */
		struct bpf_link_info info = {0};
		__u32 len = sizeof(info);

		if (stat(cgroup, &st) == 0 &&
		    bpf_link_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 &&
		    info.cgroup.cgroup_id == (__u64)st.st_ino) {
			*reused = 1;
			return link;
		}
		agent_log(
			"the socket-level hook pinned at %s is on another cgroup: moving it to %s",
			path, cgroup);
		bpf_link__unpin(link);
		bpf_link__destroy(link);
	}
	fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		agent_log("--cgroup %s: %s", cgroup, strerror(errno));
		return NULL;
	}
	link = bpf_program__attach_cgroup(prog, fd);
	if (!link) {
		int err = errno;
		agent_log("attach to cgroup %s (egress): %s%s", cgroup, strerror(err),
			  err == EPERM ? agent_missing_caps(caps, sizeof(caps)) : "");
		close(fd);
		return NULL;
	}
	close(fd);
	if (bpf_link__pin(link, path) != 0) {
		agent_log("pin link at %s: %s", path, strerror(errno));
		bpf_link__destroy(link);
		return NULL;
	}
	agent_log("counting what sockets under cgroup %s send", cgroup);
	return link;
}

/*
 * agent_detach_other removes the links the other hook's agent pinned (a node switched with
 * --hook): both hooks at once would count every packet twice.
 */
static void agent_detach_other(struct agent *a)
{
	static const char *const nf[] = {"link_ipv4", "link_ipv6"}, *const cg[] = {"link_cgroup"};
	int cgroup = a->config.hook == AGENT_HOOK_CGROUP;
	const char *const *names = cgroup ? nf : cg;
	size_t n = cgroup ? 2 : 1;

	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", a->config.pin_path, names[i]);
		if (unlink(path) == 0)
			agent_log("detached the %s hook an earlier agent left (%s): counting with "
				  "--hook %s now",
				  cgroup ? "netfilter" : "cgroup", path,
				  cgroup ? "cgroup" : "netfilter");
	}
}

static struct bpf_link *agent_attach(struct agent *a, int pf, const char *name, int *reused)
{
	LIBBPF_OPTS(bpf_netfilter_opts, opts, .pf = (__u32)pf, .hooknum = NF_INET_POST_ROUTING,
		    .priority = KZN_NF_PRIORITY);
	struct bpf_program *prog = a->skel->progs.kzn_dispatch;
	char path[PATH_MAX], caps[256];
	struct bpf_link *link;

	snprintf(path, sizeof(path), "%s/link_%s", a->config.pin_path, name);
	link = agent_reuse_link(path, bpf_program__fd(prog));
	if (link) {
		*reused = 1;
		return link;
	}
	link = bpf_program__attach_netfilter(prog, &opts);
	if (!link) {
		int err = errno;
		agent_log("attach netfilter %s POSTROUTING: %s%s", name, strerror(err),
			  err == EPERM ? agent_missing_caps(caps, sizeof(caps)) : "");
		return NULL;
	}
	if (bpf_link__pin(link, path) != 0) {
		agent_log("pin link at %s: %s", path, strerror(errno));
		bpf_link__destroy(link);
		return NULL;
	}
	return link;
}

/*
 * agent_install_counter makes our counting program the one the dispatcher runs: one atomic
 * update of kzn_progs, so every packet is counted by the old program or by ours, exactly
 * once. Done before the first link is attached, and on every start (an upgrade).
 */
static int agent_install_counter(struct agent *a)
{
	int cgroup = a->config.hook == AGENT_HOOK_CGROUP;
	int progs_fd =
		bpf_map__fd(cgroup ? a->skel->maps.kzn_socket_progs : a->skel->maps.kzn_progs);
	int ours = bpf_program__fd(cgroup ? a->skel->progs.kzn_socket_egress
					  : a->skel->progs.kzn_postrouting);
	__u32 zero = 0, old_id = 0;
	__u8 old_tag[BPF_TAG_SIZE], new_tag[BPF_TAG_SIZE];
	int old_fd;

	/* A prog array answers a lookup from user space with the program's id. */
	if (bpf_map_lookup_elem(progs_fd, &zero, &old_id) == 0 && old_id &&
	    (old_fd = bpf_prog_get_fd_by_id(old_id)) >= 0) {
		if (agent_prog_tag(old_fd, old_tag) == 0 && agent_prog_tag(ours, new_tag) == 0 &&
		    memcmp(old_tag, new_tag, BPF_TAG_SIZE) != 0)
			agent_log("upgrading the counting program in place (program %u replaced)",
				  old_id);
		close(old_fd);
	}
	if (bpf_map_update_elem(progs_fd, &zero, &ours, BPF_ANY) != 0) {
		agent_log("install the counting program in kzn_progs: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * agent_recover adopts what pinned state there is: which map is active, and a report that a
 * previous agent froze but did not get acknowledged. A fresh state gets a new instance id.
 */
static int agent_recover(struct agent *a)
{
	__u32 zero = 0, active = 0;
	int rc;

	if (bpf_map_lookup_elem(a->state_fd, &zero, &a->state) != 0) {
		agent_log("read pinned state: %s", strerror(errno));
		return -errno;
	}
	bpf_map_lookup_elem(a->active_fd, &zero, &active);
	a->active = active ? 1 : 0;
	if (a->state.instance_id == 0) {
		memset(&a->state, 0, sizeof(a->state));
		a->state.instance_id = agent_random64();
		a->state.next_sequence = 1;
		a->state.interval_start_ns = agent_wall_ns();
		/* Point the program at map a before the first packet can arrive. */
		if (bpf_map_update_elem(a->active_fd, &zero, &zero, BPF_ANY) != 0) {
			agent_log("activate flow map: %s", strerror(errno));
			return -errno;
		}
		a->active = 0;
		return agent_save_state(a);
	}
	agent_log("continuing pinned state: instance %016llx, next sequence %llu",
		  (unsigned long long)a->state.instance_id,
		  (unsigned long long)a->state.next_sequence);
	rc = agent_read_frozen(a);
	if (rc)
		return rc;
	if (a->frozen_count || a->state.pending_sequence) {
		agent_log("resending the %u flows an earlier agent had not shipped",
			  a->frozen_count);
		return agent_prepare_pending(a);
	}
	return 0;
}

/*
 * agent_set_percpu makes the opened skel's flow maps per-CPU (--per-cpu-counts): the
 * program's code is the same, it adds to this CPU's value. kzn_grace's inner map template
 * must be of the same type: a map of that type, whose fd (*inner_fd) the caller closes once
 * the object is loaded, stands in for it.
 */
static int agent_set_percpu(struct kubezonnet_bpf *skel, int *inner_fd)
{
	*inner_fd =
		bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "kzn_inner", sizeof(struct kzn_flow_key),
			       sizeof(struct kzn_flow_value), 1, NULL);
	if (*inner_fd < 0)
		return -1;
	if (bpf_map__set_type(skel->maps.kzn_flows_a, BPF_MAP_TYPE_PERCPU_HASH) ||
	    bpf_map__set_type(skel->maps.kzn_flows_b, BPF_MAP_TYPE_PERCPU_HASH) ||
	    bpf_map__set_inner_map_fd(skel->maps.kzn_grace, *inner_fd)) {
		close(*inner_fd);
		*inner_fd = -1;
		return -1;
	}
	return 0;
}

/* agent_open_bpf opens, configures and loads the BPF object against the pinned maps. */
static int agent_open_bpf(struct agent *a)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = a->config.pin_path);
	struct bpf_map_info pinned;
	int rc, inner_fd = -1;

	rc = agent_check_bpffs(a->config.pin_path);
	if (rc)
		return rc;
	a->map_entries = a->config.map_entries;
	a->per_cpu = a->config.per_cpu;
	agent_pinned_flows(a->config.pin_path, &pinned);
	if (pinned.max_entries && pinned.max_entries != a->map_entries) {
		agent_log("flow maps pinned at %s hold %u entries: keeping %u instead of "
			  "--map-entries %u (remove the pins to change it)",
			  a->config.pin_path, pinned.max_entries, pinned.max_entries,
			  a->map_entries);
		a->map_entries = pinned.max_entries;
	}
	if (pinned.max_entries && (pinned.type == BPF_MAP_TYPE_PERCPU_HASH) != a->per_cpu) {
		a->per_cpu = !a->per_cpu;
		agent_log("flow maps pinned at %s hold %s: keeping them so, %s --per-cpu-counts "
			  "(remove the pins to change it)",
			  a->config.pin_path, a->per_cpu ? "counts per CPU" : "one count a flow",
			  a->per_cpu ? "as with" : "as without");
	}
	/*
	 * Counting GSO segments reads the skb's shared info; should a kernel refuse that from a
	 * netfilter program, load again without it and count skb->len (one header per
	 * super-packet). A missing capability is not such a kernel: it is named, and the agent
	 * stops rather than count less than it should.
	 */
	for (int count_gso = 1; count_gso >= 0; count_gso--) {
		char caps[256];

		a->skel = kubezonnet_bpf__open_opts(&opts);
		if (!a->skel) {
			agent_log("open BPF object: %s", strerror(errno));
			return -errno;
		}
		a->skel->rodata->kzn_count_gso = (__u32)count_gso;
		/* Only the hook's own programs are loaded (the cgroup one needs no netfilter). */
		{
			int cgroup = a->config.hook == AGENT_HOOK_CGROUP;
			bpf_program__set_autoload(a->skel->progs.kzn_postrouting, !cgroup);
			bpf_program__set_autoload(a->skel->progs.kzn_dispatch, !cgroup);
			bpf_program__set_autoload(a->skel->progs.kzn_socket_egress, cgroup);
			bpf_program__set_autoload(a->skel->progs.kzn_socket_dispatch, cgroup);
		}
		a->skel->rodata->kzn_vxlan_port = a->config.vxlan_port;
		a->skel->rodata->kzn_geneve_port = a->config.geneve_port;
		bpf_map__set_max_entries(a->skel->maps.kzn_flows_a, a->map_entries);
		bpf_map__set_max_entries(a->skel->maps.kzn_flows_b, a->map_entries);
		if (a->per_cpu && agent_set_percpu(a->skel, &inner_fd) != 0) {
			rc = -errno;
			agent_log("per-CPU flow maps: %s", strerror(errno));
			kubezonnet_bpf__destroy(a->skel);
			a->skel = NULL;
			return rc;
		}
		/* The inner map template keeps its size: hash maps in a map-in-map may differ. */
		rc = kubezonnet_bpf__load(a->skel) == 0 ? 0 : -errno;
		if (inner_fd >= 0)
			close(inner_fd);
		inner_fd = -1;
		if (rc == 0)
			break;
		kubezonnet_bpf__destroy(a->skel);
		a->skel = NULL;
		agent_missing_caps(caps, sizeof(caps));
		if (!count_gso || caps[0]) {
			agent_log("load BPF program: %s%s (needs Linux 6.4+ with BTF, and CAP_BPF, "
				  "CAP_NET_ADMIN and CAP_PERFMON; if the maps pinned at %s are "
				  "from an incompatible version, remove them with --uninstall)",
				  strerror(-rc), caps, a->config.pin_path);
			return rc;
		}
	}
	if (!a->skel->rodata->kzn_count_gso)
		agent_log("the kernel refused the GSO segment count: counting skb->len, which "
			  "under-reports bulk TCP by about 3%% (one header per GSO super-packet)");
	a->flows_fd[0] = bpf_map__fd(a->skel->maps.kzn_flows_a);
	a->flows_fd[1] = bpf_map__fd(a->skel->maps.kzn_flows_b);
	a->active_fd = bpf_map__fd(a->skel->maps.kzn_active);
	a->grace_fd = bpf_map__fd(a->skel->maps.kzn_grace);
	a->loss_fd = bpf_map__fd(a->skel->maps.kzn_loss);
	a->state_fd = bpf_map__fd(a->skel->maps.kzn_state);
	a->ncpus = libbpf_num_possible_cpus();
	if (a->ncpus <= 0) {
		agent_log("cannot tell the possible CPUs (/sys/devices/system/cpu/possible): %s",
			  strerror(-a->ncpus));
		return a->ncpus ? a->ncpus : -EINVAL;
	}
	a->keys = calloc(a->map_entries, sizeof(*a->keys));
	a->values = calloc(a->map_entries, sizeof(*a->values));
	if (a->per_cpu)
		a->percpu =
			calloc((size_t)AGENT_PERCPU_BATCH * (size_t)a->ncpus, sizeof(*a->percpu));
	if (!a->keys || !a->values || (a->per_cpu && !a->percpu)) {
		agent_log("out of memory for %u flows", a->map_entries);
		return -ENOMEM;
	}
	return 0;
}

/* ---- connection ---- */

/* agent_encode_hello writes the HELLO of this agent, in a->protocol, into a->hello. */
static int agent_encode_hello(struct agent *a)
{
	struct wire_hello hello = {
		.version = a->protocol,
		.instance_id = a->state.instance_id,
		.node = a->config.node,
		.node_len = (uint16_t)strlen(a->config.node),
		.agent_version = KUBEZONNET_VERSION,
		.agent_version_len = (uint16_t)(strlen(KUBEZONNET_VERSION) > WIRE_AGENT_VERSION_MAX
							? WIRE_AGENT_VERSION_MAX
							: strlen(KUBEZONNET_VERSION)),
	};
	uint8_t nonce[WIRE_NONCE_SIZE];
	long len;

	hello.hook = a->config.hook == AGENT_HOOK_CGROUP ? WIRE_HOOK_CGROUP : WIRE_HOOK_NETFILTER;
	if (a->config.secret_path) {
		/* Fresh for every connection, as the server's challenge is. */
		if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce)) {
			agent_log("getrandom: %s", strerror(errno));
			return -EIO;
		}
		hello.nonce = nonce;
	}
	len = wire_hello_encode(a->hello, sizeof(a->hello), &hello);
	if (len < 0) {
		agent_log("encode HELLO: %s", wire_strerror((int)len));
		return (int)len;
	}
	a->hello_len = (size_t)len;
	sha256(a->hello + WIRE_HEADER_SIZE, a->hello_len - WIRE_HEADER_SIZE, a->transcript);
	return 0;
}

/* The wire version an agent offers first (the hook's status, a secret); older on refusal. */
#define AGENT_PROTOCOL WIRE_VERSION_3

/*
 * agent_hmac computes HMAC-SHA-256 with the key over label || transcript || server nonce: the
 * proofs and the session key of wire.h's version 3.
 */
static void agent_hmac(const uint8_t *key, size_t key_len, const char *label,
		       const uint8_t transcript[SHA256_DIGEST_SIZE],
		       const uint8_t nonce[WIRE_NONCE_SIZE], uint8_t out[WIRE_MAC_SIZE])
{
	struct sha256_hmac_ctx c;

	sha256_hmac_init(&c, key, key_len);
	sha256_hmac_update(&c, label, strlen(label));
	sha256_hmac_update(&c, transcript, SHA256_DIGEST_SIZE);
	sha256_hmac_update(&c, nonce, WIRE_NONCE_SIZE);
	sha256_hmac_final(&c, out);
}

/*
 * agent_frame_mac computes a frame's MAC: direction and counter, then header and payload
 * (frame[0..len), the length field already counting the MAC).
 */
static void agent_frame_mac(const struct agent *a, uint8_t direction, uint64_t counter,
			    const uint8_t *frame, size_t len, uint8_t out[WIRE_MAC_SIZE])
{
	struct sha256_hmac_ctx c;
	uint8_t prefix[WIRE_MAC_PREFIX_SIZE];

	wire_mac_prefix(prefix, direction, counter);
	sha256_hmac_init(&c, a->session_key, sizeof(a->session_key));
	sha256_hmac_update(&c, prefix, sizeof(prefix));
	sha256_hmac_update(&c, frame, len);
	sha256_hmac_final(&c, out);
}

/* agent_reload_secret reads the secret file again if it changed; the old one stays on error. */
static void agent_reload_secret(struct agent *a)
{
	char err[300];

	if (!a->config.secret_path || !secret_changed(a->config.secret_path, &a->secret))
		return;
	if (secret_load(a->config.secret_path, &a->secret, err, sizeof(err)) != 0) {
		agent_log("agent secret file: %s; keeping the secret read before", err);
		return;
	}
	agent_log("agent secret file %s read again: %d secret%s, the first one used",
		  a->config.secret_path, a->secret.n, a->secret.n == 1 ? "" : "s");
}

/*
 * agent_speak_older is the answer to a server that refused the version offered (one from
 * before it): HELLO and the pending report again in the version before, without what only
 * the newer one carries (version 3: the hook's status; 2: the encapsulation bytes and the
 * malformed-inner counts). The newest is tried again at the next --rebalance.
 */
static void agent_speak_older(struct agent *a)
{
	a->protocol--;
	agent_log("the server does not speak wire protocol version %u: reporting in version %u, "
		  "%s (version %u is tried again at the next --rebalance)",
		  a->protocol + 1, a->protocol,
		  a->protocol == WIRE_VERSION_2
			  ? "without the hook's status"
			  : "without the encapsulation bytes of tunnelled traffic",
		  AGENT_PROTOCOL);
	if (agent_encode_hello(a) != 0 || (a->frame && agent_build_frame(a) != 0))
		agent_stop = 1;
}

static void agent_disconnect(struct agent *a, const char *why)
{
	long long now = log_now_ms();
	unsigned int jitter;

	if (a->conn == AGENT_CONNECTED)
		agent_log("disconnected from %s: %s", a->peer, why);
	else
		agent_log("cannot connect to %s: %s", a->config.server, why);
	if (a->sock >= 0)
		close(a->sock);
	a->sock = -1;
	a->conn = AGENT_DISCONNECTED;
	a->frame_sent = 0;
	a->out = NULL;
	a->in_len = 0;
	a->auth = AGENT_AUTH_NONE;
	/* Exponential back-off with jitter in [backoff/2, backoff]. */
	jitter = (unsigned int)(agent_random64() % (a->backoff_ms / 2 + 1));
	a->next_connect_ms = now + a->backoff_ms / 2 + jitter;
	a->backoff_ms =
		a->backoff_ms * 2 > AGENT_BACKOFF_MAX ? AGENT_BACKOFF_MAX : a->backoff_ms * 2;
}

/* agent_connect resolves the server again (its address may have changed) and connects. */
static void agent_connect(struct agent *a)
{
	char host[256];
	const char *port;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL, *ai;
	int err, one = 1;
	unsigned int timeout = AGENT_ACK_TIMEOUT;
	const char *colon = strrchr(a->config.server, ':');
	size_t hlen = colon ? (size_t)(colon - a->config.server) : 0;
	const char *h = a->config.server;

	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	port = colon + 1;
	err = getaddrinfo(host, port, &hints, &res);
	if (err) {
		agent_disconnect(a, gai_strerror(err));
		return;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		a->sock = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (a->sock < 0)
			continue;
		setsockopt(a->sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(a->sock, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(a->sock, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
		if (connect(a->sock, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
			char addr[INET6_ADDRSTRLEN] = "?";
			void *sa =
				ai->ai_family == AF_INET
					? (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
					: (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			inet_ntop(ai->ai_family, sa, addr, sizeof(addr));
			snprintf(a->peer, sizeof(a->peer), "%s (%s)", a->config.server, addr);
			a->conn = AGENT_CONNECTING;
			a->connect_started_ms = log_now_ms();
			break;
		}
		close(a->sock);
		a->sock = -1;
	}
	freeaddrinfo(res);
	if (a->conn != AGENT_CONNECTING)
		agent_disconnect(a, "no address accepted the connection");
}

/*
 * agent_seal_frame readies the pending report for this connection: in version 3 with its MAC
 * after it (length and flags counting it), else as built.
 */
static void agent_seal_frame(struct agent *a)
{
	uint16_t flags = wire_get16(a->frame + 6) & (uint16_t)~WIRE_FLAG_MAC;
	size_t len = a->frame_len;

	if (a->auth == AGENT_AUTH_DONE) {
		wire_put32(a->frame, (uint32_t)(len + WIRE_MAC_SIZE - WIRE_LENGTH_SIZE));
		wire_put16(a->frame + 6, flags | WIRE_FLAG_MAC);
		agent_frame_mac(a, WIRE_DIRECTION_AGENT, a->mac_sent++, a->frame, len,
				a->frame + len);
		len += WIRE_MAC_SIZE;
	} else {
		wire_put32(a->frame, (uint32_t)(len - WIRE_LENGTH_SIZE));
		wire_put16(a->frame + 6, flags);
	}
	a->out_len = len;
}

/* agent_pump writes what is queued: HELLO first, then the pending report once. */
static void agent_pump(struct agent *a)
{
	while (a->conn == AGENT_CONNECTED) {
		if (!a->out) {
			if (!a->frame || a->frame_sent ||
			    (a->config.secret_path && a->auth != AGENT_AUTH_DONE))
				return;
			agent_seal_frame(a);
			a->out = a->frame;
			a->out_off = 0;
			a->out_is_frame = 1;
		}
		ssize_t n =
			send(a->sock, a->out + a->out_off, a->out_len - a->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			agent_disconnect(a, strerror(errno));
			return;
		}
		a->out_off += (size_t)n;
		if (a->out_off == a->out_len) {
			if (a->out_is_frame) {
				a->frame_sent = 1;
				a->frame_sent_ms = log_now_ms();
			}
			a->out = NULL;
		}
	}
}

static void agent_on_connected(struct agent *a)
{
	unsigned int r = a->config.rebalance_ms;

	a->conn = AGENT_CONNECTED;
	/* Spread over [3/4, 5/4] of the period, so that agents that connected together (to a
	 * server that restarted) do not all reconnect together. */
	a->rebalance_at_ms =
		log_now_ms() + r * 3ll / 4 + (long long)(agent_random64() % (r / 2 + 1));
	agent_log("connected to %s", a->peer);
	a->auth = AGENT_AUTH_NONE;
	a->mac_sent = a->mac_received = 0;
	if (a->config.secret_path)
		agent_reload_secret(a);
	if (agent_encode_hello(a) != 0) { /* with a secret, with a fresh nonce */
		agent_disconnect(a, "cannot make a HELLO");
		return;
	}
	if (a->config.secret_path)
		a->auth = AGENT_AUTH_CHALLENGE;
	a->out = a->hello;
	a->out_len = a->hello_len;
	a->out_off = 0;
	a->out_is_frame = 0;
	a->frame_sent = 0;
	agent_pump(a);
}

/*
 * agent_rebalance closes a healthy connection between two reports (nothing unacknowledged,
 * so nothing can be counted twice by another server) and connects again at once. With one
 * server per zone (deploy/per-zone), an agent that fell back to another zone's server while
 * its own was down comes home this way: the Service routes each new connection.
 */
static void agent_rebalance(struct agent *a)
{
	agent_log("connected to %s for %u s: connecting again, so that the Service routes this "
		  "agent anew (--rebalance)",
		  a->peer, a->config.rebalance_ms / 1000);
	close(a->sock);
	a->sock = -1;
	a->conn = AGENT_DISCONNECTED;
	a->in_len = 0;
	a->next_connect_ms = 0;
	/* The server may have been upgraded meanwhile (or the new one may be newer). */
	a->protocol = AGENT_PROTOCOL;
}

/*
 * agent_handshake takes the server's CHALLENGE (answered with this agent's proof) or AUTH
 * (the server's proof, checked; then reports flow). Returns 0, or -1 after disconnecting.
 */
static int agent_handshake(struct agent *a, const struct wire_frame *f)
{
	uint8_t proof[WIRE_MAC_SIZE];

	if (wire_blob_decode(f->payload, f->payload_len) != 0) {
		agent_disconnect(a, "malformed handshake frame from server");
		return -1;
	}
	if (f->type == WIRE_CHALLENGE && a->auth == AGENT_AUTH_CHALLENGE) {
		const uint8_t *key = a->secret.key[0];
		size_t key_len = a->secret.len[0];

		agent_hmac(key, key_len, WIRE_LABEL_AGENT, a->transcript, f->payload, proof);
		agent_hmac(key, key_len, WIRE_LABEL_SERVER, a->transcript, f->payload,
			   a->server_proof);
		agent_hmac(key, key_len, WIRE_LABEL_SESSION, a->transcript, f->payload,
			   a->session_key);
		wire_blob_encode(a->auth_frame, sizeof(a->auth_frame), WIRE_AUTH, proof);
		a->auth = AGENT_AUTH_PROOF;
		if (!a->out) { /* the HELLO went out already (the challenge answers it) */
			a->out = a->auth_frame;
			a->out_len = sizeof(a->auth_frame);
			a->out_off = 0;
			a->out_is_frame = 0;
		}
		agent_pump(a);
		return a->conn == AGENT_CONNECTED ? 0 : -1;
	}
	if (f->type == WIRE_AUTH && a->auth == AGENT_AUTH_PROOF && !a->out) {
		if (!sha256_equal(f->payload, a->server_proof, WIRE_MAC_SIZE)) {
			agent_disconnect(a, "the server did not prove it holds the agent secret");
			return -1;
		}
		a->auth = AGENT_AUTH_DONE;
		agent_pump(a);
		return a->conn == AGENT_CONNECTED ? 0 : -1;
	}
	agent_disconnect(a, "unexpected handshake frame from server");
	return -1;
}

/* agent_read handles what the server sent: ACKs, or an ERROR before it closes. */
static void agent_read(struct agent *a)
{
	for (;;) {
		ssize_t n = recv(a->sock, a->in + a->in_len, sizeof(a->in) - a->in_len, 0);
		size_t pos = 0;

		if (n == 0) {
			agent_disconnect(a, "server closed the connection");
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				agent_disconnect(a, strerror(errno));
			return;
		}
		a->in_len += (size_t)n;
		for (;;) {
			struct wire_frame f;
			long len = wire_frame_parse(a->in + pos, a->in_len - pos,
						    sizeof(a->in) - WIRE_LENGTH_SIZE, &f);
			uint64_t seq;

			if (len == WIRE_E_PARTIAL)
				break;
			if (len < 0) {
				agent_disconnect(a, wire_strerror((int)len));
				return;
			}
			if (a->auth == AGENT_AUTH_DONE && f.type == WIRE_ACK) {
				/* Only the server, which holds the secret, can acknowledge. */
				uint8_t mac[WIRE_MAC_SIZE];
				if (!(f.flags & WIRE_FLAG_MAC) || f.payload_len < WIRE_MAC_SIZE) {
					agent_disconnect(a, "ACK without its MAC");
					return;
				}
				f.payload_len -= WIRE_MAC_SIZE;
				agent_frame_mac(a, WIRE_DIRECTION_SERVER, a->mac_received++,
						a->in + pos, (size_t)len - WIRE_MAC_SIZE, mac);
				if (!sha256_equal(mac, f.payload + f.payload_len, WIRE_MAC_SIZE)) {
					agent_disconnect(a, "ACK with a wrong MAC");
					return;
				}
				f.flags &= (uint16_t)~WIRE_FLAG_MAC;
			}
			if (f.type == WIRE_CHALLENGE || f.type == WIRE_AUTH) {
				if (agent_handshake(a, &f) != 0)
					return;
			} else if (f.type == WIRE_ACK && !(f.flags & WIRE_FLAG_MAC) &&
				   a->auth != AGENT_AUTH_CHALLENGE && a->auth != AGENT_AUTH_PROOF &&
				   wire_ack_decode(f.payload, f.payload_len, &seq) == 0) {
				if (a->frame && a->frame_sent && seq == a->state.pending_sequence) {
					a->backoff_ms = AGENT_BACKOFF_MIN;
					if (agent_acknowledged(a) != 0)
						agent_stop = 1;
				}
			} else if (f.type == WIRE_ERROR) {
				struct wire_error e = {0};
				char why[4 * WIRE_ERROR_MESSAGE_MAX + 32];
				char text[4 * WIRE_ERROR_MESSAGE_MAX + 1];
				if (wire_error_decode(f.payload, f.payload_len, &e) == 0) {
					log_escape(e.message, e.message_len, text, sizeof(text));
					snprintf(why, sizeof(why), "server error %u: %s", e.code,
						 text);
				} else {
					snprintf(why, sizeof(why), "malformed ERROR from server");
				}
				agent_disconnect(a, why);
				if (e.code == WIRE_ERR_VERSION && a->config.secret_path)
					agent_log("the server does not speak wire protocol version "
						  "3, so it cannot check the agent secret: it "
						  "predates --agent-secret-file. Upgrade it (the "
						  "report waits here until then)");
				else if (e.code == WIRE_ERR_AUTH && !a->config.secret_path)
					agent_log(
						"the server requires the agent secret: give this "
						"agent --agent-secret-file (the report waits here "
						"until then)");
				else if (e.code == WIRE_ERR_RETRY)
					agent_log("the server does not know node %s yet; trying "
						  "again",
						  a->config.node);
				if (e.code == WIRE_ERR_VERSION && !a->config.secret_path &&
				    a->protocol > WIRE_VERSION_1) {
					agent_speak_older(a);
					a->backoff_ms = AGENT_BACKOFF_MIN;
					a->next_connect_ms = 0;
				}
				return;
			} else {
				agent_disconnect(a, "unexpected frame from server");
				return;
			}
			pos += (size_t)len;
		}
		memmove(a->in, a->in + pos, a->in_len - pos);
		a->in_len -= pos;
	}
}

/* agent_step runs one turn of the loop: drain when due, connect, poll, read and write. */
static void agent_step(struct agent *a, int timeout_cap_ms)
{
	long long now = log_now_ms();
	struct pollfd fds[2] = {{.fd = -1}, {.fd = a->link_events, .events = POLLIN}};
	struct pollfd *pfd = &fds[0];
	long long wake = a->next_drain_ms;
	int timeout;

	if (now >= a->next_drain_ms) {
		a->next_drain_ms = now + a->config.interval_ms;
		if (a->link_events < 0)
			agent_scan_tunnels(a);
		if (agent_drain(a) != 0)
			agent_stop = 1;
	}
	if (a->drain_due && a->state.pending_sequence == 0 && agent_drain(a) != 0)
		agent_stop = 1;
	if (a->conn == AGENT_DISCONNECTED && now >= a->next_connect_ms)
		agent_connect(a);
	if (a->conn == AGENT_CONNECTED) {
		agent_pump(a);
		if (a->frame_sent && now - a->frame_sent_ms > AGENT_ACK_TIMEOUT)
			agent_disconnect(a, "no acknowledgement in time");
		else if (a->config.rebalance_ms && now >= a->rebalance_at_ms && !a->frame &&
			 !a->out)
			agent_rebalance(a);
	} else if (a->conn == AGENT_CONNECTING &&
		   now - a->connect_started_ms > AGENT_CONNECT_TIMEOUT) {
		agent_disconnect(a, "connection timed out");
	}
	if (a->conn != AGENT_DISCONNECTED) {
		pfd->fd = a->sock;
		pfd->events = POLLIN;
		if (a->conn == AGENT_CONNECTING || a->out)
			pfd->events |= POLLOUT;
	} else if (a->next_connect_ms < wake) {
		wake = a->next_connect_ms;
	}
	timeout = wake > now ? (int)(wake - now) : 0;
	if (timeout > timeout_cap_ms)
		timeout = timeout_cap_ms;
	if (poll(fds, 2, timeout) <= 0)
		return;
	if (fds[1].revents & (POLLIN | POLLERR))
		agent_links_changed(a);
	if (a->conn == AGENT_CONNECTING && (pfd->revents & (POLLOUT | POLLERR | POLLHUP))) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(a->sock, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			agent_disconnect(a, strerror(err));
			return;
		}
		agent_on_connected(a);
		return;
	}
	if (a->conn == AGENT_CONNECTED && (pfd->revents & (POLLIN | POLLERR | POLLHUP)))
		agent_read(a);
	if (a->conn == AGENT_CONNECTED && (pfd->revents & POLLOUT))
		agent_pump(a);
}

/*
 * agent_shutdown ships what was counted up to now within AGENT_SHUTDOWN_WAIT and leaves the
 * program attached and everything pinned: a rolling update's SIGTERM is followed by a new
 * agent seconds later, and the kernel counts on in between. A report the server has not
 * acknowledged by then stays pinned, and the next agent sends it. (--uninstall is what
 * detaches.)
 */
static void agent_shutdown(struct agent *a)
{
	long long deadline = log_now_ms() + AGENT_SHUTDOWN_WAIT;
	int drained = 0;

	a->drain_due = 0;
	a->next_connect_ms = 0;
	a->backoff_ms = AGENT_BACKOFF_MIN;
	a->next_drain_ms = deadline + 1000; /* no interval drains: only the last one below */
	while (log_now_ms() < deadline) {
		if (a->state.pending_sequence == 0) {
			if (drained || agent_drain(a) != 0)
				break;
			drained = 1;
		}
		if (a->conn == AGENT_DISCONNECTED && log_now_ms() >= a->next_connect_ms)
			agent_connect(a);
		agent_step(a, 100);
	}
	if (a->state.pending_sequence == 0)
		agent_log("last report acknowledged; the program keeps counting for the next agent "
			  "(pinned at %s)",
			  a->config.pin_path);
	else
		agent_log("the server did not acknowledge report %llu in time: it stays pinned at "
			  "%s for the next agent, and the program keeps counting",
			  (unsigned long long)a->state.pending_sequence, a->config.pin_path);
}

/* ---- flags ---- */

static void agent_usage(FILE *out)
{
	fprintf(out,
		"usage: kubezonnet-agent --server HOST:PORT [options]\n"
		"\n"
		"Counts the bytes and packets of every flow leaving this node's network namespace\n"
		"with an eBPF program on netfilter POSTROUTING (IPv4 and IPv6) and ships the "
		"counts\n"
		"to kubezonnet-server. Needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or root),\n"
		"a bpf filesystem at --pin-path's parent) and Linux 6.4 or newer with BTF. On\n"
		"SIGTERM it ships a last report and exits; the program keeps counting for the\n"
		"next agent.\n"
		"\n"
		"  -s, --server HOST:PORT  kubezonnet-server's agent port (resolved on every "
		"connect);\n"
		"                          also $KUBEZONNET_SERVER\n"
		"  -n, --node NAME         this node's name (default $NODE_NAME, else the "
		"hostname)\n"
		"  -i, --interval DURATION report interval, e.g. 10s, 500ms (default 10s)\n"
		"  -m, --map-entries N     flows held per interval (default %u, %u..%u)\n"
		"  -r, --rebalance DURATION connect anew after this long, between two reports, so\n"
		"                          that the Service may route to a nearer server (default\n"
		"                          10m, about; 0: never)\n"
		"      --tunnel-port KIND:PORT  a tunnel on a port of its own besides the "
		"well-known\n"
		"                          ones (vxlan:4789, 8472; geneve:6081); once per kind\n"
		"  -p, --pin-path DIR      where maps, links and state are pinned on bpffs\n"
		"                          (default %s)\n"
		"      --uninstall         detach the program and remove everything pinned at\n"
		"                          --pin-path, then exit (counts not yet shipped are "
		"lost)\n"
		"      --mount-bpffs       mount a bpf filesystem on --pin-path's parent unless "
		"one\n"
		"                          is there, then exit (needs CAP_SYS_ADMIN; for an init\n"
		"                          container on a node without one)\n"
		"      --pause             after --uninstall or --mount-bpffs, stay running until\n"
		"                          SIGTERM (for a DaemonSet)\n"
		"      --hook netfilter|cgroup  where to count: netfilter POSTROUTING (default;\n"
		"                          Linux 6.4+), or what sockets send, at cgroup egress "
		"(for\n"
		"                          CNIs whose pod traffic never reaches netfilter)\n"
		"      --cgroup DIR        the cgroup v2 directory the cgroup hook attaches to\n"
		"                          (default: the root of the cgroup v2 hierarchy)\n"
		"      --blind-after DURATION  say so (log, report) when the hook has counted "
		"under\n"
		"                          1%% of what the node's devices sent for this long\n"
		"                          (default 60s; 0: never)\n"
		"      --per-cpu-counts    keep a flow's counts one per CPU: no cache line shared\n"
		"                          between CPUs adding to one flow, for 2 x map-entries x\n"
		"                          24 bytes of kernel memory a CPU (README: \"What a\n"
		"                          packet costs\"); flow maps already pinned keep theirs\n"
		"      --agent-secret-file FILE  prove to the server that this agent holds the\n"
		"                          secret on FILE's first line (wire protocol version 3,\n"
		"                          every frame authenticated); FILE is read again when it\n"
		"                          changes. The server needs the same file\n"
		"      --no-sandbox        keep the capabilities and make any system call once\n"
		"                          set up (by default they are dropped and a seccomp\n"
		"                          filter allows only the calls the agent makes)\n"
		"  -h, --help              this text\n"
		"  -V, --version           print the version and exit\n",
		KZN_MAP_ENTRIES_DEFAULT, KZN_MAP_ENTRIES_MIN, KZN_MAP_ENTRIES_MAX,
		AGENT_PIN_PATH_DEFAULT);
}

/* agent_parse_duration parses "10s", "500ms", "1m" or plain seconds into milliseconds. */
static int agent_parse_duration(const char *s, unsigned int *ms)
{
	char *end;
	double v = strtod(s, &end);
	double scale = 1000;

	if (end == s || v <= 0)
		return -EINVAL;
	if (strcmp(end, "ms") == 0)
		scale = 1;
	else if (strcmp(end, "m") == 0)
		scale = 60000;
	else if (*end && strcmp(end, "s") != 0)
		return -EINVAL;
	v *= scale;
	if (v < 10 || v > 3600000)
		return -ERANGE;
	*ms = (unsigned int)v;
	return 0;
}

static int agent_parse_flags(int argc, char **argv, struct agent_config *c)
{
	static const struct option options[] = {
		{"server", required_argument, NULL, 's'},
		{"node", required_argument, NULL, 'n'},
		{"interval", required_argument, NULL, 'i'},
		{"map-entries", required_argument, NULL, 'm'},
		{"pin-path", required_argument, NULL, 'p'},
		{"rebalance", required_argument, NULL, 'r'},
		{"tunnel-port", required_argument, NULL, 'T'},
		{"uninstall", no_argument, NULL, 'U'},
		{"mount-bpffs", no_argument, NULL, 'M'},
		{"pause", no_argument, NULL, 'P'},
		{"no-sandbox", no_argument, NULL, 'S'},
		{"agent-secret-file", required_argument, NULL, 'A'},
		{"hook", required_argument, NULL, 'H'},
		{"cgroup", required_argument, NULL, 'C'},
		{"blind-after", required_argument, NULL, 'B'},
		{"per-cpu-counts", no_argument, NULL, 'X'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *node = getenv("NODE_NAME");
	int opt;

	c->server = getenv("KUBEZONNET_SERVER");
	c->interval_ms = AGENT_INTERVAL_DEFAULT;
	c->rebalance_ms = AGENT_REBALANCE_DEFAULT;
	c->blind_after_ms = AGENT_BLIND_AFTER_DEFAULT;
	c->map_entries = KZN_MAP_ENTRIES_DEFAULT;
	c->pin_path = AGENT_PIN_PATH_DEFAULT;
	while ((opt = getopt_long(argc, argv, "s:n:i:m:p:r:hV", options, NULL)) != -1) {
		switch (opt) {
		case 's':
			c->server = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		case 'i':
			if (agent_parse_duration(optarg, &c->interval_ms) != 0) {
				fprintf(stderr,
					"kubezonnet-agent: --interval: want a duration from "
					"10ms to 1h such as 10s or 500ms, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'm': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || end == optarg || v < KZN_MAP_ENTRIES_MIN ||
			    v > KZN_MAP_ENTRIES_MAX) {
				fprintf(stderr,
					"kubezonnet-agent: --map-entries: want %u..%u, got '%s'\n",
					KZN_MAP_ENTRIES_MIN, KZN_MAP_ENTRIES_MAX, optarg);
				return 2;
			}
			c->map_entries = (unsigned int)v;
			break;
		}
		case 'p':
			c->pin_path = optarg;
			break;
		case 'T': {
			char *end;
			const char *colon = strchr(optarg, ':');
			unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
			size_t kind = colon ? (size_t)(colon - optarg) : 0;
			uint16_t *slot =
				!colon						 ? NULL
				: kind == 5 && strncmp(optarg, "vxlan", 5) == 0	 ? &c->vxlan_port
				: kind == 6 && strncmp(optarg, "geneve", 6) == 0 ? &c->geneve_port
										 : NULL;

			if (!slot || port == 0 || port > 65535 || *end || end == colon + 1) {
				fprintf(stderr,
					"kubezonnet-agent: --tunnel-port: want vxlan:PORT or "
					"geneve:PORT, got '%s'\n",
					optarg);
				return 2;
			}
			*slot = (uint16_t)port;
			break;
		}
		case 'r':
			if (strcmp(optarg, "0") == 0) {
				c->rebalance_ms = 0;
			} else if (agent_parse_duration(optarg, &c->rebalance_ms) != 0 ||
				   c->rebalance_ms < 1000) {
				fprintf(stderr,
					"kubezonnet-agent: --rebalance: want 0 or a duration from "
					"1s "
					"to 1h such as 10m, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'U':
			c->mode = AGENT_UNINSTALL;
			break;
		case 'M':
			c->mode = AGENT_MOUNT_BPFFS;
			break;
		case 'P':
			c->pause = 1;
			break;
		case 'S':
			c->no_sandbox = 1;
			break;
		case 'A':
			c->secret_path = optarg;
			break;
		case 'H':
			if (strcmp(optarg, "netfilter") == 0) {
				c->hook = AGENT_HOOK_NETFILTER;
			} else if (strcmp(optarg, "cgroup") == 0) {
				c->hook = AGENT_HOOK_CGROUP;
			} else {
				fprintf(stderr,
					"kubezonnet-agent: --hook: want netfilter or cgroup, got "
					"'%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'C':
			c->cgroup_path = optarg;
			break;
		case 'B':
			if (strcmp(optarg, "0") == 0) {
				c->blind_after_ms = 0;
			} else if (agent_parse_duration(optarg, &c->blind_after_ms) != 0) {
				fprintf(stderr,
					"kubezonnet-agent: --blind-after: want 0 or a duration "
					"from 10ms to 1h such as 60s, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'X':
			c->per_cpu = 1;
			break;
		case 'h':
			agent_usage(stdout);
			return 1;
		case 'V':
			printf("kubezonnet-agent %s\n", KUBEZONNET_VERSION);
			return 1;
		default:
			agent_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kubezonnet-agent: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (c->pin_path[0] != '/') {
		fprintf(stderr, "kubezonnet-agent: --pin-path: want an absolute path\n");
		return 2;
	}
	if (c->pause && c->mode == AGENT_RUN) {
		fprintf(stderr,
			"kubezonnet-agent: --pause goes with --uninstall or --mount-bpffs\n");
		return 2;
	}
	if (c->mode != AGENT_RUN)
		return 0;
	if (!c->server || !*c->server) {
		fprintf(stderr, "kubezonnet-agent: --server HOST:PORT is required\n");
		return 2;
	}
	const char *colon = strrchr(c->server, ':');
	if (!colon || colon == c->server || !colon[1] || strlen(c->server) > 255) {
		fprintf(stderr, "kubezonnet-agent: --server: want HOST:PORT, got '%s'\n",
			c->server);
		return 2;
	}
	if (c->cgroup_path && c->hook != AGENT_HOOK_CGROUP) {
		fprintf(stderr, "kubezonnet-agent: --cgroup is for --hook cgroup\n");
		return 2;
	}
	if (!node || !*node) {
		if (gethostname(c->node, sizeof(c->node)) != 0) {
			fprintf(stderr, "kubezonnet-agent: gethostname: %s\n", strerror(errno));
			return 2;
		}
		c->node[sizeof(c->node) - 1] = '\0';
	} else {
		snprintf(c->node, sizeof(c->node), "%s", node);
	}
	if (!wire_valid_node_name(c->node, strlen(c->node))) {
		fprintf(stderr,
			"kubezonnet-agent: node name '%s' is not a valid Kubernetes node name "
			"(lower-case RFC 1123, at most 253 bytes): set --node or $NODE_NAME\n",
			c->node);
		return 2;
	}
	return 0;
}

/*
 * The system calls the agent makes once set up: its loop (bpf on the maps it holds, the
 * server connection, rtnetlink), name resolution on every connect (files and DNS; glibc may
 * load an NSS module), malloc, logging, and the exit path (libbpf closing what it holds).
 */
static const int agent_syscalls[] = {
	SANDBOX_BASE_SYSCALLS, SYS_bpf, SYS_statfs, SYS_fstatfs, SYS_dup,
};

/*
 * agent_sandbox gives up what the agent no longer needs once its program is attached and
 * pinned: every capability (on kernels before 6.5 with unprivileged BPF disabled, bpf() on the
 * maps it holds still needs CAP_BPF: a child process tries a lookup without it, and CAP_BPF is
 * kept if that fails), then no_new_privs and the seccomp filter. Returns 0 or -1 (logged).
 */
static int agent_sandbox(struct agent *a)
{
	uint64_t keep = 0;
	uint32_t key = 0;
	pid_t pid;
	int status = 0;

	if (a->config.no_sandbox) {
		agent_log("--no-sandbox: keeping capabilities, no seccomp filter");
		return 0;
	}
	pid = fork();
	if (pid == 0) {
		uint8_t value[sizeof(struct kzn_agent_state)];
		_exit(sandbox_drop_caps(0) == 0 &&
				      bpf_map_lookup_elem(a->state_fd, &key, value) == 0
			      ? 0
			      : 1);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		keep = 1ull << CAP_BPF;
	if (sandbox_drop_caps(keep) != 0) {
		agent_log("sandbox: dropping capabilities: %s", strerror(errno));
		return -1;
	}
	int rc = sandbox_seccomp("kubezonnet-agent", agent_syscalls,
				 sizeof(agent_syscalls) / sizeof(agent_syscalls[0]));
	if (rc < 0) {
		agent_log("sandbox: seccomp: %s", strerror(errno));
		return -1;
	}
	agent_log("sandbox: %s; no_new_privs; %s",
		  keep ? "kept CAP_BPF only (bpf() on held maps needs it on this kernel)"
		       : "no capabilities left",
		  rc == 0 ? "seccomp filter on"
			  : "no seccomp filter (this architecture, or a sanitized build)");
	return 0;
}

int main(int argc, char **argv)
{
	static struct agent a;
	struct sigaction sa = {.sa_handler = agent_on_signal};
	int reused[2] = {0, 0};
	int rc = agent_parse_flags(argc, argv, &a.config);

	if (rc)
		return rc == 1 ? 0 : rc;
	a.sock = -1;
	a.link_events = -1;
	a.protocol = AGENT_PROTOCOL;
	a.backoff_ms = AGENT_BACKOFF_MIN;
	if (a.config.secret_path && a.config.mode == AGENT_RUN) {
		char err[300];
		if (secret_load(a.config.secret_path, &a.secret, err, sizeof(err)) != 0) {
			fprintf(stderr, "kubezonnet-agent: --agent-secret-file: %s\n", err);
			return 2;
		}
	}
	libbpf_set_print(agent_libbpf_print);
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if (a.config.mode != AGENT_RUN) {
		rc = a.config.mode == AGENT_UNINSTALL ? agent_uninstall(a.config.pin_path)
						      : agent_mount_bpffs(a.config.pin_path);
		while (rc == 0 && a.config.pause && !agent_stop)
			pause();
		return rc ? 1 : 0;
	}

	rc = 1;
	if (agent_open_bpf(&a) != 0)
		goto cleanup;
	if (agent_recover(&a) != 0)
		goto cleanup;
	/* The tunnel devices are known before our program counts the first packet. */
	agent_watch_links(&a);
	agent_links_changed(&a);
	if (agent_install_counter(&a) != 0)
		goto cleanup;
	agent_detach_other(&a);
	if (a.config.hook == AGENT_HOOK_CGROUP) {
		a.links[0] = agent_attach_cgroup(&a, &reused[0]);
		if (!a.links[0])
			goto cleanup;
		agent_log("%s the socket-level hook (cgroup egress, IPv4, IPv6); node %s, "
			  "instance %016llx, %u flows per interval%s, pinned at %s",
			  reused[0] ? "counting continues on" : "attached to", a.config.node,
			  (unsigned long long)a.state.instance_id, a.map_entries,
			  a.per_cpu ? " (counts per CPU)" : "", a.config.pin_path);
	} else {
		a.links[0] = agent_attach(&a, NFPROTO_IPV4, "ipv4", &reused[0]);
		a.links[1] = agent_attach(&a, NFPROTO_IPV6, "ipv6", &reused[1]);
		if (!a.links[0] || !a.links[1])
			goto cleanup;
		agent_log("%s netfilter POSTROUTING (IPv4, IPv6) at priority %d; node %s, "
			  "instance %016llx, %u flows per interval%s, pinned at %s",
			  reused[0] && reused[1] ? "counting continues on" : "attached to",
			  KZN_NF_PRIORITY, a.config.node, (unsigned long long)a.state.instance_id,
			  a.map_entries, a.per_cpu ? " (counts per CPU)" : "", a.config.pin_path);
	}

	if (agent_encode_hello(&a) != 0)
		goto cleanup;
	a.next_drain_ms = log_now_ms() + a.config.interval_ms;
	if (agent_sandbox(&a) != 0)
		goto cleanup;

	while (!agent_stop)
		agent_step(&a, 1000);
	agent_log("stopping");
	agent_shutdown(&a);
	rc = 0;
cleanup:
	if (a.sock >= 0)
		close(a.sock);
	if (a.link_events >= 0)
		close(a.link_events);
	/* Links stay pinned, on SIGTERM as on an error: counting goes on for the next agent. */
	for (int i = 0; i < 2; i++)
		bpf_link__destroy(a.links[i]);
	kubezonnet_bpf__destroy(a.skel);
	free(a.keys);
	free(a.values);
	free(a.percpu);
	free(a.frame);
	return rc;
}
