/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.h: an HTTP/1.x request-head parser in the manner of picohttpparser: no allocation,
 * output pointers into the caller's buffer, a "bytes consumed / partial / error" contract,
 * and a resume position so that a peer sending one byte at a time costs one scan, not many.
 */
#ifndef KUBEZONNET_HTTP_H
#define KUBEZONNET_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS      64
#define HTTP_MAX_HEADER_BYTES 8192 /* request line and headers together */

enum http_result {
	HTTP_E_INVALID = -1,   /* not an HTTP/1.0 or 1.1 request head: answer 400 and close */
	HTTP_E_PARTIAL = -2,   /* not a whole request head yet: read more and call again */
	HTTP_E_TOO_LARGE = -3, /* head above HTTP_MAX_HEADER_BYTES or HTTP_MAX_HEADERS: 431 */
};

struct http_header {
	const char *name; /* not NUL-terminated */
	size_t name_len;
	const char *value; /* surrounding white space removed */
	size_t value_len;
};

struct http_request {
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	int minor_version; /* HTTP/1.minor_version */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t num_headers;
};

/*
 * http_parse_request parses the request head at buf[0..len). last_len is how many of those
 * bytes a previous call already saw (0 the first time): the scan for the end of the head
 * resumes there. Returns the head's length in bytes (the body, if any, follows), or a
 * negative http_result. On success *req points into buf.
 */
int http_parse_request(const char *buf, size_t len, size_t last_len, struct http_request *req);

/* http_header_value returns the first header named name (case-insensitive), or NULL. */
const struct http_header *http_header_value(const struct http_request *req, const char *name);

/* A response head, for the Kubernetes client. */
struct http_response {
	int minor_version;
	int status;
	const char *reason;
	size_t reason_len;
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t num_headers;
};

/*
 * http_parse_response parses a response head at buf[0..len) with the same contract as
 * http_parse_request: the head's length, or HTTP_E_PARTIAL, HTTP_E_INVALID, HTTP_E_TOO_LARGE.
 */
int http_parse_response(const char *buf, size_t len, size_t last_len, struct http_response *resp);

/* http_response_header returns the first header named name (case-insensitive), or NULL. */
const struct http_header *http_response_header(const struct http_response *resp, const char *name);

/*
 * Chunked transfer coding (RFC 9112 section 7.1), decoded in place as it arrives: chunk
 * boundaries need not fall anywhere in particular, and a chunk may arrive a byte at a time.
 */
struct http_chunked {
	int state;
	uint64_t remaining; /* bytes left in the current chunk */
	unsigned line;	    /* bytes of the current size or trailer line seen */
	int digits;
};

/*
 * http_chunked_decode decodes buf[0..*len) in place, continuing where the last call stopped.
 * On return buf[0..*len) holds the decoded data. Returns HTTP_E_PARTIAL while the body goes
 * on, HTTP_E_INVALID for a malformed body (bad size, size over 2^40, line over 4 KiB, missing
 * CRLF), or, once the last chunk and its trailers are in, the number of bytes after them
 * (not part of the body; they were moved to follow the decoded data).
 */
long http_chunked_decode(struct http_chunked *c, char *buf, size_t *len);

/*
 * http_accepts_token reports whether a comma-separated header value (Accept-Encoding,
 * Connection) lists token (case-insensitive), not excluded by a q=0 parameter.
 */
int http_accepts_token(const char *value, size_t len, const char *token);

#endif /* KUBEZONNET_HTTP_H */
