/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: everything a server does with bytes from an agent connection. */
#include <stdlib.h>

#include "../../wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		struct wire_frame f;
		long n = wire_frame_parse(data + pos, size - pos, WIRE_FRAME_MAX_DEFAULT, &f);

		if (n <= 0)
			break;
		pos += (size_t)n;
		if (f.type == WIRE_HELLO) {
			struct wire_hello h;
			wire_hello_decode(f.payload, f.payload_len, &h);
		} else if (f.type == WIRE_ACK) {
			uint64_t seq;
			wire_ack_decode(f.payload, f.payload_len, &seq);
		} else if (f.type == WIRE_ERROR) {
			struct wire_error e;
			wire_error_decode(f.payload, f.payload_len, &e);
		} else {
			struct wire_stats st;
			const uint8_t *p = f.payload;
			size_t len = f.payload_len;
			uint8_t *inflated = NULL;

			if (f.flags & WIRE_FLAG_ZLIB) {
				long want = wire_inflated_size(f.payload, f.payload_len, 1 << 20);
				if (want < 0)
					continue;
				inflated = malloc((size_t)want);
				if (!inflated || wire_inflate(f.payload, f.payload_len, inflated,
							      (size_t)want) < 0) {
					free(inflated);
					continue;
				}
				p = inflated;
				len = (size_t)want;
			}
			if (wire_stats_decode(p, len, &st) == 0) {
				for (uint32_t i = 0; i < st.count; i++) {
					struct wire_record r;
					wire_record_get(&st, i, &r);
				}
			}
			free(inflated);
		}
	}
	return 0;
}
