/* SPDX-License-Identifier: Apache-2.0 */
/*
 * secret.h: the agent secret file (--agent-secret-file, on the agent and the server), as a
 * Kubernetes Secret mounted in both pods provides it. One secret per line, 16 to 1,024 bytes
 * each, at most SECRET_MAX lines; blank lines and the spaces, tabs and carriage returns that
 * end a line are ignored. An agent proves the first line; a server accepts any line: to
 * rotate, add the new secret as a second line, then make it the first, then remove the old
 * one, waiting each time until both pods see the change.
 *
 * The file is read again when it changes (secret_changed: its inode, size or modification
 * time), which is how a Secret's update reaches a running pod (the kubelet swaps a symlink).
 */
#ifndef KUBEZONNET_SECRET_H
#define KUBEZONNET_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define SECRET_MAX		8
#define SECRET_MIN_BYTES	16
#define SECRET_MAX_BYTES	1024
#define SECRET_FILE_MAX		(SECRET_MAX * (SECRET_MAX_BYTES + 2) + 4096)
#define SECRET_FINGERPRINT_SIZE 32 /* SHA-256 of one secret, as the caller computes it */

struct secret_set {
	int n;
	size_t len[SECRET_MAX];
	uint8_t key[SECRET_MAX][SECRET_MAX_BYTES];
	/* the file as it was read: what secret_changed compares */
	uint64_t dev, ino, size;
	int64_t mtime_ns;
};

/*
 * secret_parse fills *out from the file's bytes buf[0..len). Returns 0, or -1 and writes why
 * into err: no secret, one too short or too long, or more than SECRET_MAX.
 */
int secret_parse(const char *buf, size_t len, struct secret_set *out, char *err, size_t err_len);

/*
 * secret_load reads and parses path into *out (also recording what secret_changed compares).
 * Returns 0, or -1 with err naming the path and what failed. On failure *out keeps its
 * secrets, but records the file that was read (not one the path names a moment later), so
 * that secret_changed reports only a later change, which is then read.
 */
int secret_load(const char *path, struct secret_set *out, char *err, size_t err_len);

/* secret_changed returns 1 when path is no longer the file *s was read from, else 0. */
int secret_changed(const char *path, const struct secret_set *s);

/* secret_wipe zeroes *s (a dead store the compiler may not remove). */
void secret_wipe(struct secret_set *s);

#endif /* KUBEZONNET_SECRET_H */
