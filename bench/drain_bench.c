/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drain cost: the agent's own drain (swap the maps, read the frozen one, build and compress
 * the STATS frame) for 10,000 and 100,000 flows, in wall time and in the agent's CPU time,
 * against the least any drain must do: one batch read of the same map.
 *
 * It compiles agent.c into itself (with main renamed) to time the real functions, on maps
 * pinned in a private bpf filesystem.
 */
#define main agent_main
#include "../agent.c"
#undef main

#include "bench.h"

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* fill puts n distinct flows in the active map, as the program would. */
static void fill(struct agent *a, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		struct kzn_flow_key k = {.family = 6, .protocol = 6, .port = 443};
		struct kzn_flow_value v = {.bytes = 1500ull * (i + 1), .packets = i + 1};

		k.src[0] = 0xfd;
		memcpy(k.src + 12, &i, sizeof(i));
		k.dst[0] = 0xfd;
		k.dst[15] = (uint8_t)(i % 7);
		bpf_map_update_elem(a->flows_fd[a->active], &k, &v, BPF_NOEXIST);
	}
}

int main(void)
{
	static struct agent a;
	char dir[] = "/tmp/kzn-drain-bench.XXXXXX";
	char pins[PATH_MAX];

	if (geteuid() != 0) {
		printf("%-44s (skipped: needs root)\n", "drain: time and CPU");
		return 0;
	}
	if (!mkdtemp(dir) || mount("bpf", dir, "bpf", 0, NULL) != 0) {
		printf("%-44s (skipped: cannot mount bpffs: %s)\n", "drain: time and CPU",
		       strerror(errno));
		return 0;
	}
	snprintf(pins, sizeof(pins), "%s/kubezonnet", dir);
	libbpf_set_print(NULL);
	a.config.pin_path = pins;
	a.config.map_entries = KZN_MAP_ENTRIES_MAX;
	a.config.interval_ms = AGENT_INTERVAL_DEFAULT;
	a.protocol = AGENT_PROTOCOL; /* as main() sets it: frames are built in the version spoken */
	a.sock = -1;
	if (agent_open_bpf(&a) != 0 || agent_recover(&a) != 0) {
		printf("%-44s (skipped: cannot load)\n", "drain: time and CPU");
		goto out;
	}
	for (int s = 0; s < 2; s++) {
		unsigned int n = s ? 100000 : 10000;
		double wall[BENCH_RUNS], cpu[BENCH_RUNS], base[BENCH_RUNS];
		char what[64];
		size_t frame = 0;

		for (int r = 0; r < BENCH_RUNS; r++) {
			__u32 batch = 0, count = n;
			double t0, c0;

			/* Baseline: one batch read of the filled map. */
			fill(&a, n);
			t0 = bench_now();
			bpf_map_lookup_batch(a.flows_fd[a.active], NULL, &batch, a.keys, a.values,
					     &count, NULL);
			base[r] = (bench_now() - t0) * 1e3;

			/* The agent's drain of the same map, then the clear its ACK triggers. */
			t0 = bench_now();
			c0 = cpu_now();
			if (agent_drain(&a) != 0) {
				printf("drain failed\n");
				goto out;
			}
			wall[r] = (bench_now() - t0) * 1e3;
			cpu[r] = (cpu_now() - c0) * 1e3;
			frame = a.frame_len;
			agent_acknowledged(&a);
		}
		snprintf(what, sizeof(what), "drain: %u flows, wall (ms)", n);
		bench_row(what, bench_median(wall, BENCH_RUNS), "ms", "one batch read of the map",
			  bench_median(base, BENCH_RUNS));
		snprintf(what, sizeof(what), "drain: %u flows, agent CPU (ms)", n);
		bench_row(what, bench_median(cpu, BENCH_RUNS), "ms", "one batch read of the map",
			  bench_median(base, BENCH_RUNS));
		snprintf(what, sizeof(what), "drain: %u flows, frame (KiB, zlib)", n);
		bench_row(what, (double)frame / 1024, "KiB", "uncompressed frame",
			  (double)wire_stats_size(n) / 1024);
	}
out:
	kubezonnet_bpf__destroy(a.skel);
	umount(dir);
	rmdir(dir);
	return 0;
}
