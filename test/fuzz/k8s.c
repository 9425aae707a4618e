/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: watch events from a (hostile) API server, applied to a store and indexed. */
#include "../../k8s/store.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct k8s_event ev;
	static struct k8s_tokens tokens;
	struct k8s_store *st;

	if (k8s_event_decode((const char *)data, size, &ev, &tokens) != 0)
		return 0;
	st = k8s_store_new();
	k8s_store_apply(st, &ev);
	endpoint_index_free(k8s_store_index(st));
	k8s_store_free(st);
	return 0;
}
