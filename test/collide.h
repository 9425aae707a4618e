/* SPDX-License-Identifier: Apache-2.0 */
/*
 * collide.h: names and addresses crafted to collide under the unkeyed hashes the tables used
 * before SipHash, to show that they no longer share a bucket. The hashes were FNV-1a-32
 * (metric series, the Kubernetes store's UIDs and strings), FNV-1a-64 folded by h ^ h >> 29
 * (the endpoint index's strings and nodes) and a multiply-xorshift mixer (its addresses);
 * copies of them are below, to check that the crafted inputs do collide.
 *
 * Each row of a block table holds two blocks that take one hash state to the same state. They
 * were found by brute force, stage after stage from the state the chosen blocks lead to: for
 * FNV-1a-32, four million pseudo-random 4-character blocks per stage sorted by the state
 * they reach, and two equal ones taken; for FNV-1a-64, Brent's cycle finding over
 * 8-character blocks (6 bits of a 48-bit value each) under the state's low 48 bits, which
 * are all that buckets up to 2^19 see after the fold. Either block at each of n stages gives
 * 2^n names with one state (Joux's multicollision), and a common suffix keeps it. A mixer
 * that is a bijection of the first 8 bytes for any last 8 is inverted outright.
 */
#ifndef KUBEZONNET_TEST_COLLIDE_H
#define KUBEZONNET_TEST_COLLIDE_H

#include <stdint.h>
#include <string.h>

static const char collide_fnv32_blocks[][2][5] = {
	{"S3vr", "wBnk"}, {"M6ZL", "iOz5"}, {"QAfU", "m0NL"}, {"c3TO", "OB0V"}, {"lL9M", "p5Wv"},
	{"K5hL", "7LLU"}, {"MNdZ", "i5XA"}, {"4VBN", "fwkr"}, {"V9yx", "r8Os"}, {"zepo", "2CXy"},
	{"NTgu", "6vkg"}, {"84EF", "Jidj"}, {"SHUK", "o9kT"}, {"EC4d", "Y2Xm"}, {"5Ttu", "cyUY"},
	{"9ycv", "k6xB"}, {"F4Jm", "ZOvb"}, {"O4lk", "cMHb"},
};
#define COLLIDE_FNV32_STAGES 18 /* names of 4 * stages characters */

static const char collide_fnv64_blocks[][2][9] = {
	{"WjZ8KTu5", "xueYD.hk"}, {"s2H-bvSI", "BDYwQs5o"}, {"6Gv-QC57", "UDqq4fcP"},
	{"KkhiIO57", "qAkIai14"}, {"X7hYot7o", "nYjjU5h4"}, {"7ESGeAdl", "HvIvVfCb"},
	{"1l4BQWl4", "pdnmqUlp"}, {"7Sh2fTo-", "ROkGrPp3"}, {"x4wi4YRM", "SPgxA2BE"},
	{"etbqy0D9", "hULpWR4d"}, {"36VB7Ik.", "dsd3yMau"}, {"FHZKmYgX", "N8dLTEvq"},
	{"Xgwn6wuZ", "ALacDrda"}, {"ebw3fCy9", "oDcXHtEK"}, {"Q.2-MukC", "Fu7CrUwQ"},
	{"SbQC5ul0", "FITS9VyS"}, {"UqVAhouv", "MsMSWJjr"},
};
#define COLLIDE_FNV64_STAGES 17 /* names of 8 * stages characters */

/* collide_fnv32_name writes name i (0 <= i < 2^stages) of the FNV-1a-32 set into out. */
static inline void collide_fnv32_name(unsigned stages, uint32_t i, char *out)
{
	for (unsigned k = 0; k < stages; k++)
		memcpy(out + 4 * k, collide_fnv32_blocks[k][(i >> k) & 1], 4);
	out[4 * stages] = '\0';
}

/* collide_fnv64_name writes name i (0 <= i < 2^stages) of the FNV-1a-64 set into out. */
static inline void collide_fnv64_name(unsigned stages, uint32_t i, char *out)
{
	for (unsigned k = 0; k < stages; k++)
		memcpy(out + 8 * k, collide_fnv64_blocks[k][(i >> k) & 1], 8);
	out[8 * stages] = '\0';
}

/* The metrics' and the Kubernetes store's hash before SipHash. */
static inline uint32_t collide_old_fnv32(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

/* The endpoint index's string hash before SipHash. */
static inline uint64_t collide_old_fnv64(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

#define COLLIDE_MIX_C 0x9e3779b97f4a7c15ull
#define COLLIDE_MIX_D 0xd6e8feb86659fd93ull

/* The endpoint index's address hash before SipHash. */
static inline uint64_t collide_old_addr_hash(const uint8_t addr[16])
{
	uint64_t a, b;

	memcpy(&a, addr, 8);
	memcpy(&b, addr + 8, 8);
	a ^= b * COLLIDE_MIX_C;
	a ^= a >> 32;
	a *= COLLIDE_MIX_D;
	return a ^ (a >> 29);
}

/*
 * collide_addr writes address i: its last 8 bytes are i, its first 8 those that make
 * collide_old_addr_hash return target, undoing each step of it.
 */
static inline void collide_addr(uint64_t i, uint64_t target, uint8_t addr[16])
{
	uint64_t a = target, inverse = COLLIDE_MIX_D;

	for (int k = 0; k < 5; k++) /* Newton: D * inverse = 1 mod 2^64 */
		inverse *= 2 - COLLIDE_MIX_D * inverse;
	a ^= a >> 29 ^ a >> 58;
	a *= inverse;
	a ^= a >> 32;
	a ^= i * COLLIDE_MIX_C;
	memcpy(addr, &a, 8);
	memcpy(addr + 8, &i, 8);
}

#endif /* KUBEZONNET_TEST_COLLIDE_H */
