/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.c: see metrics.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "metrics.h"

void buf_append(struct buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void buf_reserve(struct buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *p;

	if (b->oom || b->cap - b->len > more)
		return;
	while (cap - b->len <= more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return;
	}
	b->p = p;
	b->cap = cap;
}

void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		buf_append(b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		b->oom = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_append(b, big, (size_t)n);
	free(big);
}

void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){0};
}

/* metrics_key builds the series key (values joined by NULs) into key; returns its length. */
static int metrics_key(const struct metrics_family *fam, const char *const values[], char *key,
		       size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < fam->nlabels; i++) {
		size_t l = strlen(values[i] ? values[i] : "");
		if (l > 1024 || n + l + 1 > cap)
			return -1;
		memcpy(key + n, values[i] ? values[i] : "", l);
		n += l;
		key[n++] = '\0';
	}
	return (int)n;
}

/* Label values come from agents and from Kubernetes names: a keyed hash (hash.h). */
static uint32_t metrics_hash(const char *s, size_t n)
{
	return (uint32_t)hash_bytes(s, n);
}

struct metrics_series *metrics_find(const struct metrics_family *fam, const char *const values[])
{
	char key[METRICS_MAX_LABELS * 1025];
	int n = metrics_key(fam, values, key, sizeof(key));
	uint32_t h;

	if (n < 0 || !fam->cap)
		return NULL;
	h = metrics_hash(key, (size_t)n);
	for (struct metrics_series *s = fam->buckets[h & (fam->cap - 1)]; s; s = s->next)
		if (s->hash == h && s->key_len == n && memcmp(s->key, key, (size_t)n) == 0)
			return s;
	return NULL;
}

struct metrics_series *metrics_get(struct metrics_family *fam, const char *const values[])
{
	char key[METRICS_MAX_LABELS * 1025];
	int n = metrics_key(fam, values, key, sizeof(key));
	struct metrics_series *s;
	uint32_t h;

	if (n < 0)
		return NULL;
	s = metrics_find(fam, values);
	if (s)
		return s;
	if (fam->len + 1 > fam->cap) {
		size_t cap = fam->cap ? fam->cap * 2 : 64;
		struct metrics_series **b = calloc(cap, sizeof(*b));
		if (!b)
			return NULL;
		for (size_t i = 0; i < fam->cap; i++) {
			while (fam->buckets[i]) {
				struct metrics_series *x = fam->buckets[i];
				fam->buckets[i] = x->next;
				x->next = b[x->hash & (cap - 1)];
				b[x->hash & (cap - 1)] = x;
			}
		}
		free(fam->buckets);
		fam->buckets = b;
		fam->cap = cap;
	}
	s = calloc(1, sizeof(*s) + (size_t)n);
	if (!s)
		return NULL;
	h = metrics_hash(key, (size_t)n);
	s->hash = h;
	s->key_len = (uint16_t)n;
	memcpy(s->key, key, (size_t)n);
	s->next = fam->buckets[h & (fam->cap - 1)];
	fam->buckets[h & (fam->cap - 1)] = s;
	fam->len++;
	return s;
}

size_t metrics_sweep(struct metrics_family *fam, unsigned generation, long long now_ms,
		     long long retention_ms)
{
	size_t dropped = 0;

	for (size_t i = 0; i < fam->cap; i++) {
		struct metrics_series **pp = &fam->buckets[i];
		while (*pp) {
			struct metrics_series *s = *pp;
			if (s->generation >= generation) {
				s->stale_since_ms = 0;
			} else if (!s->stale_since_ms) {
				s->stale_since_ms = now_ms;
			} else if (now_ms - s->stale_since_ms > retention_ms) {
				*pp = s->next;
				free(s);
				fam->len--;
				dropped++;
				continue;
			}
			pp = &s->next;
		}
	}
	return dropped;
}

void metrics_escape_label(struct buf *b, const char *s, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		const char *rep = s[i] == '\\'	 ? "\\\\"
				  : s[i] == '"'	 ? "\\\""
				  : s[i] == '\n' ? "\\n"
						 : NULL;
		if (!rep)
			continue;
		buf_append(b, s + start, i - start);
		buf_puts(b, rep);
		start = i + 1;
	}
	buf_append(b, s + start, n - start);
}

static void metrics_escape_help(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_puts(b, "\\\\");
		else if (*s == '\n')
			buf_puts(b, "\\n");
		else
			buf_append(b, s, 1);
	}
}

/* metrics_u64 writes v in decimal at the end of b (no printf in the per-series path). */
static void metrics_u64(struct buf *b, uint64_t v)
{
	char tmp[24];
	size_t n = sizeof(tmp);

	do {
		tmp[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_append(b, tmp + n, sizeof(tmp) - n);
}

void metrics_render(const struct metrics_family *fam, struct buf *b)
{
	size_t name_len = strlen(fam->name), label_len[METRICS_MAX_LABELS];

	if (!fam->len)
		return;
	for (size_t l = 0; l < fam->nlabels; l++)
		label_len[l] = strlen(fam->labels[l]);
	/* Reserve about what the family will take, so the buffer is not copied as it grows. */
	buf_reserve(b, fam->len * (name_len + 64 + fam->nlabels * 24));
	buf_printf(b, "# HELP %s ", fam->name);
	metrics_escape_help(b, fam->help);
	buf_printf(b, "\n# TYPE %s %s\n", fam->name,
		   fam->type == METRICS_COUNTER ? "counter" : "gauge");
	for (size_t i = 0; i < fam->cap; i++) {
		for (const struct metrics_series *s = fam->buckets[i]; s; s = s->next) {
			const char *v = s->key;

			buf_append(b, fam->name, name_len);
			for (size_t l = 0; l < fam->nlabels; l++) {
				size_t n = strlen(v);
				buf_append(b, l ? "," : "{", 1);
				buf_append(b, fam->labels[l], label_len[l]);
				buf_append(b, "=\"", 2);
				metrics_escape_label(b, v, n);
				buf_append(b, "\"", 1);
				v += n + 1;
			}
			if (fam->nlabels)
				buf_append(b, "}", 1);
			buf_append(b, " ", 1);
			if (fam->type == METRICS_COUNTER)
				metrics_u64(b, s->count);
			else
				buf_printf(b, "%.17g", s->gauge);
			buf_append(b, "\n", 1);
		}
	}
}

void metrics_free_family(struct metrics_family *fam)
{
	for (size_t i = 0; i < fam->cap; i++) {
		while (fam->buckets[i]) {
			struct metrics_series *s = fam->buckets[i];
			fam->buckets[i] = s->next;
			free(s);
		}
	}
	free(fam->buckets);
	fam->buckets = NULL;
	fam->cap = fam->len = 0;
}
