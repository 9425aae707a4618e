/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: topology files, and attribution over whatever index they build. */
#include "../../topology.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[256];
	struct endpoint_index *x = topology_parse((const char *)data, size, err, sizeof(err));

	if (x) {
		uint8_t a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
		struct attribution at;
		endpoint_attribute(x, "n1", a, a, &at);
		endpoint_index_free(x);
	}
	return 0;
}
