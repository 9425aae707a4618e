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

/*
 * bench_row_ratio prints one table row: what, the figure, its unit, the baseline and a ratio
 * (a row without a baseline, "-", shows none).
 */
static inline void bench_row_ratio(const char *what, double value, const char *unit,
				   const char *baseline, double base_value, double ratio)
{
	if (baseline[0] == '-' && !baseline[1])
		printf("%-44s %14.1f %-12s %-26s %14s %8s\n", what, value, unit, baseline, "-", "-");
	else
		printf("%-44s %14.1f %-12s %-26s %14.1f %7.2fx\n", what, value, unit, baseline,
		       base_value, ratio);
	fflush(stdout);
}

/* bench_row is bench_row_ratio with the ratio of the figure to the baseline. */
static inline void bench_row(const char *what, double value, const char *unit, const char *baseline,
			     double base_value)
{
	bench_row_ratio(what, value, unit, baseline, base_value,
			base_value ? value / base_value : 0.0);
}

/*
 * bench_pair_row prints a row whose figure and baseline were measured in pairs, side by side,
 * n times: their medians, and the median of the n ratios, in which the machine's drift from
 * one pair to the next cancels out.
 */
static inline void bench_pair_row(const char *what, const double *value, const char *unit,
				  const char *baseline, const double *base_value, int n)
{
	double v[n], b[n], r[n];

	for (int i = 0; i < n; i++) {
		v[i] = value[i];
		b[i] = base_value[i];
		r[i] = b[i] ? v[i] / b[i] : 0.0;
	}
	bench_row_ratio(what, bench_median(v, n), unit, baseline, bench_median(b, n),
			bench_median(r, n));
}

#endif /* KUBEZONNET_BENCH_H */
