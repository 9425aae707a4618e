/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: json_parse, then every accessor over what it accepted; and the list
 * streamer fed in pieces, which must find the same items as json_parse in every document
 * json_parse accepts.
 */
#include <stdlib.h>
#include <string.h>

#include "../../json.h"

/* stream returns the items json_list_next finds in pieces of step bytes, or -1. */
static long stream(const char *js, size_t len, size_t step)
{
	struct json_list l = {0};
	char *buf = malloc(len + 1);
	size_t have = 0, fed = 0, pos = 0;
	long items = 0;
	int r;

	for (;;) {
		size_t s, e;
		r = json_list_next(&l, buf, have, &pos, "items", &s, &e);
		if (r == JSON_LIST_ITEM || r == JSON_LIST_MEMBER) {
			if (s >= e || e > have || pos > have)
				abort();
			items += r == JSON_LIST_ITEM;
			continue;
		}
		if (r == JSON_LIST_END)
			continue;
		if (r != JSON_E_PART || fed == len)
			break;
		if (pos) { /* drop what was consumed; moving a pending value at every step is quadratic */
			memmove(buf, buf + pos, have - pos);
			have -= pos;
			pos = 0;
		}
		size_t k = len - fed < step ? len - fed : step;
		memcpy(buf + have, js + fed, k);
		have += k;
		fed += k;
	}
	free(buf);
	return r == JSON_E_PART && json_list_done(&l) ? items : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *js = (const char *)data;
	int n = json_parse(js, size, NULL, 0, NULL);
	struct json_token *t;
	char buf[256];
	long streamed = stream(js, size, size ? (size_t)data[0] % 13 + 1 : 1), want = 0;

	if (n <= 0)
		return 0;
	t = malloc(sizeof(*t) * (size_t)n);
	if (!t || json_parse(js, size, t, (uint32_t)n, NULL) != n) {
		free(t);
		abort(); /* counting and filling must agree */
	}
	for (int i = 0; i < n; i++) {
		if (t[i].type == JSON_STRING)
			json_string(js, t, i, buf, sizeof(buf));
		if (t[i].type == JSON_OBJECT)
			json_get(js, t, i, "metadata");
		/* The walk visits json_child(0..size-1) in order (checked for the first few). */
		uint32_t k = 0;
		for (int e = json_first(t, i); e >= 0; e = json_next(t, i, e), k++)
			if (e <= i || e >= n || (k < 8 && e != json_child(t, i, k)))
				abort();
		if (k != (t[i].type == JSON_OBJECT || t[i].type == JSON_ARRAY ? t[i].size : 0))
			abort();
		if (k && json_child(t, i, k - 1) < 0)
			abort();
	}
	if (t[0].type == JSON_OBJECT) {
		for (int key = json_first(t, 0); key >= 0; key = json_next(t, 0, key)) {
			if (json_is(js, t, key, "items") && t[key + 1].type == JSON_ARRAY)
				want += t[key + 1].size;
		}
		if (streamed != want)
			abort(); /* the streamer disagrees with the parser */
	}
	free(t);
	return 0;
}
