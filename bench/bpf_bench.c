/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-packet cost of the BPF program, measured by the kernel with BPF_PROG_TEST_RUN, against
 * a program that only returns NF_ACCEPT and one that only parses (bench/bench.bpf.c), run
 * alternately in one process. Rows: a hot key (the flow exists) and new keys (each packet
 * inserts a flow), IPv4 and IPv6.
 *
 * "bpf_bench attach empty|ours" instead attaches that program at POSTROUTING in the current
 * network namespace and waits for SIGTERM (for bench/veth_bench.sh).
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <linux/netfilter.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/kubezonnet.h"
#include "kubezonnet.skel.h"
#include "bench.skel.h"
#include "../wire.h"
#include "bench.h"

#define HOT_REPEAT 200000
#define NEW_KEYS   20000

struct nf_state {
	uint8_t hook, pf, pad[6];
	void *in, *out, *sk, *net, *okfn;
};

struct packet {
	uint8_t b[80];
	uint32_t len;
	int pf;
};

static void make_packet(struct packet *p, int pf, uint16_t sport)
{
	memset(p, 0, sizeof(*p));
	p->pf = pf;
	if (pf == NFPROTO_IPV4) {
		p->len = 20 + 8 + 32;
		p->b[0] = 0x45;
		wire_put16(p->b + 2, (uint16_t)p->len);
		p->b[8] = 64;
		p->b[9] = 17;
		wire_put32(p->b + 12, 0x0a000001);
		wire_put32(p->b + 16, 0x0a000102);
		wire_put16(p->b + 20, sport);
		wire_put16(p->b + 22, 53);
	} else {
		p->len = 40 + 8 + 32;
		p->b[0] = 0x60;
		wire_put16(p->b + 4, 40);
		p->b[6] = 17;
		p->b[7] = 64;
		p->b[8] = 0xfd, p->b[23] = 1, p->b[24] = 0xfd, p->b[39] = 2;
		wire_put16(p->b + 40, 53);
		wire_put16(p->b + 42, sport);
	}
}

/* run_ns returns the kernel-measured mean nanoseconds per run of prog on p, repeat times. */
static double run_ns(int prog_fd, const struct packet *p, int repeat)
{
	struct nf_state st = {.hook = NF_INET_LOCAL_OUT, .pf = (uint8_t)p->pf};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = p->b, .data_size_in = p->len, .ctx_in = &st,
		    .ctx_size_in = sizeof(st), .repeat = repeat);

	if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) {
		fprintf(stderr, "bpf_bench: BPF_PROG_TEST_RUN: %s\n", strerror(errno));
		exit(1);
	}
	return opts.duration;
}

/*
 * socket_ns is run_ns for a cgroup_skb program: the test run takes an Ethernet frame, and the
 * skb's device is ifindex (the socket hook leaves loopback uncounted, and a test run's default
 * device is loopback).
 */
static double socket_ns(int prog_fd, const struct packet *p, int repeat, int ifindex)
{
	uint8_t frame[14 + sizeof(p->b)] = {0};
	struct __sk_buff ctx = {.ifindex = (uint32_t)ifindex};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = 14 + p->len,
		    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = repeat);

	wire_put16(frame + 12, p->pf == NFPROTO_IPV4 ? 0x0800 : 0x86dd);
	memcpy(frame + 14, p->b, p->len);
	if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) {
		fprintf(stderr, "bpf_bench: BPF_PROG_TEST_RUN (cgroup_skb): %s\n", strerror(errno));
		exit(1);
	}
	return opts.duration;
}

/* a_device returns the index of a device of this namespace that is not loopback, or 0. */
static int a_device(void)
{
	struct if_nameindex *all = if_nameindex();
	int found = 0;

	for (struct if_nameindex *i = all; i && i->if_index && !found; i++)
		if (i->if_index > 1)
			found = (int)i->if_index;
	if_freenameindex(all);
	return found;
}

/* new_keys_ns: mean ns per packet over NEW_KEYS packets of distinct flows, one run each. */
static double new_keys_ns(int prog_fd, int flows_fd, int pf, uint16_t base)
{
	double total = 0;
	struct kzn_flow_key k;

	for (int i = 0; i < NEW_KEYS; i++) {
		struct packet p;
		make_packet(&p, pf, (uint16_t)(base + i));
		total += run_ns(prog_fd, &p, 1);
	}
	while (flows_fd >= 0 && bpf_map_get_next_key(flows_fd, NULL, &k) == 0)
		bpf_map_delete_elem(flows_fd, &k);
	return total / NEW_KEYS;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static struct kubezonnet_bpf *load_ours(int *flows_fd)
{
	struct kubezonnet_bpf *skel = kubezonnet_bpf__open();
	struct bpf_map *map;
	__u32 zero = 0;

	if (!skel)
		return NULL;
	bpf_object__for_each_map(map, skel->obj) bpf_map__set_pin_path(map, NULL);
	if (kubezonnet_bpf__load(skel) != 0) {
		kubezonnet_bpf__destroy(skel);
		return NULL;
	}
	*flows_fd = bpf_map__fd(skel->maps.kzn_flows_a);
	bpf_map_update_elem(bpf_map__fd(skel->maps.kzn_active), &zero, &zero, BPF_ANY);
	return skel;
}

static int attach(const char *which)
{
	struct bench_bpf *bench = bench_bpf__open_and_load();
	int flows_fd;
	struct kubezonnet_bpf *ours = strcmp(which, "ours") == 0 ? load_ours(&flows_fd) : NULL;
	struct bpf_program *prog = ours				 ? ours->progs.kzn_postrouting
				   : !bench			 ? NULL
				   : strcmp(which, "parse") == 0 ? bench->progs.kzn_bench_parse
								 : bench->progs.kzn_bench_empty;
	struct bpf_link *links[2] = {NULL, NULL};
	int pfs[2] = {NFPROTO_IPV4, NFPROTO_IPV6};

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (!prog) {
		fprintf(stderr, "bpf_bench: load: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		LIBBPF_OPTS(bpf_netfilter_opts, opts, .pf = (__u32)pfs[i],
			    .hooknum = NF_INET_POST_ROUTING, .priority = KZN_NF_PRIORITY);
		links[i] = bpf_program__attach_netfilter(prog, &opts);
		if (!links[i]) {
			fprintf(stderr, "bpf_bench: attach: %s\n", strerror(errno));
			return 1;
		}
	}
	printf("attached\n");
	fflush(stdout);
	while (!stop)
		pause();
	bpf_link__destroy(links[0]);
	bpf_link__destroy(links[1]);
	kubezonnet_bpf__destroy(ours);
	bench_bpf__destroy(bench);
	return 0;
}

int main(int argc, char **argv)
{
	struct bench_bpf *bench;
	struct kubezonnet_bpf *ours;
	int empty_fd, parse_fd, ours_fd, flows_fd;

	if (argc == 3 && strcmp(argv[1], "attach") == 0)
		return attach(argv[2]);
	if (geteuid() != 0) {
		printf("%-44s (skipped: needs root)\n", "bpf: per-packet cost");
		return 0;
	}
	libbpf_set_print(NULL);
	bench = bench_bpf__open_and_load();
	ours = load_ours(&flows_fd);
	if (!bench || !ours) {
		printf("%-44s (skipped: cannot load: %s)\n", "bpf: per-packet cost",
		       strerror(errno));
		return 0;
	}
	empty_fd = bpf_program__fd(bench->progs.kzn_bench_empty);
	parse_fd = bpf_program__fd(bench->progs.kzn_bench_parse);
	ours_fd = bpf_program__fd(ours->progs.kzn_postrouting);

	int socket_empty_fd = bpf_program__fd(bench->progs.kzn_bench_socket_empty);
	int socket_fd = bpf_program__fd(ours->progs.kzn_socket_egress), dev = a_device();

	for (int v = 0; v < 2; v++) {
		int pf = v ? NFPROTO_IPV6 : NFPROTO_IPV4;
		const char *fam = v ? "IPv6" : "IPv4";
		double empty[BENCH_RUNS], parse[BENCH_RUNS], hot[BENCH_RUNS];
		double empty1[BENCH_RUNS], fresh[BENCH_RUNS], s_empty[BENCH_RUNS],
			s_hot[BENCH_RUNS];
		struct packet p;
		char what[64];

		make_packet(&p, pf, 40000);
		for (int r = 0; r < BENCH_RUNS; r++) {
			empty[r] = run_ns(empty_fd, &p, HOT_REPEAT);
			parse[r] = run_ns(parse_fd, &p, HOT_REPEAT);
			hot[r] = run_ns(ours_fd, &p, HOT_REPEAT);
			if (dev) {
				s_empty[r] = socket_ns(socket_empty_fd, &p, HOT_REPEAT, dev);
				s_hot[r] = socket_ns(socket_fd, &p, HOT_REPEAT, dev);
			}
		}
		for (int r = 0; r < BENCH_RUNS; r++) {
			empty1[r] = new_keys_ns(empty_fd, -1, pf, 1000);
			fresh[r] = new_keys_ns(ours_fd, flows_fd, pf, 1000);
		}
		double e = bench_median(empty, BENCH_RUNS), pa = bench_median(parse, BENCH_RUNS);
		snprintf(what, sizeof(what), "bpf: %s parse only (ns/packet)", fam);
		bench_row(what, pa, "ns", "empty program", e);
		snprintf(what, sizeof(what), "bpf: %s hot key (ns/packet)", fam);
		bench_row(what, bench_median(hot, BENCH_RUNS), "ns", "parse-only program", pa);
		snprintf(what, sizeof(what), "bpf: %s new key (ns/packet)", fam);
		bench_row(what, bench_median(fresh, BENCH_RUNS), "ns", "empty program, 1 run/call",
			  bench_median(empty1, BENCH_RUNS));
		if (!dev)
			continue;
		/* The socket-level hook: its own empty program, and the netfilter hook beside it. */
		double se = bench_median(s_empty, BENCH_RUNS), sh = bench_median(s_hot, BENCH_RUNS);
		snprintf(what, sizeof(what), "bpf: %s cgroup hook, hot key (ns/packet)", fam);
		bench_row(what, sh, "ns", "empty cgroup_skb program", se);
		snprintf(what, sizeof(what), "bpf: %s cgroup hook's cost over its empty", fam);
		bench_row(what, sh - se, "ns", "netfilter hook's over its empty",
			  bench_median(hot, BENCH_RUNS) - e);
	}
	kubezonnet_bpf__destroy(ours);
	bench_bpf__destroy(bench);
	return 0;
}
