/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json.h: a strict, allocation-free JSON parser in the spirit of jsmn. Tokens are offsets
 * into the caller's buffer; nothing is copied or allocated. Strict means it rejects what
 * RFC 8259 rejects: trailing commas, single quotes, leading zeros, bare control characters
 * in strings, invalid escapes, invalid UTF-8, NaN and friends, more than one top-level value.
 */
#ifndef KUBEZONNET_JSON_H
#define KUBEZONNET_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64 /* nesting of arrays and objects */

enum json_type {
	JSON_OBJECT = 1,
	JSON_ARRAY = 2,
	JSON_STRING = 3, /* start/end exclude the quotes; escapes are not decoded */
	JSON_NUMBER = 4,
	JSON_TRUE = 5,
	JSON_FALSE = 6,
	JSON_NULL = 7,
};

enum json_error {
	JSON_E_NOMEM = -1, /* more tokens than the caller provided */
	JSON_E_INVAL = -2, /* not JSON; *error_at says where */
	JSON_E_PART = -3,  /* the input ends inside a value: more bytes may complete it */
	JSON_E_DEPTH = -4, /* nested deeper than JSON_MAX_DEPTH */
};

struct json_token {
	enum json_type type;
	uint32_t start, end; /* byte offsets into the input */
	uint32_t size;	     /* children: object members (keys) or array elements */
	uint32_t next;	     /* index of the first token after this one's subtree */
};

/*
 * json_parse parses exactly one JSON value (with optional surrounding white space) from
 * js[0..len). It fills tokens[0..n) in document order, an object's key and value following
 * each other, and returns n; with tokens NULL it only counts them. On failure it returns a
 * negative json_error and, if error_at is not NULL, the byte offset where parsing stopped.
 */
int json_parse(const char *js, size_t len, struct json_token *tokens, uint32_t max_tokens,
	       size_t *error_at);

/* json_error_string returns a static description of a json_error. */
const char *json_error_string(int error);

/* json_line_column converts a byte offset in js into a 1-based line and column. */
void json_line_column(const char *js, size_t offset, unsigned *line, unsigned *column);

/*
 * json_get returns the index of the value of member key in the object at tokens[object], or
 * -1 when it is absent or tokens[object] is not an object. Keys are compared as raw bytes
 * (a key written with escapes does not match).
 */
int json_get(const char *js, const struct json_token *tokens, int object, const char *key);

/*
 * json_first returns the index of the first element of the array (or the first member key of
 * the object) at tokens[parent], or -1 when it is empty or not an array or an object.
 * json_next returns the element (or member key) that follows tokens[i], itself one of
 * parent's, or -1 after the last. A member key's value is tokens[key + 1]. Each step is O(1),
 * so a walk over a container costs its element count:
 *
 *	for (int e = json_first(t, array); e >= 0; e = json_next(t, array, e))
 *
 * Walking with json_child(t, array, k) for every k costs the square of it instead (a pod with
 * 100,000 podIPs took 14 s): use these for any loop.
 */
int json_first(const struct json_token *tokens, int parent);
int json_next(const struct json_token *tokens, int parent, int i);

/*
 * json_child returns the index of element i of the array (or member key i of the object) at
 * tokens[parent], or -1. It steps from the first element, so it costs O(i): not for loops.
 */
int json_child(const struct json_token *tokens, int parent, uint32_t i);

/*
 * json_string decodes the string token at tokens[i] (escapes, \u surrogate pairs) into out as
 * UTF-8 with a terminating NUL. Returns its length, or -1 when tokens[i] is not a string, it
 * holds a lone surrogate or a NUL, or it does not fit cap - 1 bytes.
 */
int json_string(const char *js, const struct json_token *tokens, int i, char *out, size_t cap);

/* json_is reports whether tokens[i] is a string whose raw bytes equal s. */
int json_is(const char *js, const struct json_token *tokens, int i, const char *s);

/*
 * Streaming one big object, such as a Kubernetes list, out of a buffer that grows as bytes
 * arrive: json_list_next returns each element of the array member named array_key (a list's
 * "items") and each other top-level member as soon as its last byte is in, so the document
 * is never held whole. It scans only the structure (strings, brackets, commas); the caller
 * parses each returned value with json_parse, which checks everything else.
 *
 * Call it with the bytes js[0..len) and *pos where the last call stopped (0 at first). It
 * returns JSON_LIST_ITEM or JSON_LIST_MEMBER with the value at js[*start..*end) (a member's
 * key, raw and truncated to 63 bytes, in l->key), JSON_LIST_END after the closing brace,
 * JSON_E_PART when it needs more bytes, or JSON_E_INVAL / JSON_E_DEPTH. Bytes before *pos
 * are no longer needed: the caller may drop them (and then subtract them from *pos) before
 * the next call. The scan of a key or a value already begun resumes where it stopped, so a
 * document that arrives a byte at a time costs one scan, not one per byte.
 */
enum json_list_event { JSON_LIST_ITEM = 1, JSON_LIST_MEMBER = 2, JSON_LIST_END = 3 };

struct json_list {
	int state, depth, in_string, escape;
	size_t scanned; /* bytes of the current key or value scanned so far */
	char key[64];
};

int json_list_next(struct json_list *l, const char *js, size_t len, size_t *pos,
		   const char *array_key, size_t *start, size_t *end);

/* json_list_done reports whether the list's closing brace has been seen. */
int json_list_done(const struct json_list *l);

/*
 * json_path follows object members from tokens[i]: json_path(js, t, 0, "metadata", "name",
 * NULL). Returns the token index, or -1 when a member is missing or a step is not an object.
 */
int json_path(const char *js, const struct json_token *tokens, int i, ...);

#endif /* KUBEZONNET_JSON_H */
