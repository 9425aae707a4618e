/* SPDX-License-Identifier: Apache-2.0 */
/* hash.c: see hash.h. The process's key, filled once. */
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"

static struct hash_key hash_key;
static int hash_key_ready;

struct hash_key hash_key_from_bytes(const uint8_t key[HASH_KEY_BYTES])
{
	return (struct hash_key){hash_load64(key), hash_load64(key + 8)};
}

/*
 * hash_fallback_key fills key when getrandom(2) has nothing to give (a kernel without it, or
 * one whose pool is not ready yet at early boot): the times, the process id and addresses
 * that ASLR moves, pressed through SipHash. Guessable with effort, but different each run.
 */
static void hash_fallback_key(uint8_t key[HASH_KEY_BYTES])
{
	struct timespec real, mono;
	uint64_t seed[6], h0, h1;
	const struct hash_key fixed = {0x6b7a6e2d68617368ull, 0x66616c6c6261636bull};

	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	seed[0] = (uint64_t)real.tv_sec << 32 ^ (uint64_t)real.tv_nsec;
	seed[1] = (uint64_t)mono.tv_sec << 32 ^ (uint64_t)mono.tv_nsec;
	seed[2] = (uint64_t)getpid();
	seed[3] = (uint64_t)(uintptr_t)&real;
	seed[4] = (uint64_t)(uintptr_t)&hash_key;
	seed[5] = (uint64_t)(uintptr_t)&hash_fallback_key;
	h0 = hash_siphash(&fixed, seed, sizeof(seed), 2, 4);
	seed[0] ^= h0;
	h1 = hash_siphash(&fixed, seed, sizeof(seed), 2, 4);
	memcpy(key, &h0, 8);
	memcpy(key + 8, &h1, 8);
}

const struct hash_key *hash_process_key(void)
{
	if (!hash_key_ready) {
		uint8_t key[HASH_KEY_BYTES];

		/* Up to 256 bytes, getrandom returns them all or fails; it is not cut short. */
		if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key))
			hash_fallback_key(key);
		hash_key = hash_key_from_bytes(key);
		hash_key_ready = 1;
	}
	return &hash_key;
}

void hash_set_process_key(const uint8_t key[HASH_KEY_BYTES])
{
	hash_key = hash_key_from_bytes(key);
	hash_key_ready = 1;
}

uint64_t hash_bytes(const void *data, size_t len)
{
	return hash_siphash13(hash_process_key(), data, len);
}

uint64_t hash_string(const char *s)
{
	return hash_bytes(s, strlen(s));
}
