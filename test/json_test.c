/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for json.c: a JSONTestSuite-style table of inputs every parser must accept or
 * reject, string decoding, lookups, limits, partial input against a guard page, and every
 * JSON document in ../shared/fixtures/k8s/.
 */
#include <dirent.h>

#include "../json.h"
#include "test.h"

static int parse_guarded(const char *s, size_t len, struct json_token *t, uint32_t n)
{
	size_t map_len;
	unsigned char *p = test_guarded(s, len, &map_len);
	int rc = json_parse((const char *)p, len, t, n, NULL);

	test_guarded_free(p, len, map_len);
	return rc;
}

/* y_: must accept. n_: must reject. Named after JSONTestSuite's cases where one applies. */
static const struct {
	const char *name;
	const char *json;
	int accept;
} suite[] = {
	{"y_array_empty", "[]", 1},
	{"y_array_nested", "[[[[]]]]", 1},
	{"y_object_empty", "{}", 1},
	{"y_object_basic", "{\"asd\":\"sdf\"}", 1},
	{"y_object_duplicated_key", "{\"a\":\"b\",\"a\":\"c\"}", 1},
	{"y_object_with_newlines", "{\n\"a\": \"b\"\n}", 1},
	{"y_number_0", "0", 1},
	{"y_number_negative_zero", "-0", 1},
	{"y_number_real_exponent", "[123e45]", 1},
	{"y_number_real_capital_e_pos_exp", "[1E+2]", 1},
	{"y_number_real_fraction_exponent", "[123.456e-78]", 1},
	{"y_number_huge_exp", "[0.4e00669999999999999999999999999999999999999999999999999]", 1},
	{"y_string_escapes", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", 1},
	{"y_string_unicode_escape", "[\"\\u0061\\u30af\\u30EA\\u30b9\"]", 1},
	{"y_string_surrogate_pair", "[\"\\uD801\\udc37\"]", 1},
	{"y_string_utf8", "[\"\xe2\x82\xac\xf0\x9d\x84\x9e\"]", 1},
	{"y_string_with_del", "[\"a\x7f\"]", 1},
	{"y_structure_lonely_null", "null", 1},
	{"y_structure_lonely_true", "true", 1},
	{"y_structure_whitespace_array", " [] ", 1},
	{"y_structure_trailing_newline", "[\"a\"]\n", 1},
	{"n_array_trailing_comma", "[1,]", 0},
	{"n_array_extra_comma", "[\"\",,]", 0},
	{"n_array_missing_value", "[   , \"\"]", 0},
	{"n_array_unclosed", "[\"a\"", 0},
	{"n_array_colon_instead_of_comma", "[\"\": 1]", 0},
	{"n_object_trailing_comma", "{\"id\":0,}", 0},
	{"n_object_non_string_key", "{1:1}", 0},
	{"n_object_single_quote", "{'a':0}", 0},
	{"n_object_missing_colon", "{\"a\" b}", 0},
	{"n_object_missing_value", "{\"a\":}", 0},
	{"n_object_unquoted_key", "{a: \"b\"}", 0},
	{"n_number_leading_zero", "[012]", 0},
	{"n_number_plus", "[+1]", 0},
	{"n_number_dot_start", "[.2e-3]", 0},
	{"n_number_dot_end", "[2.]", 0},
	{"n_number_exp_empty", "[1e]", 0},
	{"n_number_nan", "[NaN]", 0},
	{"n_number_infinity", "[Infinity]", 0},
	{"n_number_hex", "[0x1]", 0},
	{"n_number_minus_only", "[-]", 0},
	{"n_string_single_quote", "['single quote']", 0},
	{"n_string_unescaped_tab", "[\"\t\"]", 0},
	{"n_string_unescaped_newline", "[\"new\nline\"]", 0},
	{"n_string_invalid_escape", "[\"\\a\"]", 0},
	{"n_string_incomplete_unicode", "[\"\\u00A\"]", 0},
	{"n_string_invalid_utf8", "[\"\xff\"]", 0},
	{"n_string_overlong_utf8", "[\"\xc0\xaf\"]", 0},
	{"n_string_utf8_surrogate", "[\"\xed\xa0\x80\"]", 0},
	{"n_structure_two_values", "[] []", 0},
	{"n_structure_trailing_garbage", "{\"a\":1} x", 0},
	{"n_structure_empty", "", 0},
	{"n_structure_whitespace_only", "  ", 0},
	{"n_structure_lone_close", "]", 0},
	{"n_structure_true_capital", "[True]", 0},
	{"n_structure_truncated_literal", "[tru]", 0},
	{"n_structure_comment", "[1] // c", 0},
	{"n_structure_form_feed_space", "[\f]", 0},
	{"n_structure_bom", "\xef\xbb\xbf{}", 0},
};

static void test_suite(void)
{
	struct json_token t[64];

	for (size_t i = 0; i < sizeof(suite) / sizeof(suite[0]); i++) {
		int rc = parse_guarded(suite[i].json, strlen(suite[i].json), t, 64);
		int counted = json_parse(suite[i].json, strlen(suite[i].json), NULL, 0, NULL);

		if ((rc >= 0) != suite[i].accept)
			test_fail(__FILE__, __LINE__, "got %d (%s)", rc, json_error_string(rc));
		if (rc >= 0 && counted != rc)
			test_fail(__FILE__, __LINE__, "count-only mode says %d tokens, not %d",
				  counted, rc);
		test_result("json: %s", suite[i].name);
	}
}

static void test_tokens_and_lookup(void)
{
	const char *js = "{\"metadata\": {\"name\": \"web-1\", \"labels\": {\"a\": \"b\"}},"
			 " \"spec\": {\"nodeName\": \"n1\", \"hostNetwork\": true},"
			 " \"ips\": [\"10.0.0.1\", \"fd00::1\"], \"n\": -1.5e3}";
	struct json_token t[32];
	char buf[64];
	int n = json_parse(js, strlen(js), t, 32, NULL);

	EXPECT(n > 0);
	EXPECT_EQ(t[0].type, JSON_OBJECT);
	EXPECT_EQ(t[0].size, 4);
	EXPECT_EQ(t[0].next, n);
	int meta = json_get(js, t, 0, "metadata");
	EXPECT_EQ(json_string(js, t, json_get(js, t, meta, "name"), buf, sizeof(buf)), 5);
	EXPECT(strcmp(buf, "web-1") == 0);
	int spec = json_get(js, t, 0, "spec");
	EXPECT(json_is(js, t, json_get(js, t, spec, "nodeName"), "n1"));
	EXPECT_EQ(t[json_get(js, t, spec, "hostNetwork")].type, JSON_TRUE);
	int ips = json_get(js, t, 0, "ips");
	EXPECT_EQ(t[ips].size, 2);
	EXPECT(json_is(js, t, json_child(t, ips, 1), "fd00::1"));
	EXPECT_EQ(json_child(t, ips, 2), -1);
	EXPECT_EQ(json_get(js, t, 0, "absent"), -1);
	EXPECT_EQ(json_get(js, t, ips, "x"), -1);
	EXPECT_EQ(t[json_get(js, t, 0, "n")].type, JSON_NUMBER);
	EXPECT(json_is(js, t, json_path(js, t, 0, "metadata", "labels", "a", NULL), "b"));
	EXPECT_EQ(json_path(js, t, 0, "metadata", "labels", "zzz", NULL), -1);
	EXPECT_EQ(json_path(js, t, 0, "ips", "x", "y", NULL), -1);
	EXPECT_EQ(json_path(js, t, 0, NULL), 0);
	EXPECT_EQ(json_parse(js, strlen(js), t, 5, NULL), JSON_E_NOMEM);
}

/* json_first and json_next visit what json_child(0..size-1) returns, in order, and stop. */
static void test_iteration(void)
{
	const char *js = "{\"a\": [1, [2, 3], {\"b\": [4]}, [], \"x\"], \"c\": {}, "
			 "\"d\": {\"e\": {\"f\": 5}, \"g\": [6, 7]}, \"h\": 8}";
	struct json_token t[64];
	int n = json_parse(js, strlen(js), t, 64, NULL);

	EXPECT(n > 0);
	for (int i = 0; i < n; i++) {
		uint32_t k = 0;
		int e;

		for (e = json_first(t, i); e >= 0; e = json_next(t, i, e), k++)
			if (e != json_child(t, i, k))
				test_fail(__FILE__, __LINE__, "token %d: child %u is %d, not %d", i,
					  k, e, json_child(t, i, k));
		if (k != ((t[i].type == JSON_OBJECT || t[i].type == JSON_ARRAY) ? t[i].size : 0))
			test_fail(__FILE__, __LINE__, "token %d: %u children, not %u", i, k,
				  t[i].size);
	}
	int a = json_get(js, t, 0, "a");
	EXPECT_EQ(json_first(t, a), a + 1);
	EXPECT(json_is(js, t, json_next(t, a, json_child(t, a, 3)), "x"));
	EXPECT_EQ(json_next(t, a, json_child(t, a, 4)), -1); /* after the last: not "c" */
	EXPECT(json_is(js, t, json_next(t, 0, json_first(t, 0)), "c"));
	EXPECT_EQ(json_first(t, json_get(js, t, 0, "c")), -1); /* empty */
	EXPECT_EQ(json_first(t, json_get(js, t, 0, "h")), -1); /* not a container */
	EXPECT_EQ(json_first(t, -1), -1);
	EXPECT_EQ(json_next(t, -1, 0), -1);
}

static void test_string_decoding(void)
{
	static const struct {
		const char *json, *want; /* want NULL: must be refused */
	} rows[] = {
		{"\"plain\"", "plain"},
		{"\"a\\\"b\\\\c\\/d\"", "a\"b\\c/d"},
		{"\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t"},
		{"\"\\u00e9\\u20AC\"", "\xc3\xa9\xe2\x82\xac"},
		{"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
		{"\"\\ud83d\"", NULL},	      /* lone high surrogate */
		{"\"\\ude00\"", NULL},	      /* lone low surrogate */
		{"\"\\ud83d\\u0041\"", NULL}, /* high surrogate, then not a low one */
		{"\"a\\u0000b\"", NULL},      /* NUL */
	};
	struct json_token t[2];
	char buf[32];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		EXPECT_EQ(json_parse(rows[i].json, strlen(rows[i].json), t, 2, NULL), 1);
		int n = json_string(rows[i].json, t, 0, buf, sizeof(buf));
		if (rows[i].want == NULL ? n != -1 : (n < 0 || strcmp(buf, rows[i].want) != 0))
			test_fail(__FILE__, __LINE__, "row %zu: got %d '%s'", i, n,
				  n >= 0 ? buf : "");
	}
	EXPECT_EQ(json_parse("\"abcdef\"", 8, t, 2, NULL), 1);
	EXPECT_EQ(json_string("\"abcdef\"", t, 0, buf, 6), -1); /* does not fit */
	EXPECT_EQ(json_string("\"abcdef\"", t, 0, buf, 7), 6);
}

static void test_depth_limit(void)
{
	char deep[2 * JSON_MAX_DEPTH + 8];
	struct json_token t[2 * JSON_MAX_DEPTH];
	size_t n;

	for (n = 0; n < JSON_MAX_DEPTH; n++)
		deep[n] = '[';
	for (size_t k = 0; k < JSON_MAX_DEPTH; k++)
		deep[n++] = ']';
	EXPECT_EQ(json_parse(deep, n, t, 2 * JSON_MAX_DEPTH, NULL), JSON_MAX_DEPTH);
	memmove(deep + 1, deep, n);
	deep[0] = '[';
	deep[++n] = ']';
	EXPECT_EQ(json_parse(deep, n + 1, t, 2 * JSON_MAX_DEPTH, NULL), JSON_E_DEPTH);
}

static void test_error_position(void)
{
	const char *js = "{\n  \"nodes\": [\n    {\"name\": \"n1\",}\n  ]\n}";
	size_t at = 0;
	unsigned line, col;

	EXPECT_EQ(json_parse(js, strlen(js), NULL, 0, &at), JSON_E_INVAL);
	json_line_column(js, at, &line, &col);
	EXPECT_EQ(line, 3);
	EXPECT_EQ(col, 19);
}

/* Every prefix of a valid document is partial (never invalid, never read past its end). */
static void test_prefixes(void)
{
	const char *js = "{\"a\": [1, -2.5e3, \"x\\u00e9\\\"\", true, false, null, {\"b\": {}}], "
			 "\"c\": \"\xe2\x82\xac\"}";
	size_t len = strlen(js);
	struct json_token t[32];

	for (size_t k = 0; k < len; k++) {
		int rc = parse_guarded(js, k, t, 32);
		if (rc != JSON_E_PART && !(k == 0 && rc == JSON_E_PART))
			test_fail(__FILE__, __LINE__, "prefix of %zu bytes: got %d", k, rc);
	}
	EXPECT(parse_guarded(js, len, t, 32) > 0);
}

/*
 * stream_list feeds doc to json_list_next `step` bytes at a time (the buffer keeps only what
 * is not consumed, as the client does) and checks each item against the whole document's
 * items. Returns the number of items, or the negative error.
 */
static int stream_list(const char *doc, size_t len, size_t step, const struct json_token *t,
		       int items)
{
	struct json_list l = {0};
	char *buf = malloc(len + 1);
	size_t have = 0, fed = 0, pos = 0, dropped = 0;
	int n = 0, r, metadata = 0, want = t && items >= 0 ? json_first(t, items) : -1;

	for (;;) {
		size_t s, e;
		r = json_list_next(&l, buf, have, &pos, "items", &s, &e);
		if (r == JSON_LIST_ITEM) {
			if (t && (want < 0 || t[want].start != dropped + s ||
				  t[want].end != dropped + e))
				test_fail(__FILE__, __LINE__, "item %d at %zu..%zu (step %zu)", n,
					  dropped + s, dropped + e, step);
			if (want >= 0)
				want = json_next(t, items, want);
			n++;
			continue;
		}
		if (r == JSON_LIST_END)
			continue; /* only white space may follow */
		if (r == JSON_LIST_MEMBER) {
			metadata += strcmp(l.key, "metadata") == 0;
			continue;
		}
		if (r != JSON_E_PART)
			break;
		if (fed == len)
			break;
		if (pos) { /* drop what was consumed */
			memmove(buf, buf + pos, have - pos);
			have -= pos;
			dropped += pos;
			pos = 0;
		}
		size_t k = len - fed < step ? len - fed : step;
		memcpy(buf + have, doc + fed, k);
		have += k;
		fed += k;
	}
	free(buf);
	if (r == JSON_E_PART && metadata != 1 && t)
		test_fail(__FILE__, __LINE__, "metadata seen %d times", metadata);
	return r == JSON_E_PART ? (json_list_done(&l) ? n : JSON_E_PART) : r;
}

static void test_list_stream(void)
{
	static const struct {
		const char *doc;
		int items; /* or the error */
	} cases[] = {
		{"{\"kind\":\"PodList\",\"metadata\":{\"continue\":\"x\"},\"items\":[{\"a\":1},"
		 "[2,{\"b\":\"}]\\\"\"}],3,\"s\",null]}",
		 5},
		{"  {\"items\":[],\"metadata\":{}}  ", 0},
		{"{}", 0},
		{"{\"metadata\":{},\"items\":null}", 0},
		{"{\"metadata\":{},\"items\":[1,]}", JSON_E_INVAL},
		{"{\"metadata\":{},\"items\":[,1]}", JSON_E_INVAL},
		{"{\"metadata\":{},\"items\":[1] 2}", JSON_E_INVAL},
		{"{\"metadata\":{},}", JSON_E_INVAL},
		{"{\"metadata\" {}}", JSON_E_INVAL},
		{"[1,2]", JSON_E_INVAL},
		{"{\"metadata\":{}} x", JSON_E_INVAL},
		{"{\"metadata\":{}}}", JSON_E_INVAL},
	};
	char deep[200];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t step = 1; step < 9; step += 3) {
			int got = stream_list(cases[i].doc, strlen(cases[i].doc), step, NULL, -1);
			if (cases[i].items >= 0 && got == cases[i].items)
				continue;
			if (cases[i].items < 0 && got < 0)
				continue;
			test_fail(__FILE__, __LINE__, "case %zu step %zu: got %d, want %d", i, step,
				  got, cases[i].items);
		}
	/* Items nested deeper than JSON_MAX_DEPTH are refused. */
	memcpy(deep, "{\"items\":[", 10);
	memset(deep + 10, '[', 100);
	deep[110] = '\0';
	EXPECT_EQ(stream_list(deep, strlen(deep), 16, NULL, -1), JSON_E_DEPTH);
}

struct list_event {
	int type;
	size_t start, end; /* in the whole document */
	char key[64];
};

/*
 * list_events feeds doc to json_list_next `step` bytes at a time, as the Kubernetes client
 * does (keeping only the bytes from *pos on), and records what it returns: the events, then
 * the error or JSON_E_PART that ended the stream. Returns how many it recorded.
 */
static size_t list_events(const char *doc, size_t len, size_t step, struct list_event *ev,
			  size_t max)
{
	struct json_list l = {0};
	char *buf = malloc(len + 1);
	size_t have = 0, fed = 0, pos = 0, dropped = 0, n = 0;

	while (n < max) {
		size_t s = 0, e = 0;
		int r = json_list_next(&l, buf, have, &pos, "items", &s, &e);

		if (r == JSON_E_PART && fed < len) {
			size_t k = len - fed < step ? len - fed : step;
			if (pos) {
				memmove(buf, buf + pos, have - pos);
				have -= pos;
				dropped += pos;
				pos = 0;
			}
			memcpy(buf + have, doc + fed, k);
			have += k;
			fed += k;
			continue;
		}
		ev[n] = (struct list_event){.type = r};
		if (r == JSON_LIST_ITEM || r == JSON_LIST_MEMBER) {
			ev[n].start = dropped + s;
			ev[n].end = dropped + e;
		}
		if (r == JSON_LIST_MEMBER)
			memcpy(ev[n].key, l.key, sizeof(ev[n].key));
		n++;
		if (r < 0)
			break;
	}
	free(buf);
	return n;
}

#define LONG_BYTES	 (1u << 20)
#define LONG_CPU_SECONDS 10

/*
 * A list document with a key, a value and an item of a MiB each, fed a byte at a time (a slow
 * or hostile API server), gives the events it gives whole, and costs about as much: the
 * scans of keys and values resume. Restarted from the key's quote at every byte, the MiB key
 * alone took 5 * 10^11 steps.
 */
static void stream_long_list(void *arg)
{
	size_t cap = 3 * LONG_BYTES + 256, len = 0;
	char *doc = malloc(cap);
	struct list_event whole[16], bytewise[16];
	size_t nw, nb;

	(void)arg;
	len += (size_t)sprintf(doc, "{\"metadata\": {\"resourceVersion\": \"7\"}, \"");
	for (size_t i = 0; i < LONG_BYTES; i++)
		doc[len++] = i % 100 == 99 ? '\\' : i % 100 == 98 ? '\\' : 'k'; /* \\ escapes */
	len += (size_t)sprintf(doc + len, "\": \"");
	for (size_t i = 0; i < LONG_BYTES; i++)
		doc[len++] = i % 50 == 49 ? '"' : i % 50 == 48 ? '\\' : 'v'; /* \" */
	len += (size_t)sprintf(doc + len, "\", \"items\": [1, {\"a\": [");
	for (size_t i = 0; i < LONG_BYTES / 2; i++)
		len += (size_t)sprintf(doc + len, "%s", i ? ",0" : "0");
	len += (size_t)sprintf(doc + len, "]}, \"x\"], \"kind\": \"PodList\"}");

	EXPECT(json_parse(doc, len, NULL, 0, NULL) > 0);
	nw = list_events(doc, len, len, whole, 16);
	nb = list_events(doc, len, 1, bytewise, 16);
	EXPECT_EQ(nw, 8); /* metadata, the long key, three items, kind, the end, then PART */
	EXPECT_EQ(nb, nw);
	for (size_t i = 0; i < nw && i < nb; i++)
		if (memcmp(&whole[i], &bytewise[i], sizeof(whole[i])) != 0)
			test_fail(__FILE__, __LINE__,
				  "event %zu: %d at %zu..%zu (%s) a byte at a time, %d at %zu..%zu "
				  "(%s) whole",
				  i, bytewise[i].type, bytewise[i].start, bytewise[i].end,
				  bytewise[i].key, whole[i].type, whole[i].start, whole[i].end,
				  whole[i].key);
	EXPECT(nw == 8 && whole[1].type == JSON_LIST_MEMBER && strlen(whole[1].key) == 63 &&
	       whole[3].type == JSON_LIST_ITEM && whole[3].end - whole[3].start > LONG_BYTES &&
	       whole[6].type == JSON_LIST_END && whole[7].type == JSON_E_PART);
	free(doc);
}

static void test_list_stream_bytewise(void)
{
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, stream_long_list, NULL);
}

/*
 * Every fixture: .json parses whole (and a list item by item when streamed); .jsonl parses
 * line by line.
 */
static void test_fixtures(void)
{
	const char *dir =
		getenv("KZN_FIXTURES") ? getenv("KZN_FIXTURES") : "../shared/fixtures/k8s";
	DIR *d = opendir(dir);
	struct dirent *e;
	int files = 0;

	if (!d) {
		printf("ok - json: fixtures # SKIP %s not found\n", dir);
		return;
	}
	while ((e = readdir(d))) {
		char path[1024];
		size_t len, name_len = strlen(e->d_name);
		int lines = 0;
		char *buf;

		if (name_len < 6 || (strcmp(e->d_name + name_len - 5, ".json") != 0 &&
				     strcmp(e->d_name + name_len - 6, ".jsonl") != 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		buf = test_slurp(path, &len);
		EXPECT(buf != NULL);
		if (!buf)
			continue;
		if (e->d_name[name_len - 1] == 'n') {
			int n = json_parse(buf, len, NULL, 0, NULL);
			struct json_token *t = malloc(sizeof(*t) * (n > 0 ? (size_t)n : 1));
			if (n <= 0 || json_parse(buf, len, t, (uint32_t)n, NULL) != n)
				test_fail(__FILE__, __LINE__, "%s: %d", e->d_name, n);
			else
				EXPECT(t[0].type == JSON_OBJECT &&
				       json_get(buf, t, 0, "kind") >= 0);
			/* Streamed in pieces of many sizes, the items are the same. */
			int items = n > 0 ? json_get(buf, t, 0, "items") : -1;
			if (items >= 0 && t[items].type == JSON_ARRAY) {
				static const size_t steps[] = {1, 2, 3, 7, 100, 4095, 65536};
				for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++)
					EXPECT_EQ(stream_list(buf, len, steps[k], t, items),
						  (int)t[items].size);
			}
			free(t);
		} else {
			for (char *line = buf, *nl; *line; line = nl + 1) {
				nl = strchr(line, '\n');
				if (!nl)
					nl = line + strlen(line) - 1;
				if (nl == line)
					continue;
				int n = json_parse(line, (size_t)(nl - line), NULL, 0, NULL);
				if (n <= 0)
					test_fail(__FILE__, __LINE__, "%s line %d: %d", e->d_name,
						  lines + 1, n);
				lines++;
			}
			EXPECT(lines > 0);
		}
		free(buf);
		files++;
		test_result("json: fixture %s", e->d_name);
	}
	closedir(d);
	if (files == 0)
		printf("ok - json: fixtures # SKIP no .json files in %s\n", dir);
}

int main(void)
{
	test_suite();
	RUN(test_tokens_and_lookup);
	RUN(test_iteration);
	RUN(test_string_decoding);
	RUN(test_depth_limit);
	RUN(test_error_position);
	RUN(test_prefixes);
	RUN(test_list_stream);
	RUN(test_list_stream_bytewise);
	test_fixtures();
	return test_done();
}
