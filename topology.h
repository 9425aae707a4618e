/* SPDX-License-Identifier: Apache-2.0 */
/*
 * topology.h: the topology file (--topology): nodes, pods and external networks as JSON,
 * turned into an endpoint index. The format (other keys are ignored):
 *
 *   {"nodes":    [{"name": "n1", "zone": "eu-west-1a", "region": "eu-west-1",
 *                  "ips": ["172.20.0.1"], "pod_cidrs": ["10.1.0.0/24"]}],
 *    "pods":     [{"namespace": "shop", "name": "api-7d9f-x2", "node": "n1",
 *                  "workload": "api", "workload_kind": "Deployment",
 *                  "host_network": false, "ips": ["10.1.0.5", "fd00::5"]}],
 *    "external": [{"name": "orders-db", "cidr": "10.200.0.0/16", "zone": "eu-west-1b",
 *                  "region": "eu-west-1"},
 *                 {"name": "internet", "cidr": "0.0.0.0/0"}]}
 *
 * A node without a zone is in zone "unknown". A hostNetwork pod's addresses are its node's. A
 * node's "pod_cidrs" (optional, as its spec.podCIDRs) say only where its agent may connect
 * from: the first two addresses of each, its bridge and tunnel devices' (endpoint_add_node_cidr).
 */
#ifndef KUBEZONNET_TOPOLOGY_H
#define KUBEZONNET_TOPOLOGY_H

#include <stddef.h>

#include "endpoint.h"

/*
 * topology_parse builds an index from the JSON document js[0..len). On any error it returns
 * NULL and writes "line L, column C: what is wrong" into err.
 */
struct endpoint_index *topology_parse(const char *js, size_t len, char *err, size_t err_len);

/* topology_load reads path and parses it; errors are prefixed with the path. */
struct endpoint_index *topology_load(const char *path, char *err, size_t err_len);

#endif /* KUBEZONNET_TOPOLOGY_H */
