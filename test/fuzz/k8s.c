/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: a stream of watch events from a (hostile) API server, one per line,
 * applied to one store (a line "R" begins a pod relist, "E" ends it; "r" and "e" do the same
 * for nodes), then indexed.
 */
#include <string.h>

#include "../../k8s/store.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct k8s_event ev;
	static struct k8s_tokens tokens;
	struct k8s_store *st = k8s_store_new();
	const char *p = (const char *)data, *end = p + size;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);

		if (len == 1 && *p == 'R')
			k8s_store_begin_relist(st, K8S_POD);
		else if (len == 1 && *p == 'E')
			k8s_store_end_relist(st, K8S_POD);
		else if (len == 1 && *p == 'r')
			k8s_store_begin_relist(st, K8S_NODE);
		else if (len == 1 && *p == 'e')
			k8s_store_end_relist(st, K8S_NODE);
		else if (k8s_event_decode(p, len, &ev, &tokens) == 0)
			k8s_store_apply(st, &ev);
		p += len + 1;
	}
	endpoint_index_free(k8s_store_index(st));
	k8s_store_free(st);
	return 0;
}
