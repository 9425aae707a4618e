/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wire codec throughput: protocol version 2 STATS frames (what agents send) of 1,000 records
 * encoded, and decoded with every record read back, per second; the baseline is memcpy of the
 * same bytes, which no codec can beat.
 */
#include "../wire.h"
#include "bench.h"

#define RECORDS 1000
#define FRAMES	2000

static volatile uint64_t sink;

static double encode_rate(uint8_t *buf, size_t cap)
{
	double t = bench_now();

	for (int f = 0; f < FRAMES; f++) {
		struct wire_stats s = {
			.version = WIRE_VERSION_2, .sequence = (uint64_t)f + 1, .count = RECORDS};
		uint8_t *rec = wire_stats_encode(buf, cap, &s);
		struct wire_record r = {.family = 6, .protocol = 6, .port = 443};

		for (uint32_t i = 0; i < RECORDS; i++) {
			r.src[15] = (uint8_t)i;
			r.bytes = i * 1500u;
			r.packets = i;
			r.encap_bytes = i * 50u;
			if (wire_record_put_v2(rec + (size_t)i * WIRE_RECORD_SIZE_V2, &r) != 0)
				abort();
		}
		__asm__ volatile("" : : "r"(buf) : "memory"); /* every frame is really written */
	}
	return FRAMES / (bench_now() - t);
}

static double decode_rate(const uint8_t *buf, size_t len)
{
	double t = bench_now();

	for (int f = 0; f < FRAMES; f++) {
		struct wire_frame fr;
		struct wire_stats s;
		uint64_t sum = 0;

		__asm__ volatile("" : : "r"(buf) : "memory"); /* re-read the frame every time */
		if (wire_frame_parse(buf, len, WIRE_FRAME_MAX_DEFAULT, &fr) < 0 ||
		    wire_stats_decode(fr.payload, fr.payload_len, WIRE_VERSION_2, &s) != 0)
			abort();
		for (uint32_t i = 0; i < s.count; i++) {
			struct wire_record r;
			wire_record_get(&s, i, &r);
			sum += r.bytes + r.packets + r.encap_bytes + r.port + r.src[15] + r.dst[15];
		}
		sink += sum;
	}
	return FRAMES / (bench_now() - t);
}

static double memcpy_rate(uint8_t *dst, const uint8_t *src, size_t len)
{
	double t = bench_now();

	for (int f = 0; f < FRAMES; f++) {
		memcpy(dst, src, len);
		__asm__ volatile("" : : "r"(dst) : "memory");
	}
	return FRAMES / (bench_now() - t);
}

int main(void)
{
	size_t len = wire_stats_size_version(WIRE_VERSION_2, RECORDS);
	uint8_t *a = malloc(len), *b = malloc(len);
	double enc[BENCH_RUNS], dec[BENCH_RUNS], cpy[BENCH_RUNS];

	for (int r = 0; r < BENCH_RUNS; r++) {
		enc[r] = encode_rate(a, len);
		cpy[r] = memcpy_rate(b, a, len);
		dec[r] = decode_rate(a, len);
	}
	double base = bench_median(cpy, BENCH_RUNS);
	bench_row("wire: STATS encode (v2, 1,000 records/frame)", bench_median(enc, BENCH_RUNS),
		  "frames/s", "memcpy of the frame", base);
	bench_row("wire: STATS decode (v2, 1,000 records/frame)", bench_median(dec, BENCH_RUNS),
		  "frames/s", "memcpy of the frame", base);
	free(a);
	free(b);
	return 0;
}
