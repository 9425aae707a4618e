/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench.h: timing helpers for bench/. Every figure is the median of BENCH_RUNS runs, and each
 * row is printed next to a baseline measured in the same process, alternating with it, so
 * that a noisy shared machine moves both alike and the ratio stays meaningful.
 */
#ifndef KUBEZONNET_BENCH_H
#define KUBEZONNET_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_RUNS 9

static inline double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* bench_row prints one table row: what, the figure, its unit, the baseline and the ratio. */
static inline void bench_row(const char *what, double value, const char *unit, const char *baseline,
			     double base_value)
{
	printf("%-44s %14.1f %-12s %-26s %14.1f %7.2fx\n", what, value, unit, baseline, base_value,
	       base_value ? value / base_value : 0.0);
	fflush(stdout);
}

#endif /* KUBEZONNET_BENCH_H */
