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

/* log_time writes the UTC time now as 2026-11-26T06:39:05Z (with millis: ...05.123Z). */
static inline void log_time(char *buf, size_t len, int millis)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (millis)
		snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
	else
		snprintf(buf + n, len - n, "Z");
}

/* log_line writes one log line for program. */
static inline void log_line(const char *program, const char *fmt, va_list ap)
{
	char when[40];

	log_time(when, sizeof(when), 0);
	fprintf(stderr, "%s %s: ", when, program);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/*
 * log_escape writes len bytes of a peer's text into out (outlen bytes, NUL-terminated, cut
 * short when it does not fit) with every byte outside printable ASCII, and the backslash,
 * written as \xNN: a peer's newlines and terminal escapes never reach the log raw. An out
 * of 4 * len + 1 bytes always holds it all.
 */
static inline void log_escape(const char *in, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	if (!outlen)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outlen)
				break;
			snprintf(out + o, outlen - o, "\\x%02x", c);
			o += 4;
		}
	}
	out[o] = '\0';
}

/* log_now_ms returns CLOCK_MONOTONIC in milliseconds. */
static inline long long log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif /* KUBEZONNET_LOG_H */
