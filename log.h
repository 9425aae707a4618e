/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h: what the agent and the server share for logging and timekeeping: one line per
 * event on stderr, "<UTC time> <program>: <message>", and a monotonic clock in milliseconds.
 */
#ifndef KUBEZONNET_LOG_H
#define KUBEZONNET_LOG_H

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

/* log_line writes one log line for program. */
static inline void log_line(const char *program, const char *fmt, va_list ap)
{
	char when[32];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s %s: ", when, program);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* log_now_ms returns CLOCK_MONOTONIC in milliseconds. */
static inline long long log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif /* KUBEZONNET_LOG_H */
