/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test/bpf_run.h: what test/bpf_test.c and bench/bpf_bench.c both need to run the program
 * with BPF_PROG_TEST_RUN.
 */
#ifndef KUBEZONNET_BPF_RUN_H
#define KUBEZONNET_BPF_RUN_H

#include <net/if.h>

/*
 * a_device returns the index of a device of this namespace that is not loopback, or 0 (the
 * socket hook leaves loopback uncounted, and a test run's default device is loopback).
 */
static inline int a_device(void)
{
	struct if_nameindex *all = if_nameindex();
	int found = 0;

	for (struct if_nameindex *i = all; i && i->if_index && !found; i++)
		if (i->if_index > 1)
			found = (int)i->if_index;
	if_freenameindex(all);
	return found;
}

#endif /* KUBEZONNET_BPF_RUN_H */
