/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-packet cost of the BPF program, measured by the kernel with BPF_PROG_TEST_RUN, against
 * a program that only returns NF_ACCEPT, one that only parses (bench/bench.bpf.c, a fixed
 * yardstick) and the program as it was before issue #15 (build/before.skel.h, from git: see
 * the Makefile's BENCH_BEFORE), run alternately in one process, on a 104-byte IPv4 and a
 * 124-byte IPv6 TCP packet. Rows: a hot key (the flow exists), 1,000 new keys (each packet
 * inserts a flow), the hot key on two CPUs at once against one, and the socket-level hook.
 *
 * "bpf_bench attach empty|ours|before|one-add [stats]" instead attaches that program at
 * POSTROUTING in the current network namespace and waits for SIGTERM (for bench/veth_bench.sh);
 * with "stats", the kernel times each run of it (BPF_ENABLE_STATS), and the mean nanoseconds
 * per packet and the packets are printed on the way out.
 */
#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <linux/netfilter.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/kubezonnet.h"
#include "kubezonnet.skel.h"
#include "bench.skel.h"
#include "floor.skel.h"
#if __has_include("before.skel.h")
#include "before.skel.h"
#define HAVE_BEFORE 1
#else
#define HAVE_BEFORE 0
#endif
#include "../wire.h"
#include "bench.h"
#include "../test/bpf_run.h"

#define HOT_REPEAT 200000
#define NEW_KEYS   1000

struct nf_state {
	uint8_t hook, pf, pad[6];
	void *in, *out, *sk, *net, *okfn;
};

struct packet {
	uint8_t b[128];
	uint32_t len;
	int pf;
};

/* make_packet: a TCP packet with 64 bytes of payload, 104 bytes over IPv4, 124 over IPv6. */
static void make_packet(struct packet *p, int pf, uint16_t sport)
{
	uint8_t *tcp;

	memset(p, 0, sizeof(*p));
	p->pf = pf;
	if (pf == NFPROTO_IPV4) {
		p->len = 20 + 20 + 64;
		p->b[0] = 0x45;
		wire_put16(p->b + 2, (uint16_t)p->len);
		p->b[8] = 64;
		p->b[9] = 6;
		wire_put32(p->b + 12, 0x0a000001);
		wire_put32(p->b + 16, 0x0a000102);
		tcp = p->b + 20;
	} else {
		p->len = 40 + 20 + 64;
		p->b[0] = 0x60;
		wire_put16(p->b + 4, 20 + 64);
		p->b[6] = 6;
		p->b[7] = 64;
		p->b[8] = 0xfd, p->b[23] = 1, p->b[24] = 0xfd, p->b[39] = 2;
		tcp = p->b + 40;
	}
	wire_put16(tcp, sport);
	wire_put16(tcp + 2, 443);
	tcp[12] = 5 << 4; /* data offset: 20 bytes */
	tcp[13] = 0x18;	  /* PSH, ACK */
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

/*
 * Two CPUs at once: each thread, pinned to its CPU, runs prog on the same packet in
 * TWO_CPUS_RUNS short runs once both are ready; two_cpus_ns returns the median of all their
 * kernel-measured ns per run (short runs and a median: a run the other CPU sat out, this
 * machine being shared, moves it little). one_cpu_ns is the same on CPU 0 alone.
 */
#define TWO_CPUS_RUNS	15
#define TWO_CPUS_REPEAT 20000
struct two_cpus {
	int prog_fd, cpu;
	const struct packet *p;
	pthread_barrier_t *ready;
	double ns[TWO_CPUS_RUNS];
};

static void *two_cpus_thread(void *arg)
{
	struct two_cpus *t = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(t->cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
	if (t->ready)
		pthread_barrier_wait(t->ready);
	for (int r = 0; r < TWO_CPUS_RUNS; r++)
		t->ns[r] = run_ns(t->prog_fd, t->p, TWO_CPUS_REPEAT);
	return NULL;
}

static double two_cpus_ns(int prog_fd, const struct packet *p)
{
	pthread_barrier_t ready;
	struct two_cpus t[2];
	pthread_t th[2];
	double all[2 * TWO_CPUS_RUNS];

	pthread_barrier_init(&ready, NULL, 2);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct two_cpus){.prog_fd = prog_fd, .cpu = i, .p = p, .ready = &ready};
		pthread_create(&th[i], NULL, two_cpus_thread, &t[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&ready);
	for (int r = 0; r < TWO_CPUS_RUNS; r++)
		all[r] = t[0].ns[r], all[TWO_CPUS_RUNS + r] = t[1].ns[r];
	return bench_median(all, 2 * TWO_CPUS_RUNS);
}

static double one_cpu_ns(int prog_fd, const struct packet *p)
{
	struct two_cpus t = {.prog_fd = prog_fd, .cpu = 0, .p = p};
	pthread_t th;

	pthread_create(&th, NULL, two_cpus_thread, &t);
	pthread_join(th, NULL);
	return bench_median(t.ns, TWO_CPUS_RUNS);
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* load_ours loads the program unpinned; per_cpu: its flow maps per CPU (--per-cpu-counts). */
static struct kubezonnet_bpf *load_ours(int *flows_fd, int per_cpu)
{
	struct kubezonnet_bpf *skel = kubezonnet_bpf__open();
	struct bpf_map *map;
	__u32 zero = 0;
	int inner_fd = -1, loaded;

	if (!skel)
		return NULL;
	bpf_object__for_each_map(map, skel->obj) bpf_map__set_pin_path(map, NULL);
	if (per_cpu) { /* as the agent's agent_set_percpu */
		inner_fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "kzn_inner",
					  sizeof(struct kzn_flow_key),
					  sizeof(struct kzn_flow_value), 1, NULL);
		bpf_map__set_type(skel->maps.kzn_flows_a, BPF_MAP_TYPE_PERCPU_HASH);
		bpf_map__set_type(skel->maps.kzn_flows_b, BPF_MAP_TYPE_PERCPU_HASH);
		bpf_map__set_inner_map_fd(skel->maps.kzn_grace, inner_fd);
	}
	loaded = kubezonnet_bpf__load(skel) == 0;
	if (inner_fd >= 0)
		close(inner_fd);
	if (!loaded) {
		kubezonnet_bpf__destroy(skel);
		return NULL;
	}
	*flows_fd = bpf_map__fd(skel->maps.kzn_flows_a);
	bpf_map_update_elem(bpf_map__fd(skel->maps.kzn_active), &zero, &zero, BPF_ANY);
	return skel;
}

#if HAVE_BEFORE
/* load_before is load_ours for the program as it was before issue #15. */
static struct before_bpf *load_before(int *flows_fd)
{
	struct before_bpf *skel = before_bpf__open();
	struct bpf_map *map;
	__u32 zero = 0;

	if (!skel)
		return NULL;
	bpf_object__for_each_map(map, skel->obj) bpf_map__set_pin_path(map, NULL);
	if (before_bpf__load(skel) != 0) {
		before_bpf__destroy(skel);
		return NULL;
	}
	*flows_fd = bpf_map__fd(skel->maps.kzn_flows_a);
	bpf_map_update_elem(bpf_map__fd(skel->maps.kzn_active), &zero, &zero, BPF_ANY);
	return skel;
}
#endif

/* load_floor loads bench/floor.bpf.c, whose parser's maps are left unpinned. */
static struct floor_bpf *load_floor(void)
{
	struct floor_bpf *skel = floor_bpf__open();
	struct bpf_map *map;

	if (!skel)
		return NULL;
	bpf_object__for_each_map(map, skel->obj) bpf_map__set_pin_path(map, NULL);
	if (floor_bpf__load(skel) != 0) {
		floor_bpf__destroy(skel);
		return NULL;
	}
	return skel;
}

static int attach(const char *which, int stats)
{
	struct bench_bpf *bench = bench_bpf__open_and_load();
	int flows_fd, stats_fd = stats ? bpf_enable_stats(BPF_STATS_RUN_TIME) : -1;
	struct kubezonnet_bpf *ours = strcmp(which, "ours") == 0 ? load_ours(&flows_fd, 0) : NULL;
	struct floor_bpf *floor = strcmp(which, "one-add") == 0 ? load_floor() : NULL;
	struct bpf_program *prog = ours				  ? ours->progs.kzn_postrouting
				   : floor			  ? floor->progs.kzn_bench_one_add
				   : !bench			  ? NULL
				   : strcmp(which, "parse") == 0 ? bench->progs.kzn_bench_parse
				   : strcmp(which, "empty") == 0 ? bench->progs.kzn_bench_empty
								  : NULL;
	struct bpf_prog_info info = {0};
	__u32 info_len = sizeof(info);
	struct bpf_link *links[2] = {NULL, NULL};
	int pfs[2] = {NFPROTO_IPV4, NFPROTO_IPV6};
#if HAVE_BEFORE
	struct before_bpf *old = strcmp(which, "before") == 0 ? load_before(&flows_fd) : NULL;

	if (old)
		prog = old->progs.kzn_postrouting;
	else if (strcmp(which, "before") == 0)
		prog = NULL;
#endif

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (!prog || (stats && stats_fd < 0)) {
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
	/* Both links run the one program: its figures are IPv4's and IPv6's packets together. */
	if (stats && bpf_prog_get_info_by_fd(bpf_program__fd(prog), &info, &info_len) == 0)
		printf("%.1f ns/packet, %llu packets\n",
		       info.run_cnt ? (double)info.run_time_ns / (double)info.run_cnt : 0.0,
		       (unsigned long long)info.run_cnt);
	bpf_link__destroy(links[0]);
	bpf_link__destroy(links[1]);
	kubezonnet_bpf__destroy(ours);
	floor_bpf__destroy(floor);
#if HAVE_BEFORE
	before_bpf__destroy(old);
#endif
	bench_bpf__destroy(bench);
	if (stats_fd >= 0)
		close(stats_fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct bench_bpf *bench;
	struct kubezonnet_bpf *ours, *percpu;
	int empty_fd, parse_fd, ours_fd, flows_fd, before_fd = -1, before_flows_fd = -1;
	int percpu_fd, percpu_flows_fd;

	if ((argc == 3 || argc == 4) && strcmp(argv[1], "attach") == 0)
		return attach(argv[2], argc == 4 && strcmp(argv[3], "stats") == 0);
	if (geteuid() != 0) {
		printf("%-44s (skipped: needs root)\n", "bpf: per-packet cost");
		return 0;
	}
	libbpf_set_print(NULL);
	bench = bench_bpf__open_and_load();
	ours = load_ours(&flows_fd, 0);
	percpu = load_ours(&percpu_flows_fd, 1);
	if (!bench || !ours || !percpu) {
		printf("%-44s (skipped: cannot load: %s)\n", "bpf: per-packet cost",
		       strerror(errno));
		return 0;
	}
#if HAVE_BEFORE
	struct before_bpf *before = load_before(&before_flows_fd);
	if (before)
		before_fd = bpf_program__fd(before->progs.kzn_postrouting);
#endif
	if (before_fd < 0)
		printf("%-44s (skipped: no build/before.skel.h: see BENCH_BEFORE)\n",
		       "bpf: the program before #15");
	empty_fd = bpf_program__fd(bench->progs.kzn_bench_empty);
	parse_fd = bpf_program__fd(bench->progs.kzn_bench_parse);
	ours_fd = bpf_program__fd(ours->progs.kzn_postrouting);
	percpu_fd = bpf_program__fd(percpu->progs.kzn_postrouting);

	int socket_empty_fd = bpf_program__fd(bench->progs.kzn_bench_socket_empty);
	int socket_fd = bpf_program__fd(ours->progs.kzn_socket_egress), dev = a_device();
	int cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2;

	for (int v = 0; v < 2; v++) {
		int pf = v ? NFPROTO_IPV6 : NFPROTO_IPV4;
		const char *fam = v ? "IPv6" : "IPv4";
		double empty[BENCH_RUNS], parse[BENCH_RUNS], hot[BENCH_RUNS], old[BENCH_RUNS];
		double empty1[BENCH_RUNS], fresh[BENCH_RUNS], fresh_old[BENCH_RUNS];
		double s_empty[BENCH_RUNS], s_hot[BENCH_RUNS];
		double e_one[BENCH_RUNS], e_two[BENCH_RUNS];
		double one[BENCH_RUNS], two[BENCH_RUNS], one_old[BENCH_RUNS], two_old[BENCH_RUNS];
		double pc_hot[BENCH_RUNS], pc_fresh[BENCH_RUNS], pc_one[BENCH_RUNS],
			pc_two[BENCH_RUNS];
		struct packet p;
		char what[64];

		make_packet(&p, pf, 40000);
		for (int r = 0; r < BENCH_RUNS; r++) {
			empty[r] = run_ns(empty_fd, &p, HOT_REPEAT);
			parse[r] = run_ns(parse_fd, &p, HOT_REPEAT);
			hot[r] = run_ns(ours_fd, &p, HOT_REPEAT);
			pc_hot[r] = run_ns(percpu_fd, &p, HOT_REPEAT);
			if (before_fd >= 0)
				old[r] = run_ns(before_fd, &p, HOT_REPEAT);
			if (dev) {
				s_empty[r] = socket_ns(socket_empty_fd, &p, HOT_REPEAT, dev);
				s_hot[r] = socket_ns(socket_fd, &p, HOT_REPEAT, dev);
			}
			if (cpus) {
				e_one[r] = one_cpu_ns(empty_fd, &p);
				e_two[r] = two_cpus_ns(empty_fd, &p);
				one[r] = one_cpu_ns(ours_fd, &p);
				two[r] = two_cpus_ns(ours_fd, &p);
				pc_one[r] = one_cpu_ns(percpu_fd, &p);
				pc_two[r] = two_cpus_ns(percpu_fd, &p);
				if (before_fd >= 0) {
					one_old[r] = one_cpu_ns(before_fd, &p);
					two_old[r] = two_cpus_ns(before_fd, &p);
				}
			}
		}
		for (int r = 0; r < BENCH_RUNS; r++) {
			empty1[r] = new_keys_ns(empty_fd, -1, pf, 1000);
			fresh[r] = new_keys_ns(ours_fd, flows_fd, pf, 1000);
			pc_fresh[r] = new_keys_ns(percpu_fd, percpu_flows_fd, pf, 1000);
			if (before_fd >= 0)
				fresh_old[r] = new_keys_ns(before_fd, before_flows_fd, pf, 1000);
		}
		double e = bench_median(empty, BENCH_RUNS), pa = bench_median(parse, BENCH_RUNS);
		double h = bench_median(hot, BENCH_RUNS), f = bench_median(fresh, BENCH_RUNS);
		snprintf(what, sizeof(what), "bpf: %s parse only (ns/packet)", fam);
		bench_row(what, pa, "ns", "empty program", e);
		snprintf(what, sizeof(what), "bpf: %s hot key (ns/packet)", fam);
		bench_row(what, h, "ns", "parse-only program", pa);
		if (before_fd >= 0) {
			snprintf(what, sizeof(what), "bpf: %s hot key, before #15", fam);
			bench_row(what, bench_median(old, BENCH_RUNS), "ns", "parse-only program",
				  pa);
		}
		snprintf(what, sizeof(what), "bpf: %s 1,000 new keys (ns/packet)", fam);
		if (before_fd >= 0)
			bench_row(what, f, "ns", "before #15", bench_median(fresh_old, BENCH_RUNS));
		else
			bench_row(what, f, "ns", "empty program, 1 run/call",
				  bench_median(empty1, BENCH_RUNS));
		snprintf(what, sizeof(what), "bpf: %s hot key, per-CPU counts", fam);
		bench_row(what, bench_median(pc_hot, BENCH_RUNS), "ns", "parse-only program", pa);
		snprintf(what, sizeof(what), "bpf: %s 1,000 new keys, per-CPU counts", fam);
		bench_row(what, bench_median(pc_fresh, BENCH_RUNS), "ns", "one count a flow", f);
		if (cpus) {
			/* What two CPUs running at once cost this machine with no line shared. */
			snprintf(what, sizeof(what), "bpf: %s empty program, two CPUs", fam);
			bench_pair_row(what, e_two, "ns", "one CPU", e_one, BENCH_RUNS);
			snprintf(what, sizeof(what), "bpf: %s hot key, two CPUs, per-CPU counts",
				 fam);
			bench_pair_row(what, pc_two, "ns", "one CPU", pc_one, BENCH_RUNS);
			snprintf(what, sizeof(what), "bpf: %s hot key, two CPUs at once", fam);
			bench_pair_row(what, two, "ns", "one CPU", one, BENCH_RUNS);
			if (before_fd >= 0) {
				snprintf(what, sizeof(what),
					 "bpf: %s hot key, two CPUs, before #15", fam);
				bench_pair_row(what, two_old, "ns", "one CPU", one_old, BENCH_RUNS);
			}
		}
		if (!dev)
			continue;
		/* The socket-level hook: its own empty program, and the netfilter hook beside it. */
		double se = bench_median(s_empty, BENCH_RUNS), sh = bench_median(s_hot, BENCH_RUNS);
		snprintf(what, sizeof(what), "bpf: %s cgroup hook, hot key (ns/packet)", fam);
		bench_row(what, sh, "ns", "empty cgroup_skb program", se);
		snprintf(what, sizeof(what), "bpf: %s cgroup hook's cost over its empty", fam);
		bench_row(what, sh - se, "ns", "netfilter hook's over its empty", h - e);
	}
	kubezonnet_bpf__destroy(ours);
	kubezonnet_bpf__destroy(percpu);
#if HAVE_BEFORE
	before_bpf__destroy(before);
#endif
	bench_bpf__destroy(bench);
	return 0;
}
