/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes source's costs, with k8s/client.c compiled in so its real list path is
 * timed: a generated PodList of 100,000 pods on 1,000 nodes (real objects from the fixtures,
 * managedFields and all; bench/gen_k8s.py) fed in 64 KiB pieces as if off the socket,
 * parsed item by item, decoded and stored, then indexed:
 * - MB/s against Python's json.loads of the same bytes (target: at least 5 times);
 * - heap bytes of the store and of the index built from it, per pod, against the list's
 *   bytes per pod.
 */
#include <malloc.h>
#include <sys/stat.h>

#include "../k8s/client.c"

#include "bench.h"

#define PODS	    100000
#define NODES	    1000
#define RUNS	    5
#define PYTHON_RUNS 3 /* about 50 s each here */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;

	if (!f || fstat(fileno(f), &st) != 0) {
		if (f)
			fclose(f);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = (size_t)st.st_size;
	return buf;
}

/* feed runs one list through the client's body path into st. 0 or -1. */
static int feed(struct k8s_store *st, const char *doc, size_t len, enum k8s_kind kind)
{
	static struct k8s_client c;
	static char piece[65536];
	struct k8s_watch *w = &c.watches[kind == K8S_POD];

	memset(&c, 0, sizeof(c));
	c.store = st;
	w->kind = kind;
	w->resource = kind == K8S_POD ? "pods" : "nodes";
	w->fd = -1;
	w->listing = 1;
	w->state = K8S_BODY;
	w->content_left = -1;
	for (size_t off = 0; off < len; off += sizeof(piece)) {
		size_t n = len - off < sizeof(piece) ? len - off : sizeof(piece);
		memcpy(piece, doc + off, n);
		if (k8s_body(&c, w, piece, n, 0) < 0)
			break;
	}
	free(w->body);
	k8s_tokens_free(&c.tokens);
	if (!w->page_done || w->rejected) {
		fprintf(stderr, "k8s_bench: the list did not parse (%s, %llu rejected)\n",
			w->last_error, w->rejected);
		return -1;
	}
	return 0;
}

static double python_seconds(const char *path)
{
	char cmd[1024];
	double t = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import json, sys, time; b = open(sys.argv[1], \"rb\").read(); "
		 "t = time.perf_counter(); json.loads(b); print(time.perf_counter() - t)' %s",
		 path);
	p = popen(cmd, "r");
	if (!p || fscanf(p, "%lf", &t) != 1)
		t = 0;
	if (p)
		pclose(p);
	return t;
}

int main(void)
{
	const char *dir = "build/bench/k8s";
	char pods_path[256], nodes_path[256], cmd[512];
	size_t pods_len, nodes_len;
	char *pods, *nodes;
	double ours[RUNS], python[PYTHON_RUNS], index_s[RUNS];
	size_t store_bytes = 0, index_bytes = 0;

	snprintf(pods_path, sizeof(pods_path), "%s/podlist.json", dir);
	snprintf(nodes_path, sizeof(nodes_path), "%s/nodelist.json", dir);
	if (access(pods_path, R_OK) != 0) {
		snprintf(cmd, sizeof(cmd), "python3 bench/gen_k8s.py %s %d %d", dir, PODS, NODES);
		if (system(cmd) != 0) {
			fprintf(stderr,
				"k8s_bench: cannot generate the lists (fixtures missing?)\n");
			return 0;
		}
	}
	pods = slurp(pods_path, &pods_len);
	nodes = slurp(nodes_path, &nodes_len);
	if (!pods || !nodes)
		return 1;
	for (int r = 0; r < RUNS; r++) {
		struct mallinfo2 m0 = mallinfo2(), m1, m2;
		double t0 = bench_now(), t1;
		struct k8s_store *st = k8s_store_new();
		struct endpoint_index *x;

		if (!st || feed(st, nodes, nodes_len, K8S_NODE) ||
		    feed(st, pods, pods_len, K8S_POD))
			return 1;
		t1 = bench_now();
		if (k8s_store_count(st, K8S_POD) != PODS) {
			fprintf(stderr, "k8s_bench: %zu pods stored, want %d\n",
				k8s_store_count(st, K8S_POD), PODS);
			return 1;
		}
		ours[r] = (double)(pods_len + nodes_len) / (t1 - t0) / 1e6;
		m1 = mallinfo2();
		t0 = bench_now();
		x = k8s_store_index(st);
		index_s[r] = bench_now() - t0;
		m2 = mallinfo2();
		store_bytes = m1.uordblks - m0.uordblks;
		index_bytes = m2.uordblks - m1.uordblks;
		if (!x || endpoint_count(x, ENDPOINT_POD) != PODS - 2 * NODES) {
			fprintf(stderr, "k8s_bench: %zu pods indexed, want %d\n",
				x ? endpoint_count(x, ENDPOINT_POD) : 0, PODS - 2 * NODES);
			return 1;
		}
		endpoint_index_free(x);
		k8s_store_free(st);
	}
	for (int r = 0; r < PYTHON_RUNS; r++)
		python[r] = (double)pods_len / python_seconds(pods_path) / 1e6;
	bench_row("k8s: list 100k pods, parse+store", bench_median(ours, RUNS), "MB/s",
		  "python3 json.loads", bench_median(python, PYTHON_RUNS));
	bench_row("k8s: index 100k pods from the store", bench_median(index_s, RUNS) * 1e3, "ms",
		  "-", 0);
	bench_row("k8s: store bytes per pod", (double)store_bytes / PODS, "B/pod",
		  "list bytes per pod", (double)pods_len / PODS);
	bench_row("k8s: index bytes per pod", (double)index_bytes / PODS, "B/pod",
		  "list bytes per pod", (double)pods_len / PODS);
	free(pods);
	free(nodes);
	return 0;
}
