/* SPDX-License-Identifier: Apache-2.0 */
/*
 * metrics.h: metric families with labelled series, and their Prometheus text exposition
 * (format 0.0.4): one HELP and one TYPE per family, its samples in one group, label values
 * and HELP text escaped. Series are found by their label values; a series can be marked
 * stale and is dropped once it has been stale for the retention the caller chooses.
 */
#ifndef KUBEZONNET_METRICS_H
#define KUBEZONNET_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_LABELS 6

/* A growable byte buffer. */
struct buf {
	char *p;
	size_t len, cap;
	int oom; /* an append failed: the contents are incomplete */
};

void buf_append(struct buf *b, const char *s, size_t n);
void buf_reserve(struct buf *b, size_t more); /* room for more bytes without reallocating */
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE };

struct metrics_series {
	struct metrics_series *next; /* hash chain */
	uint64_t count;		     /* counters */
	double gauge;		     /* gauges */
	unsigned generation;	     /* last time something current referenced it */
	long long stale_since_ms;    /* 0: live */
	uint32_t hash;
	uint16_t key_len;
	char key[]; /* label values, each followed by a NUL */
};

struct metrics_family {
	const char *name, *help;
	enum metrics_type type;
	const char *labels[METRICS_MAX_LABELS];
	size_t nlabels;
	struct metrics_series **buckets;
	size_t cap, len;
};

/*
 * metrics_get returns the series of fam with these label values (fam->nlabels of them),
 * creating it at zero if needed, or NULL when out of memory or a value is over 1 KiB.
 */
struct metrics_series *metrics_get(struct metrics_family *fam, const char *const values[]);

/* metrics_find is metrics_get without creating. */
struct metrics_series *metrics_find(const struct metrics_family *fam, const char *const values[]);

/*
 * metrics_sweep marks stale every series whose generation is below generation (and live
 * again those at it), and drops series stale for longer than retention_ms. Returns how many
 * were dropped.
 */
size_t metrics_sweep(struct metrics_family *fam, unsigned generation, long long now_ms,
		     long long retention_ms);

/* metrics_render appends the family's exposition to b; nothing when it has no series. */
void metrics_render(const struct metrics_family *fam, struct buf *b);

/* metrics_escape_label appends s escaped as a label value (\\, \", \n). */
void metrics_escape_label(struct buf *b, const char *s, size_t n);

/* metrics_free_family drops every series. */
void metrics_free_family(struct metrics_family *fam);

#endif /* KUBEZONNET_METRICS_H */
