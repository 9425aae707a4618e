/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubezonnet.h: what the BPF program and the agent share: map key and value layouts and the
 * netfilter hook priority.
 */
#ifndef KUBEZONNET_BPF_H
#define KUBEZONNET_BPF_H

/*
 * Hook priority at NF_INET_POST_ROUTING: before source NAT (the nat table's POSTROUTING runs
 * at NF_IP_PRI_NAT_SRC = 100), so a pod's own address is seen before masquerading.
 */
#define KZN_NF_PRIORITY 99

#endif /* KUBEZONNET_BPF_H */
