/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: json_parse, then every accessor over what it accepted. */
#include <stdlib.h>

#include "../../json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *js = (const char *)data;
	int n = json_parse(js, size, NULL, 0, NULL);
	struct json_token *t;
	char buf[256];

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
		if (t[i].type == JSON_OBJECT) {
			json_get(js, t, i, "metadata");
			for (uint32_t k = 0; k < t[i].size; k++)
				json_child(t, i, k);
		}
		if (t[i].type == JSON_ARRAY && t[i].size)
			json_child(t, i, t[i].size - 1);
	}
	free(t);
	return 0;
}
