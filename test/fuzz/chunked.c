/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the chunked transfer decoder as the Kubernetes client drives it, on
 * pieces of whatever sizes reads return. The first two bytes choose the piece sizes, the
 * rest is the body. Cut into those pieces, and into single bytes, the body must give what
 * it gives whole: the same decoded bytes, the same verdict at the same byte, and the same
 * bytes after the last chunk.
 */
#include <stdlib.h>
#include <string.h>

#include "../../http.h"

struct decoded {
	long rc;    /* the verdict: HTTP_E_PARTIAL, HTTP_E_INVALID, or the bytes after the body */
	char *out;  /* decoded bytes, then (rc >= 0) the bytes after the body */
	size_t len; /* decoded bytes */
};

/* piece_size returns the next piece's size from a small generator seeded by the input. */
static size_t piece_size(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	switch (*state >> 29) {
	case 0:
	case 1:
	case 2:
		return 1;
	case 3:
	case 4:
		return 1 + (*state >> 16) % 8;
	case 5:
		return 1 + (*state >> 16) % 64;
	default:
		return 1 + (*state >> 16) % 4096;
	}
}

/*
 * decode feeds body[0..size) in pieces (all at once when state is NULL, one byte each when
 * it points at 0xffffffff), as the client does: each piece decoded in place, in its own
 * buffer, its decoded bytes appended to the rest.
 */
static void decode(const char *body, size_t size, uint32_t *state, struct decoded *d)
{
	struct http_chunked c = {0};
	char *piece = malloc(size + 1);
	size_t fed = 0;

	d->out = malloc(size + 1);
	d->len = 0;
	d->rc = HTTP_E_PARTIAL;
	while (fed < size && d->rc == HTTP_E_PARTIAL) {
		size_t n = !state ? size : *state == 0xffffffffu ? 1 : piece_size(state);
		size_t got;

		if (n > size - fed)
			n = size - fed;
		memcpy(piece, body + fed, n);
		fed += n;
		got = n;
		d->rc = http_chunked_decode(&c, piece, &got);
		if (got > n)
			__builtin_trap(); /* decoding never grows a piece */
		if (d->rc >= 0 && (size_t)d->rc > n - got)
			__builtin_trap(); /* the bytes after the body are within the piece */
		if (d->rc == HTTP_E_INVALID)
			break;
		memcpy(d->out + d->len, piece, got);
		d->len += got;
		if (d->rc >= 0) {
			/* After the body: the rest of this piece, then what was not fed. */
			memcpy(d->out + d->len, piece + got, (size_t)d->rc);
			memcpy(d->out + d->len + d->rc, body + fed, size - fed);
			d->rc += (long)(size - fed);
		}
	}
	free(piece);
}

static void same(const struct decoded *a, const struct decoded *b)
{
	if (a->rc != b->rc)
		__builtin_trap();
	if (a->rc == HTTP_E_INVALID)
		return; /* what was decoded before the error is not used */
	if (a->len != b->len || memcmp(a->out, b->out, a->len) != 0)
		__builtin_trap();
	if (a->rc >= 0 && memcmp(a->out + a->len, b->out + b->len, (size_t)a->rc) != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct decoded whole, pieces, bytes;
	uint32_t state, one = 0xffffffffu;
	const char *body = (const char *)data + 2;

	if (size < 2)
		return 0;
	state = (uint32_t)data[0] << 8 | data[1];
	size -= 2;
	decode(body, size, NULL, &whole);
	decode(body, size, &state, &pieces);
	same(&whole, &pieces);
	if (size <= 4096) {
		decode(body, size, &one, &bytes);
		same(&whole, &bytes);
		free(bytes.out);
	}
	free(whole.out);
	free(pieces.out);
	return 0;
}
