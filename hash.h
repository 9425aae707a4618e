/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hash.h: SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012), keyed
 * with a random key per process, for every hash table whose keys a peer chooses: metric label
 * values (agents' node names, Kubernetes names), the endpoint index's names and addresses,
 * the Kubernetes store's UIDs and names. With an unkeyed hash (FNV-1a before) such keys can
 * be chosen offline to share one bucket, so that every insert and lookup walks all of them;
 * without the key, which never leaves the process, they cannot.
 *
 * The tables use SipHash-1-3 (one compression round per 8-byte word, three finalisation
 * rounds), as CPython and Rust do for theirs: a table needs its hashes unpredictable, not a
 * MAC's margin. hash_siphash takes the round counts so that the paper's SipHash-2-4 test
 * vector checks the same code.
 */
#ifndef KUBEZONNET_HASH_H
#define KUBEZONNET_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HASH_KEY_BYTES 16

struct hash_key {
	uint64_t k0, k1; /* the key's bytes 0..7 and 8..15, little-endian */
};

/*
 * hash_process_key returns the process's key. The first call fills it from getrandom(2)
 * (without blocking; should the kernel have no entropy yet, from the clock, the process id and
 * addresses, which still differ from run to run). A process under a seccomp allow-list either
 * allows getrandom or calls this once before installing the filter; one with threads calls it
 * before starting them (the first call is not atomic).
 */
const struct hash_key *hash_process_key(void);

/*
 * hash_set_process_key replaces the process's key with key[0..HASH_KEY_BYTES) (tests, for
 * hashes that repeat from run to run). Tables built before keep hashes made with the old key:
 * call it before building any.
 */
void hash_set_process_key(const uint8_t key[HASH_KEY_BYTES]);

/* hash_key_from_bytes reads 16 key bytes the way SipHash does (two little-endian words). */
struct hash_key hash_key_from_bytes(const uint8_t key[HASH_KEY_BYTES]);

/* hash_bytes returns SipHash-1-3 of data[0..len) under the process's key. */
uint64_t hash_bytes(const void *data, size_t len);

/* hash_string is hash_bytes over a NUL-terminated string (without its NUL). */
uint64_t hash_string(const char *s);

/* ---- the function itself, inline for the per-record address lookups ---- */

static inline uint64_t hash_rotl(uint64_t x, int b)
{
	return x << b | x >> (64 - b);
}

/* hash_load64 reads 8 bytes as a little-endian word. */
static inline uint64_t hash_load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

#define HASH_SIPROUND(v0, v1, v2, v3)                                                              \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = hash_rotl(v1, 13);                                                            \
		v1 ^= v0;                                                                          \
		v0 = hash_rotl(v0, 32);                                                            \
		v2 += v3;                                                                          \
		v3 = hash_rotl(v3, 16);                                                            \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = hash_rotl(v3, 21);                                                            \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = hash_rotl(v1, 17);                                                            \
		v1 ^= v2;                                                                          \
		v2 = hash_rotl(v2, 32);                                                            \
	} while (0)

/*
 * hash_siphash returns SipHash-c-d of data[0..len) under key: c rounds per message word, d
 * at the end. With constant c, d (and len) the compiler unrolls it.
 */
static inline uint64_t hash_siphash(const struct hash_key *key, const void *data, size_t len, int c,
				    int d)
{
	const unsigned char *p = data, *end = p + (len & ~(size_t)7);
	uint64_t v0 = key->k0 ^ 0x736f6d6570736575ull, v1 = key->k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = key->k0 ^ 0x6c7967656e657261ull, v3 = key->k1 ^ 0x7465646279746573ull;
	uint64_t m;

	for (; p != end; p += 8) {
		m = hash_load64(p);
		v3 ^= m;
		for (int r = 0; r < c; r++)
			HASH_SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	/* The last word: the 0..7 bytes left, and the length's low byte on top. */
	m = (uint64_t)(len & 0xff) << 56;
	for (size_t i = 0; i < (len & 7); i++)
		m |= (uint64_t)p[i] << (8 * i);
	v3 ^= m;
	for (int r = 0; r < c; r++)
		HASH_SIPROUND(v0, v1, v2, v3);
	v0 ^= m;
	v2 ^= 0xff;
	for (int r = 0; r < d; r++)
		HASH_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/* hash_siphash13 is SipHash-1-3 of data[0..len) under key: what the tables use. */
static inline uint64_t hash_siphash13(const struct hash_key *key, const void *data, size_t len)
{
	return hash_siphash(key, data, len, 1, 3);
}

/*
 * hash_siphash13_16 and hash_siphash13_4 are hash_siphash13 of exactly 16 and 4 bytes (an
 * IPv6 and an IPv4 address), written out straight: the endpoint index hashes two addresses
 * per record, and the compiler does not unroll the general loops.
 */
static inline uint64_t hash_siphash13_16(const struct hash_key *key, const uint8_t data[16])
{
	uint64_t v0 = key->k0 ^ 0x736f6d6570736575ull, v1 = key->k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = key->k0 ^ 0x6c7967656e657261ull, v3 = key->k1 ^ 0x7465646279746573ull;
	uint64_t m0 = hash_load64(data), m1 = hash_load64(data + 8), last = 16ull << 56;

	v3 ^= m0;
	HASH_SIPROUND(v0, v1, v2, v3);
	v0 ^= m0;
	v3 ^= m1;
	HASH_SIPROUND(v0, v1, v2, v3);
	v0 ^= m1;
	v3 ^= last;
	HASH_SIPROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	HASH_SIPROUND(v0, v1, v2, v3);
	HASH_SIPROUND(v0, v1, v2, v3);
	HASH_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

static inline uint64_t hash_siphash13_4(const struct hash_key *key, const uint8_t data[4])
{
	uint64_t v0 = key->k0 ^ 0x736f6d6570736575ull, v1 = key->k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = key->k0 ^ 0x6c7967656e657261ull, v3 = key->k1 ^ 0x7465646279746573ull;
	uint64_t last = 4ull << 56 | (uint64_t)data[3] << 24 | (uint64_t)data[2] << 16 |
			(uint64_t)data[1] << 8 | data[0];

	v3 ^= last;
	HASH_SIPROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	HASH_SIPROUND(v0, v1, v2, v3);
	HASH_SIPROUND(v0, v1, v2, v3);
	HASH_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

#endif /* KUBEZONNET_HASH_H */
