/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for metrics.c: exposition format and escaping, series lookup, retention. */
#include "../metrics.h"
#include "collide.h"
#include "test.h"

static void test_escaping(void)
{
	struct metrics_family f = {.name = "x_total",
				   .help = "Help with \\ and\nnewline.",
				   .type = METRICS_COUNTER,
				   .labels = {"a", "b"},
				   .nlabels = 2};
	struct buf b = {0};
	struct metrics_series *s =
		metrics_get(&f, (const char *const[]){"q\"uote", "back\\slash\nnl"});

	EXPECT(s != NULL);
	s->count = 42;
	metrics_render(&f, &b);
	EXPECT(b.p && strcmp(b.p, "# HELP x_total Help with \\\\ and\\nnewline.\n"
				  "# TYPE x_total counter\n"
				  "x_total{a=\"q\\\"uote\",b=\"back\\\\slash\\nnl\"} 42\n") == 0);
	if (test_case_failures && b.p)
		printf("#   rendered:\n%s", b.p);
	buf_free(&b);
	metrics_free_family(&f);
}

static void test_series_identity(void)
{
	struct metrics_family f = {.name = "y",
				   .help = "h",
				   .type = METRICS_GAUGE,
				   .labels = {"a", "b"},
				   .nlabels = 2};
	struct metrics_series *s1 = metrics_get(&f, (const char *const[]){"ab", "c"});
	struct metrics_series *s2 = metrics_get(&f, (const char *const[]){"a", "bc"});
	struct metrics_series *s3 = metrics_get(&f, (const char *const[]){"ab", "c"});
	struct buf b = {0};

	EXPECT(s1 && s2 && s1 != s2); /* label boundaries are part of the identity */
	EXPECT(s1 == s3);
	EXPECT(metrics_find(&f, (const char *const[]){"x", "y"}) == NULL);
	for (int i = 0; i < 1000; i++) {
		char v[16];
		snprintf(v, sizeof(v), "%d", i);
		EXPECT(metrics_get(&f, (const char *const[]){v, v}) != NULL);
	}
	EXPECT_EQ(f.len, 1002);
	s1->gauge = 0.5;
	metrics_render(&f, &b);
	EXPECT(b.p && strstr(b.p, "y{a=\"ab\",b=\"c\"} 0.5\n"));
	EXPECT(b.p && strstr(b.p, "y{a=\"999\",b=\"999\"} 0\n"));
	/* one HELP, one TYPE */
	EXPECT(b.p && strstr(b.p, "# HELP") == b.p && !strstr(b.p + 1, "# HELP"));
	buf_free(&b);
	metrics_free_family(&f);
}

static void test_retention(void)
{
	struct metrics_family f = {.name = "z_total",
				   .help = "h",
				   .type = METRICS_COUNTER,
				   .labels = {"pod"},
				   .nlabels = 1};
	struct metrics_series *live = metrics_get(&f, (const char *const[]){"live"});
	struct metrics_series *gone = metrics_get(&f, (const char *const[]){"gone"});

	live->generation = gone->generation = 1;
	/* generation 2: only "live" is still referenced */
	live->generation = 2;
	EXPECT_EQ(metrics_sweep(&f, 2, 1000, 300000), 0);
	EXPECT(gone->stale_since_ms == 1000);
	EXPECT_EQ(metrics_sweep(&f, 2, 200000, 300000), 0); /* kept while within retention */
	EXPECT_EQ(f.len, 2);
	EXPECT_EQ(metrics_sweep(&f, 2, 301001, 300000), 1);
	EXPECT_EQ(f.len, 1);
	EXPECT(metrics_find(&f, (const char *const[]){"gone"}) == NULL);
	EXPECT(metrics_find(&f, (const char *const[]){"live"}) == live);
	EXPECT(live->stale_since_ms == 0);
	metrics_free_family(&f);
}

static void test_empty_family_renders_nothing(void)
{
	struct metrics_family f = {.name = "e", .help = "h", .type = METRICS_COUNTER};
	struct buf b = {0};

	metrics_render(&f, &b);
	EXPECT_EQ(b.len, 0);
	buf_free(&b);
}

/*
 * 16,384 label values crafted to share one FNV-1a-32 hash (agents choose their node names, a
 * series label) do not share a chain: all were in one under the unkeyed hash, so each new
 * series walked every one before it. A random function's longest chain here is about 8.
 */
static void test_crafted_label_values(void)
{
	struct metrics_family f = {
		.name = "z", .help = "h", .type = METRICS_GAUGE, .labels = {"node"}, .nlabels = 1};
	char name[4 * COLLIDE_FNV32_STAGES + 1];
	size_t n = 1u << 14, longest = 0, same = 0;
	uint32_t first = 0;

	for (uint32_t i = 0; i < n; i++) {
		collide_fnv32_name(14, i, name);
		/* The series key is the value and its NUL: one old hash for all. */
		if (i == 0)
			first = collide_old_fnv32(name, strlen(name) + 1);
		same += collide_old_fnv32(name, strlen(name) + 1) == first;
		EXPECT(metrics_get(&f, (const char *const[]){name}) != NULL);
	}
	EXPECT_EQ(same, n);
	EXPECT_EQ(f.len, n);
	for (size_t b = 0; b < f.cap; b++) {
		size_t chain = 0;
		for (const struct metrics_series *s = f.buckets[b]; s; s = s->next)
			chain++;
		if (chain > longest)
			longest = chain;
	}
	if (longest > 24)
		test_fail(__FILE__, __LINE__, "%zu of %zu series in one chain of %zu", longest, n,
			  f.cap);
	collide_fnv32_name(14, 12345, name);
	EXPECT(metrics_find(&f, (const char *const[]){name}) != NULL);
	metrics_free_family(&f);
}

int main(void)
{
	RUN(test_escaping);
	RUN(test_series_identity);
	RUN(test_retention);
	RUN(test_empty_family_renders_nothing);
	RUN(test_crafted_label_values);
	return test_done();
}
