/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Server costs, with server.c compiled in (main renamed) so the real functions are timed:
 * - ingest: records attributed per second (index lookups, classification, series updates)
 *   against decoding the same records and looking up their two addresses;
 * - /metrics render of 10,000 and 100,000 series (gzip off) against formatting the same
 *   lines with one snprintf each;
 * - memory per pod in the endpoint index (100,000 pods on 1,000 nodes) against the bytes of
 *   the pod's own name and address.
 */
#include <malloc.h>

#define main server_main
#include "../server.c"
#include "../ingest.c"
#undef main

#include "bench.h"

#define PODS  100000
#define NODES 1000

static void pod_addr(uint32_t i, uint8_t a[16])
{
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	a[12] = 10;
	a[13] = (uint8_t)(i >> 16);
	a[14] = (uint8_t)(i >> 8);
	a[15] = (uint8_t)i;
}

static struct endpoint_index *build_index(unsigned pods)
{
	struct endpoint_index *x = endpoint_index_new();
	char name[64], node[64], wl[64];

	for (unsigned n = 0; n < NODES; n++) {
		snprintf(name, sizeof(name), "ip-10-%u-%u-%u.eu-west-1.compute.internal", n / 256,
			 n % 256, n % 7);
		snprintf(node, sizeof(node), "eu-west-1%c", 'a' + n % 3);
		endpoint_add_node(x, name, node, "eu-west-1");
	}
	for (unsigned i = 0; i < pods; i++) {
		uint8_t a[16];
		unsigned n = i % NODES;
		snprintf(node, sizeof(node), "ip-10-%u-%u-%u.eu-west-1.compute.internal", n / 256,
			 n % 256, n % 7);
		snprintf(wl, sizeof(wl), "service-%u", i / 50);
		snprintf(name, sizeof(name), "service-%u-7d9f8c6b5-%05u", i / 50, i);
		struct endpoint *e = endpoint_add_pod(x, i % 2 ? "shop" : "payments", name, wl,
						      "Deployment", node);
		pod_addr(i, a);
		endpoint_add_address(x, a, e);
	}
	return x;
}

static size_t heap_in_use(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

int main(void)
{
	static struct server s;
	const char *node = "ip-10-0-1-1.eu-west-1.compute.internal";
	size_t len = wire_stats_size_version(WIRE_VERSION_2, 1000);
	uint8_t *frame = malloc(len), *rec;
	struct wire_stats st = {.version = WIRE_VERSION_2, .sequence = 1, .count = 1000};
	struct wire_frame f = {0};
	double ingest[BENCH_RUNS], decode[BENCH_RUNS];
	volatile uint64_t sink = 0;

	server_metrics_init(&s);
	s.flow_logs = FLOW_LOGS_NONE;
	s.retention_ms = SERVER_RETENTION_DEFAULT;

	/* Memory per pod: the heap grown by the index, over the pods in it. */
	size_t before = heap_in_use();
	struct endpoint_index *x = build_index(PODS);
	size_t per_pod = (heap_in_use() - before) / PODS;
	server_set_index(&s, x);

	/* A report from node 1 of pods on node 1 sending to pods everywhere. */
	rec = wire_stats_encode(frame, len, &st);
	for (uint32_t i = 0; i < 1000; i++) {
		struct wire_record r = {.family = 4,
					.protocol = 6,
					.port = 443,
					.bytes = 1500,
					.packets = 1,
					.encap_bytes = 50};
		pod_addr(1 + (i % 100) * NODES, r.src);
		pod_addr((i * 7919) % PODS, r.dst);
		wire_record_put_v2(rec + (size_t)i * WIRE_RECORD_SIZE_V2, &r);
	}
	wire_frame_parse(frame, len, WIRE_FRAME_MAX_DEFAULT, &f);
	if (wire_stats_decode(f.payload, f.payload_len, WIRE_VERSION_2, &st) != 0)
		abort();
	for (int r = 0; r < BENCH_RUNS; r++) {
		double t = bench_now();
		for (int k = 0; k < 200; k++) { /* what a report's job does */
			server_account_report(&s, node, &st);
			for (uint32_t i = 0; i < st.count; i++) {
				struct wire_record w;
				wire_record_get(&st, i, &w);
				server_account(&s, node, WIRE_HOOK_NETFILTER, &w);
			}
		}
		ingest[r] = 200.0 * 1000 / (bench_now() - t);
		t = bench_now();
		for (int k = 0; k < 200; k++) {
			for (uint32_t i = 0; i < st.count; i++) {
				struct wire_record w;
				wire_record_get(&st, i, &w);
				sink += (uintptr_t)endpoint_lookup(s.index, w.src) +
					(uintptr_t)endpoint_lookup(s.index, w.dst);
			}
		}
		decode[r] = 200.0 * 1000 / (bench_now() - t);
	}
	bench_row("server: ingest, records attributed/s", bench_median(ingest, BENCH_RUNS),
		  "records/s", "decode + 2 address lookups", bench_median(decode, BENCH_RUNS));

	/* /metrics with 10,000 and 100,000 pod series (each pod also has workload series). */
	for (int size = 10000; size <= 100000; size *= 10) {
		static struct server m;
		double render[BENCH_RUNS], naive[BENCH_RUNS];
		size_t bytes = 0;
		char what[64];

		server_metrics_init(&m);
		m.index = endpoint_index_new();
		for (int i = 0; i < size; i++) {
			char pod[64];
			snprintf(pod, sizeof(pod), "service-%d-7d9f8c6b5-%05d", i / 50, i);
			metrics_get(&m.pod_bytes, (const char *const[]){"shop", pod})->count =
				123456789u + (unsigned)i;
		}
		struct buf b = {0}, nb = {0}; /* reused, as the server reuses its render buffer */
		for (int r = 0; r < BENCH_RUNS; r++) {
			double t = bench_now();
			b.len = nb.len = 0;
			server_render_metrics(&m, &b);
			render[r] = (bench_now() - t) * 1e3;
			bytes = b.len;
			t = bench_now();
			for (int i = 0; i < size; i++)
				buf_printf(&nb,
					   "pod_cross_zone_network_traffic_bytes_total{namespace="
					   "\"%s\",pod=\"service-%d-7d9f8c6b5-%05d\"} %u\n",
					   "shop", i / 50, i, 123456789u + (unsigned)i);
			naive[r] = (bench_now() - t) * 1e3;
			sink += nb.len;
		}
		buf_free(&b);
		buf_free(&nb);
		snprintf(what, sizeof(what), "server: /metrics, %d series (ms, %zu KiB)", size,
			 bytes / 1024);
		bench_row(what, bench_median(render, BENCH_RUNS), "ms", "one snprintf per line",
			  bench_median(naive, BENCH_RUNS));
	}

	bench_row("server: index memory per pod (100k pods)", (double)per_pod, "bytes",
		  "the pod's name + address",
		  (double)(strlen("service-1999-7d9f8c6b5-99999") + 1 + 16));
	(void)sink;
	return 0;
}
