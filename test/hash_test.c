/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for hash.c: SipHash against the paper's test vector and against CPython's
 * SipHash-1-3, the process key, and names and addresses crafted to share a bucket under the
 * unkeyed hashes the tables used before, spread by the keyed one.
 */
#include "../hash.h"
#include "collide.h"
#include "test.h"

static void test_vectors(void)
{
	uint8_t key[HASH_KEY_BYTES], message[64];
	struct hash_key k;

	for (int i = 0; i < 64; i++)
		message[i] = (uint8_t)i;
	/* The paper's Appendix A: SipHash-2-4, key 00..0f, message 00..0e. */
	for (int i = 0; i < HASH_KEY_BYTES; i++)
		key[i] = (uint8_t)i;
	k = hash_key_from_bytes(key);
	EXPECT(hash_siphash(&k, message, 15, 2, 4) == 0xa129ca6149be45e5ull);

	/*
	 * SipHash-1-3 as CPython 3.11 computes hash(bytes(range(n))), as unsigned: with
	 * PYTHONHASHSEED=0 its key is zero; with PYTHONHASHSEED=1 it is the first 16 bytes of
	 * its LCG (x = x * 214013 + 2531011 from x = 1, byte (x >> 16) & 0xff), below.
	 */
	static const uint8_t seed1[HASH_KEY_BYTES] = {0x29, 0x23, 0xbe, 0x84, 0xe1, 0x6c,
						      0xd6, 0xae, 0x52, 0x90, 0x49, 0xf1,
						      0xf1, 0xbb, 0xe9, 0xeb};
	static const struct {
		size_t len;
		uint64_t zero_key, seed1_key;
	} rows[] = {
		{1, 0x68a914128e01e473ull, 0xecd3e5afcecda4b9ull},
		{7, 0x2f098ab0c751325aull, 0xfd15e78052a69ddfull},
		{8, 0xead411e67ebe2eeaull, 0xc0b5739e7e28dd01ull},
		{15, 0xf30eb725bb91c9eaull, 0xfa87985f39e97a53ull},
		{16, 0x8972188433a5c5b7ull, 0x12e9d283f9f37002ull},
		{17, 0x4883c49a2c009c1dull, 0x9f5bb4237f61907full},
		{63, 0x385d3e39e5f37359ull, 0x542052345bc68274ull},
	};
	struct hash_key zero = {0, 0}, one = hash_key_from_bytes(seed1);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t z = hash_siphash13(&zero, message, rows[i].len);
		uint64_t s = hash_siphash13(&one, message, rows[i].len);
		if (z != rows[i].zero_key || s != rows[i].seed1_key)
			test_fail(__FILE__, __LINE__, "%zu bytes: %016llx %016llx", rows[i].len,
				  (unsigned long long)z, (unsigned long long)s);
	}
}

/* The 16- and 4-byte forms the address table uses are SipHash-1-3, for any key and bytes. */
static void test_sixteen_bytes(void)
{
	uint8_t key[HASH_KEY_BYTES], data[16];
	uint64_t x = 0x0123456789abcdefull;

	for (int i = 0; i < 16; i++)
		data[i] = (uint8_t)i;
	struct hash_key zero = {0, 0};
	EXPECT(hash_siphash13_16(&zero, data) == 0x8972188433a5c5b7ull); /* the CPython row */
	for (int round = 0; round < 10000; round++) {
		struct hash_key k;
		for (int i = 0; i < HASH_KEY_BYTES; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			key[i] = (uint8_t)(x >> 56);
			data[i] = (uint8_t)(x >> 48);
		}
		k = hash_key_from_bytes(key);
		if (hash_siphash13_16(&k, data) != hash_siphash13(&k, data, 16) ||
		    hash_siphash13_4(&k, data) != hash_siphash13(&k, data, 4)) {
			test_fail(__FILE__, __LINE__, "round %d differs", round);
			break;
		}
	}
}

static void test_process_key(void)
{
	const struct hash_key *k = hash_process_key();
	static const uint8_t fixed[HASH_KEY_BYTES] = {1, 2,  3,	 4,  5,	 6,  7,	 8,
						      9, 10, 11, 12, 13, 14, 15, 16};
	struct hash_key want = hash_key_from_bytes(fixed);

	EXPECT(k == hash_process_key()); /* filled once */
	EXPECT(k->k0 != 0 || k->k1 != 0);
	EXPECT(hash_bytes("pod", 3) == hash_siphash13(k, "pod", 3));
	EXPECT(hash_string("pod") == hash_bytes("pod", 3));
	hash_set_process_key(fixed);
	EXPECT(hash_process_key()->k0 == want.k0 && hash_process_key()->k1 == want.k1);
	EXPECT(hash_bytes("pod", 3) == hash_siphash13(&want, "pod", 3));
}

#define BUCKETS (1u << 14)

/* max_bucket returns the fullest of BUCKETS buckets after counting bucket[0..n). */
static unsigned max_bucket(const uint32_t *bucket, size_t n)
{
	static unsigned count[BUCKETS];
	unsigned max = 0;

	memset(count, 0, sizeof(count));
	for (size_t i = 0; i < n; i++)
		if (++count[bucket[i] & (BUCKETS - 1)] > max)
			max = count[bucket[i] & (BUCKETS - 1)];
	return max;
}

/*
 * 16,384 names crafted for FNV-1a-32 and 131,072 for FNV-1a-64 each land in one bucket
 * under the old hash; under SipHash with a key an attacker does not know, spread over 16,384
 * buckets, the fullest holds a handful (a random function's maximum is about 8 for 16,384
 * names and 21 for 131,072; the bounds leave a wide margin). Two keys put a name in
 * different buckets.
 */
static void test_crafted_names_spread(void)
{
	size_t n32 = 1u << 14, n64 = 1u << COLLIDE_FNV64_STAGES;
	uint32_t *old = malloc(n64 * sizeof(*old)), *new = malloc(n64 * sizeof(*new));
	static const uint8_t a[HASH_KEY_BYTES] = {'a'}, b[HASH_KEY_BYTES] = {'b'};
	struct hash_key ka = hash_key_from_bytes(a), kb = hash_key_from_bytes(b);
	char name[8 * COLLIDE_FNV64_STAGES + 1];
	size_t moved = 0;

	for (uint32_t i = 0; i < n32; i++) {
		collide_fnv32_name(14, i, name);
		old[i] = collide_old_fnv32(name, strlen(name));
		new[i] = (uint32_t)hash_string(name);
		moved += (hash_siphash13(&ka, name, strlen(name)) & (BUCKETS - 1)) !=
			 (hash_siphash13(&kb, name, strlen(name)) & (BUCKETS - 1));
	}
	EXPECT_EQ(max_bucket(old, n32), n32);
	EXPECT(max_bucket(new, n32) <= 24);
	EXPECT(moved > n32 * 99 / 100); /* a random function leaves 1 in 16,384 in place */

	size_t same = 0;
	for (uint32_t i = 0; i < n64; i++) {
		collide_fnv64_name(COLLIDE_FNV64_STAGES, i, name);
		old[i] = (uint32_t)(collide_old_fnv64(name, strlen(name)) & ((1u << 19) - 1));
		new[i] = (uint32_t)hash_string(name);
		same += old[i] == old[0]; /* one bucket of 2^19 */
	}
	EXPECT_EQ(same, n64);
	EXPECT(max_bucket(new, n64) <= 48);

	for (uint32_t i = 0; i < n64; i++) {
		uint8_t addr[16];
		collide_addr(i, 42, addr);
		EXPECT(collide_old_addr_hash(addr) == 42);
		new[i] = (uint32_t)hash_bytes(addr, 16);
	}
	EXPECT(max_bucket(new, n64) <= 48);
	free(old);
	free(new);
}

int main(void)
{
	RUN(test_vectors);
	RUN(test_sixteen_bytes);
	RUN(test_process_key);
	RUN(test_crafted_names_spread);
	return test_done();
}
