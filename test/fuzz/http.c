/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: request heads, whole and resumed from every earlier length. */
#include "../../http.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct http_request req;
	const char *s = (const char *)data;
	int whole = http_parse_request(s, size, 0, &req);

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
