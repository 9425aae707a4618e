/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for wire.h: round trips, a table of malformed frames, partial input, guard pages. */
#include "../wire.h"
#include "test.h"

/*
 * decode_any runs a receiver's whole path over buf[0..len): frame, inflate, payload decode,
 * STATS in the layout of version (that of the connection's HELLO).
 */
static int decode_any(const uint8_t *buf, size_t len, uint16_t version)
{
	struct wire_frame f = {0};
	long n = wire_frame_parse(buf, len, WIRE_FRAME_MAX_DEFAULT, &f);

	if (n < 0)
		return (int)n;
	if ((size_t)n != len)
		return WIRE_E_LENGTH; /* the tables hold exactly one frame */
	switch (f.type) {
	case WIRE_HELLO: {
		struct wire_hello h = {0};
		return wire_hello_decode(f.payload, f.payload_len, f.flags, &h);
	}
	case WIRE_STATS: {
		struct wire_stats s = {0};
		if (f.flags & WIRE_FLAG_ZLIB) {
			long size = wire_inflated_size(f.payload, f.payload_len,
						       WIRE_FRAME_MAX_DEFAULT);
			if (size < 0)
				return (int)size;
			uint8_t *dst = malloc((size_t)size);
			long r = wire_inflate(f.payload, f.payload_len, dst, (size_t)size);
			int rc = r < 0 ? (int)r : wire_stats_decode(dst, (size_t)size, version, &s);
			free(dst);
			return rc;
		}
		return wire_stats_decode(f.payload, f.payload_len, version, &s);
	}
	case WIRE_ACK: {
		uint64_t seq;
		return wire_ack_decode(f.payload, f.payload_len, &seq);
	}
	case WIRE_CHALLENGE:
	case WIRE_AUTH:
		return wire_blob_decode(f.payload, f.payload_len);
	default: {
		struct wire_error e = {0};
		return wire_error_decode(f.payload, f.payload_len, &e);
	}
	}
}

/* decode_guarded runs decode_any on a copy that ends at a PROT_NONE page. */
static int decode_guarded(const uint8_t *buf, size_t len, uint16_t version)
{
	size_t map_len;
	unsigned char *p = test_guarded(buf, len, &map_len);
	int rc = decode_any(p, len, version);

	test_guarded_free(p, len, map_len);
	return rc;
}

/* make_record fills record i; in version 2 some of its bytes are encapsulation (all in i=5). */
static void make_record(struct wire_record *r, int family, uint32_t i, uint16_t version)
{
	memset(r, 0, sizeof(*r));
	r->family = (uint8_t)family;
	r->protocol = (uint8_t)(i % 3 == 0 ? 6 : i % 3 == 1 ? 17 : 1);
	r->port = (uint16_t)(i * 7);
	if (family == 4) {
		r->src[10] = r->src[11] = r->dst[10] = r->dst[11] = 0xff;
		wire_put32(r->src + 12, 0x0a000000u + i);
		wire_put32(r->dst + 12, 0x0a010000u + i);
	} else {
		r->src[0] = r->dst[0] = 0xfd;
		wire_put32(r->src + 12, i);
		wire_put32(r->dst + 12, ~i);
	}
	r->bytes = 1500ull * i + 0x1122334455ull;
	r->packets = i + 1;
	if (version >= WIRE_VERSION_2)
		r->encap_bytes = i == 5 ? r->bytes : 50ull * i + 0x0102030405ull;
}

/* build_stats encodes a STATS frame of count records in version into a malloc'd buffer. */
static uint8_t *build_stats(uint32_t count, uint16_t version, size_t *len)
{
	struct wire_stats s = {.version = version,
			       .sequence = 42,
			       .start_ns = 1,
			       .end_ns = 10000000001ull,
			       .count = count};
	uint8_t *buf;
	uint8_t *rec;

	s.loss = (struct wire_loss){1, 2, 3, 4};
	if (version >= WIRE_VERSION_2) {
		s.tunnel_malformed_packets = 0x0506070809ull;
		s.tunnel_malformed_bytes = 0x0a0b0c0d0e0full;
	}
	if (version >= WIRE_VERSION_3) {
		s.device_bytes = 0x1112131415161718ull;
		s.hook_status = WIRE_HOOK_BLIND;
	}
	*len = wire_stats_size_version(version, count);
	buf = malloc(*len);
	rec = wire_stats_encode(buf, *len, &s);
	if (!rec)
		abort();
	for (uint32_t i = 0; i < count; i++) {
		struct wire_record r;
		make_record(&r, i % 2 ? 6 : 4, i, version);
		if (version == WIRE_VERSION_1)
			wire_record_put(rec + (size_t)i * WIRE_RECORD_SIZE_V1, &r);
		else if (wire_record_put_v2(rec + (size_t)i * WIRE_RECORD_SIZE_V2, &r) != 0)
			abort();
	}
	return buf;
}

static void test_hello_round_trip(void)
{
	uint8_t buf[512];
	struct wire_hello in = {.instance_id = 0xdeadbeefcafef00dull,
				.node = "ip-10-0-1-17.eu-west-1.compute.internal",
				.agent_version = "0.1.0 (abc123)"};
	struct wire_hello out = {0};
	struct wire_frame f = {0};

	in.node_len = (uint16_t)strlen(in.node);
	in.agent_version_len = (uint16_t)strlen(in.agent_version);
	long n = wire_hello_encode(buf, sizeof(buf), &in);
	EXPECT(n > 0);
	EXPECT_EQ(wire_frame_parse(buf, (size_t)n, WIRE_FRAME_MAX_DEFAULT, &f), n);
	EXPECT_EQ(f.type, WIRE_HELLO);
	EXPECT_EQ(f.flags, 0);
	EXPECT_EQ(wire_hello_decode(f.payload, f.payload_len, f.flags, &out), 0);
	EXPECT_EQ(out.version, WIRE_VERSION_1); /* version left 0, as version 1 callers do */
	EXPECT(out.instance_id == in.instance_id);
	EXPECT(out.node_len == in.node_len && memcmp(out.node, in.node, in.node_len) == 0);
	EXPECT(out.agent_version_len == in.agent_version_len &&
	       memcmp(out.agent_version, in.agent_version, in.agent_version_len) == 0);
	EXPECT_EQ(wire_hello_encode(buf, (size_t)n - 1, &in), WIRE_E_SPACE);
	for (uint16_t v = WIRE_VERSION_1; v <= WIRE_VERSION_2; v++) {
		in.version = v;
		EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), n);
		EXPECT_EQ(wire_get16(buf + WIRE_HEADER_SIZE + 4), v);
		EXPECT_EQ(wire_hello_decode(buf + WIRE_HEADER_SIZE, (size_t)n - WIRE_HEADER_SIZE, 0,
					    &out),
			  0);
		EXPECT_EQ(out.version, v);
		EXPECT(out.hook == 0 && out.nonce == NULL);
	}
	/* Version 3: the hook after the agent version; with a secret, the nonce and the flag. */
	uint8_t nonce[WIRE_NONCE_SIZE];
	for (int i = 0; i < WIRE_NONCE_SIZE; i++)
		nonce[i] = (uint8_t)(0xa0 + i);
	in.version = WIRE_VERSION_3;
	EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), WIRE_E_HOOK); /* hook 0 */
	in.hook = WIRE_HOOK_CGROUP;
	EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), n + 2);
	EXPECT_EQ(wire_frame_parse(buf, (size_t)n + 2, WIRE_FRAME_MAX_DEFAULT, &f), n + 2);
	EXPECT_EQ(f.flags, 0);
	EXPECT_EQ(wire_hello_decode(f.payload, f.payload_len, f.flags, &out), 0);
	EXPECT(out.version == WIRE_VERSION_3 && out.hook == WIRE_HOOK_CGROUP && !out.nonce);
	in.nonce = nonce;
	EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), n + 2 + WIRE_NONCE_SIZE);
	EXPECT_EQ(wire_frame_parse(buf, sizeof(buf), WIRE_FRAME_MAX_DEFAULT, &f),
		  n + 2 + WIRE_NONCE_SIZE);
	EXPECT_EQ(f.flags, WIRE_FLAG_SECRET);
	EXPECT_EQ(wire_hello_decode(f.payload, f.payload_len, f.flags, &out), 0);
	EXPECT(out.version == WIRE_VERSION_3 && out.hook == WIRE_HOOK_CGROUP && out.nonce &&
	       memcmp(out.nonce, nonce, WIRE_NONCE_SIZE) == 0);
	EXPECT(out.node_len == in.node_len && memcmp(out.node, in.node, in.node_len) == 0);
	EXPECT(out.agent_version_len == in.agent_version_len &&
	       memcmp(out.agent_version, in.agent_version, in.agent_version_len) == 0);
	/* The flag without its nonce, a nonce without the flag (read as an agent version). */
	EXPECT(wire_hello_decode(f.payload, f.payload_len - WIRE_NONCE_SIZE, f.flags, &out) < 0);
	EXPECT(wire_hello_decode(f.payload, f.payload_len, 0, &out) < 0);
	in.version = WIRE_VERSION_2; /* a nonce before version 3 */
	EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), WIRE_E_VERSION);
	in.hook = 7;
	in.version = WIRE_VERSION_3;
	EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), WIRE_E_HOOK);
	in.nonce = NULL;
	n = wire_blob_encode(buf, sizeof(buf), WIRE_CHALLENGE, nonce);
	EXPECT_EQ(n, WIRE_HEADER_SIZE + WIRE_NONCE_SIZE);
	EXPECT_EQ(wire_frame_parse(buf, (size_t)n, WIRE_FRAME_MAX_DEFAULT, &f), n);
	EXPECT(f.type == WIRE_CHALLENGE && wire_blob_decode(f.payload, f.payload_len) == 0 &&
	       memcmp(f.payload, nonce, WIRE_NONCE_SIZE) == 0);
	EXPECT_EQ(wire_blob_encode(buf, (size_t)n - 1, WIRE_AUTH, nonce), WIRE_E_SPACE);
	in.version = WIRE_VERSION_MAX + 1;
	EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), WIRE_E_VERSION);
	in.version = WIRE_VERSION_2;
	in.node = "Bad_Node";
	in.node_len = 8;
	EXPECT_EQ(wire_hello_encode(buf, sizeof(buf), &in), WIRE_E_NODE_NAME);
}

static void check_stats(const uint8_t *payload, size_t len, uint16_t version, uint32_t count)
{
	struct wire_stats s = {0};

	EXPECT_EQ(wire_stats_decode(payload, len, version, &s), 0);
	EXPECT_EQ(s.version, version);
	EXPECT_EQ(s.sequence, 42);
	EXPECT_EQ(s.start_ns, 1);
	EXPECT(s.end_ns == 10000000001ull);
	EXPECT(s.loss.map_full_packets == 1 && s.loss.map_full_bytes == 2 &&
	       s.loss.other_packets == 3 && s.loss.other_bytes == 4);
	if (version >= WIRE_VERSION_2)
		EXPECT(s.tunnel_malformed_packets == 0x0506070809ull &&
		       s.tunnel_malformed_bytes == 0x0a0b0c0d0e0full);
	else
		EXPECT(s.tunnel_malformed_packets == 0 && s.tunnel_malformed_bytes == 0);
	if (version >= WIRE_VERSION_3)
		EXPECT(s.device_bytes == 0x1112131415161718ull && s.hook_status == WIRE_HOOK_BLIND);
	else
		EXPECT(s.device_bytes == 0 && s.hook_status == 0);
	EXPECT_EQ(s.count, count);
	for (uint32_t i = 0; i < s.count; i++) {
		struct wire_record got, want;
		memset(&got, 0xee, sizeof(got)); /* every field must be written, encap_bytes too */
		wire_record_get(&s, i, &got);
		make_record(&want, i % 2 ? 6 : 4, i, version);
		if (got.family != want.family || got.protocol != want.protocol ||
		    got.port != want.port || memcmp(got.src, want.src, 16) != 0 ||
		    memcmp(got.dst, want.dst, 16) != 0 || got.bytes != want.bytes ||
		    got.packets != want.packets || got.encap_bytes != want.encap_bytes)
			test_fail(__FILE__, __LINE__, "version %u record %u differs", version, i);
	}
	/* No other version's layout fits the same bytes with the same record count. */
	for (uint16_t w = WIRE_VERSION_1; w <= WIRE_VERSION_MAX; w++)
		if (w != version)
			EXPECT_EQ(wire_stats_decode(payload, len, w, &s), WIRE_E_LENGTH);
	EXPECT_EQ(wire_stats_decode(payload, len, WIRE_VERSION_MAX + 1, &s), WIRE_E_VERSION);
	EXPECT_EQ(wire_stats_decode(payload, len, 0, &s), WIRE_E_VERSION);
}

static void test_stats_round_trip(void)
{
	static const uint32_t counts[] = {0, 1, 2, 3, 6, 1000};

	for (uint16_t v = WIRE_VERSION_1; v <= WIRE_VERSION_3; v++) {
		for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
			size_t len;
			uint8_t *buf = build_stats(counts[c], v, &len);
			struct wire_frame f = {0};

			EXPECT_EQ(len, WIRE_HEADER_SIZE + wire_stats_fixed_size(v) +
					       counts[c] * wire_record_size(v));
			EXPECT_EQ(wire_frame_parse(buf, len, WIRE_FRAME_MAX_DEFAULT, &f), len);
			EXPECT_EQ(f.type, WIRE_STATS);
			EXPECT_EQ(f.payload_len, len - WIRE_HEADER_SIZE);
			check_stats(f.payload, f.payload_len, v, counts[c]);
			free(buf);
		}
	}
	/* The version 1 names keep their meaning for version 1 callers. */
	EXPECT_EQ(wire_stats_size(3), wire_stats_size_version(WIRE_VERSION_1, 3));
	EXPECT_EQ(WIRE_RECORD_SIZE, 52);
	EXPECT_EQ(WIRE_RECORD_SIZE_V2, 60);
	EXPECT_EQ(WIRE_STATS_FIXED_SIZE_V2, 76);
	EXPECT_EQ(wire_record_size(0), 0);
	EXPECT_EQ(WIRE_STATS_FIXED_SIZE_V3, 88);
	EXPECT_EQ(wire_stats_fixed_size(4), 0);
	EXPECT_EQ(wire_stats_size_version(4, 1), 0);
}

static void test_stats_compressed_round_trip(void)
{
	for (uint16_t v = WIRE_VERSION_1; v <= WIRE_VERSION_3; v++) {
		size_t len;
		uint8_t *buf = build_stats(5000, v, &len);
		size_t cap = wire_deflate_bound(len - WIRE_HEADER_SIZE);
		uint8_t *z = malloc(cap);
		struct wire_frame f = {0};

		EXPECT_EQ(wire_deflate(buf, len, z,
				       cap - 1 - (cap - wire_deflate_bound(len - WIRE_HEADER_SIZE)),
				       6),
			  WIRE_E_SPACE);
		long zn = wire_deflate(buf, len, z, cap, 6);
		EXPECT(zn > 0 && (size_t)zn < len / 2);
		EXPECT_EQ(wire_frame_parse(z, (size_t)zn, WIRE_FRAME_MAX_DEFAULT, &f), zn);
		EXPECT_EQ(f.type, WIRE_STATS);
		EXPECT_EQ(f.flags, WIRE_FLAG_ZLIB);
		long size = wire_inflated_size(f.payload, f.payload_len, WIRE_FRAME_MAX_DEFAULT);
		EXPECT_EQ(size, len - WIRE_HEADER_SIZE);
		if (size > 0) {
			uint8_t *dst = malloc((size_t)size);
			EXPECT_EQ(wire_inflate(f.payload, f.payload_len, dst, (size_t)size), size);
			check_stats(dst, (size_t)size, v, 5000);
			free(dst);
		}
		free(z);
		free(buf);
	}
}

static void test_ack_round_trip(void)
{
	uint8_t buf[WIRE_HEADER_SIZE + WIRE_ACK_PAYLOAD_SIZE];
	struct wire_frame f = {0};
	uint64_t seq = 0;

	EXPECT_EQ(wire_ack_encode(buf, sizeof(buf), 0x0102030405060708ull), sizeof(buf));
	EXPECT_EQ(wire_frame_parse(buf, sizeof(buf), WIRE_FRAME_MAX_DEFAULT, &f), sizeof(buf));
	EXPECT_EQ(f.type, WIRE_ACK);
	EXPECT_EQ(wire_ack_decode(f.payload, f.payload_len, &seq), 0);
	EXPECT(seq == 0x0102030405060708ull);
	EXPECT_EQ(wire_ack_encode(buf, sizeof(buf) - 1, 1), WIRE_E_SPACE);
}

static void test_error_round_trip(void)
{
	uint8_t buf[WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + WIRE_ERROR_MESSAGE_MAX];
	char longmsg[400];
	struct wire_frame f = {0};
	struct wire_error e = {0};

	long n = wire_error_encode(buf, sizeof(buf), WIRE_ERR_PROTOCOL, "bad frame: zône");
	EXPECT(n > 0);
	EXPECT_EQ(wire_frame_parse(buf, (size_t)n, WIRE_FRAME_MAX_DEFAULT, &f), n);
	EXPECT_EQ(f.type, WIRE_ERROR);
	EXPECT_EQ(wire_error_decode(f.payload, f.payload_len, &e), 0);
	EXPECT_EQ(e.code, WIRE_ERR_PROTOCOL);
	EXPECT(e.message_len == strlen("bad frame: zône") &&
	       memcmp(e.message, "bad frame: zône", e.message_len) == 0);

	/* 255 ASCII bytes then a two-byte character: truncation must not split it. */
	memset(longmsg, 'a', 255);
	strcpy(longmsg + 255, "é and more");
	n = wire_error_encode(buf, sizeof(buf), WIRE_ERR_SHUTDOWN, longmsg);
	EXPECT_EQ(n, WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + 255);
	EXPECT_EQ(decode_any(buf, (size_t)n, WIRE_VERSION_1), 0);
	EXPECT_EQ(wire_error_encode(buf, sizeof(buf), 1, "\xc3"), WIRE_E_UTF8);
}

static void test_node_names(void)
{
	static const struct {
		const char *name;
		int valid;
	} rows[] = {
		{"n1", 1},
		{"a", 1},
		{"ip-10-0-1-17.eu-west-1.compute.internal", 1},
		{"kind-worker2", 1},
		{"1node", 1},
		{"", 0},
		{"N1", 0},
		{"-n1", 0},
		{"n1-", 0},
		{"n1.", 0},
		{".n1", 0},
		{"a..b", 0},
		{"a-.b", 0},
		{"a.-b", 0},
		{"node_1", 0},
		{"n\xc3\xb6"
		 "de",
		 0},
		{"n1 ", 0},
	};
	char label[70], longname[300];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (wire_valid_node_name(rows[i].name, strlen(rows[i].name)) != rows[i].valid)
			test_fail(__FILE__, __LINE__, "node name \"%s\": want valid=%d",
				  rows[i].name, rows[i].valid);
	memset(label, 'a', 63);
	EXPECT(wire_valid_node_name(label, 63));
	memset(label, 'a', 64);
	EXPECT(!wire_valid_node_name(label, 64));
	/* 253 bytes in labels of 63: valid; 254: not. */
	memset(longname, 'b', sizeof(longname));
	for (int i = 63; i < 300; i += 64)
		longname[i] = '.';
	EXPECT(wire_valid_node_name(longname, 253));
	EXPECT(!wire_valid_node_name(longname, 254));
}

static void test_utf8(void)
{
	static const struct {
		const char *s;
		int valid;
	} rows[] = {
		{"plain", 1},
		{"\xc3\xa9", 1},
		{"\xe2\x82\xac", 1},
		{"\xf0\x9f\x98\x80", 1},
		{"\xf4\x8f\xbf\xbf", 1},
		{"\xc3", 0},		 /* truncated */
		{"\xe2\x82", 0},	 /* truncated */
		{"\xc0\x80", 0},	 /* overlong NUL */
		{"\xe0\x80\xaf", 0},	 /* overlong '/' */
		{"\xed\xa0\x80", 0},	 /* surrogate */
		{"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
		{"\xf5\x80\x80\x80", 0},
		{"\x80", 0},
		{"\xff", 0},
		{"a\xc3(", 0},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (wire_valid_utf8((const uint8_t *)rows[i].s, strlen(rows[i].s)) != rows[i].valid)
			test_fail(__FILE__, __LINE__, "utf8 row %zu: want valid=%d", i,
				  rows[i].valid);
}

/* Pieces of STATS frames in hex: fixed parts and records of either version. */
#define STATS_FIXED_V1(sequence, count)                                                            \
	" " sequence " 0000000000000000 0000000000000000 0000000000000000 0000000000000000"        \
	" 0000000000000000 0000000000000000 " count
#define TUNNEL_MALFORMED " 0000000000000007 00000000000002bc" /* 7 packets, 700 bytes */
#define RECORD_V1(family, src, bytes)                                                              \
	" " family " 11 0035 " src " 00000000000000000000ffff0a000002 " bytes " 0000000000000001"
#define IPV4_SRC		"00000000000000000000ffff0a000001"
#define RECORD_V2(bytes, encap) RECORD_V1("04", IPV4_SRC, bytes) " " encap

/*
 * Malformed frames, as hex, and a few valid ones beside them (want 0). Each is decoded whole,
 * against a guard page, on a version 1 connection.
 */
static const struct {
	const char *name;
	const char *hex;
	int want;
} malformed[] = {
	{"empty input", "", WIRE_E_PARTIAL},
	{"three bytes of length", "000000", WIRE_E_PARTIAL},
	{"length 0", "00000000", WIRE_E_SHORT},
	{"length 3", "00000003 0001 00", WIRE_E_SHORT},
	{"length over 16 MiB", "01000001 0002 0000", WIRE_E_TOO_BIG},
	{"length 0xffffffff", "ffffffff 0002 0000", WIRE_E_TOO_BIG},
	{"header cut after type", "0000000c 0003", WIRE_E_PARTIAL},
	{"body cut short", "0000000c 0003 0000 00000000000001", WIRE_E_PARTIAL},
	{"type 0", "00000004 0000 0000", WIRE_E_TYPE},
	{"type 7", "00000004 0007 0000", WIRE_E_TYPE},
	{"CHALLENGE empty", "00000004 0005 0000", WIRE_E_LENGTH},
	{"AUTH 31 bytes",
	 "00000023 0006 0000 00000000000000000000000000000000000000000000000000000000000000",
	 WIRE_E_LENGTH},
	{"MAC flag on HELLO", "00000004 0001 0002", WIRE_E_FLAGS},
	{"MAC flag on AUTH", "00000004 0006 0002", WIRE_E_FLAGS},
	{"type 0xffff", "00000004 ffff 0000", WIRE_E_TYPE},
	{"zlib flag on HELLO", "00000004 0001 0001", WIRE_E_FLAGS},
	{"zlib flag on ACK", "0000000c 0003 0001 0000000000000001", WIRE_E_FLAGS},
	{"unknown flag on STATS", "00000004 0002 0004", WIRE_E_FLAGS},
	{"high flag on STATS", "00000004 0002 8000", WIRE_E_FLAGS},
	/* ACK */
	{"ACK empty", "00000004 0003 0000", WIRE_E_LENGTH},
	{"ACK seven bytes", "0000000b 0003 0000 00000000000001", WIRE_E_LENGTH},
	{"ACK nine bytes", "0000000d 0003 0000 000000000000000101", WIRE_E_LENGTH},
	{"ACK sequence 0", "0000000c 0003 0000 0000000000000000", WIRE_E_SEQUENCE},
	/* HELLO: magic version instance nodelen node agentlen agent */
	{"HELLO empty", "00000004 0001 0000", WIRE_E_LENGTH},
	{"HELLO fixed part cut", "00000015 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e",
	 WIRE_E_LENGTH},
	{"HELLO bad magic", "0000001a 0001 0000 4b5a4e55 0001 0000000000000001 0002 6e31 0002 3031",
	 WIRE_E_MAGIC},
	{"HELLO version 0", "0000001a 0001 0000 4b5a4e54 0000 0000000000000001 0002 6e31 0002 3031",
	 WIRE_E_VERSION},
	{"HELLO version 1", "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e31 0002 3031",
	 0},
	{"HELLO version 2", "0000001a 0001 0000 4b5a4e54 0002 0000000000000001 0002 6e31 0002 3031",
	 0},
	{"HELLO version 4", "0000001a 0001 0000 4b5a4e54 0004 0000000000000001 0002 6e31 0002 3031",
	 WIRE_E_VERSION},
	{"HELLO version 3 without its hook (the version's last bytes read as one)",
	 "0000001a 0001 0000 4b5a4e54 0003 0000000000000001 0002 6e31 0002 3031", WIRE_E_HOOK},
	{"HELLO version 3, hook 1",
	 "0000001c 0001 0000 4b5a4e54 0003 0000000000000001 0002 6e31 0002 3031 0001", 0},
	{"HELLO version 3, hook 3",
	 "0000001c 0001 0000 4b5a4e54 0003 0000000000000001 0002 6e31 0002 3031 0003", WIRE_E_HOOK},
	{"HELLO version 3, secret flag, no nonce",
	 "0000001c 0001 0004 4b5a4e54 0003 0000000000000001 0002 6e31 0002 3031 0001",
	 WIRE_E_LENGTH},
	{"HELLO version 2 with the secret flag",
	 "0000001a 0001 0004 4b5a4e54 0002 0000000000000001 0002 6e31 0002 3031", WIRE_E_FLAGS},
	{"HELLO version 0xffff",
	 "0000001a 0001 0000 4b5a4e54 ffff 0000000000000001 0002 6e31 0002 3031", WIRE_E_VERSION},
	{"HELLO version 0x0102 (1 and 2 as a byte each)",
	 "0000001a 0001 0000 4b5a4e54 0102 0000000000000001 0002 6e31 0002 3031", WIRE_E_VERSION},
	{"HELLO node length past end",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0009 6e31 0002 3031", WIRE_E_LENGTH},
	{"HELLO node length 0xffff",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 ffff 6e31 0002 3031", WIRE_E_LENGTH},
	{"HELLO agent length short",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e31 0001 3031", WIRE_E_LENGTH},
	{"HELLO agent length long",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e31 0003 3031", WIRE_E_LENGTH},
	{"HELLO trailing byte",
	 "0000001b 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e31 0002 3031 00", WIRE_E_LENGTH},
	{"HELLO empty node name",
	 "00000018 0001 0000 4b5a4e54 0001 0000000000000001 0000 0002 3031", WIRE_E_NODE_NAME},
	{"HELLO upper-case node name",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0002 4e31 0002 3031", WIRE_E_NODE_NAME},
	{"HELLO node name with NUL",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e00 0002 3031", WIRE_E_NODE_NAME},
	{"HELLO node name in UTF-8",
	 "0000001c 0001 0000 4b5a4e54 0001 0000000000000001 0004 6ec3b665 0002 3031",
	 WIRE_E_NODE_NAME},
	{"HELLO node name bad UTF-8",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0002 6ec3 0002 3031", WIRE_E_NODE_NAME},
	{"HELLO empty agent version",
	 "00000018 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e31 0000", WIRE_E_AGENT_VERSION},
	{"HELLO agent version with newline",
	 "0000001a 0001 0000 4b5a4e54 0001 0000000000000001 0002 6e31 0002 300a",
	 WIRE_E_AGENT_VERSION},
	/* STATS: seq start end loss*4 count, records */
	{"STATS empty", "00000004 0002 0000", WIRE_E_LENGTH},
	{"STATS fixed part cut", "0000000c 0002 0000 0000000000000001", WIRE_E_LENGTH},
	{"STATS count 1, no record",
	 "00000040 0002 0000 0000000000000001 0000000000000000 0000000000000000"
	 " 0000000000000000 0000000000000000 0000000000000000 0000000000000000 00000001",
	 WIRE_E_LENGTH},
	{"STATS count 0, one record",
	 "00000074 0002 0000 0000000000000001 0000000000000000 0000000000000000"
	 " 0000000000000000 0000000000000000 0000000000000000 0000000000000000 00000000"
	 " 04 11 0035 00000000000000000000ffff0a000001 00000000000000000000ffff0a000002"
	 " 0000000000000064 0000000000000001",
	 WIRE_E_LENGTH},
	{"STATS count wrapping 32-bit count*52 to one record",
	 "00000074 0002 0000 0000000000000001 0000000000000000 0000000000000000"
	 " 0000000000000000 0000000000000000 0000000000000000 0000000000000000 40000001"
	 " 04 11 0035 00000000000000000000ffff0a000001 00000000000000000000ffff0a000002"
	 " 0000000000000064 0000000000000001",
	 WIRE_E_LENGTH},
	{"STATS record cut short",
	 "00000073 0002 0000 0000000000000001 0000000000000000 0000000000000000"
	 " 0000000000000000 0000000000000000 0000000000000000 0000000000000000 00000001"
	 " 04 11 0035 00000000000000000000ffff0a000001 00000000000000000000ffff0a000002"
	 " 0000000000000064 00000000000001",
	 WIRE_E_LENGTH},
	{"STATS sequence 0",
	 "00000040 0002 0000 0000000000000000 0000000000000000 0000000000000000"
	 " 0000000000000000 0000000000000000 0000000000000000 0000000000000000 00000000",
	 WIRE_E_SEQUENCE},
	{"STATS family 5",
	 "00000074 0002 0000 0000000000000001 0000000000000000 0000000000000000"
	 " 0000000000000000 0000000000000000 0000000000000000 0000000000000000 00000001"
	 " 05 11 0035 00000000000000000000ffff0a000001 00000000000000000000ffff0a000002"
	 " 0000000000000064 0000000000000001",
	 WIRE_E_FAMILY},
	{"STATS IPv4 record with unmapped source",
	 "00000074 0002 0000 0000000000000001 0000000000000000 0000000000000000"
	 " 0000000000000000 0000000000000000 0000000000000000 0000000000000000 00000001"
	 " 04 11 0035 fd000000000000000000000000000001 00000000000000000000ffff0a000002"
	 " 0000000000000064 0000000000000001",
	 WIRE_E_FAMILY},
	/* compressed STATS: prefix (uncompressed length) then a zlib stream */
	{"zlib payload empty", "00000004 0002 0001", WIRE_E_COMPRESSION},
	{"zlib declared size below STATS fixed part", "00000009 0002 0001 00000010 78",
	 WIRE_E_COMPRESSION},
	{"zlib declared size over 16 MiB", "00000009 0002 0001 01000001 78", WIRE_E_COMPRESSION},
	{"zlib stream garbage", "0000000c 0002 0001 00000040 deadbeef", WIRE_E_COMPRESSION},
	/* zlib of 64 zero bytes is 789c6360a00c000000400001 */
	{"zlib stream truncated", "00000013 0002 0001 00000040 789c6360a00c0000004000",
	 WIRE_E_COMPRESSION},
	{"zlib inflates to more than declared",
	 "00000014 0002 0001 0000003c 789c6360a00c000000400001", WIRE_E_COMPRESSION},
	{"zlib inflates to less than declared",
	 "00000014 0002 0001 00000041 789c6360a00c000000400001", WIRE_E_COMPRESSION},
	{"zlib trailing garbage", "00000015 0002 0001 00000040 789c6360a00c00000040000100",
	 WIRE_E_COMPRESSION},
	{"zlib bad checksum", "00000014 0002 0001 00000040 789c6360a00c000000400002",
	 WIRE_E_COMPRESSION},
	{"zlib valid stream, invalid STATS inside",
	 "00000014 0002 0001 00000040 789c6360a00c000000400001", WIRE_E_LENGTH},
	/* ERROR */
	{"ERROR empty", "00000004 0004 0000", WIRE_E_LENGTH},
	{"ERROR message length past end", "0000000a 0004 0000 0001 0003 6f6b", WIRE_E_LENGTH},
	{"ERROR message length short", "0000000a 0004 0000 0001 0001 6f6b", WIRE_E_LENGTH},
	{"ERROR message overlong UTF-8", "0000000a 0004 0000 0001 0002 c080", WIRE_E_UTF8},
	{"ERROR message surrogate", "0000000b 0004 0000 0001 0003 eda080", WIRE_E_UTF8},
	{"ERROR message truncated UTF-8", "00000009 0004 0000 0001 0001 e2", WIRE_E_UTF8},
};

/* STATS frames on a connection of either version: the same bytes valid on one, not the other. */
static const struct {
	const char *name;
	const char *hex;
	int want;
	uint16_t version; /* the connection's, from its HELLO */
} by_version[] = {
	{"STATS v1, one record",
	 "00000074 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 RECORD_V1("04", IPV4_SRC, "0000000000000064"),
	 0, WIRE_VERSION_1},
	{"STATS v1 frame on a v2 connection (fixed part short of the counters)",
	 "00000074 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 RECORD_V1("04", IPV4_SRC, "0000000000000064"),
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v1, no records, on a v2 connection",
	 "00000040 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000"), WIRE_E_LENGTH,
	 WIRE_VERSION_2},
	{"STATS v2, no records",
	 "00000050 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000") TUNNEL_MALFORMED, 0,
	 WIRE_VERSION_2},
	{"STATS v3, no records, the hook blind",
	 "0000005c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000") TUNNEL_MALFORMED
	 " 0000000000100000 00000001",
	 0, WIRE_VERSION_3},
	{"STATS v3, an unknown hook status bit",
	 "0000005c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000") TUNNEL_MALFORMED
	 " 0000000000100000 00000002",
	 WIRE_E_FLAGS, WIRE_VERSION_3},
	{"STATS v3 cut after the device bytes",
	 "00000058 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000") TUNNEL_MALFORMED
	 " 0000000000100000",
	 WIRE_E_LENGTH, WIRE_VERSION_3},
	{"STATS v3, one record",
	 "00000098 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001") TUNNEL_MALFORMED
	 " 0000000000100000 00000000" RECORD_V2("0000000000000064", "0000000000000014"),
	 0, WIRE_VERSION_3},
	{"STATS v2 frame on a v1 connection",
	 "00000050 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000") TUNNEL_MALFORMED,
	 WIRE_E_LENGTH, WIRE_VERSION_1},
	{"STATS v2 fixed part cut after the malformed packets",
	 "00000048 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000") " 0000000000000007",
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v2 fixed part cut in the malformed bytes",
	 "0000004f 0002 0000" STATS_FIXED_V1("0000000000000001",
					     "00000000") " 0000000000000007 00000000000002",
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v2, one record",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000064", "0000000000000014"),
	 0, WIRE_VERSION_2},
	{"STATS v2, encapsulation bytes equal to bytes",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000064", "0000000000000064"),
	 0, WIRE_VERSION_2},
	{"STATS v2, zero bytes and zero encapsulation",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000000", "0000000000000000"),
	 0, WIRE_VERSION_2},
	{"STATS v2, encapsulation bytes one above bytes",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000064", "0000000000000065"),
	 WIRE_E_ENCAP, WIRE_VERSION_2},
	{"STATS v2, encapsulation bytes 2^64-1 of 0 bytes",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000000", "ffffffffffffffff"),
	 WIRE_E_ENCAP, WIRE_VERSION_2},
	{"STATS v2, second record's encapsulation above its bytes",
	 "000000c8 0002 0000" STATS_FIXED_V1("0000000000000001", "00000002")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000064", "0000000000000064")
			 RECORD_V2("0100000000000000", "0100000000000001"),
	 WIRE_E_ENCAP, WIRE_VERSION_2},
	{"STATS v2, 52-byte record (version 1 size)",
	 "00000084 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V1("04", IPV4_SRC, "0000000000000064"),
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v1, 60-byte record (version 2 size)",
	 "0000007c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 RECORD_V2("0000000000000064", "0000000000000014"),
	 WIRE_E_LENGTH, WIRE_VERSION_1},
	{"STATS v2, count 0 with one record",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000000")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000064", "0000000000000014"),
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v2, count 2 with one record",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000002")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000064", "0000000000000014"),
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v2, count wrapping 32-bit count*60 to one record",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "40000001")
		 TUNNEL_MALFORMED RECORD_V2("0000000000000064", "0000000000000014"),
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v2, record cut short",
	 "0000008b 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V1("04", IPV4_SRC, "0000000000000064") " 00000000000014",
	 WIRE_E_LENGTH, WIRE_VERSION_2},
	{"STATS v2, sequence 0",
	 "00000050 0002 0000" STATS_FIXED_V1("0000000000000000", "00000000") TUNNEL_MALFORMED,
	 WIRE_E_SEQUENCE, WIRE_VERSION_2},
	{"STATS v2, family 5",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V1("05", IPV4_SRC, "0000000000000064") " 0000000000000014",
	 WIRE_E_FAMILY, WIRE_VERSION_2},
	{"STATS v2, IPv4 record with unmapped source",
	 "0000008c 0002 0000" STATS_FIXED_V1("0000000000000001", "00000001")
		 TUNNEL_MALFORMED RECORD_V1("04", "fd000000000000000000000000000001",
					    "0000000000000064") " 0000000000000014",
	 WIRE_E_FAMILY, WIRE_VERSION_2},
};

static void check_row(const char *name, const char *hex, int want, uint16_t version)
{
	uint8_t buf[1024];
	size_t n = test_unhex(hex, buf, sizeof(buf));
	int got = decode_guarded(buf, n, version);

	if (got != want)
		test_fail(__FILE__, __LINE__, "%s: got %d (%s), want %d (%s)", name, got,
			  wire_strerror(got), want, wire_strerror(want));
	test_result("%s: %s", want ? "malformed" : "valid", name);
}

static void test_malformed_table(void)
{
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		check_row(malformed[i].name, malformed[i].hex, malformed[i].want, WIRE_VERSION_1);
	for (size_t i = 0; i < sizeof(by_version) / sizeof(by_version[0]); i++)
		check_row(by_version[i].name, by_version[i].hex, by_version[i].want,
			  by_version[i].version);
}

/* The rejections a table cannot spell out in hex: sizes only code can build. */
static void test_malformed_generated(void)
{
	uint8_t buf[WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + 300];
	struct wire_frame f = {0};

	/* A 254-byte node name, otherwise valid. */
	{
		uint8_t hello[512];
		char node[254];
		struct wire_hello h = {.instance_id = 1,
				       .node = "n1",
				       .node_len = 2,
				       .agent_version = "1",
				       .agent_version_len = 1};
		long n = wire_hello_encode(hello, sizeof(hello), &h);
		uint8_t big[600];

		memset(node, 'a', sizeof(node));
		for (int i = 63; i < 254; i += 64)
			node[i] = '.';
		/* splice: fixed part, node length 254, node, agent version */
		memcpy(big, hello, WIRE_HEADER_SIZE + 14);
		wire_put16(big + WIRE_HEADER_SIZE + 14, 254);
		memcpy(big + WIRE_HEADER_SIZE + 16, node, 254);
		wire_put16(big + WIRE_HEADER_SIZE + 16 + 254, 1);
		big[WIRE_HEADER_SIZE + 18 + 254] = '1';
		wire_put32(big, (uint32_t)(4 + WIRE_HELLO_FIXED_SIZE + 254 + 1));
		EXPECT(n > 0);
		EXPECT_EQ(decode_guarded(big, WIRE_HEADER_SIZE + WIRE_HELLO_FIXED_SIZE + 255,
					 WIRE_VERSION_1),
			  WIRE_E_NODE_NAME);
	}
	/* A 65-byte agent version. */
	{
		uint8_t hello[512];
		char agent[65];
		memset(agent, 'v', sizeof(agent));
		struct wire_hello h = {.instance_id = 1,
				       .node = "n1",
				       .node_len = 2,
				       .agent_version = agent,
				       .agent_version_len = 64};
		long n = wire_hello_encode(hello, sizeof(hello), &h);
		EXPECT(n > 0);
		EXPECT_EQ(decode_guarded(hello, (size_t)n, WIRE_VERSION_1), 0);
		h.agent_version_len = 65;
		EXPECT_EQ(wire_hello_encode(hello, sizeof(hello), &h), WIRE_E_AGENT_VERSION);
		hello[3] = (uint8_t)(hello[3] + 1);
		wire_put16(hello + WIRE_HEADER_SIZE + 18, 65);
		hello[n] = 'v';
		EXPECT_EQ(decode_guarded(hello, (size_t)n + 1, WIRE_VERSION_1),
			  WIRE_E_AGENT_VERSION);
	}
	/* An ERROR message of 257 valid bytes. */
	wire_header_put(buf, WIRE_ERROR, 0, WIRE_ERROR_FIXED_SIZE + 257);
	wire_put16(buf + WIRE_HEADER_SIZE, 1);
	wire_put16(buf + WIRE_HEADER_SIZE + 2, 257);
	memset(buf + WIRE_HEADER_SIZE + 4, 'x', 257);
	EXPECT_EQ(decode_guarded(buf, WIRE_HEADER_SIZE + 4 + 257, WIRE_VERSION_1), WIRE_E_LENGTH);
	/* The maximum is a parameter: a smaller receiver limit refuses before the body. */
	wire_header_put(buf, WIRE_STATS, 0, 1000);
	EXPECT_EQ(wire_frame_parse(buf, WIRE_HEADER_SIZE, 999, &f), WIRE_E_TOO_BIG);
	EXPECT_EQ(wire_frame_parse(buf, WIRE_HEADER_SIZE, 1004, &f), WIRE_E_PARTIAL);
	/* A frame of exactly the maximum length is accepted by the framing layer. */
	EXPECT_EQ(wire_frame_parse(buf, WIRE_LENGTH_SIZE, 1004, &f), WIRE_E_PARTIAL);
	/*
	 * An encoder refuses a record count that cannot fit a frame, and the largest count it
	 * takes makes a frame a default receiver accepts (its length counts type and flags too).
	 */
	for (uint16_t v = 0; v <= WIRE_VERSION_2; v++) { /* the STATS layouts (3 uses 2's) */
		uint16_t layout = v ? v : WIRE_VERSION_1;
		size_t fixed = wire_stats_fixed_size(layout), record = wire_record_size(layout);
		struct wire_stats s = {.version = v, .sequence = 1};
		uint8_t head[WIRE_HEADER_SIZE + WIRE_STATS_FIXED_SIZE_V2];

		s.count = (uint32_t)((WIRE_FRAME_MAX_DEFAULT - 4 - fixed) / record);
		EXPECT(wire_stats_encode(head, SIZE_MAX, &s) == head + WIRE_HEADER_SIZE + fixed);
		EXPECT_EQ(wire_frame_parse(head, sizeof(head), WIRE_FRAME_MAX_DEFAULT, &f),
			  WIRE_E_PARTIAL);
		EXPECT_EQ(wire_stats_size_version(layout, s.count) - WIRE_LENGTH_SIZE,
			  wire_get32(head));
		s.count++;
		EXPECT(wire_stats_encode(head, SIZE_MAX, &s) == NULL);
		s.count = (WIRE_FRAME_MAX_DEFAULT / WIRE_RECORD_SIZE_V1) + 1;
		EXPECT(wire_stats_encode(head, SIZE_MAX, &s) == NULL);
		s.count = 1;
		EXPECT(wire_stats_encode(head, wire_stats_size_version(layout, 1) - 1, &s) == NULL);
	}
	/* Nor does it speak a version it does not know. */
	{
		struct wire_stats s = {.version = WIRE_VERSION_MAX + 1, .sequence = 1};
		EXPECT(wire_stats_encode(buf, sizeof(buf), &s) == NULL);
	}
	/* A record with more encapsulation than bytes is refused by the encoder, unwritten. */
	{
		uint8_t rec[WIRE_RECORD_SIZE_V2 + 1];
		struct wire_record r;

		make_record(&r, 4, 1, WIRE_VERSION_2);
		r.encap_bytes = r.bytes + 1;
		memset(rec, 0xaa, sizeof(rec));
		EXPECT_EQ(wire_record_put_v2(rec, &r), WIRE_E_ENCAP);
		EXPECT(rec[0] == 0xaa && rec[WIRE_RECORD_SIZE_V2 - 1] == 0xaa);
		r.encap_bytes = r.bytes;
		EXPECT_EQ(wire_record_put_v2(rec, &r), 0);
		EXPECT(rec[WIRE_RECORD_SIZE_V2] == 0xaa); /* nothing past its 60 bytes */
	}
	/* Inside a compressed frame the decoder still refuses encapsulation above bytes. */
	{
		size_t len;
		uint8_t *stats = build_stats(3, WIRE_VERSION_2, &len);
		size_t cap = wire_deflate_bound(len - WIRE_HEADER_SIZE);
		uint8_t *z = malloc(cap);
		uint8_t *last = stats + len - WIRE_RECORD_SIZE_V2;

		EXPECT_EQ(decode_guarded(stats, len, WIRE_VERSION_2), 0);
		wire_put64(last + 52, wire_get64(last + 36) + 1);
		long zn = wire_deflate(stats, len, z, cap, 6);
		EXPECT(zn > 0);
		EXPECT_EQ(decode_guarded(z, (size_t)zn, WIRE_VERSION_2), WIRE_E_ENCAP);
		EXPECT_EQ(decode_guarded(z, (size_t)zn, WIRE_VERSION_1), WIRE_E_LENGTH);
		free(z);
		free(stats);
	}
	/* Every error has its own text and label. */
	EXPECT(strcmp(wire_strerror(WIRE_E_ENCAP), "unknown error") != 0);
	EXPECT(strcmp(wire_reason(WIRE_E_ENCAP), "encap_bytes") == 0);
}

/* Every valid frame, offered one byte more at a time: PARTIAL until whole, then its size. */
static void test_byte_at_a_time(void)
{
	uint8_t hello[512], ack[16], err[64];
	struct wire_hello h = {.instance_id = 7,
			       .node = "node-a",
			       .node_len = 6,
			       .agent_version = "0.1.0",
			       .agent_version_len = 5};
	uint8_t hello2[512];
	size_t stats_len, stats2_len;
	uint8_t *stats = build_stats(20, WIRE_VERSION_1, &stats_len);
	uint8_t *stats2 = build_stats(20, WIRE_VERSION_2, &stats2_len);
	size_t zcap = wire_deflate_bound(stats_len - WIRE_HEADER_SIZE);
	size_t z2cap = wire_deflate_bound(stats2_len - WIRE_HEADER_SIZE);
	uint8_t *z = malloc(zcap), *z2 = malloc(z2cap);
	struct {
		const uint8_t *buf;
		long len;
		uint16_t version;
	} frames[8];

	frames[0].buf = hello, frames[0].len = wire_hello_encode(hello, sizeof(hello), &h);
	frames[1].buf = stats, frames[1].len = (long)stats_len;
	frames[2].buf = z, frames[2].len = wire_deflate(stats, stats_len, z, zcap, 6);
	frames[3].buf = ack, frames[3].len = wire_ack_encode(ack, sizeof(ack), 9);
	frames[4].buf = err,
	frames[4].len = wire_error_encode(err, sizeof(err), 3, "expected HELLO");
	h.version = WIRE_VERSION_2;
	frames[5].buf = hello2, frames[5].len = wire_hello_encode(hello2, sizeof(hello2), &h);
	frames[6].buf = stats2, frames[6].len = (long)stats2_len;
	frames[7].buf = z2, frames[7].len = wire_deflate(stats2, stats2_len, z2, z2cap, 6);
	for (int i = 0; i < 8; i++)
		frames[i].version = i < 5 ? WIRE_VERSION_1 : WIRE_VERSION_2;
	for (int i = 0; i < 8; i++) {
		EXPECT(frames[i].len > 0);
		for (long k = 0; k <= frames[i].len; k++) {
			struct wire_frame f = {0};
			size_t map_len;
			unsigned char *p = test_guarded(frames[i].buf, (size_t)k, &map_len);
			long got = wire_frame_parse(p, (size_t)k, WIRE_FRAME_MAX_DEFAULT, &f);

			if (got != (k < frames[i].len ? WIRE_E_PARTIAL : frames[i].len))
				test_fail(__FILE__, __LINE__,
					  "frame %d with %ld of %ld bytes: got %ld", i, k,
					  frames[i].len, got);
			if (k == frames[i].len)
				EXPECT_EQ(decode_any(p, (size_t)k, frames[i].version), 0);
			test_guarded_free(p, (size_t)k, map_len);
		}
	}
	free(z);
	free(z2);
	free(stats);
	free(stats2);
}

/* Several frames back to back in one buffer parse one after another. */
static void test_stream_of_frames(void)
{
	uint8_t buf[256];
	size_t off = 0, pos = 0;
	int seen = 0;

	for (uint64_t s = 1; s <= 5; s++)
		off += (size_t)wire_ack_encode(buf + off, sizeof(buf) - off, s);
	off += (size_t)wire_error_encode(buf + off, sizeof(buf) - off, WIRE_ERR_SHUTDOWN, "bye");
	while (pos < off) {
		struct wire_frame f = {0};
		long n = wire_frame_parse(buf + pos, off - pos, WIRE_FRAME_MAX_DEFAULT, &f);
		EXPECT(n > 0);
		if (n <= 0)
			break;
		if (f.type == WIRE_ACK) {
			uint64_t seq;
			EXPECT_EQ(wire_ack_decode(f.payload, f.payload_len, &seq), 0);
			EXPECT_EQ(seq, seen + 1);
		}
		seen++;
		pos += (size_t)n;
	}
	EXPECT_EQ(seen, 6);
}

int main(void)
{
	RUN(test_hello_round_trip);
	RUN(test_stats_round_trip);
	RUN(test_stats_compressed_round_trip);
	RUN(test_ack_round_trip);
	RUN(test_error_round_trip);
	RUN(test_node_names);
	RUN(test_utf8);
	test_malformed_table();
	RUN(test_malformed_generated);
	RUN(test_byte_at_a_time);
	RUN(test_stream_of_frames);
	return test_done();
}
