/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: request heads, whole and resumed from every earlier length. */
#include <stdlib.h>
#include <string.h>

#include "../../http.h"

/*
 * Chunked decoding: the body split at any point must decode to the same bytes, with the
 * same verdict, as the body whole.
 */
static void fuzz_chunked(const char *s, size_t size)
{
	struct http_chunked a = {0}, b = {0};
	char *whole = malloc(size + 1), *parts = malloc(size + 1);
	size_t n = size, split = size ? (unsigned char)s[0] % size : 0, n1 = split,
	       n2 = size - split;
	long ra, rb;

	memcpy(whole, s, size);
	ra = http_chunked_decode(&a, whole, &n);
	memcpy(parts, s, size);
	rb = http_chunked_decode(&b, parts, &n1);
	if (rb == HTTP_E_PARTIAL) {
		memmove(parts + n1, parts + split, n2);
		rb = http_chunked_decode(&b, parts + n1, &n2);
		n1 += n2;
	} else if (rb >= 0) {
		rb += (long)n2; /* the rest was after the body in both cases */
	}
	if (ra != rb && !(ra == HTTP_E_INVALID && rb == HTTP_E_INVALID))
		__builtin_trap();
	if (ra != HTTP_E_INVALID && (n != n1 || memcmp(whole, parts, n) != 0))
		__builtin_trap();
	free(whole);
	free(parts);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct http_request req;
	struct http_response resp;
	const char *s = (const char *)data;
	int whole = http_parse_request(s, size, 0, &req);

	http_parse_response(s, size, 0, &resp);
	fuzz_chunked(s, size);

	if (whole > 0) {
		const struct http_header *h = http_header_value(&req, "accept-encoding");
		if (h)
			http_accepts_token(h->value, h->value_len, "gzip");
	}
	/*
	 * Resuming after a prefix that was still partial (the only way a server resumes) must
	 * give the same answer as parsing whole.
	 */
	for (size_t last = 1; last < size && size < 512; last += 7) {
		if (http_parse_request(s, last, 0, &req) != HTTP_E_PARTIAL)
			continue;
		if (http_parse_request(s, size, last, &req) != whole)
			__builtin_trap();
	}
	return 0;
}
