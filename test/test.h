/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test.h: the unit-test harness. Each case prints one TAP-style line that test/run counts:
 * "ok - NAME", "not ok - NAME" (after "#"-prefixed lines saying what failed), or
 * "ok - NAME # SKIP reason". main() returns test_done().
 */
#ifndef KUBEZONNET_TEST_H
#define KUBEZONNET_TEST_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
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
 * EXPECT_WITHIN_CPU runs fn(arg) in a child process limited to `seconds` of CPU time
 * (RLIMIT_CPU) and fails the case when the limit kills it or an EXPECT in it fails. It is for
 * regression tests of quadratic work: the bound is generous (the linear code needs a small
 * part of it, and a diagnostic line says how much) while the quadratic code would need
 * hundreds of times more, and CPU time does not grow with the machine's load as wall time
 * does.
 */
#define EXPECT_WITHIN_CPU(seconds, fn, arg)                                                        \
	test_within_cpu(__FILE__, __LINE__, #fn, (fn), (arg), (seconds))

static inline void test_within_cpu(const char *file, int line, const char *name, void (*fn)(void *),
				   void *arg, unsigned seconds)
{
	struct rusage ru;
	int status, before = test_case_failures;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("test_within_cpu: fork");
		exit(2);
	}
	if (pid == 0) {
		struct rlimit cpu = {seconds, seconds + 1}, core = {0, 0};
		setrlimit(RLIMIT_CORE, &core);
		setrlimit(RLIMIT_CPU, &cpu);
		fn(arg);
		fflush(stdout);
		_exit(test_case_failures > before ? 1 : 0);
	}
	if (wait4(pid, &status, 0, &ru) != pid) {
		perror("test_within_cpu: wait4");
		exit(2);
	}
	printf("# %s: %.2f s of CPU (limit %u s)\n", name,
	       (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
		       ru.ru_stime.tv_usec / 1e6,
	       seconds);
	if (WIFSIGNALED(status))
		test_fail(file, line, "%s: killed by signal %d (SIGXCPU %d: over %u s of CPU)",
			  name, WTERMSIG(status), SIGXCPU, seconds);
	else if (WEXITSTATUS(status) != 0)
		test_fail(file, line, "%s: failed", name);
}

/*
 * test_repeat returns a malloc'd, NUL-terminated document: head, then n copies of element
 * separated by commas, then tail (for JSON arrays of n elements). *len is its length.
 */
static inline char *test_repeat(const char *head, const char *element, size_t n, const char *tail,
				size_t *len)
{
	size_t h = strlen(head), e = strlen(element), t = strlen(tail);
	char *doc = malloc(h + n * (e + 1) + t + 1), *p = doc;

	if (!doc) {
		perror("test_repeat: malloc");
		exit(2);
	}
	memcpy(p, head, h);
	p += h;
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		memcpy(p, element, e);
		p += e;
	}
	memcpy(p, tail, t + 1);
	*len = (size_t)(p - doc) + t;
	return doc;
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
