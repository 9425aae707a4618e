/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for sha256.c: the FIPS 180-2 (NIST) SHA-256 examples, the RFC 4231 HMAC-SHA-256
 * cases, both against OpenSSL for every message length 0..1100 and keys around the block size,
 * whole and in random pieces, input against a guard page, the contexts' wiping, and
 * sha256_equal. Every comparison goes through digest_is, which test_one_bit_caught shows
 * rejects a digest one bit off.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../sha256.h"
#include "test.h"

#define MAX_MESSAGE 1100

static uint64_t prng_state = 0x0123456789abcdefull;

/* prng returns the next of a fixed 64-bit LCG sequence, so runs repeat. */
static uint32_t prng(void)
{
	prng_state = prng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(prng_state >> 32);
}

static void prng_fill(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(prng() >> 24);
}

static void to_hex(const uint8_t *p, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* digest_is returns 1 when got[0..len) is the digest written in hex as want. */
static int digest_is(const uint8_t *got, const char *want)
{
	uint8_t bytes[SHA256_DIGEST_SIZE];
	size_t len = test_unhex(want, bytes, sizeof(bytes));

	return sha256_equal(got, bytes, len);
}

#define EXPECT_DIGEST(got, want)                                                                   \
	do {                                                                                       \
		if (!digest_is((got), (want))) {                                                   \
			char hex_[2 * SHA256_DIGEST_SIZE + 1];                                     \
			to_hex((got), SHA256_DIGEST_SIZE, hex_);                                   \
			test_fail(__FILE__, __LINE__, "%s is %s, want %s", #got, hex_, (want));    \
		}                                                                                  \
	} while (0)

static const char abc_digest[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

/* FIPS 180-2 appendix B and the NIST examples, one-shot and through the context. */
static void test_fips_vectors(void)
{
	static const struct {
		const char *message, *digest;
	} rows[] = {
		{"abc", abc_digest},
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqk"
		 "l"
		 "mnopqrlmnopqrsmnopqrstnopqrstu",
		 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	static const char million_a[] =
		"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
	uint8_t digest[SHA256_DIGEST_SIZE];
	struct sha256_ctx ctx;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		sha256(rows[i].message, strlen(rows[i].message), digest);
		EXPECT_DIGEST(digest, rows[i].digest);
		sha256_init(&ctx);
		for (const char *p = rows[i].message; *p; p++)
			sha256_update(&ctx, p, 1);
		sha256_final(&ctx, digest);
		EXPECT_DIGEST(digest, rows[i].digest);
	}
	sha256(NULL, 0, digest); /* NULL is allowed with length 0 */
	EXPECT_DIGEST(digest, rows[1].digest);

	/* One million 'a': as one buffer, and as 10,000 updates of 100 bytes. */
	char *a = malloc(1000000);
	if (!a) {
		perror("malloc");
		exit(2);
	}
	memset(a, 'a', 1000000);
	sha256(a, 1000000, digest);
	EXPECT_DIGEST(digest, million_a);
	sha256_init(&ctx);
	for (int i = 0; i < 10000; i++)
		sha256_update(&ctx, a, 100);
	sha256_final(&ctx, digest);
	EXPECT_DIGEST(digest, million_a);
	free(a);
}

/* RFC 4231 section 4: test cases 1 to 7 (case 5's MAC cut to 128 bits). */
static void test_rfc4231(void)
{
	static const char long_data[] = "This is a test using a larger than block-size key and a "
					"larger than block-size data. The key needs to be hashed "
					"before being used by the HMAC algorithm.";
	struct {
		uint8_t key[131];
		size_t key_len;
		uint8_t data[160];
		size_t data_len;
		const char *mac;
	} rows[7];
	uint8_t mac[SHA256_DIGEST_SIZE];

	memset(rows, 0, sizeof(rows));
	/* 1 */
	memset(rows[0].key, 0x0b, rows[0].key_len = 20);
	memcpy(rows[0].data, "Hi There", rows[0].data_len = 8);
	rows[0].mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
	/* 2: a key shorter than the MAC */
	memcpy(rows[1].key, "Jefe", rows[1].key_len = 4);
	memcpy(rows[1].data, "what do ya want for nothing?", rows[1].data_len = 28);
	rows[1].mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
	/* 3 */
	memset(rows[2].key, 0xaa, rows[2].key_len = 20);
	memset(rows[2].data, 0xdd, rows[2].data_len = 50);
	rows[2].mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";
	/* 4 */
	for (rows[3].key_len = 0; rows[3].key_len < 25; rows[3].key_len++)
		rows[3].key[rows[3].key_len] = (uint8_t)(rows[3].key_len + 1);
	memset(rows[3].data, 0xcd, rows[3].data_len = 50);
	rows[3].mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";
	/* 5: truncated to 128 bits; digest_is compares as many bytes as the hex has */
	memset(rows[4].key, 0x0c, rows[4].key_len = 20);
	memcpy(rows[4].data, "Test With Truncation", rows[4].data_len = 20);
	rows[4].mac = "a3b6167473100ee06e0c796c2955552b";
	/* 6: a key longer than the block, hashed first */
	memset(rows[5].key, 0xaa, rows[5].key_len = 131);
	memcpy(rows[5].data, "Test Using Larger Than Block-Size Key - Hash Key First",
	       rows[5].data_len = 54);
	rows[5].mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
	/* 7: both longer than the block */
	memset(rows[6].key, 0xaa, rows[6].key_len = 131);
	memcpy(rows[6].data, long_data, rows[6].data_len = sizeof(long_data) - 1);
	rows[6].mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";

	for (int i = 0; i < 7; i++) {
		struct sha256_hmac_ctx ctx;

		EXPECT_EQ(strlen(rows[i].mac), i == 4 ? 32 : 64);
		sha256_hmac(rows[i].key, rows[i].key_len, rows[i].data, rows[i].data_len, mac);
		if (!digest_is(mac, rows[i].mac))
			test_fail(__FILE__, __LINE__, "RFC 4231 case %d (one-shot)", i + 1);
		sha256_hmac_init(&ctx, rows[i].key, rows[i].key_len);
		for (size_t j = 0; j < rows[i].data_len; j++)
			sha256_hmac_update(&ctx, rows[i].data + j, 1);
		sha256_hmac_final(&ctx, mac);
		if (!digest_is(mac, rows[i].mac))
			test_fail(__FILE__, __LINE__, "RFC 4231 case %d (byte by byte)", i + 1);
	}
}

/*
 * The comparison the tests use rejects a digest one bit off in any of its 256 bits; a
 * message or key one bit off gives another digest or MAC.
 */
static void test_one_bit_caught(void)
{
	uint8_t digest[SHA256_DIGEST_SIZE], other[SHA256_DIGEST_SIZE], message[3] = {'a', 'b', 'c'};
	int caught = 0;

	sha256("abc", 3, digest);
	EXPECT(digest_is(digest, abc_digest));
	for (int bit = 0; bit < 8 * SHA256_DIGEST_SIZE; bit++) {
		memcpy(other, digest, sizeof(other));
		other[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		caught += !digest_is(other, abc_digest);
	}
	EXPECT_EQ(caught, 8 * SHA256_DIGEST_SIZE);

	message[2] ^= 1; /* "abb" */
	sha256(message, 3, other);
	EXPECT(!digest_is(other, abc_digest));

	uint8_t key[32] = {0};
	sha256_hmac(key, sizeof(key), "abc", 3, digest);
	key[31] ^= 0x80;
	sha256_hmac(key, sizeof(key), "abc", 3, other);
	EXPECT(!sha256_equal(digest, other, SHA256_DIGEST_SIZE));
}

/* feed_sha256 gives data[0..len) to ctx in random pieces, about a quarter of them empty. */
static void feed_sha256(struct sha256_ctx *ctx, const uint8_t *data, size_t len)
{
	size_t at = 0;

	while (at < len) {
		size_t piece = prng() % 4 == 0 ? 0 : 1 + prng() % 150;

		if (piece > len - at)
			piece = len - at;
		sha256_update(ctx, data + at, piece);
		at += piece;
	}
	sha256_update(ctx, data + len, 0);
}

static void feed_hmac(struct sha256_hmac_ctx *ctx, const uint8_t *data, size_t len)
{
	size_t at = 0;

	while (at < len) {
		size_t piece = prng() % 4 == 0 ? 0 : 1 + prng() % 150;

		if (piece > len - at)
			piece = len - at;
		sha256_hmac_update(ctx, data + at, piece);
		at += piece;
	}
	sha256_hmac_update(ctx, data + len, 0);
}

/*
 * Against OpenSSL: every message length 0..MAX_MESSAGE (all the padding cases, 0 to 17
 * blocks), keys empty, short, one short of, at and one past the block size, and longer,
 * whole and in random pieces. At most a few mismatches are printed.
 */
static void test_against_openssl(void)
{
	static const size_t key_lens[] = {0, 1, 32, 63, 64, 65, 200};
	static uint8_t data[MAX_MESSAGE], key[200];
	uint8_t got[SHA256_DIGEST_SIZE], want[EVP_MAX_MD_SIZE];
	unsigned int want_len;
	int failures = 0;

	for (size_t len = 0; len <= MAX_MESSAGE && failures < 5; len++) {
		struct sha256_ctx ctx;

		prng_fill(data, len);
		EXPECT(EVP_Digest(data, len, want, &want_len, EVP_sha256(), NULL) == 1);
		EXPECT_EQ(want_len, SHA256_DIGEST_SIZE);
		sha256(data, len, got);
		if (!sha256_equal(got, want, SHA256_DIGEST_SIZE)) {
			test_fail(__FILE__, __LINE__, "sha256 of %zu bytes differs", len);
			failures++;
		}
		sha256_init(&ctx);
		feed_sha256(&ctx, data, len);
		sha256_final(&ctx, got);
		if (!sha256_equal(got, want, SHA256_DIGEST_SIZE)) {
			test_fail(__FILE__, __LINE__, "sha256 of %zu bytes in pieces differs", len);
			failures++;
		}

		for (size_t k = 0; k < sizeof(key_lens) / sizeof(key_lens[0]); k++) {
			struct sha256_hmac_ctx hmac;

			prng_fill(key, key_lens[k]);
			EXPECT(HMAC(EVP_sha256(), key, (int)key_lens[k], data, len, want,
				    &want_len) != NULL);
			EXPECT_EQ(want_len, SHA256_DIGEST_SIZE);
			sha256_hmac(key, key_lens[k], data, len, got);
			if (!sha256_equal(got, want, SHA256_DIGEST_SIZE)) {
				test_fail(__FILE__, __LINE__, "HMAC of %zu bytes, %zu-byte key",
					  len, key_lens[k]);
				failures++;
			}
			sha256_hmac_init(&hmac, key, key_lens[k]);
			feed_hmac(&hmac, data, len);
			sha256_hmac_final(&hmac, got);
			if (!sha256_equal(got, want, SHA256_DIGEST_SIZE)) {
				test_fail(__FILE__, __LINE__,
					  "HMAC of %zu bytes in pieces, %zu-byte key", len,
					  key_lens[k]);
				failures++;
			}
		}
	}
}

/*
 * Messages and keys whose last byte is the last before a PROT_NONE page (at odd addresses
 * too): reading one byte past either faults.
 */
static void test_guard_page(void)
{
	uint8_t bytes[300], got[SHA256_DIGEST_SIZE], want[SHA256_DIGEST_SIZE];
	size_t map_len;

	prng_fill(bytes, sizeof(bytes));
	for (size_t len = 0; len <= sizeof(bytes); len++) {
		struct sha256_ctx ctx;
		uint8_t *p = test_guarded(bytes, len, &map_len);

		sha256(bytes, len, want);
		sha256(p, len, got);
		EXPECT(sha256_equal(got, want, sizeof(got)));
		sha256_init(&ctx);
		feed_sha256(&ctx, p, len);
		sha256_final(&ctx, got);
		EXPECT(sha256_equal(got, want, sizeof(got)));
		sha256_hmac(bytes, len, "x", 1, want); /* the guarded copy as the key */
		sha256_hmac(p, len, "x", 1, got);
		EXPECT(sha256_equal(got, want, sizeof(got)));
		EXPECT(sha256_equal(p, bytes, len));
		test_guarded_free(p, len, map_len);
	}
}

/* is_zero returns 1 when p[0..len) is all zero bytes. */
static int is_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 0;
	return 1;
}

/* The final calls leave their contexts zeroed, and a context started again works. */
static void test_contexts_wiped(void)
{
	struct sha256_ctx ctx;
	struct sha256_hmac_ctx hmac;
	uint8_t digest[SHA256_DIGEST_SIZE], mac[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, "ab", 2);
	EXPECT(!is_zero(&ctx, sizeof(ctx)));
	sha256_final(&ctx, digest);
	EXPECT(is_zero(&ctx, sizeof(ctx)));
	sha256_init(&ctx);
	sha256_update(&ctx, "abc", 3);
	sha256_final(&ctx, digest);
	EXPECT_DIGEST(digest, abc_digest);

	sha256_hmac_init(&hmac, "Jefe", 4);
	sha256_hmac_update(&hmac, "what do ya want for nothing?", 28);
	sha256_hmac_final(&hmac, mac);
	EXPECT(is_zero(&hmac, sizeof(hmac)));
	EXPECT_DIGEST(mac, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_equal(void)
{
	uint8_t a[1000], b[1000];
	int caught = 0;

	prng_fill(a, sizeof(a));
	memcpy(b, a, sizeof(b));
	EXPECT_EQ(sha256_equal(a, b, 0), 1);
	EXPECT_EQ(sha256_equal(NULL, NULL, 0), 1);
	EXPECT_EQ(sha256_equal(a, b, 1), 1);
	EXPECT_EQ(sha256_equal(a, b, SHA256_DIGEST_SIZE), 1);
	EXPECT_EQ(sha256_equal(a, b, sizeof(a)), 1);
	EXPECT_EQ(sha256_equal(a, a, sizeof(a)), 1);

	b[0] ^= 0xff; /* the first byte */
	EXPECT_EQ(sha256_equal(a, b, sizeof(a)), 0);
	EXPECT_EQ(sha256_equal(a + 1, b + 1, sizeof(a) - 1), 1);
	b[0] = a[0];
	b[sizeof(b) - 1] ^= 0x01; /* the last byte */
	EXPECT_EQ(sha256_equal(a, b, sizeof(a)), 0);
	EXPECT_EQ(sha256_equal(a, b, sizeof(a) - 1), 1);
	b[sizeof(b) - 1] = a[sizeof(a) - 1];

	/* Every one-bit difference in a digest-sized buffer, each returning exactly 0. */
	for (int bit = 0; bit < 8 * SHA256_DIGEST_SIZE; bit++) {
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		caught += sha256_equal(a, b, SHA256_DIGEST_SIZE) == 0;
		b[bit / 8] = a[bit / 8];
	}
	EXPECT_EQ(caught, 8 * SHA256_DIGEST_SIZE);
	/* Every byte value against every other: the result is 1 or 0, never another value. */
	for (int x = 0; x < 256; x++)
		for (int y = 0; y < 256; y++) {
			uint8_t bx = (uint8_t)x, by = (uint8_t)y;
			if (sha256_equal(&bx, &by, 1) != (x == y)) {
				test_fail(__FILE__, __LINE__, "%02x against %02x", x, y);
				return;
			}
		}
}

int main(void)
{
	RUN(test_fips_vectors);
	RUN(test_rfc4231);
	RUN(test_one_bit_caught);
	RUN(test_against_openssl);
	RUN(test_guard_page);
	RUN(test_contexts_wiped);
	RUN(test_equal);
	return test_done();
}
