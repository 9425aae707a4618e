/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for http.c: a table of valid and invalid request heads, each parsed against a
 * PROT_NONE guard page, whole and one byte at a time (with the resume position), size limits,
 * and the Accept-Encoding token check.
 */
#include "../http.h"
#include "test.h"

static int parse_guarded(const char *s, size_t len, size_t last, struct http_request *req)
{
	size_t map_len;
	unsigned char *p = test_guarded(s, len, &map_len);
	int rc = http_parse_request((const char *)p, len, last, req);

	test_guarded_free(p, len, map_len);
	return rc;
}

static const struct {
	const char *name, *req;
	int want; /* > 0: the head's length is the whole input */
} rows[] = {
	{"GET with headers", "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
	 1},
	{"HEAD, HTTP/1.0", "HEAD /healthz HTTP/1.0\r\n\r\n", 1},
	{"bare LF line ends", "GET / HTTP/1.1\nHost: x\n\n", 1},
	{"header value with spaces trimmed", "GET / HTTP/1.1\r\nX-A:   b c  \r\n\r\n", 1},
	{"empty header value", "GET / HTTP/1.1\r\nX-A:\r\n\r\n", 1},
	{"POST parses (the server answers 405)",
	 "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1},
	{"partial: no blank line", "GET / HTTP/1.1\r\nHost: x\r\n", HTTP_E_PARTIAL},
	{"partial: request line only", "GET / HTTP/1.1\r\n", HTTP_E_PARTIAL},
	{"partial: empty", "", HTTP_E_PARTIAL},
	{"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", HTTP_E_INVALID},
	{"HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", HTTP_E_INVALID},
	{"lower-case protocol", "GET / http/1.1\r\n\r\n", HTTP_E_INVALID},
	{"no target", "GET  HTTP/1.1\r\n\r\n", HTTP_E_INVALID},
	{"no version", "GET /\r\n\r\n", HTTP_E_INVALID},
	{"space in method", "G ET / HTTP/1.1\r\n\r\n", HTTP_E_INVALID},
	{"control byte in target", "GET /\x01 HTTP/1.1\r\n\r\n", HTTP_E_INVALID},
	{"header without colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", HTTP_E_INVALID},
	{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", HTTP_E_INVALID},
	{"empty header name", "GET / HTTP/1.1\r\n: x\r\n\r\n", HTTP_E_INVALID},
	{"obsolete line folding", "GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n", HTTP_E_INVALID},
	{"NUL in header value", "GET / HTTP/1.1\r\nX-A: b\0c\r\n\r\n", HTTP_E_INVALID},
	{"garbage", "\x16\x03\x01\x02\x05\x01\x01\x01\xfc\x03\x03\r\n\r\n", HTTP_E_INVALID},
};

static size_t row_len(size_t i)
{
	/* The NUL row has an embedded NUL: its length is up to the final blank line. */
	const char *r = rows[i].req;
	size_t n = strlen(r);
	if (strstr(rows[i].name, "NUL"))
		n = n + 1 + strlen(r + n + 1);
	return n;
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct http_request req;
		size_t len = row_len(i);
		int want = rows[i].want > 0 ? (int)len : rows[i].want;
		int got = parse_guarded(rows[i].req, len, 0, &req);

		if (got != want)
			test_fail(__FILE__, __LINE__, "got %d, want %d", got, want);
		/* One byte at a time, resuming: partial until whole, then the same answer. */
		for (size_t k = 1; k <= len && rows[i].want > 0; k++) {
			int r = parse_guarded(rows[i].req, k, k - 1, &req);
			if (r != (k < len ? HTTP_E_PARTIAL : want))
				test_fail(__FILE__, __LINE__, "with %zu of %zu bytes: %d", k, len,
					  r);
		}
		test_result("http: %s", rows[i].name);
	}
}

static void test_fields(void)
{
	const char *s =
		"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept-encoding: br, GZIP;q=0.5\r\n"
		"Connection: close\r\n\r\nBODY";
	struct http_request req;
	int n = http_parse_request(s, strlen(s), 0, &req);
	const struct http_header *h;

	EXPECT_EQ(n, strlen(s) - 4);
	EXPECT(req.method_len == 3 && memcmp(req.method, "GET", 3) == 0);
	EXPECT(req.target_len == 12 && memcmp(req.target, "/metrics?x=1", 12) == 0);
	EXPECT_EQ(req.minor_version, 1);
	EXPECT_EQ(req.num_headers, 3);
	h = http_header_value(&req, "Accept-Encoding");
	EXPECT(h && http_accepts_token(h->value, h->value_len, "gzip"));
	EXPECT(h && !http_accepts_token(h->value, h->value_len, "deflate"));
	h = http_header_value(&req, "connection");
	EXPECT(h && http_accepts_token(h->value, h->value_len, "close"));
	EXPECT(http_header_value(&req, "Missing") == NULL);
}

static void test_accepts_token(void)
{
	EXPECT(http_accepts_token("gzip", 4, "gzip"));
	EXPECT(http_accepts_token("deflate, gzip", 13, "gzip"));
	EXPECT(!http_accepts_token("gzip;q=0", 8, "gzip"));
	EXPECT(!http_accepts_token("gzip; q=0.000", 13, "gzip"));
	EXPECT(http_accepts_token("gzip;q=0.001", 12, "gzip"));
	EXPECT(!http_accepts_token("xgzip", 5, "gzip"));
	EXPECT(!http_accepts_token("", 0, "gzip"));
}

static void test_limits(void)
{
	static char big[HTTP_MAX_HEADER_BYTES + 200];
	struct http_request req;
	size_t n;

	/* A head larger than the limit, whole or still arriving, is refused. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Big: ");
	memset(big + n, 'a', HTTP_MAX_HEADER_BYTES);
	n += HTTP_MAX_HEADER_BYTES;
	EXPECT_EQ(parse_guarded(big, n, 0, &req), HTTP_E_TOO_LARGE);
	memcpy(big + n, "\r\n\r\n", 4);
	EXPECT_EQ(parse_guarded(big, n + 4, 0, &req), HTTP_E_TOO_LARGE);
	/* More headers than HTTP_MAX_HEADERS. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "X-%d: v\r\n", i);
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
	EXPECT_EQ(parse_guarded(big, n, 0, &req), HTTP_E_TOO_LARGE);
}

/* decode_in_pieces feeds body[0..len) to a chunked decoder piece bytes at a time. */
static long decode_in_pieces(const char *body, size_t len, size_t piece, char *out, size_t *out_len)
{
	struct http_chunked c = {0};
	char scratch[8192];
	long rc = HTTP_E_PARTIAL;

	*out_len = 0;
	for (size_t off = 0; off < len && rc == HTTP_E_PARTIAL; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		memcpy(scratch, body + off, n);
		rc = http_chunked_decode(&c, scratch, &n);
		memcpy(out + *out_len, scratch, n);
		*out_len += n;
	}
	return rc;
}

/* The watch stream whose chunks split and merge events decodes to exactly its events. */
static void test_chunked_fixture(void)
{
	size_t raw_len, want_len;
	char *raw =
		test_fixture("watch_stream_raw_http_chunked_split_events_derived.http", &raw_len);
	char *want =
		test_fixture("watch_events_pods_recreated_bookmark_410_derived.jsonl", &want_len);
	struct http_response resp;
	static char out[65536];
	static const size_t pieces[] = {1, 2, 3, 7, 64, 1000, 4096, 8192};

	if (!raw || !want) {
		printf("ok - test_chunked_fixture # SKIP fixtures not found\n");
		free(raw);
		free(want);
		return;
	}
	int head = http_parse_response(raw, raw_len, 0, &resp);
	EXPECT(head > 0);
	EXPECT_EQ(resp.status, 200);
	const struct http_header *te = http_response_header(&resp, "transfer-encoding");
	EXPECT(te && te->value_len == 7 && memcmp(te->value, "chunked", 7) == 0);
	for (size_t i = 0; head > 0 && i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		size_t n;
		long rc = decode_in_pieces(raw + head, raw_len - (size_t)head, pieces[i], out, &n);
		if (rc < 0 || n != want_len || memcmp(out, want, want_len) != 0)
			test_fail(__FILE__, __LINE__,
				  "in pieces of %zu: rc %ld, %zu bytes (want %zu)", pieces[i], rc,
				  n, want_len);
	}
	free(raw);
	free(want);
}

static void test_chunked_rejects(void)
{
	static const struct {
		const char *body;
		long want;
	} rows[] = {
		{"3\r\nabc\r\n0\r\n\r\n", 0},
		{"3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\nNEXT", 4},
		{"3\nabc\n0\n\n", 0},
		{"3\r\nabc\r\n", HTTP_E_PARTIAL},
		{"zz\r\n", HTTP_E_INVALID},
		{"\r\n", HTTP_E_INVALID},
		{"10000000001\r\n", HTTP_E_INVALID},
		{"3\r\nabcX\r\n", HTTP_E_INVALID},
		{"3\r\nabc\rX", HTTP_E_INVALID},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct http_chunked c = {0};
		char buf[128];
		size_t n = strlen(rows[i].body);
		memcpy(buf, rows[i].body, n);
		long rc = http_chunked_decode(&c, buf, &n);
		if (rc != rows[i].want)
			test_fail(__FILE__, __LINE__, "row %zu: got %ld, want %ld", i, rc,
				  rows[i].want);
		if (rc >= 0 && (n != 3 || memcmp(buf, "abc", 3) != 0))
			test_fail(__FILE__, __LINE__, "row %zu: decoded %zu bytes", i, n);
		if (rc == 4 && memcmp(buf + n, "NEXT", 4) != 0)
			test_fail(__FILE__, __LINE__,
				  "row %zu: the bytes after the body moved wrong", i);
	}
	/* An extension line over 4 KiB. */
	struct http_chunked c = {0};
	static char big[5000];
	size_t n = sizeof(big);
	memset(big, 'e', sizeof(big));
	big[0] = '1', big[1] = ';';
	EXPECT_EQ(http_chunked_decode(&c, big, &n), HTTP_E_INVALID);
}

static void test_responses(void)
{
	size_t len;
	char *raw = test_fixture("list_raw_http_410_expired_continue_derived.http", &len);
	struct http_response resp;

	if (raw) {
		EXPECT(http_parse_response(raw, len, 0, &resp) > 0);
		EXPECT_EQ(resp.status, 410);
		EXPECT(resp.reason_len == 4 && memcmp(resp.reason, "Gone", 4) == 0);
		const struct http_header *cl = http_response_header(&resp, "Content-Length");
		EXPECT(cl && atoi(cl->value) == 652);
		free(raw);
	}
	EXPECT_EQ(http_parse_response("HTTP/1.1 200 OK\r\n", 17, 0, &resp), HTTP_E_PARTIAL);
	EXPECT_EQ(http_parse_response("HTTP/1.1 20 OK\r\n\r\n", 18, 0, &resp), HTTP_E_INVALID);
	EXPECT_EQ(http_parse_response("HTTP/2 200 OK\r\n\r\n", 17, 0, &resp), HTTP_E_INVALID);
	EXPECT_EQ(http_parse_response("HTTP/1.1 204\r\n\r\n", 16, 0, &resp), 16);
	EXPECT_EQ(resp.status, 204);
}

int main(void)
{
	test_table();
	RUN(test_chunked_fixture);
	RUN(test_chunked_rejects);
	RUN(test_responses);
	RUN(test_fields);
	RUN(test_accepts_token);
	RUN(test_limits);
	return test_done();
}
