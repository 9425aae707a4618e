/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for the agent, which links no
 * OpenSSL; what it computes is byte for byte what OpenSSL's EVP_sha256() and HMAC() compute
 * (test/sha256_test.c checks it), so a peer that has OpenSSL can use that instead.
 *
 * Plain portable C11: no allocation, no I/O, no global state; words are loaded and stored
 * big-endian a byte at a time, so any alignment and byte order work. The contexts live where
 * the caller puts them (the stack, usually) and are wiped by the final calls, since an HMAC
 * context holds what amounts to the key. It is written to be read and checked, not to be fast:
 * one block at a time, no assembly.
 *
 * A message may be up to 2^61 - 1 bytes long (the 64-bit bit count FIPS 180-4 allows).
 */
#ifndef KUBEZONNET_SHA256_H
#define KUBEZONNET_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32 /* bytes of a digest and of an HMAC */
#define SHA256_BLOCK_SIZE  64 /* bytes per compression; HMAC pads or hashes keys to this */

struct sha256_ctx {
	uint32_t state[8];
	uint64_t length; /* bytes taken so far */
	uint8_t block[SHA256_BLOCK_SIZE];
	size_t block_used; /* bytes of block waiting for the rest of it, < SHA256_BLOCK_SIZE */
};

struct sha256_hmac_ctx {
	struct sha256_ctx inner; /* H((K ^ ipad) || message ...) */
	struct sha256_ctx outer; /* H((K ^ opad) || ...), waiting for the inner digest */
};

/* sha256_init starts a digest in ctx (caller-owned; nothing to free). */
void sha256_init(struct sha256_ctx *ctx);

/*
 * sha256_update adds data[0..len) to the digest in ctx. Feeding a message in pieces of any
 * sizes (0 included) gives the digest of the pieces joined. data may be NULL when len is 0.
 */
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);

/*
 * sha256_final writes the digest of everything given to ctx into digest[0..32) and wipes
 * ctx; call sha256_init before using ctx again.
 */
void sha256_final(struct sha256_ctx *ctx, uint8_t digest[SHA256_DIGEST_SIZE]);

/* sha256 writes the digest of data[0..len) into digest[0..32). */
void sha256(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_SIZE]);

/*
 * sha256_hmac_init starts an HMAC-SHA-256 in ctx under key[0..key_len) (any length; 0 is
 * allowed and key may then be NULL; keys longer than SHA256_BLOCK_SIZE are hashed first, as
 * RFC 2104 says). ctx keeps no pointer to key; the padded key block built on the way is
 * wiped before returning (ctx's state is still as good as the key until sha256_hmac_final).
 */
void sha256_hmac_init(struct sha256_hmac_ctx *ctx, const void *key, size_t key_len);

/* sha256_hmac_update adds data[0..len) to the MAC in ctx, in pieces as sha256_update does. */
void sha256_hmac_update(struct sha256_hmac_ctx *ctx, const void *data, size_t len);

/*
 * sha256_hmac_final writes the MAC into mac[0..32) and wipes ctx; call sha256_hmac_init
 * before using ctx again. A MAC cut short (RFC 4231 case 5 keeps 16 bytes) is its first bytes.
 */
void sha256_hmac_final(struct sha256_hmac_ctx *ctx, uint8_t mac[SHA256_DIGEST_SIZE]);

/* sha256_hmac writes HMAC-SHA-256 of data[0..len) under key[0..key_len) into mac[0..32). */
void sha256_hmac(const void *key, size_t key_len, const void *data, size_t len,
		 uint8_t mac[SHA256_DIGEST_SIZE]);

/*
 * sha256_equal returns 1 when a[0..n) and b[0..n) hold the same bytes (and when n is 0), 0
 * otherwise. It reads all n bytes of both whatever they hold, so its time says nothing about
 * where they differ: compare MACs with it, never with memcmp. n itself is not secret.
 */
int sha256_equal(const void *a, const void *b, size_t n);

#endif /* KUBEZONNET_SHA256_H */
