/* SPDX-License-Identifier: Apache-2.0 */
/* sha256.c: see sha256.h. FIPS 180-4 section 6.2 and RFC 2104, written out plainly. */
#include <string.h>

#include "sha256.h"

/*
 * FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first
 * 64 primes.
 */
static const uint32_t sha256_round_constants[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

/*
 * sha256_wipe zeroes p[0..len) through a volatile pointer, so that the compiler cannot drop
 * the stores as dead (it may drop a plain memset of an object about to go out of scope).
 * explicit_bzero does the same but is not C11.
 */
static void sha256_wipe(void *p, size_t len)
{
	volatile unsigned char *v = p;

	while (len--)
		*v++ = 0;
}

static uint32_t sha256_rotr(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

static uint32_t sha256_load32_be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void sha256_store32_be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* sha256_compress takes one 64-byte block into state (FIPS 180-4 6.2.2). */
static void sha256_compress(uint32_t state[8], const uint8_t block[SHA256_BLOCK_SIZE])
{
	uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;

	for (int i = 0; i < 16; i++)
		w[i] = sha256_load32_be(block + 4 * i);
	for (int i = 16; i < 64; i++) {
		uint32_t s0 =
			sha256_rotr(w[i - 15], 7) ^ sha256_rotr(w[i - 15], 18) ^ w[i - 15] >> 3;
		uint32_t s1 =
			sha256_rotr(w[i - 2], 17) ^ sha256_rotr(w[i - 2], 19) ^ w[i - 2] >> 10;
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = state[0], b = state[1], c = state[2], d = state[3];
	e = state[4], f = state[5], g = state[6], h = state[7];
	for (int i = 0; i < 64; i++) {
		t1 = h + (sha256_rotr(e, 6) ^ sha256_rotr(e, 11) ^ sha256_rotr(e, 25)) +
		     ((e & f) ^ (~e & g)) + sha256_round_constants[i] + w[i];
		t2 = (sha256_rotr(a, 2) ^ sha256_rotr(a, 13) ^ sha256_rotr(a, 22)) +
		     ((a & b) ^ (a & c) ^ (b & c));
		h = g, g = f, f = e, e = d + t1;
		d = c, c = b, b = a, a = t1 + t2;
	}
	state[0] += a, state[1] += b, state[2] += c, state[3] += d;
	state[4] += e, state[5] += f, state[6] += g, state[7] += h;
	/* The schedule is the message (an HMAC key block, say): leave none of it on the stack. */
	sha256_wipe(w, sizeof(w));
}

void sha256_init(struct sha256_ctx *ctx)
{
	/* FIPS 180-4 5.3.3: fractional parts of the square roots of the first 8 primes. */
	static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

	memcpy(ctx->state, initial, sizeof(initial));
	ctx->length = 0;
	ctx->block_used = 0;
}

void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (len == 0) /* data may be NULL, and memcpy(x, NULL, 0) is undefined */
		return;
	ctx->length += len;
	if (ctx->block_used) {
		size_t take = SHA256_BLOCK_SIZE - ctx->block_used;

		if (take > len)
			take = len;
		memcpy(ctx->block + ctx->block_used, p, take);
		ctx->block_used += take;
		p += take;
		len -= take;
		if (ctx->block_used < SHA256_BLOCK_SIZE)
			return;
		sha256_compress(ctx->state, ctx->block);
		ctx->block_used = 0;
	}
	for (; len >= SHA256_BLOCK_SIZE; p += SHA256_BLOCK_SIZE, len -= SHA256_BLOCK_SIZE)
		sha256_compress(ctx->state, p);
	if (len) {
		memcpy(ctx->block, p, len);
		ctx->block_used = len;
	}
}

void sha256_final(struct sha256_ctx *ctx, uint8_t digest[SHA256_DIGEST_SIZE])
{
	uint64_t bits = ctx->length * 8;

	/* FIPS 180-4 5.1.1: a 1 bit, zeros up to 56 bytes into a block, the bit count. */
	ctx->block[ctx->block_used++] = 0x80;
	if (ctx->block_used > SHA256_BLOCK_SIZE - 8) {
		memset(ctx->block + ctx->block_used, 0, SHA256_BLOCK_SIZE - ctx->block_used);
		sha256_compress(ctx->state, ctx->block);
		ctx->block_used = 0;
	}
	memset(ctx->block + ctx->block_used, 0, SHA256_BLOCK_SIZE - 8 - ctx->block_used);
	sha256_store32_be(ctx->block + 56, (uint32_t)(bits >> 32));
	sha256_store32_be(ctx->block + 60, (uint32_t)bits);
	sha256_compress(ctx->state, ctx->block);
	for (int i = 0; i < 8; i++)
		sha256_store32_be(digest + 4 * i, ctx->state[i]);
	sha256_wipe(ctx, sizeof(*ctx));
}

void sha256(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_SIZE])
{
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, data, len);
	sha256_final(&ctx, digest);
}

void sha256_hmac_init(struct sha256_hmac_ctx *ctx, const void *key, size_t key_len)
{
	uint8_t pad[SHA256_BLOCK_SIZE] = {0};

	/* RFC 2104 2: K is the key padded with zeros to a block, or its digest if longer. */
	if (key_len > SHA256_BLOCK_SIZE)
		sha256(key, key_len, pad);
	else if (key_len)
		memcpy(pad, key, key_len);
	for (int i = 0; i < SHA256_BLOCK_SIZE; i++)
		pad[i] ^= 0x36;
	sha256_init(&ctx->inner);
	sha256_update(&ctx->inner, pad, sizeof(pad));
	for (int i = 0; i < SHA256_BLOCK_SIZE; i++)
		pad[i] ^= 0x36 ^ 0x5c; /* K ^ ipad becomes K ^ opad */
	sha256_init(&ctx->outer);
	sha256_update(&ctx->outer, pad, sizeof(pad));
	sha256_wipe(pad, sizeof(pad));
}

void sha256_hmac_update(struct sha256_hmac_ctx *ctx, const void *data, size_t len)
{
	sha256_update(&ctx->inner, data, len);
}

void sha256_hmac_final(struct sha256_hmac_ctx *ctx, uint8_t mac[SHA256_DIGEST_SIZE])
{
	uint8_t inner[SHA256_DIGEST_SIZE];

	sha256_final(&ctx->inner, inner);
	sha256_update(&ctx->outer, inner, sizeof(inner));
	sha256_final(&ctx->outer, mac);
	sha256_wipe(inner, sizeof(inner));
}

void sha256_hmac(const void *key, size_t key_len, const void *data, size_t len,
		 uint8_t mac[SHA256_DIGEST_SIZE])
{
	struct sha256_hmac_ctx ctx;

	sha256_hmac_init(&ctx, key, key_len);
	sha256_hmac_update(&ctx, data, len);
	sha256_hmac_final(&ctx, mac);
}

int sha256_equal(const void *a, const void *b, size_t n)
{
	/* volatile reads: the compiler may not stop at the first difference it sees. */
	const volatile unsigned char *x = a, *y = b;
	unsigned diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	/* diff is 0..255: diff - 1 borrows into bit 8 only when diff is 0. No branch. */
	return (int)((diff - 1) >> 8 & 1);
}
