/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test.h: the unit-test harness. Each case prints one TAP-style line that test/run counts:
 * "ok - NAME", "not ok - NAME" (after "#"-prefixed lines saying what failed), or
 * "ok - NAME # SKIP reason". main() returns test_done().
 */
#ifndef KUBEZONNET_TEST_H
#define KUBEZONNET_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int test_case_failures;
static int test_failed_cases;

static inline void test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	printf("#   %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	test_case_failures++;
}

#define EXPECT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond))                                                                       \
			test_fail(__FILE__, __LINE__, "expected %s", #cond);                       \
	} while (0)

#define EXPECT_EQ(got, want)                                                                       \
	do {                                                                                       \
		long long got_ = (long long)(got), want_ = (long long)(want);                      \
		if (got_ != want_)                                                                 \
			test_fail(__FILE__, __LINE__, "%s is %lld, want %lld", #got, got_, want_); \
	} while (0)

/* test_result prints the line for a finished case named by the printf-style format. */
static inline void test_result(const char *fmt, ...)
{
	va_list ap;

	printf(test_case_failures ? "not ok - " : "ok - ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (test_case_failures)
		test_failed_cases++;
	test_case_failures = 0;
}

#define RUN(fn)                                                                                    \
	do {                                                                                       \
		fn();                                                                              \
		test_result("%s", #fn);                                                            \
	} while (0)

static inline int test_done(void)
{
	return test_failed_cases ? 1 : 0;
}

/*
 * test_guarded returns a copy of data[0..len) whose last byte is the last byte before a
 * PROT_NONE page, so that reading one byte past it faults. Free it with test_guarded_free.
 * It exits the process if the mappings cannot be made.
 */
static inline unsigned char *test_guarded(const void *data, size_t len, size_t *map_len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (len + page - 1) / page + 1;
	unsigned char *base;

	*map_len = pages * page;
	base = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED || mprotect(base + (pages - 1) * page, page, PROT_NONE) != 0) {
		perror("test_guarded: mmap/mprotect");
		exit(2);
	}
	unsigned char *p = base + (pages - 1) * page - len;
	if (len)
		memcpy(p, data, len);
	return p;
}

static inline void test_guarded_free(unsigned char *p, size_t len, size_t map_len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *base = p + len - (map_len - page);

	munmap(base, map_len);
}

/* test_unhex decodes hex digits from s (spaces ignored) into out; returns the byte count. */
static inline size_t test_unhex(const char *s, unsigned char *out, size_t cap)
{
	size_t n = 0;
	int half = -1;

	for (; *s; s++) {
		int v;

		if (*s == ' ')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else
			abort();
		if (half < 0) {
			half = v;
		} else {
			if (n == cap)
				abort();
			out[n++] = (unsigned char)(half << 4 | v);
			half = -1;
		}
	}
	if (half >= 0)
		abort();
	return n;
}

/* test_slurp reads path into a malloc'd, NUL-terminated buffer; NULL when it cannot. */
static inline char *test_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/*
 * test_fixture reads ../shared/fixtures/k8s/NAME (or $KZN_FIXTURES/NAME) into a malloc'd,
 * NUL-terminated buffer; NULL when it is not there (tests then skip).
 */
static inline char *test_fixture(const char *name, size_t *len)
{
	const char *dir =
		getenv("KZN_FIXTURES") ? getenv("KZN_FIXTURES") : "../shared/fixtures/k8s";
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return test_slurp(path, len);
}

#endif /* KUBEZONNET_TEST_H */
