/* SPDX-License-Identifier: Apache-2.0 */
/* secret.c: see secret.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secret.h"

void secret_wipe(struct secret_set *s)
{
	volatile uint8_t *p = (volatile uint8_t *)s;

	for (size_t i = 0; i < sizeof(*s); i++)
		p[i] = 0;
}

int secret_parse(const char *buf, size_t len, struct secret_set *out, char *err, size_t err_len)
{
	size_t at = 0;
	int line = 0;

	out->n = 0;
	while (at < len) {
		size_t end = at, n;

		while (end < len && buf[end] != '\n')
			end++;
		n = end - at;
		line++;
		while (n && (buf[at + n - 1] == ' ' || buf[at + n - 1] == '\t' ||
			     buf[at + n - 1] == '\r'))
			n--;
		if (n) {
			if (n < SECRET_MIN_BYTES || n > SECRET_MAX_BYTES) {
				snprintf(
					err, err_len,
					"line %d: a secret must be %d to %d bytes, this one is %zu",
					line, SECRET_MIN_BYTES, SECRET_MAX_BYTES, n);
				return -1;
			}
			if (out->n == SECRET_MAX) {
				snprintf(err, err_len, "more than %d secrets", SECRET_MAX);
				return -1;
			}
			memcpy(out->key[out->n], buf + at, n);
			out->len[out->n++] = n;
		}
		at = end + 1;
	}
	if (!out->n) {
		snprintf(err, err_len, "no secret in it");
		return -1;
	}
	return 0;
}

/* secret_record notes which file (as fstat saw the one read) the set came from. */
static void secret_record(const struct stat *st, struct secret_set *s)
{
	s->dev = (uint64_t)st->st_dev;
	s->ino = (uint64_t)st->st_ino;
	s->size = (uint64_t)st->st_size;
	s->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int secret_load(const char *path, struct secret_set *out, char *err, size_t err_len)
{
	static char buf[SECRET_FILE_MAX + 1];
	static struct secret_set next;
	struct stat st;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
	char why[160];

	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, err_len, "%s: read: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > SECRET_FILE_MAX) {
			snprintf(err, err_len, "%s: larger than %d bytes", path, SECRET_FILE_MAX);
			goto out;
		}
	}
	if (secret_parse(buf, len, &next, why, sizeof(why)) != 0) {
		snprintf(err, err_len, "%s: %s", path, why);
		secret_record(&st, out); /* this file was read: only a later change is news */
		goto out;
	}
	secret_record(&st, &next);
	*out = next;
	rc = 0;
out:
	secret_wipe(&next);
	memset(buf, 0, len < sizeof(buf) ? len : sizeof(buf));
	if (fd >= 0)
		close(fd);
	return rc;
}

int secret_changed(const char *path, const struct secret_set *s)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return 0; /* gone for a moment (a symlink being swapped): keep what we have */
	return (uint64_t)st.st_dev != s->dev || (uint64_t)st.st_ino != s->ino ||
	       (uint64_t)st.st_size != s->size ||
	       (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != s->mtime_ns;
}
