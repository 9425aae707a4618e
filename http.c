/* SPDX-License-Identifier: Apache-2.0 */
/* http.c: see http.h. */
#include <string.h>
#include <strings.h>

#include "http.h"

/* RFC 9110 tchar. */
static int http_is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* http_line returns the length of the line at p (without its CRLF or LF), or -1 if none. */
static long http_line(const char *p, const char *end, const char **next)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	const char *eol;

	if (!nl)
		return -1;
	eol = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
	*next = nl + 1;
	return eol - p;
}

/* http_head_complete looks for the blank line ending the head, from a resume point. */
static int http_head_complete(const char *buf, size_t len, size_t last_len)
{
	size_t from = last_len > 3 ? last_len - 3 : 0;

	for (size_t i = from; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return 1;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return 1;
	}
	return 0;
}

/*
 * http_head_end checks that a whole head has arrived (resuming the scan at last_len) and
 * sets *end to where parsing must stop. Returns 0, HTTP_E_PARTIAL or HTTP_E_TOO_LARGE.
 */
static int http_head_end(const char *buf, size_t len, size_t last_len, const char **end)
{
	if (!http_head_complete(buf, len, last_len))
		return len > HTTP_MAX_HEADER_BYTES ? HTTP_E_TOO_LARGE : HTTP_E_PARTIAL;
	*end = buf + (len > HTTP_MAX_HEADER_BYTES ? HTTP_MAX_HEADER_BYTES : len);
	return 0;
}

/*
 * http_parse_headers parses header lines from p up to the blank line that ends the head
 * (which must lie before end) into headers[]. Returns the head's length from buf, or a
 * negative http_result.
 */
static int http_parse_headers(const char *buf, const char *p, const char *end,
			      struct http_header *headers, size_t *num_headers)
{
	const char *next;
	long n;

	*num_headers = 0;
	for (;;) {
		const char *l, *le, *colon, *v, *ve;

		n = http_line(p, end, &next);
		if (n < 0)
			return HTTP_E_TOO_LARGE;
		if (n == 0)
			return (int)(next - buf);
		l = p;
		le = p + n;
		if (*l == ' ' || *l == '\t')
			return HTTP_E_INVALID; /* obsolete line folding */
		if (*num_headers == HTTP_MAX_HEADERS)
			return HTTP_E_TOO_LARGE;
		colon = l;
		while (colon < le && http_is_tchar((unsigned char)*colon))
			colon++;
		if (colon == l || colon >= le || *colon != ':')
			return HTTP_E_INVALID;
		v = colon + 1;
		while (v < le && (*v == ' ' || *v == '\t'))
			v++;
		ve = le;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (const char *c = v; c < ve; c++)
			if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
				return HTTP_E_INVALID;
		headers[(*num_headers)++] = (struct http_header){
			.name = l,
			.name_len = (size_t)(colon - l),
			.value = v,
			.value_len = (size_t)(ve - v),
		};
		p = next;
	}
}

/* http_find_header returns the first of headers[0..n) named name (case-insensitive). */
static const struct http_header *http_find_header(const struct http_header *headers, size_t n,
						  const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (headers[i].name_len == len && strncasecmp(headers[i].name, name, len) == 0)
			return &headers[i];
	return NULL;
}

int http_parse_request(const char *buf, size_t len, size_t last_len, struct http_request *req)
{
	const char *p = buf, *end, *next;
	long n;

	n = http_head_end(buf, len, last_len, &end);
	if (n < 0)
		return (int)n;

	/* Request line: method SP target SP HTTP/1.x */
	n = http_line(p, end, &next);
	if (n < 0)
		return HTTP_E_TOO_LARGE;
	{
		const char *l = p, *le = p + n, *sp;

		req->method = l;
		while (l < le && http_is_tchar((unsigned char)*l))
			l++;
		req->method_len = (size_t)(l - req->method);
		if (req->method_len == 0 || l >= le || *l != ' ')
			return HTTP_E_INVALID;
		req->target = ++l;
		sp = memchr(l, ' ', (size_t)(le - l));
		if (!sp || sp == l)
			return HTTP_E_INVALID;
		for (const char *c = l; c < sp; c++)
			if ((unsigned char)*c <= 0x20 || *c == 0x7f)
				return HTTP_E_INVALID;
		req->target_len = (size_t)(sp - l);
		l = sp + 1;
		if (le - l != 8 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1'))
			return HTTP_E_INVALID;
		req->minor_version = l[7] - '0';
	}
	return http_parse_headers(buf, next, end, req->headers, &req->num_headers);
}

const struct http_header *http_header_value(const struct http_request *req, const char *name)
{
	return http_find_header(req->headers, req->num_headers, name);
}

int http_accepts_token(const char *value, size_t len, const char *token)
{
	size_t tlen = strlen(token), i = 0;

	while (i < len) {
		size_t start, stop, elem_end;

		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		start = i;
		while (i < len && value[i] != ',' && value[i] != ';' && value[i] != ' ' &&
		       value[i] != '\t')
			i++;
		stop = i;
		elem_end = i;
		while (elem_end < len && value[elem_end] != ',')
			elem_end++;
		if (stop - start == tlen && strncasecmp(value + start, token, tlen) == 0) {
			/* q=0 (or 0.0, 0.000) excludes it */
			for (size_t k = stop; k + 2 < elem_end; k++) {
				if ((value[k] == 'q' || value[k] == 'Q') && value[k + 1] == '=') {
					size_t d = k + 2;
					int nonzero = 0;
					for (; d < elem_end && value[d] != ' '; d++)
						if (value[d] >= '1' && value[d] <= '9')
							nonzero = 1;
					return nonzero;
				}
			}
			return 1;
		}
		i = elem_end;
	}
	return 0;
}

int http_parse_response(const char *buf, size_t len, size_t last_len, struct http_response *resp)
{
	const char *p = buf, *end, *next;
	long n;

	n = http_head_end(buf, len, last_len, &end);
	if (n < 0)
		return (int)n;
	n = http_line(p, end, &next);
	if (n < 0)
		return HTTP_E_TOO_LARGE;
	/* HTTP/1.x SP 3DIGIT SP reason */
	if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
	    p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
	    (n > 12 && p[12] != ' '))
		return HTTP_E_INVALID;
	resp->minor_version = p[7] - '0';
	resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	resp->reason = n > 12 ? p + 13 : p + 12;
	resp->reason_len = n > 12 ? (size_t)(n - 13) : 0;
	return http_parse_headers(buf, next, end, resp->headers, &resp->num_headers);
}

const struct http_header *http_response_header(const struct http_response *resp, const char *name)
{
	return http_find_header(resp->headers, resp->num_headers, name);
}

enum {
	HTTP_CHUNK_SIZE,    /* hex digits */
	HTTP_CHUNK_EXT,	    /* ";ext" up to the line end */
	HTTP_CHUNK_DATA,    /* remaining bytes of data */
	HTTP_CHUNK_DATA_CR, /* the CR after the data */
	HTTP_CHUNK_DATA_LF, /* the LF after the data */
	HTTP_CHUNK_TRAILER, /* trailer lines, up to an empty one */
	HTTP_CHUNK_DONE,
};

#define HTTP_CHUNK_LINE_MAX 4096
#define HTTP_CHUNK_SIZE_MAX (1ull << 40)

long http_chunked_decode(struct http_chunked *c, char *buf, size_t *len)
{
	size_t in = 0, out = 0, n = *len;

	while (in < n && c->state != HTTP_CHUNK_DONE) {
		char ch = buf[in];

		switch (c->state) {
		case HTTP_CHUNK_SIZE: {
			int v = (ch >= '0' && ch <= '9')   ? ch - '0'
				: (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
				: (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
							   : -1;
			in++;
			if (v >= 0) {
				c->remaining = c->remaining * 16 + (uint64_t)v;
				if (++c->digits > 11 || c->remaining > HTTP_CHUNK_SIZE_MAX)
					return HTTP_E_INVALID;
				break;
			}
			if (c->digits == 0)
				return HTTP_E_INVALID;
			if (ch == '\n')
				goto size_line_done;
			if (ch != ';' && ch != '\r' && ch != ' ' && ch != '\t')
				return HTTP_E_INVALID;
			c->state = HTTP_CHUNK_EXT;
			c->line = 0;
			break;
		}
		case HTTP_CHUNK_EXT:
			in++;
			if (ch != '\n') {
				if (++c->line > HTTP_CHUNK_LINE_MAX)
					return HTTP_E_INVALID;
				break;
			}
		size_line_done:
			c->digits = 0;
			c->line = 0;
			c->state = c->remaining ? HTTP_CHUNK_DATA : HTTP_CHUNK_TRAILER;
			break;
		case HTTP_CHUNK_DATA: {
			size_t take = n - in;
			if (take > c->remaining)
				take = (size_t)c->remaining;
			memmove(buf + out, buf + in, take);
			in += take;
			out += take;
			c->remaining -= take;
			if (!c->remaining)
				c->state = HTTP_CHUNK_DATA_CR;
			break;
		}
		case HTTP_CHUNK_DATA_CR:
			in++;
			if (ch == '\r') {
				c->state = HTTP_CHUNK_DATA_LF;
				break;
			}
			if (ch != '\n')
				return HTTP_E_INVALID;
			c->state = HTTP_CHUNK_SIZE;
			break;
		case HTTP_CHUNK_DATA_LF:
			in++;
			if (ch != '\n')
				return HTTP_E_INVALID;
			c->state = HTTP_CHUNK_SIZE;
			break;
		case HTTP_CHUNK_TRAILER:
			in++;
			if (ch == '\n') {
				if (c->line == 0)
					c->state = HTTP_CHUNK_DONE;
				c->line = 0;
			} else if (ch != '\r' || c->line) {
				if (++c->line > HTTP_CHUNK_LINE_MAX)
					return HTTP_E_INVALID;
			}
			break;
		}
	}
	/* What follows the body stays, after the decoded data. */
	memmove(buf + out, buf + in, n - in);
	*len = out;
	return c->state == HTTP_CHUNK_DONE ? (long)(n - in) : HTTP_E_PARTIAL;
}
