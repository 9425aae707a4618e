/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: everything a server does with bytes from an agent connection. As in the
 * server, a valid HELLO sets the version its STATS frames are decoded in; before one, each
 * STATS frame is decoded in every version (and in version 0, which must be refused), so both
 * layouts are reached without a HELLO. The whole input is also decoded as a bare STATS
 * payload, so the record checks are reached without framing.
 */
#include <stdlib.h>

#include "../../wire.h"

/* check_stats holds a decoded STATS to the decoder's promises, aborting where one is broken. */
static void check_stats(const struct wire_stats *st, uint16_t version, size_t len)
{
	size_t record = wire_record_size(version);

	if (st->version != version || record == 0 ||
	    len != wire_stats_fixed_size(version) + (size_t)st->count * record)
		abort();
	if (version == WIRE_VERSION_1 &&
	    (st->tunnel_malformed_packets != 0 || st->tunnel_malformed_bytes != 0))
		abort();
	for (uint32_t i = 0; i < st->count; i++) {
		struct wire_record r;

		wire_record_get(st, i, &r);
		if ((r.family != 4 && r.family != 6) || r.encap_bytes > r.bytes ||
		    (version == WIRE_VERSION_1 && r.encap_bytes != 0))
			abort();
	}
}

/* decode_stats decodes p[0..len) as a STATS payload in versions first..last, checking each. */
static void decode_stats(const uint8_t *p, size_t len, uint16_t first, uint16_t last)
{
	for (uint16_t v = first; v <= last; v++) {
		struct wire_stats st;
		int rc = wire_stats_decode(p, len, v, &st);

		if (rc == 0)
			check_stats(&st, v, len);
		else if ((rc == WIRE_E_VERSION) != (wire_record_size(v) == 0))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	uint16_t version = 0; /* none yet */

	/*
	 * The whole input as a bare payload too, and, per version, a copy cut to whole records
	 * with its count set to match: the record checks (family, encapsulation bytes) are then
	 * reached by chance, without the fuzzer first having to solve the length.
	 */
	decode_stats(data, size, 0, WIRE_VERSION_MAX);
	for (uint16_t v = WIRE_VERSION_MIN; v <= WIRE_VERSION_MAX; v++) {
		size_t fixed = wire_stats_fixed_size(v), record = wire_record_size(v);
		uint32_t count;
		uint8_t *copy;

		if (!record || size < fixed)
			continue; /* a version without a STATS layout of its own */
		count = (uint32_t)((size - fixed) / record);
		copy = malloc(fixed + (size_t)count * record);
		if (!copy)
			continue;
		memcpy(copy, data, fixed + (size_t)count * record);
		wire_put32(copy + 56, count);
		decode_stats(copy, fixed + (size_t)count * record, v, v);
		free(copy);
	}

	while (pos < size) {
		struct wire_frame f;
		long n = wire_frame_parse(data + pos, size - pos, WIRE_FRAME_MAX_DEFAULT, &f);

		if (n <= 0)
			break;
		pos += (size_t)n;
		if (f.type == WIRE_HELLO) {
			struct wire_hello h;
			if (wire_hello_decode(f.payload, f.payload_len, f.flags, &h) == 0) {
				if (h.version < WIRE_VERSION_MIN || h.version > WIRE_VERSION_MAX)
					abort();
				version = h.version;
			}
		} else if (f.type == WIRE_ACK) {
			uint64_t seq;
			wire_ack_decode(f.payload, f.payload_len, &seq);
		} else if (f.type == WIRE_ERROR) {
			struct wire_error e;
			wire_error_decode(f.payload, f.payload_len, &e);
		} else {
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
			/* After a HELLO its version only; before one, 0 (refused) to the newest. */
			decode_stats(p, len, version, version ? version : WIRE_VERSION_MAX);
			free(inflated);
		}
	}
	return 0;
}
