/* SPDX-License-Identifier: Apache-2.0 */
/* json.c: see json.h. A recursive-descent parser whose recursion is bounded by JSON_MAX_DEPTH. */
#include <stdarg.h>
#include <string.h>

#include "json.h"

struct json_parser {
	const char *js;
	size_t len, pos;
	struct json_token *tokens;
	uint32_t max, count;
	int depth;
};

static void json_skip_space(struct json_parser *p)
{
	while (p->pos < p->len) {
		char c = p->js[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

/* json_new reserves the next token; in count-only mode it only counts. */
static int json_new(struct json_parser *p, enum json_type type, size_t start)
{
	uint32_t i = p->count;

	if (p->tokens) {
		if (i >= p->max)
			return JSON_E_NOMEM;
		p->tokens[i] = (struct json_token){.type = type, .start = (uint32_t)start};
	}
	p->count++;
	return (int)i;
}

static void json_close(struct json_parser *p, int i, size_t end)
{
	if (p->tokens) {
		p->tokens[i].end = (uint32_t)end;
		p->tokens[i].next = p->count;
	}
}

static int json_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* json_utf8_length returns the length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t json_utf8_length(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return n == 0 ? 0 : (size_t)-1; /* maybe partial */
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static int json_parse_string(struct json_parser *p)
{
	size_t start = ++p->pos; /* after the opening quote */
	int t = json_new(p, JSON_STRING, start);

	if (t < 0)
		return t;
	while (p->pos < p->len) {
		unsigned char c = (unsigned char)p->js[p->pos];

		if (c == '"') {
			json_close(p, t, p->pos);
			p->pos++;
			return t;
		}
		if (c < 0x20)
			return JSON_E_INVAL;
		if (c == '\\') {
			if (p->pos + 1 >= p->len)
				return JSON_E_PART;
			c = (unsigned char)p->js[p->pos + 1];
			if (c == 'u') {
				for (int k = 2; k < 6; k++) {
					if (p->pos + (size_t)k >= p->len)
						return JSON_E_PART;
					if (json_hex(p->js[p->pos + (size_t)k]) < 0)
						return JSON_E_INVAL;
				}
				p->pos += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", c) || c == '\0')
				return JSON_E_INVAL;
			p->pos += 2;
			continue;
		}
		size_t n = json_utf8_length((const unsigned char *)p->js + p->pos, p->len - p->pos);
		if (n == (size_t)-1)
			return JSON_E_PART;
		if (n == 0)
			return JSON_E_INVAL;
		p->pos += n;
	}
	return JSON_E_PART;
}

/* Numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int json_parse_number(struct json_parser *p)
{
	size_t start = p->pos;
	const char *s = p->js;
	int t;

#define JSON_DIGIT(i) ((i) < p->len && s[i] >= '0' && s[i] <= '9')
	if (p->pos < p->len && s[p->pos] == '-')
		p->pos++;
	if (p->pos >= p->len)
		return JSON_E_PART;
	if (s[p->pos] == '0') {
		p->pos++;
	} else if (JSON_DIGIT(p->pos)) {
		while (JSON_DIGIT(p->pos))
			p->pos++;
	} else {
		return JSON_E_INVAL;
	}
	if (p->pos < p->len && s[p->pos] == '.') {
		p->pos++;
		if (p->pos >= p->len)
			return JSON_E_PART;
		if (!JSON_DIGIT(p->pos))
			return JSON_E_INVAL;
		while (JSON_DIGIT(p->pos))
			p->pos++;
	}
	if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-'))
			p->pos++;
		if (p->pos >= p->len)
			return JSON_E_PART;
		if (!JSON_DIGIT(p->pos))
			return JSON_E_INVAL;
		while (JSON_DIGIT(p->pos))
			p->pos++;
	}
#undef JSON_DIGIT
	/* A number at the very end of the input may continue in bytes not yet here. */
	if (p->pos == p->len && p->depth > 0)
		return JSON_E_PART;
	t = json_new(p, JSON_NUMBER, start);
	if (t < 0)
		return t;
	json_close(p, t, p->pos);
	return t;
}

static int json_parse_literal(struct json_parser *p, const char *word, enum json_type type)
{
	size_t n = strlen(word), start = p->pos;
	int t;

	for (size_t k = 0; k < n; k++) {
		if (p->pos + k >= p->len)
			return JSON_E_PART;
		if (p->js[p->pos + k] != word[k])
			return JSON_E_INVAL;
	}
	p->pos += n;
	t = json_new(p, type, start);
	if (t < 0)
		return t;
	json_close(p, t, p->pos);
	return t;
}

static int json_parse_value(struct json_parser *p);

/* json_parse_container parses an array or an object whose opening bracket is at p->pos. */
static int json_parse_container(struct json_parser *p, int object)
{
	char close = object ? '}' : ']';
	int t = json_new(p, object ? JSON_OBJECT : JSON_ARRAY, p->pos);
	uint32_t size = 0;

	if (t < 0)
		return t;
	if (++p->depth > JSON_MAX_DEPTH)
		return JSON_E_DEPTH;
	p->pos++;
	json_skip_space(p);
	if (p->pos >= p->len)
		return JSON_E_PART;
	if (p->js[p->pos] == close) {
		p->pos++;
		goto done;
	}
	for (;;) {
		int rc;

		json_skip_space(p);
		if (p->pos >= p->len)
			return JSON_E_PART;
		if (object) {
			if (p->js[p->pos] != '"')
				return JSON_E_INVAL;
			rc = json_parse_string(p);
			if (rc < 0)
				return rc;
			json_skip_space(p);
			if (p->pos >= p->len)
				return JSON_E_PART;
			if (p->js[p->pos] != ':')
				return JSON_E_INVAL;
			p->pos++;
		}
		rc = json_parse_value(p);
		if (rc < 0)
			return rc;
		size++;
		json_skip_space(p);
		if (p->pos >= p->len)
			return JSON_E_PART;
		if (p->js[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->js[p->pos] == close) {
			p->pos++;
			break;
		}
		return JSON_E_INVAL;
	}
done:
	p->depth--;
	if (p->tokens)
		p->tokens[t].size = size;
	json_close(p, t, p->pos);
	return t;
}

static int json_parse_value(struct json_parser *p)
{
	json_skip_space(p);
	if (p->pos >= p->len)
		return JSON_E_PART;
	switch (p->js[p->pos]) {
	case '{':
		return json_parse_container(p, 1);
	case '[':
		return json_parse_container(p, 0);
	case '"':
		return json_parse_string(p);
	case 't':
		return json_parse_literal(p, "true", JSON_TRUE);
	case 'f':
		return json_parse_literal(p, "false", JSON_FALSE);
	case 'n':
		return json_parse_literal(p, "null", JSON_NULL);
	default:
		return json_parse_number(p);
	}
}

int json_parse(const char *js, size_t len, struct json_token *tokens, uint32_t max_tokens,
	       size_t *error_at)
{
	struct json_parser p = {.js = js, .len = len, .tokens = tokens, .max = max_tokens};
	int rc = json_parse_value(&p);

	if (rc >= 0) {
		json_skip_space(&p);
		if (p.pos != p.len)
			rc = JSON_E_INVAL; /* a second value, or garbage after the first */
	}
	if (rc < 0) {
		if (error_at)
			*error_at = p.pos;
		return rc;
	}
	return (int)p.count;
}

const char *json_error_string(int error)
{
	switch (error) {
	case JSON_E_NOMEM:
		return "too many tokens";
	case JSON_E_INVAL:
		return "invalid JSON";
	case JSON_E_PART:
		return "unexpected end of input";
	case JSON_E_DEPTH:
		return "nested too deeply";
	default:
		return error >= 0 ? "ok" : "unknown error";
	}
}

void json_line_column(const char *js, size_t offset, unsigned *line, unsigned *column)
{
	*line = 1;
	*column = 1;
	for (size_t i = 0; i < offset; i++) {
		if (js[i] == '\n') {
			(*line)++;
			*column = 1;
		} else if (((unsigned char)js[i] & 0xc0) != 0x80) {
			(*column)++;
		}
	}
}

int json_is(const char *js, const struct json_token *tokens, int i, const char *s)
{
	size_t n = strlen(s);

	return i >= 0 && tokens[i].type == JSON_STRING && tokens[i].end - tokens[i].start == n &&
	       memcmp(js + tokens[i].start, s, n) == 0;
}

int json_first(const struct json_token *tokens, int parent)
{
	if (parent < 0 ||
	    (tokens[parent].type != JSON_OBJECT && tokens[parent].type != JSON_ARRAY) ||
	    tokens[parent].size == 0)
		return -1;
	return parent + 1;
}

int json_next(const struct json_token *tokens, int parent, int i)
{
	uint32_t n;

	if (parent < 0 || i <= parent)
		return -1;
	/* A member is a key, which has no children, and its value right after it. */
	n = tokens[parent].type == JSON_OBJECT ? tokens[i + 1].next : tokens[i].next;
	return n < tokens[parent].next ? (int)n : -1;
}

int json_child(const struct json_token *tokens, int parent, uint32_t i)
{
	int t = json_first(tokens, parent);

	if (t < 0 || i >= tokens[parent].size)
		return -1;
	for (uint32_t k = 0; k < i; k++)
		t = json_next(tokens, parent, t);
	return t;
}

int json_get(const char *js, const struct json_token *tokens, int object, const char *key)
{
	if (object < 0 || tokens[object].type != JSON_OBJECT)
		return -1;
	for (int t = json_first(tokens, object); t >= 0; t = json_next(tokens, object, t))
		if (json_is(js, tokens, t, key))
			return t + 1;
	return -1;
}

static size_t json_put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static uint32_t json_hex4(const char *s)
{
	return (uint32_t)(json_hex(s[0]) << 12 | json_hex(s[1]) << 8 | json_hex(s[2]) << 4 |
			  json_hex(s[3]));
}

int json_string(const char *js, const struct json_token *tokens, int i, char *out, size_t cap)
{
	size_t n = 0;

	if (i < 0 || tokens[i].type != JSON_STRING || cap == 0)
		return -1;
	for (uint32_t k = tokens[i].start; k < tokens[i].end;) {
		char buf[4];
		size_t m;

		if (js[k] != '\\') {
			buf[0] = js[k++];
			m = 1;
		} else {
			char e = js[k + 1];
			const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
			const char *hit = NULL;

			if (e != 'u') {
				for (const char *q = map; *q; q += 2)
					if (*q == e)
						hit = q + 1;
				if (!hit)
					return -1;
				buf[0] = *hit;
				m = 1;
				k += 2;
			} else {
				uint32_t cp = json_hex4(js + k + 2);

				k += 6;
				if (cp >= 0xdc00 && cp <= 0xdfff)
					return -1; /* a low surrogate first */
				if (cp >= 0xd800 && cp <= 0xdbff) {
					uint32_t lo;
					if (k + 6 > tokens[i].end || js[k] != '\\' ||
					    js[k + 1] != 'u')
						return -1;
					lo = json_hex4(js + k + 2);
					if (lo < 0xdc00 || lo > 0xdfff)
						return -1;
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					k += 6;
				}
				if (cp == 0)
					return -1; /* NUL would end the C string early */
				m = json_put_utf8(buf, cp);
			}
		}
		if (n + m >= cap)
			return -1;
		memcpy(out + n, buf, m);
		n += m;
	}
	out[n] = '\0';
	return (int)n;
}

int json_path(const char *js, const struct json_token *tokens, int i, ...)
{
	va_list ap;
	const char *key;

	va_start(ap, i);
	while (i >= 0 && (key = va_arg(ap, const char *)) != NULL)
		i = json_get(js, tokens, i, key);
	va_end(ap);
	return i;
}

/* ---- streaming a list ---- */

enum {
	JL_OPEN,       /* before the opening brace */
	JL_FIRST_KEY,  /* a key or the closing brace */
	JL_KEY,	       /* a key (after a comma) */
	JL_COLON,      /* the colon after a key */
	JL_ARRAY_OPEN, /* the value of array_key: '[' expected (anything else is a member) */
	JL_FIRST_ITEM, /* an element or ']' */
	JL_ITEM,       /* an element */
	JL_ITEM_NEXT,  /* ',' or ']' */
	JL_VALUE,      /* a member's value */
	JL_NEXT,       /* ',' or '}' */
	JL_DONE,       /* after the closing brace: only white space */
};

static int json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * json_list_scan scans the value starting at js[at], resuming after l->scanned bytes. Returns
 * its length, 0 when it is not complete yet, or a negative json_error.
 */
static long json_list_scan(struct json_list *l, const char *js, size_t len, size_t at)
{
	size_t i = at + l->scanned;
	char first = js[at];

	if (first != '{' && first != '[' && first != '"') {
		/* A number or a literal ends at a delimiter; json_parse checks what it is. */
		while (i < len && !json_space(js[i]) && js[i] != ',' && js[i] != ']' &&
		       js[i] != '}')
			i++;
		l->scanned = i - at;
		return i < len ? (long)(i - at) : 0;
	}
	for (; i < len; i++) {
		char c = js[i];
		if (l->in_string) {
			if (l->escape)
				l->escape = 0;
			else if (c == '\\')
				l->escape = 1;
			else if (c == '"') {
				l->in_string = 0;
				if (l->depth == 0)
					return (long)(i + 1 - at);
			}
			continue;
		}
		if (c == '"') {
			l->in_string = 1;
		} else if (c == '{' || c == '[') {
			if (++l->depth > JSON_MAX_DEPTH)
				return JSON_E_DEPTH;
		} else if (c == '}' || c == ']') {
			if (--l->depth == 0)
				return (long)(i + 1 - at);
			if (l->depth < 0)
				return JSON_E_INVAL;
		}
	}
	l->scanned = i - at;
	return 0;
}

int json_list_next(struct json_list *l, const char *js, size_t len, size_t *pos,
		   const char *array_key, size_t *start, size_t *end)
{
	size_t p = *pos;

	for (;;) {
		long n;

		/* White space before anything but the rest of a key or value already begun. */
		if (l->scanned == 0) {
			while (p < len && json_space(js[p]))
				p++;
			*pos = p;
			if (p == len)
				return JSON_E_PART;
		}
		switch (l->state) {
		case JL_OPEN:
			if (js[p] != '{')
				return JSON_E_INVAL;
			l->state = JL_FIRST_KEY;
			p++;
			break;
		case JL_FIRST_KEY:
		case JL_KEY: {
			size_t q, k;
			if (l->scanned == 0) {
				if (js[p] == '}' && l->state == JL_FIRST_KEY) {
					l->state = JL_DONE;
					*pos = p + 1;
					return JSON_LIST_END;
				}
				if (js[p] != '"')
					return JSON_E_INVAL;
				l->scanned = 1; /* the opening quote */
			}
			/* Resume after what an earlier call scanned: a key may arrive a byte at a time. */
			for (q = p + l->scanned; q < len; q++) {
				if (l->escape)
					l->escape = 0;
				else if (js[q] == '\\')
					l->escape = 1;
				else if (js[q] == '"')
					break;
			}
			if (q == len) {
				l->scanned = q - p;
				return JSON_E_PART; /* *pos stays at the key's quote */
			}
			k = q - (p + 1);
			if (k >= sizeof(l->key))
				k = sizeof(l->key) - 1;
			memcpy(l->key, js + p + 1, k);
			l->key[k] = '\0';
			l->scanned = 0;
			l->escape = 0;
			p = q + 1;
			l->state = JL_COLON;
			break;
		}
		case JL_COLON:
			if (js[p] != ':')
				return JSON_E_INVAL;
			p++;
			l->state = strcmp(l->key, array_key) == 0 ? JL_ARRAY_OPEN : JL_VALUE;
			break;
		case JL_ARRAY_OPEN:
			if (js[p] == '[') {
				l->state = JL_FIRST_ITEM;
				p++;
			} else {
				l->state = JL_VALUE; /* "items": null, say: an ordinary member */
			}
			break;
		case JL_FIRST_ITEM:
			if (js[p] == ']') {
				l->state = JL_NEXT;
				p++;
				break;
			}
			l->state = JL_ITEM;
			l->scanned = 0;
			l->depth = l->in_string = l->escape = 0;
			break;
		case JL_ITEM_NEXT:
			if (js[p] == ']') {
				l->state = JL_NEXT;
			} else if (js[p] == ',') {
				l->state = JL_ITEM;
				l->scanned = 0;
				l->depth = l->in_string = l->escape = 0;
			} else {
				return JSON_E_INVAL;
			}
			p++;
			break;
		case JL_ITEM:
		case JL_VALUE:
			if (l->scanned == 0 && (js[p] == ',' || js[p] == ']' || js[p] == '}'))
				return JSON_E_INVAL; /* a missing value */
			n = json_list_scan(l, js, len, p);
			if (n < 0)
				return (int)n;
			if (n == 0) {
				*pos = p; /* the value starts here; keep it */
				return JSON_E_PART;
			}
			*start = p;
			*end = p + (size_t)n;
			*pos = *end;
			l->scanned = 0;
			l->depth = l->in_string = l->escape = 0;
			if (l->state == JL_ITEM) {
				l->state = JL_ITEM_NEXT;
				return JSON_LIST_ITEM;
			}
			l->state = JL_NEXT;
			return JSON_LIST_MEMBER;
		case JL_NEXT:
			if (js[p] == '}') {
				l->state = JL_DONE;
				*pos = p + 1;
				return JSON_LIST_END;
			}
			if (js[p] != ',')
				return JSON_E_INVAL;
			l->state = JL_KEY;
			p++;
			break;
		case JL_DONE:
			return JSON_E_INVAL; /* something after the closing brace */
		}
		*pos = p;
	}
}

int json_list_done(const struct json_list *l)
{
	return l->state == JL_DONE;
}
