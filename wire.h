/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wire.h: the kubezonnet agent-to-server protocol. Header-only; encoders and decoders are
 * static inline, allocate nothing and do no I/O.
 *
 * Transport: one TCP connection per agent. Each frame is
 *
 *     u32 length   bytes that follow this field (type + flags + payload), big-endian
 *     u16 type     WIRE_HELLO, WIRE_STATS, WIRE_ACK or WIRE_ERROR
 *     u16 flags    WIRE_FLAG_ZLIB (STATS only); every other bit must be zero
 *     payload      length - 4 bytes
 *
 * All integers are big-endian. Addresses are 16 bytes: IPv6 as is, IPv4 as IPv4-mapped IPv6
 * (::ffff:a.b.c.d). A receiver checks `length` against its maximum frame size (default
 * WIRE_FRAME_MAX_DEFAULT) before it reads or buffers the body.
 *
 * HELLO (agent to server, first frame of a connection):
 *     u32 magic (WIRE_MAGIC), u16 version (WIRE_VERSION_1, 2 or 3), u64 instance id
 *     (random, chosen at agent start), u16 node name length + node name (RFC 1123 subdomain,
 *     1..253 bytes), u16 agent version length + agent version (printable ASCII, 1..64 bytes);
 *     version 3 adds u16 hook (enum wire_hook: where the agent counts), and with
 *     WIRE_FLAG_SECRET (version 3 only) then u8 nonce[WIRE_NONCE_SIZE] (fresh for every
 *     connection): the agent will prove a shared secret (below).
 *     The version is the connection's: every STATS frame on it has that version's layout.
 * STATS (agent to server, one per interval, resent until acknowledged), version 1:
 *     u64 sequence (per instance, starts at 1), u64 interval start, u64 interval end (Unix ns),
 *     u64 lost packets and u64 lost bytes because the kernel flow map was full, u64 lost packets
 *     and u64 lost bytes for any other reason (no readable IP header), u32 record count, then
 *     that many records of WIRE_RECORD_SIZE_V1 bytes each:
 *     u8 family (4 or 6), u8 L4 protocol, u16 port, src[16], dst[16], u64 bytes, u64 packets.
 *   version 2: the version 1 fixed part, then u64 tunnel-malformed packets and u64
 *     tunnel-malformed bytes (packets whose tunnel inner headers could not be read, counted
 *     under their outer flow), then records of WIRE_RECORD_SIZE_V2 bytes: a version 1 record
 *     followed by u64 encapsulation bytes (the part of `bytes` that was tunnel headers; a
 *     record whose encapsulation bytes exceed its bytes is refused).
 *   version 3: the version 2 fixed part, then u64 device bytes (what the node's network
 *     devices sent in the interval, for the hook's share of it; 0 if unknown) and u32 hook
 *     status (WIRE_HOOK_*: bit 0, the hook saw almost none of it), then version 2 records.
 *     With WIRE_FLAG_ZLIB the payload is u32 uncompressed length followed by a zlib stream
 *     (RFC 1950) that inflates to exactly that many bytes of the payload above.
 * ACK (server to agent): u64 sequence of the STATS frame now stored.
 *
 * A shared secret (HMAC-SHA-256, RFC 2104), optional, in version 3: a HELLO with
 * WIRE_FLAG_SECRET is followed by a handshake, and every later frame is authenticated:
 *     CHALLENGE (server to agent): u8 nonce[WIRE_NONCE_SIZE], fresh for every connection.
 *     AUTH (agent to server): u8 proof[WIRE_MAC_SIZE] =
 *         HMAC(secret, WIRE_LABEL_AGENT || SHA-256(HELLO payload) || server nonce).
 *     AUTH (server to agent): the same with WIRE_LABEL_SERVER: the server holds it too.
 * Both sides then derive the session key HMAC(secret, WIRE_LABEL_SESSION || SHA-256(HELLO
 * payload) || server nonce), and every later STATS and ACK carries WIRE_FLAG_MAC: its payload
 * ends in HMAC(session key, u8 direction (WIRE_DIRECTION_*) || u64 counter || the frame's
 * 8-byte header || the payload before the MAC), the counter numbering that direction's
 * authenticated frames from 0. A frame replayed, reordered, cut or moved to another
 * connection fails its MAC. ERROR frames carry none (the connection closes either way).
 * ERROR (either way, before closing): u16 code (enum wire_error_code), u16 message length +
 *     message (UTF-8, at most WIRE_ERROR_MESSAGE_MAX bytes).
 *
 * Decoding checks every length exactly (trailing bytes are an error), bounds counts by
 * division rather than multiplication, and never reads outside the buffer it is given.
 */
#ifndef KUBEZONNET_WIRE_H
#define KUBEZONNET_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#define WIRE_MAGIC	       0x4b5a4e54u /* "KZNT" */
#define WIRE_VERSION_1	       1
#define WIRE_VERSION_2	       2 /* adds encapsulation bytes and tunnel-malformed counters */
#define WIRE_VERSION_3	       3 /* adds the hook and its status; a secret may be proved */
#define WIRE_VERSION_MIN       WIRE_VERSION_1 /* the versions a receiver accepts */
#define WIRE_VERSION_MAX       WIRE_VERSION_3
#define WIRE_NONCE_SIZE	       32
#define WIRE_MAC_SIZE	       32 /* HMAC-SHA-256 */
#define WIRE_LABEL_AGENT       "kubezonnet v3 agent proof"
#define WIRE_LABEL_SERVER      "kubezonnet v3 server proof"
#define WIRE_LABEL_SESSION     "kubezonnet v3 session key"
#define WIRE_DIRECTION_AGENT   0 /* agent to server */
#define WIRE_DIRECTION_SERVER  1
#define WIRE_LENGTH_SIZE       4
#define WIRE_HEADER_SIZE       8	   /* length + type + flags */
#define WIRE_FRAME_MAX_DEFAULT (16u << 20) /* largest `length` a receiver accepts */
#define WIRE_NODE_NAME_MAX     253
#define WIRE_AGENT_VERSION_MAX 64
#define WIRE_ERROR_MESSAGE_MAX 256
#define WIRE_HELLO_FIXED_SIZE  (4 + 2 + 8 + 2 + 2)
#define WIRE_HELLO_MAX_PAYLOAD                                                                     \
	(WIRE_HELLO_FIXED_SIZE + WIRE_NODE_NAME_MAX + WIRE_AGENT_VERSION_MAX + 2 + WIRE_NONCE_SIZE)
#define WIRE_STATS_FIXED_SIZE_V1 (8 * 3 + 8 * 4 + 4)
#define WIRE_STATS_FIXED_SIZE_V2 (WIRE_STATS_FIXED_SIZE_V1 + 8 * 2)
#define WIRE_STATS_FIXED_SIZE_V3 (WIRE_STATS_FIXED_SIZE_V2 + 8 + 4)
#define WIRE_STATS_FIXED_SIZE	 WIRE_STATS_FIXED_SIZE_V1 /* the smallest of any version */
#define WIRE_RECORD_SIZE_V1	 (1 + 1 + 2 + 16 + 16 + 8 + 8)
#define WIRE_RECORD_SIZE_V2	 (WIRE_RECORD_SIZE_V1 + 8)
#define WIRE_RECORD_SIZE	 WIRE_RECORD_SIZE_V1 /* the stride of wire_record_put */
#define WIRE_ACK_PAYLOAD_SIZE	 8
#define WIRE_ERROR_FIXED_SIZE	 (2 + 2)
#define WIRE_ZLIB_PREFIX_SIZE	 4

enum wire_type {
	WIRE_HELLO = 1,
	WIRE_STATS = 2,
	WIRE_ACK = 3,
	WIRE_ERROR = 4,
	WIRE_CHALLENGE = 5, /* version 3 */
	WIRE_AUTH = 6,	    /* version 3 */
};

#define WIRE_FLAG_ZLIB	 0x0001u
#define WIRE_FLAG_MAC	 0x0002u /* STATS and ACK of a secret's session: the payload ends in a MAC */
#define WIRE_FLAG_SECRET 0x0004u /* HELLO, version 3: the agent proves a secret; a nonce follows */

/* Where an agent counts (HELLO version 3). */
enum wire_hook {
	WIRE_HOOK_NETFILTER = 1, /* netfilter POSTROUTING */
	WIRE_HOOK_CGROUP = 2,	 /* what sockets send, at cgroup egress */
};

/* STATS version 3 hook status bits. */
#define WIRE_HOOK_BLIND 0x00000001u /* the hook saw almost none of what the devices sent */

/* Decoder results: a byte count (>= 0) or one of these. */
enum wire_result {
	WIRE_E_PARTIAL = -1,	    /* not an error: fewer bytes than the frame needs yet */
	WIRE_E_TOO_BIG = -2,	    /* length field above the receiver's maximum */
	WIRE_E_SHORT = -3,	    /* length field below the 4 bytes of type and flags */
	WIRE_E_TYPE = -4,	    /* unknown frame type */
	WIRE_E_FLAGS = -5,	    /* a flag unknown, or not allowed on this type */
	WIRE_E_LENGTH = -6,	    /* payload length does not match its contents */
	WIRE_E_MAGIC = -7,	    /* HELLO without WIRE_MAGIC */
	WIRE_E_VERSION = -8,	    /* HELLO with a protocol version we do not speak */
	WIRE_E_NODE_NAME = -9,	    /* node name empty, too long or not an RFC 1123 subdomain */
	WIRE_E_AGENT_VERSION = -10, /* agent version empty, too long or not printable ASCII */
	WIRE_E_FAMILY = -11, /* record family not 4 or 6, or IPv4 record with non-mapped address */
	WIRE_E_COMPRESSION =
		-12,	       /* zlib stream corrupt, short, long, or inflates to the wrong size */
	WIRE_E_UTF8 = -13,     /* ERROR message is not valid UTF-8 */
	WIRE_E_SPACE = -14,    /* encoder: output buffer too small */
	WIRE_E_SEQUENCE = -15, /* STATS or ACK with sequence 0 */
	WIRE_E_ENCAP = -16,    /* version 2 record with more encapsulation bytes than bytes */
	WIRE_E_MAC = -17,      /* version 3: a frame's MAC missing or wrong, or a proof wrong */
	WIRE_E_HANDSHAKE = -18, /* version 3: a frame other than AUTH after the CHALLENGE */
	WIRE_E_HOOK = -19,	/* version 3 HELLO: a hook not in enum wire_hook */
};

/* Codes carried in ERROR frames. */
enum wire_error_code {
	WIRE_ERR_PROTOCOL = 1, /* malformed frame; the message says which check failed */
	WIRE_ERR_VERSION = 2,  /* unsupported protocol version */
	WIRE_ERR_EXPECTED_HELLO = 3,
	WIRE_ERR_OVERLOADED = 4, /* too many connections */
	WIRE_ERR_SHUTDOWN = 5,
	WIRE_ERR_RETRY = 6,    /* not now (the server does not know the node yet): try again */
	WIRE_ERR_IDENTITY = 7, /* the connection does not come from the node it names */
	WIRE_ERR_AUTH = 8,     /* a secret required and not proved, or proved to a server without */
};

struct wire_frame {
	uint16_t type;
	uint16_t flags;
	const uint8_t *payload; /* points into the caller's buffer */
	uint32_t payload_len;
};

struct wire_hello {
	uint16_t version;
	uint64_t instance_id;
	const char *node; /* not NUL-terminated; points into the caller's buffer */
	uint16_t node_len;
	const char *agent_version; /* likewise */
	uint16_t agent_version_len;
	uint16_t hook;	      /* version 3: enum wire_hook; 0 before */
	const uint8_t *nonce; /* WIRE_FLAG_SECRET: WIRE_NONCE_SIZE bytes, likewise; else NULL */
};

struct wire_loss {
	uint64_t map_full_packets; /* kernel map had no room for a new flow */
	uint64_t map_full_bytes;
	uint64_t other_packets; /* any other reason: no readable IP header */
	uint64_t other_bytes;
};

struct wire_stats {
	/* The layout: set by wire_stats_decode; wire_stats_encode writes it (0 writes version 1). */
	uint16_t version;
	uint64_t sequence;
	uint64_t start_ns;
	uint64_t end_ns;
	struct wire_loss loss;
	/* Version 2 (0 in version 1): packets whose tunnel inner headers could not be read,
	 * counted under their outer flow, so already part of the records' bytes. */
	uint64_t tunnel_malformed_packets;
	uint64_t tunnel_malformed_bytes;
	/* Version 3 (0 before): what the node's devices sent in the interval, and WIRE_HOOK_*. */
	uint64_t device_bytes;
	uint32_t hook_status;
	uint32_t count;
	const uint8_t *records; /* count records of the version's size in the caller's buffer */
};

struct wire_record {
	uint8_t family; /* 4 or 6 */
	uint8_t protocol;
	uint16_t port;
	uint8_t src[16];
	uint8_t dst[16];
	uint64_t bytes;
	uint64_t packets;
	uint64_t encap_bytes; /* version 2: the part of bytes that was tunnel headers; 0 in 1 */
};

struct wire_error {
	uint16_t code;
	const char *message; /* not NUL-terminated; points into the caller's buffer */
	uint16_t message_len;
};

/* wire_strerror returns a static description of a wire_result code. */
static inline const char *wire_strerror(int result)
{
	switch (result) {
	case WIRE_E_PARTIAL:
		return "incomplete frame";
	case WIRE_E_TOO_BIG:
		return "frame larger than the maximum";
	case WIRE_E_SHORT:
		return "frame length below header size";
	case WIRE_E_TYPE:
		return "unknown frame type";
	case WIRE_E_FLAGS:
		return "unknown or misplaced flags";
	case WIRE_E_LENGTH:
		return "payload length does not match contents";
	case WIRE_E_MAGIC:
		return "bad magic";
	case WIRE_E_VERSION:
		return "unsupported protocol version";
	case WIRE_E_NODE_NAME:
		return "invalid node name";
	case WIRE_E_AGENT_VERSION:
		return "invalid agent version";
	case WIRE_E_FAMILY:
		return "invalid record address family";
	case WIRE_E_COMPRESSION:
		return "invalid compressed payload";
	case WIRE_E_UTF8:
		return "invalid UTF-8 in message";
	case WIRE_E_SPACE:
		return "output buffer too small";
	case WIRE_E_SEQUENCE:
		return "sequence number zero";
	case WIRE_E_ENCAP:
		return "record encapsulation bytes above its bytes";
	case WIRE_E_MAC:
		return "message authentication failed";
	case WIRE_E_HANDSHAKE:
		return "expected AUTH (the answer to the CHALLENGE)";
	case WIRE_E_HOOK:
		return "unknown hook";
	default:
		return result >= 0 ? "ok" : "unknown error";
	}
}

/* wire_reason returns a short metric-label-safe name for a wire_result code. */
static inline const char *wire_reason(int result)
{
	switch (result) {
	case WIRE_E_TOO_BIG:
		return "too_big";
	case WIRE_E_SHORT:
		return "short";
	case WIRE_E_TYPE:
		return "type";
	case WIRE_E_FLAGS:
		return "flags";
	case WIRE_E_LENGTH:
		return "length";
	case WIRE_E_MAGIC:
		return "magic";
	case WIRE_E_VERSION:
		return "version";
	case WIRE_E_NODE_NAME:
		return "node_name";
	case WIRE_E_AGENT_VERSION:
		return "agent_version";
	case WIRE_E_FAMILY:
		return "family";
	case WIRE_E_COMPRESSION:
		return "compression";
	case WIRE_E_UTF8:
		return "utf8";
	case WIRE_E_SEQUENCE:
		return "sequence";
	case WIRE_E_ENCAP:
		return "encap_bytes";
	case WIRE_E_MAC:
		return "mac";
	case WIRE_E_HANDSHAKE:
		return "handshake";
	case WIRE_E_HOOK:
		return "hook";
	default:
		return "other";
	}
}

/* Big-endian load and store. */
static inline uint16_t wire_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t wire_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t wire_get64(const uint8_t *p)
{
	return (uint64_t)wire_get32(p) << 32 | wire_get32(p + 4);
}

static inline void wire_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wire_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void wire_put64(uint8_t *p, uint64_t v)
{
	wire_put32(p, (uint32_t)(v >> 32));
	wire_put32(p + 4, (uint32_t)v);
}

/* wire_record_size returns the size of a STATS record in version, or 0 for a version not spoken. */
static inline size_t wire_record_size(uint16_t version)
{
	switch (version) {
	case WIRE_VERSION_1:
		return WIRE_RECORD_SIZE_V1;
	case WIRE_VERSION_2:
	case WIRE_VERSION_3:
		return WIRE_RECORD_SIZE_V2;
	default:
		return 0;
	}
}

/*
 * wire_stats_fixed_size returns the size of a STATS payload's fixed part (everything before
 * the records) in version, or 0 for a version not spoken.
 */
static inline size_t wire_stats_fixed_size(uint16_t version)
{
	switch (version) {
	case WIRE_VERSION_1:
		return WIRE_STATS_FIXED_SIZE_V1;
	case WIRE_VERSION_2:
		return WIRE_STATS_FIXED_SIZE_V2;
	case WIRE_VERSION_3:
		return WIRE_STATS_FIXED_SIZE_V3;
	default:
		return 0;
	}
}

/*
 * wire_valid_node_name reports whether name[0..len) is an RFC 1123 subdomain as Kubernetes
 * requires of node names: 1..253 bytes of [a-z0-9.-], dot-separated labels of 1..63 bytes
 * that start and end with [a-z0-9]. Non-ASCII bytes (and so any UTF-8) are rejected.
 */
static inline int wire_valid_node_name(const char *name, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > WIRE_NODE_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!alnum && c != '-')
			return 0;
		if (label == 0 && c == '-')
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && name[len - 1] != '-';
}

/* wire_valid_printable reports whether s[0..len) is 1..max bytes of printable ASCII. */
static inline int wire_valid_printable(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	return 1;
}

/*
 * wire_valid_utf8 reports whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF).
 */
static inline int wire_valid_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n > len - i - 1)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/*
 * wire_frame_parse looks for one frame at the start of buf[0..len).
 * Returns the whole frame's size in bytes (header included) and fills *frame, with the
 * payload pointing into buf; WIRE_E_PARTIAL when more bytes are needed (after checking the
 * header as far as it has arrived, so an oversized length is refused before its body is read);
 * or a negative wire_result for a frame that can never be valid. max_length bounds the length
 * field (use WIRE_FRAME_MAX_DEFAULT).
 */
static inline long wire_frame_parse(const uint8_t *buf, size_t len, uint32_t max_length,
				    struct wire_frame *frame)
{
	uint32_t length;
	uint16_t type, flags;

	if (len < WIRE_LENGTH_SIZE)
		return WIRE_E_PARTIAL;
	length = wire_get32(buf);
	if (length > max_length)
		return WIRE_E_TOO_BIG;
	if (length < WIRE_HEADER_SIZE - WIRE_LENGTH_SIZE)
		return WIRE_E_SHORT;
	if (len < WIRE_HEADER_SIZE)
		return WIRE_E_PARTIAL;
	type = wire_get16(buf + 4);
	flags = wire_get16(buf + 6);
	if (type < WIRE_HELLO || type > WIRE_AUTH)
		return WIRE_E_TYPE;
	if (flags & ~((type == WIRE_STATS ? WIRE_FLAG_ZLIB : 0u) |
		      (type == WIRE_STATS || type == WIRE_ACK ? WIRE_FLAG_MAC : 0u) |
		      (type == WIRE_HELLO ? WIRE_FLAG_SECRET : 0u)))
		return WIRE_E_FLAGS;
	if (len - WIRE_LENGTH_SIZE < length)
		return WIRE_E_PARTIAL;
	frame->type = type;
	frame->flags = flags;
	frame->payload = buf + WIRE_HEADER_SIZE;
	frame->payload_len = length - (WIRE_HEADER_SIZE - WIRE_LENGTH_SIZE);
	return (long)length + WIRE_LENGTH_SIZE;
}

/* wire_header_put writes a frame header for a payload of payload_len bytes at buf. */
static inline void wire_header_put(uint8_t *buf, uint16_t type, uint16_t flags,
				   uint32_t payload_len)
{
	wire_put32(buf, payload_len + (WIRE_HEADER_SIZE - WIRE_LENGTH_SIZE));
	wire_put16(buf + 4, type);
	wire_put16(buf + 6, flags);
}

/*
 * wire_hello_decode decodes a HELLO payload sent with the frame flags flags. Returns 0 and
 * fills *hello (strings and nonce point into the payload; version is
 * WIRE_VERSION_MIN..WIRE_VERSION_MAX, the layout of the connection's STATS frames), or a
 * negative wire_result (WIRE_E_FLAGS for WIRE_FLAG_SECRET before version 3).
 */
static inline int wire_hello_decode(const uint8_t *p, size_t len, uint16_t flags,
				    struct wire_hello *hello)
{
	size_t node_len, agent_len, tail;

	if (len < WIRE_HELLO_FIXED_SIZE)
		return WIRE_E_LENGTH;
	if (wire_get32(p) != WIRE_MAGIC)
		return WIRE_E_MAGIC;
	hello->version = wire_get16(p + 4);
	if (hello->version < WIRE_VERSION_MIN || hello->version > WIRE_VERSION_MAX)
		return WIRE_E_VERSION;
	if ((flags & WIRE_FLAG_SECRET) && hello->version < WIRE_VERSION_3)
		return WIRE_E_FLAGS;
	/* After the agent version: version 3's hook, and a secret's nonce. */
	tail = (hello->version >= WIRE_VERSION_3 ? 2 : 0) +
	       (flags & WIRE_FLAG_SECRET ? WIRE_NONCE_SIZE : 0);
	if (len < WIRE_HELLO_FIXED_SIZE + tail)
		return WIRE_E_LENGTH;
	len -= tail;
	hello->hook = hello->version >= WIRE_VERSION_3 ? wire_get16(p + len) : 0;
	hello->nonce = flags & WIRE_FLAG_SECRET ? p + len + 2 : NULL;
	if (hello->version >= WIRE_VERSION_3 && hello->hook != WIRE_HOOK_NETFILTER &&
	    hello->hook != WIRE_HOOK_CGROUP)
		return WIRE_E_HOOK;
	hello->instance_id = wire_get64(p + 6);
	node_len = wire_get16(p + 14);
	if (node_len > len - WIRE_HELLO_FIXED_SIZE)
		return WIRE_E_LENGTH;
	agent_len = wire_get16(p + 16 + node_len);
	if (agent_len != len - WIRE_HELLO_FIXED_SIZE - node_len)
		return WIRE_E_LENGTH;
	hello->node = (const char *)p + 16;
	hello->node_len = (uint16_t)node_len;
	hello->agent_version = (const char *)p + 18 + node_len;
	hello->agent_version_len = (uint16_t)agent_len;
	if (!wire_valid_node_name(hello->node, node_len))
		return WIRE_E_NODE_NAME;
	if (!wire_valid_printable(hello->agent_version, agent_len, WIRE_AGENT_VERSION_MAX))
		return WIRE_E_AGENT_VERSION;
	return 0;
}

/*
 * wire_hello_encode writes a whole HELLO frame into buf[0..cap), announcing hello->version
 * (0, as a caller written for version 1 leaves it, announces WIRE_VERSION_1); in version 3
 * with hello->hook, and with WIRE_FLAG_SECRET and hello->nonce when that is not NULL.
 * Returns its size, or WIRE_E_VERSION (also for a nonce before version 3), WIRE_E_HOOK,
 * WIRE_E_NODE_NAME or WIRE_E_AGENT_VERSION for fields the decoder would refuse, or
 * WIRE_E_SPACE.
 */
static inline long wire_hello_encode(uint8_t *buf, size_t cap, const struct wire_hello *hello)
{
	size_t payload = WIRE_HELLO_FIXED_SIZE + (size_t)hello->node_len + hello->agent_version_len;
	uint16_t version = hello->version ? hello->version : WIRE_VERSION_1;
	uint8_t *p = buf + WIRE_HEADER_SIZE, *tail;

	if (version < WIRE_VERSION_MIN || version > WIRE_VERSION_MAX ||
	    (version < WIRE_VERSION_3 && hello->nonce))
		return WIRE_E_VERSION;
	if (version >= WIRE_VERSION_3 && hello->hook != WIRE_HOOK_NETFILTER &&
	    hello->hook != WIRE_HOOK_CGROUP)
		return WIRE_E_HOOK;
	if (version >= WIRE_VERSION_3)
		payload += 2 + (hello->nonce ? WIRE_NONCE_SIZE : 0);
	if (!wire_valid_node_name(hello->node, hello->node_len))
		return WIRE_E_NODE_NAME;
	if (!wire_valid_printable(hello->agent_version, hello->agent_version_len,
				  WIRE_AGENT_VERSION_MAX))
		return WIRE_E_AGENT_VERSION;
	if (cap < WIRE_HEADER_SIZE + payload)
		return WIRE_E_SPACE;
	wire_header_put(buf, WIRE_HELLO, hello->nonce ? WIRE_FLAG_SECRET : 0, (uint32_t)payload);
	wire_put32(p, WIRE_MAGIC);
	wire_put16(p + 4, version);
	wire_put64(p + 6, hello->instance_id);
	wire_put16(p + 14, hello->node_len);
	memcpy(p + 16, hello->node, hello->node_len);
	wire_put16(p + 16 + hello->node_len, hello->agent_version_len);
	memcpy(p + 18 + hello->node_len, hello->agent_version, hello->agent_version_len);
	tail = p + 18 + hello->node_len + hello->agent_version_len;
	if (version >= WIRE_VERSION_3)
		wire_put16(tail, hello->hook);
	if (hello->nonce)
		memcpy(tail + 2, hello->nonce, WIRE_NONCE_SIZE);
	return (long)(WIRE_HEADER_SIZE + payload);
}

/*
 * wire_blob_encode writes a CHALLENGE (nonce) or AUTH (proof) frame: type and 32 bytes.
 * Returns its size, or WIRE_E_SPACE.
 */
static inline long wire_blob_encode(uint8_t *buf, size_t cap, uint16_t type,
				    const uint8_t bytes[WIRE_NONCE_SIZE])
{
	if (cap < WIRE_HEADER_SIZE + WIRE_NONCE_SIZE)
		return WIRE_E_SPACE;
	wire_header_put(buf, type, 0, WIRE_NONCE_SIZE);
	memcpy(buf + WIRE_HEADER_SIZE, bytes, WIRE_NONCE_SIZE);
	return WIRE_HEADER_SIZE + WIRE_NONCE_SIZE;
}

/* wire_blob_decode checks a CHALLENGE or AUTH payload: 0 when it is exactly 32 bytes. */
static inline int wire_blob_decode(const uint8_t *p, size_t len)
{
	(void)p;
	return len == WIRE_NONCE_SIZE ? 0 : WIRE_E_LENGTH;
}

/*
 * wire_mac_prefix writes the 9 bytes a frame's MAC covers before its header: the direction
 * (WIRE_DIRECTION_*) and the counter. The MAC input is then the frame's 8-byte header (length
 * including the MAC, flags including WIRE_FLAG_MAC) and its payload up to the MAC.
 */
#define WIRE_MAC_PREFIX_SIZE 9
static inline void wire_mac_prefix(uint8_t out[WIRE_MAC_PREFIX_SIZE], uint8_t direction,
				   uint64_t counter)
{
	out[0] = direction;
	wire_put64(out + 1, counter);
}

/*
 * wire_record_get decodes record i (< stats->count) of a STATS payload wire_stats_decode
 * accepted, in its version's layout; encap_bytes is 0 in version 1.
 */
static inline void wire_record_get(const struct wire_stats *stats, uint32_t i,
				   struct wire_record *r)
{
	int v2 = stats->version >= WIRE_VERSION_2;
	const uint8_t *p =
		stats->records + (size_t)i * (v2 ? WIRE_RECORD_SIZE_V2 : WIRE_RECORD_SIZE_V1);

	r->family = p[0];
	r->protocol = p[1];
	r->port = wire_get16(p + 2);
	memcpy(r->src, p + 4, 16);
	memcpy(r->dst, p + 20, 16);
	r->bytes = wire_get64(p + 36);
	r->packets = wire_get64(p + 44);
	r->encap_bytes = v2 ? wire_get64(p + 52) : 0;
}

/* wire_record_put encodes r as a version 1 record (WIRE_RECORD_SIZE_V1 bytes) at p. */
static inline void wire_record_put(uint8_t *p, const struct wire_record *r)
{
	p[0] = r->family;
	p[1] = r->protocol;
	wire_put16(p + 2, r->port);
	memcpy(p + 4, r->src, 16);
	memcpy(p + 20, r->dst, 16);
	wire_put64(p + 36, r->bytes);
	wire_put64(p + 44, r->packets);
}

/*
 * wire_record_put_v2 encodes r as a version 2 record (WIRE_RECORD_SIZE_V2 bytes) at p and
 * returns 0, or returns WIRE_E_ENCAP and writes nothing when r->encap_bytes > r->bytes.
 */
static inline int wire_record_put_v2(uint8_t *p, const struct wire_record *r)
{
	if (r->encap_bytes > r->bytes)
		return WIRE_E_ENCAP;
	wire_record_put(p, r);
	wire_put64(p + 52, r->encap_bytes);
	return 0;
}

static inline int wire_is_v4_mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, prefix, sizeof(prefix)) == 0;
}

/*
 * wire_stats_decode decodes an uncompressed STATS payload (inflate one with WIRE_FLAG_ZLIB
 * through wire_inflate first) in the layout of version, the one its connection's HELLO
 * announced. Returns 0 and fills *stats, whose records point into the payload and have all
 * been checked, or a negative wire_result (WIRE_E_VERSION for a version not spoken).
 */
static inline int wire_stats_decode(const uint8_t *p, size_t len, uint16_t version,
				    struct wire_stats *stats)
{
	size_t fixed = wire_stats_fixed_size(version), record = wire_record_size(version), body;

	if (fixed == 0 || record == 0)
		return WIRE_E_VERSION;
	if (len < fixed)
		return WIRE_E_LENGTH;
	body = len - fixed;
	stats->version = version;
	stats->sequence = wire_get64(p);
	stats->start_ns = wire_get64(p + 8);
	stats->end_ns = wire_get64(p + 16);
	stats->loss.map_full_packets = wire_get64(p + 24);
	stats->loss.map_full_bytes = wire_get64(p + 32);
	stats->loss.other_packets = wire_get64(p + 40);
	stats->loss.other_bytes = wire_get64(p + 48);
	stats->count = wire_get32(p + 56);
	stats->tunnel_malformed_packets = version >= WIRE_VERSION_2 ? wire_get64(p + 60) : 0;
	stats->tunnel_malformed_bytes = version >= WIRE_VERSION_2 ? wire_get64(p + 68) : 0;
	stats->device_bytes = version >= WIRE_VERSION_3 ? wire_get64(p + 76) : 0;
	stats->hook_status = version >= WIRE_VERSION_3 ? wire_get32(p + 84) : 0;
	if (stats->hook_status & ~WIRE_HOOK_BLIND)
		return WIRE_E_FLAGS;
	/* Bound by division: count * record could wrap. */
	if (body % record != 0 || stats->count != body / record)
		return WIRE_E_LENGTH;
	if (stats->sequence == 0)
		return WIRE_E_SEQUENCE;
	stats->records = p + fixed;
	for (uint32_t i = 0; i < stats->count; i++) {
		const uint8_t *r = stats->records + (size_t)i * record;

		if (r[0] == 4) {
			if (!wire_is_v4_mapped(r + 4) || !wire_is_v4_mapped(r + 20))
				return WIRE_E_FAMILY;
		} else if (r[0] != 6) {
			return WIRE_E_FAMILY;
		}
		if (version >= WIRE_VERSION_2 && wire_get64(r + 52) > wire_get64(r + 36))
			return WIRE_E_ENCAP;
	}
	return 0;
}

/*
 * wire_stats_size_version returns the size of an uncompressed STATS frame of count records in
 * version, or 0 for a version not spoken.
 */
static inline size_t wire_stats_size_version(uint16_t version, uint32_t count)
{
	size_t fixed = wire_stats_fixed_size(version);

	return fixed ? WIRE_HEADER_SIZE + fixed + (size_t)count * wire_record_size(version) : 0;
}

/* wire_stats_size returns the size of an uncompressed version 1 STATS frame of count records. */
static inline size_t wire_stats_size(uint32_t count)
{
	return wire_stats_size_version(WIRE_VERSION_1, count);
}

/*
 * wire_stats_encode writes the header and fixed fields of an uncompressed STATS frame of
 * stats->count records in version stats->version (0: WIRE_VERSION_1) into buf[0..cap), and
 * returns where record 0 goes: the caller fills the records with wire_record_put at
 * WIRE_RECORD_SIZE_V1 strides (version 1) or wire_record_put_v2 at WIRE_RECORD_SIZE_V2
 * strides (version 2). Returns NULL for a version not spoken, a cap below
 * wire_stats_size_version(), or a count whose frame a receiver with WIRE_FRAME_MAX_DEFAULT
 * would refuse. stats->records is ignored.
 */
static inline uint8_t *wire_stats_encode(uint8_t *buf, size_t cap, const struct wire_stats *stats)
{
	uint16_t version = stats->version ? stats->version : WIRE_VERSION_1;
	size_t fixed = wire_stats_fixed_size(version), record = wire_record_size(version);
	uint8_t *p = buf + WIRE_HEADER_SIZE;

	/* The length field counts type and flags too: the payload may be 4 bytes below it. */
	if (fixed == 0 || record == 0 ||
	    stats->count >
		    (WIRE_FRAME_MAX_DEFAULT - (WIRE_HEADER_SIZE - WIRE_LENGTH_SIZE) - fixed) /
			    record ||
	    cap < wire_stats_size_version(version, stats->count))
		return NULL;
	wire_header_put(buf, WIRE_STATS, 0, (uint32_t)(fixed + (size_t)stats->count * record));
	wire_put64(p, stats->sequence);
	wire_put64(p + 8, stats->start_ns);
	wire_put64(p + 16, stats->end_ns);
	wire_put64(p + 24, stats->loss.map_full_packets);
	wire_put64(p + 32, stats->loss.map_full_bytes);
	wire_put64(p + 40, stats->loss.other_packets);
	wire_put64(p + 48, stats->loss.other_bytes);
	wire_put32(p + 56, stats->count);
	if (version >= WIRE_VERSION_2) {
		wire_put64(p + 60, stats->tunnel_malformed_packets);
		wire_put64(p + 68, stats->tunnel_malformed_bytes);
	}
	if (version >= WIRE_VERSION_3) {
		wire_put64(p + 76, stats->device_bytes);
		wire_put32(p + 84, stats->hook_status);
	}
	return p + fixed;
}

/* wire_ack_decode decodes an ACK payload into *sequence. Returns 0 or a wire_result. */
static inline int wire_ack_decode(const uint8_t *p, size_t len, uint64_t *sequence)
{
	if (len != WIRE_ACK_PAYLOAD_SIZE)
		return WIRE_E_LENGTH;
	*sequence = wire_get64(p);
	return *sequence == 0 ? WIRE_E_SEQUENCE : 0;
}

/* wire_ack_encode writes an ACK frame; returns its size or WIRE_E_SPACE. */
static inline long wire_ack_encode(uint8_t *buf, size_t cap, uint64_t sequence)
{
	if (cap < WIRE_HEADER_SIZE + WIRE_ACK_PAYLOAD_SIZE)
		return WIRE_E_SPACE;
	wire_header_put(buf, WIRE_ACK, 0, WIRE_ACK_PAYLOAD_SIZE);
	wire_put64(buf + WIRE_HEADER_SIZE, sequence);
	return WIRE_HEADER_SIZE + WIRE_ACK_PAYLOAD_SIZE;
}

/* wire_error_decode decodes an ERROR payload. Returns 0 or a negative wire_result. */
static inline int wire_error_decode(const uint8_t *p, size_t len, struct wire_error *error)
{
	if (len < WIRE_ERROR_FIXED_SIZE)
		return WIRE_E_LENGTH;
	error->code = wire_get16(p);
	error->message_len = wire_get16(p + 2);
	if (error->message_len != len - WIRE_ERROR_FIXED_SIZE ||
	    error->message_len > WIRE_ERROR_MESSAGE_MAX)
		return WIRE_E_LENGTH;
	error->message = (const char *)p + WIRE_ERROR_FIXED_SIZE;
	if (!wire_valid_utf8((const uint8_t *)error->message, error->message_len))
		return WIRE_E_UTF8;
	return 0;
}

/*
 * wire_error_encode writes an ERROR frame carrying code and the NUL-terminated message,
 * truncated to WIRE_ERROR_MESSAGE_MAX bytes at a UTF-8 character boundary. Returns its size,
 * WIRE_E_UTF8 for a message that is not UTF-8, or WIRE_E_SPACE.
 */
static inline long wire_error_encode(uint8_t *buf, size_t cap, uint16_t code, const char *message)
{
	size_t n = strlen(message);

	if (n > WIRE_ERROR_MESSAGE_MAX) {
		n = WIRE_ERROR_MESSAGE_MAX;
		while (n > 0 && ((uint8_t)message[n] & 0xc0) == 0x80)
			n--;
	}
	if (!wire_valid_utf8((const uint8_t *)message, n))
		return WIRE_E_UTF8;
	if (cap < WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + n)
		return WIRE_E_SPACE;
	wire_header_put(buf, WIRE_ERROR, 0, (uint32_t)(WIRE_ERROR_FIXED_SIZE + n));
	wire_put16(buf + WIRE_HEADER_SIZE, code);
	wire_put16(buf + WIRE_HEADER_SIZE + 2, (uint16_t)n);
	memcpy(buf + WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE, message, n);
	return (long)(WIRE_HEADER_SIZE + WIRE_ERROR_FIXED_SIZE + n);
}

/*
 * wire_inflated_size returns the uncompressed payload size a WIRE_FLAG_ZLIB payload declares,
 * or WIRE_E_COMPRESSION when it is too short to declare one, or declares less than the
 * smallest STATS fixed part (version 1's; wire_stats_decode checks the version's) or more
 * than max_length. The caller provides that many bytes to
 * wire_inflate.
 */
static inline long wire_inflated_size(const uint8_t *p, size_t len, uint32_t max_length)
{
	uint32_t n;

	if (len < WIRE_ZLIB_PREFIX_SIZE + 1)
		return WIRE_E_COMPRESSION;
	n = wire_get32(p);
	if (n < WIRE_STATS_FIXED_SIZE || n > max_length)
		return WIRE_E_COMPRESSION;
	return (long)n;
}

/*
 * wire_inflate inflates a WIRE_FLAG_ZLIB payload p[0..len) into dst, which must hold exactly
 * wire_inflated_size() bytes (dst_len). Returns that size, or WIRE_E_COMPRESSION when the
 * stream is corrupt, inflates to any other size, or has trailing bytes.
 */
static inline long wire_inflate(const uint8_t *p, size_t len, uint8_t *dst, size_t dst_len)
{
	uLongf out = (uLongf)dst_len;
	uLong in;

	if (len < WIRE_ZLIB_PREFIX_SIZE + 1 || dst_len == 0 || wire_get32(p) != dst_len)
		return WIRE_E_COMPRESSION;
	in = (uLong)(len - WIRE_ZLIB_PREFIX_SIZE);
	/* A stream longer than dst_len fails with Z_BUF_ERROR; a shorter one leaves out short. */
	if (uncompress2(dst, &out, p + WIRE_ZLIB_PREFIX_SIZE, &in) != Z_OK || out != dst_len ||
	    in != len - WIRE_ZLIB_PREFIX_SIZE)
		return WIRE_E_COMPRESSION;
	return (long)dst_len;
}

/* wire_deflate_bound returns the largest frame wire_deflate can make of a payload_len payload. */
static inline size_t wire_deflate_bound(size_t payload_len)
{
	return WIRE_HEADER_SIZE + WIRE_ZLIB_PREFIX_SIZE + compressBound((uLong)payload_len);
}

/*
 * wire_deflate compresses the uncompressed STATS frame frame[0..frame_len) into a
 * WIRE_FLAG_ZLIB frame in dst[0..cap). Returns the new frame's size, WIRE_E_SPACE (cap below
 * wire_deflate_bound of the payload), or WIRE_E_COMPRESSION when zlib fails.
 */
static inline long wire_deflate(const uint8_t *frame, size_t frame_len, uint8_t *dst, size_t cap,
				int level)
{
	size_t payload_len = frame_len - WIRE_HEADER_SIZE;
	uLongf out;

	if (frame_len < WIRE_HEADER_SIZE || cap < wire_deflate_bound(payload_len))
		return WIRE_E_SPACE;
	out = (uLongf)(cap - WIRE_HEADER_SIZE - WIRE_ZLIB_PREFIX_SIZE);
	if (compress2(dst + WIRE_HEADER_SIZE + WIRE_ZLIB_PREFIX_SIZE, &out,
		      frame + WIRE_HEADER_SIZE, (uLong)payload_len, level) != Z_OK)
		return WIRE_E_COMPRESSION;
	wire_header_put(dst, wire_get16(frame + 4), WIRE_FLAG_ZLIB,
			(uint32_t)(WIRE_ZLIB_PREFIX_SIZE + out));
	wire_put32(dst + WIRE_HEADER_SIZE, (uint32_t)payload_len);
	return (long)(WIRE_HEADER_SIZE + WIRE_ZLIB_PREFIX_SIZE + out);
}

#endif /* KUBEZONNET_WIRE_H */
