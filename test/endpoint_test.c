/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for endpoint.c and topology.c: the attribution table (who counts a record and
 * how it is classed), longest-prefix matching, and topology files, valid and broken (with
 * the line and column of the error).
 */
#include <errno.h>

#include "../endpoint.h"
#include "../topology.h"
#include "collide.h"
#include "test.h"

static const char *topo =
	"{\"nodes\": ["
	" {\"name\": \"a1\", \"zone\": \"za\", \"region\": \"r1\", \"ips\": [\"172.20.0.1\"]},"
	" {\"name\": \"a2\", \"zone\": \"za\", \"region\": \"r1\", \"ips\": [\"172.20.0.2\"]},"
	" {\"name\": \"b1\", \"zone\": \"zb\", \"region\": \"r1\", \"ips\": [\"172.20.1.1\"]},"
	" {\"name\": \"c1\", \"zone\": \"zc\", \"region\": \"r2\", \"ips\": [\"172.20.2.1\"]}],"
	"\"pods\": ["
	" {\"namespace\": \"shop\", \"name\": \"web-1\", \"node\": \"a1\", \"workload\": \"web\","
	"  \"workload_kind\": \"Deployment\", \"ips\": [\"10.0.0.1\", \"fd00::1\"]},"
	" {\"namespace\": \"shop\", \"name\": \"web-2\", \"node\": \"a2\", \"workload\": \"web\","
	"  \"workload_kind\": \"Deployment\", \"ips\": [\"10.0.0.2\"]},"
	" {\"namespace\": \"shop\", \"name\": \"db-0\", \"node\": \"b1\", \"workload\": \"db\","
	"  \"workload_kind\": \"StatefulSet\", \"ips\": [\"10.0.1.1\", \"fd00::2\"]},"
	" {\"namespace\": \"eu\", \"name\": \"far\", \"node\": \"c1\", \"ips\": [\"10.0.2.1\"]},"
	" {\"namespace\": \"kube-system\", \"name\": \"proxy\", \"node\": \"a1\", "
	"\"host_network\": true}],"
	"\"external\": ["
	" {\"name\": \"orders-db\", \"cidr\": \"10.200.0.0/16\", \"zone\": \"zb\", \"region\": "
	"\"r1\"},"
	" {\"name\": \"orders-db-primary\", \"cidr\": \"10.200.7.0/24\", \"zone\": \"za\", "
	"\"region\": \"r1\"},"
	" {\"name\": \"internet\", \"cidr\": \"0.0.0.0/0\"}]}";

static const struct {
	const char *name, *node, *src, *dst;
	int counted;
	enum traffic_class class;
	enum traffic_direction direction;
	const char *subject; /* name of the endpoint the bytes belong to */
} rows[] = {
	{"same zone, pod to pod on another node", "a1", "10.0.0.1", "10.0.0.2", 1,
	 TRAFFIC_SAME_ZONE, TRAFFIC_SENT, "web-1"},
	{"cross zone, counted at the sender's node", "a1", "10.0.0.1", "10.0.1.1", 1,
	 TRAFFIC_CROSS_ZONE, TRAFFIC_SENT, "web-1"},
	{"cross zone, receiving node's copy ignored", "b1", "10.0.0.1", "10.0.1.1", 0,
	 TRAFFIC_CROSS_ZONE, TRAFFIC_SENT, NULL},
	{"cross zone over IPv6", "b1", "fd00::2", "fd00::1", 1, TRAFFIC_CROSS_ZONE, TRAFFIC_SENT,
	 "db-0"},
	{"cross region", "a1", "10.0.0.1", "10.0.2.1", 1, TRAFFIC_CROSS_REGION, TRAFFIC_SENT,
	 "web-1"},
	{"hostNetwork pod is its node", "a1", "172.20.0.1", "10.0.1.1", 1, TRAFFIC_CROSS_ZONE,
	 TRAFFIC_SENT, "a1"},
	{"external with a zone: cross zone", "a1", "10.0.0.1", "10.200.1.1", 1, TRAFFIC_CROSS_ZONE,
	 TRAFFIC_SENT, "web-1"},
	{"longest prefix wins: same zone", "a1", "10.0.0.1", "10.200.7.9", 1, TRAFFIC_SAME_ZONE,
	 TRAFFIC_SENT, "web-1"},
	{"internet: external", "a1", "10.0.0.1", "8.8.8.8", 1, TRAFFIC_EXTERNAL, TRAFFIC_SENT,
	 "web-1"},
	{"from an external network: received", "b1", "10.200.7.9", "10.0.1.1", 1,
	 TRAFFIC_CROSS_ZONE, TRAFFIC_RECEIVED, "db-0"},
	{"from an external network, at another node: ignored", "a1", "10.200.7.9", "10.0.1.1", 0,
	 TRAFFIC_CROSS_ZONE, TRAFFIC_RECEIVED, NULL},
	{"unknown destination", "a1", "10.0.0.1", "fd99::9", 1, TRAFFIC_UNKNOWN, TRAFFIC_SENT,
	 "web-1"},
	{"unknown source to a local pod: received", "a1", "fd99::9", "fd00::1", 1, TRAFFIC_UNKNOWN,
	 TRAFFIC_RECEIVED, "web-1"},
	{"both unknown", "a1", "fd99::8", "fd99::9", 1, TRAFFIC_UNKNOWN, TRAFFIC_SENT, NULL},
	{"pod on another node seen in transit: ignored", "a1", "10.0.1.1", "8.8.8.8", 0,
	 TRAFFIC_EXTERNAL, TRAFFIC_SENT, NULL},
};

static void test_attribution(void)
{
	char err[256] = "";
	struct endpoint_index *x = topology_parse(topo, strlen(topo), err, sizeof(err));

	if (!x) {
		printf("not ok - attribution: topology: %s\n", err);
		test_failed_cases++;
		return;
	}
	EXPECT_EQ(endpoint_count(x, ENDPOINT_NODE), 4);
	EXPECT_EQ(endpoint_count(x, ENDPOINT_POD), 4); /* the hostNetwork pod is its node */
	EXPECT_EQ(endpoint_count(x, ENDPOINT_EXTERNAL), 3);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint8_t s[16], d[16];
		struct attribution a;

		EXPECT_EQ(endpoint_parse_address(rows[i].src, s, NULL), 0);
		EXPECT_EQ(endpoint_parse_address(rows[i].dst, d, NULL), 0);
		endpoint_attribute(x, rows[i].node, s, d, &a);
		EXPECT_EQ(a.counted, rows[i].counted);
		if (rows[i].counted) {
			EXPECT_EQ(a.class, rows[i].class);
			EXPECT_EQ(a.direction, rows[i].direction);
			if (rows[i].subject)
				EXPECT(a.subject && strcmp(a.subject->name, rows[i].subject) == 0);
			else
				EXPECT(a.subject == NULL);
		}
		test_result("attribution: %s", rows[i].name);
	}
	const struct endpoint *web = endpoint_lookup(
		x, (const uint8_t[16]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1});
	EXPECT(web && strcmp(web->workload, "web") == 0 &&
	       strcmp(web->workload_kind, "Deployment") == 0);
	EXPECT(web && strcmp(web->zone, "za") == 0 && strcmp(web->node->name, "a1") == 0);
	uint8_t far[16];
	endpoint_parse_address("10.0.2.1", far, NULL);
	const struct endpoint *f = endpoint_lookup(x, far);
	EXPECT(f && strcmp(f->workload, "far") == 0 && strcmp(f->workload_kind, "Pod") == 0);
	endpoint_index_free(x);
	test_result("attribution: lookups");
}

static const struct {
	const char *name, *json, *error; /* error: the start of the message */
} bad[] = {
	{"syntax error", "{\"nodes\": [\n  {\"name\": \"n1\",}\n]}",
	 "line 2, column 17: invalid JSON"},
	{"truncated", "{\"nodes\": [", "line 1, column 12: unexpected end of input"},
	{"not an object", "[]", "line 1, column 1: the topology must be a JSON object"},
	{"nodes not an array", "{\"nodes\": {}}", "line 1, column 11: \"nodes\" must be an array"},
	{"node without name", "{\"nodes\": [{\"zone\": \"a\"}]}",
	 "line 1, column 12: missing \"name\""},
	{"bad address", "{\"nodes\": [{\"name\": \"n\", \"ips\": [\"10.0.0.300\"]}]}",
	 "line 1, column 35: not an IPv4"},
	{"duplicate node", "{\"nodes\": [{\"name\": \"n\"}, {\"name\": \"n\"}]}",
	 "line 1, column 27: node \"n\" appears twice"},
	{"pod on unknown node",
	 "{\"pods\": [{\"namespace\": \"a\", \"name\": \"p\", \"node\": \"x\"}]}",
	 "line 1, column 52: no node named \"x\""},
	{"bad cidr", "{\"external\": [{\"name\": \"e\", \"cidr\": \"10.0.0.0\"}]}",
	 "line 1, column 38: \"10.0.0.0\" is not a CIDR"},
	{"cidr prefix too long", "{\"external\": [{\"name\": \"e\", \"cidr\": \"10.0.0.0/33\"}]}",
	 "line 1, column 38: \"10.0.0.0/33\" is not a CIDR"},
	{"name not a string", "{\"nodes\": [{\"name\": 7}]}",
	 "line 1, column 21: \"name\" must be a string"},
	{"pod_cidrs entry not a CIDR",
	 "{\"nodes\": [{\"name\": \"n\", \"pod_cidrs\": [\"10.1.0.0\"]}]}",
	 "line 1, column 41: not a CIDR"},
	{"pod_cidrs not an array",
	 "{\"nodes\": [{\"name\": \"n\", \"pod_cidrs\": \"10.1.0.0/24\"}]}",
	 "line 1, column 40: \"pod_cidrs\" must be an array"},
};

static void test_topology_errors(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		struct endpoint_index *x =
			topology_parse(bad[i].json, strlen(bad[i].json), err, sizeof(err));

		EXPECT(x == NULL);
		if (strncmp(err, bad[i].error, strlen(bad[i].error)) != 0)
			test_fail(__FILE__, __LINE__, "got \"%s\", want \"%s...\"", err,
				  bad[i].error);
		endpoint_index_free(x);
		test_result("topology: %s", bad[i].name);
	}
}

static void test_example_file(void)
{
	char err[512] = "";
	struct endpoint_index *x = topology_load("deploy/topology.example.json", err, sizeof(err));

	if (!x)
		test_fail(__FILE__, __LINE__, "%s", err);
	endpoint_index_free(x);
}

static void test_many_pods(void)
{
	struct endpoint_index *x = endpoint_index_new();
	char name[64];

	for (int n = 0; n < 100; n++) {
		snprintf(name, sizeof(name), "node-%d", n);
		EXPECT(endpoint_add_node(x, name, "z", "r") != NULL);
	}
	for (uint32_t i = 0; i < 20000; i++) {
		uint8_t a[16] = {0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0xff,
				 0xff,
				 10,
				 (uint8_t)(i >> 16),
				 (uint8_t)(i >> 8),
				 (uint8_t)i};
		struct endpoint *e;
		snprintf(name, sizeof(name), "node-%u", i % 100);
		char pod[64];
		snprintf(pod, sizeof(pod), "pod-%u", i);
		e = endpoint_add_pod(x, "ns", pod, "wl", "Deployment", name);
		EXPECT(e != NULL);
		EXPECT_EQ(endpoint_add_address(x, a, e), 0);
	}
	for (uint32_t i = 0; i < 20000; i += 997) {
		uint8_t a[16] = {0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0,
				 0xff,
				 0xff,
				 10,
				 (uint8_t)(i >> 16),
				 (uint8_t)(i >> 8),
				 (uint8_t)i};
		const struct endpoint *e = endpoint_lookup(x, a);
		char pod[64];
		snprintf(pod, sizeof(pod), "pod-%u", i);
		EXPECT(e && strcmp(e->name, pod) == 0);
	}
	endpoint_index_free(x);
}

static const struct endpoint *at(const struct endpoint_index *x, const char *ip)
{
	uint8_t a[16];

	return endpoint_parse_address(ip, a, NULL) == 0 ? endpoint_lookup(x, a) : NULL;
}

/* The Kubernetes index keeps what it knows; the topology file adds the rest. */
static void test_merge(void)
{
	struct endpoint_index *k = endpoint_index_new(), *t = endpoint_index_new();
	uint8_t a[16];
	unsigned int prefix;
	struct endpoint *n1 = endpoint_add_node(k, "n1", "z1", "r1"), *e;

	endpoint_parse_address("10.0.0.1", a, NULL);
	endpoint_add_address(k, a, n1);
	e = endpoint_add_node(t, "n1", "zone-from-file", NULL); /* known: the API's wins */
	endpoint_parse_address("10.0.0.2", a, NULL);
	endpoint_add_address(t, a, e);
	e = endpoint_add_node(t, "vm", "z9", NULL);
	endpoint_parse_address("10.0.0.1", a, NULL); /* claimed by both: the API's wins */
	endpoint_add_address(t, a, e);
	endpoint_parse_address("10.0.0.3", a, NULL);
	endpoint_add_address(t, a, e);
	e = endpoint_add_pod(t, "ns", "p", "w", "Deployment", "vm");
	endpoint_parse_address("10.1.0.1", a, NULL);
	endpoint_add_address(t, a, e);
	e = endpoint_add_external(t, "internet", NULL, NULL);
	endpoint_parse_address("0.0.0.0/0", a, &prefix);
	endpoint_add_cidr(t, a, prefix, e);
	endpoint_parse_address("10.9.0.0/24", a, &prefix); /* vm's pod CIDR, from the file */
	EXPECT_EQ(endpoint_add_node_cidr(t, a, prefix, (struct endpoint *)endpoint_node(t, "vm")),
		  0);
	EXPECT_EQ(endpoint_add_node_cidr(t, a, prefix, e), -EINVAL); /* not a node */

	EXPECT_EQ(endpoint_index_merge(k, t), 0);
	endpoint_index_free(t); /* the merged index owns copies */
	EXPECT(at(k, "10.0.0.1") == n1);
	EXPECT(at(k, "10.0.0.2") == n1);
	EXPECT(strcmp(n1->zone, "z1") == 0);
	EXPECT(at(k, "10.0.0.3") && strcmp(at(k, "10.0.0.3")->name, "vm") == 0);
	EXPECT(at(k, "10.1.0.1") && strcmp(at(k, "10.1.0.1")->zone, "z9") == 0 &&
	       at(k, "10.1.0.1")->node == endpoint_node(k, "vm"));
	EXPECT(at(k, "8.8.8.8") && at(k, "8.8.8.8")->kind == ENDPOINT_EXTERNAL);
	EXPECT_EQ(endpoint_count(k, ENDPOINT_NODE), 2);
	endpoint_parse_address("10.9.0.1", a, NULL);
	EXPECT(endpoint_is_node_address(k, endpoint_node(k, "vm"), a));
	EXPECT(!endpoint_is_node_address(k, n1, a));
	endpoint_parse_address("10.0.0.3", a, NULL);
	EXPECT(endpoint_is_node_address(k, endpoint_node(k, "vm"), a));
	endpoint_index_free(k);
}

/*
 * Long topology arrays cost their length, not its square: a node with a million addresses, a
 * million pods, and 300,000 nodes and external networks each load in a small part of
 * LONG_CPU_SECONDS. Walked with json_child(k) for each k, 100,000 pods took 10 s. The last
 * entry is the one a check looks for, so the walk must reach it.
 */
#define LONG_ARRAY	 1000000
#define LONG_OBJECTS	 300000
#define LONG_CPU_SECONDS 10

static struct endpoint_index *parse_expecting_success(const char *js, size_t len)
{
	char err[256] = "";
	struct endpoint_index *x = topology_parse(js, len, err, sizeof(err));

	if (!x)
		test_fail(__FILE__, __LINE__, "%s", err);
	return x;
}

static void load_long_ips(void *arg)
{
	size_t len;
	char *js = test_repeat("{\"nodes\":[{\"name\":\"n1\",\"ips\":[", "\"10.0.0.1\"", LONG_ARRAY,
			       ",\"10.0.0.2\"]}]}", &len);
	struct endpoint_index *x = parse_expecting_success(js, len);

	(void)arg;
	EXPECT(x && at(x, "10.0.0.2") && strcmp(at(x, "10.0.0.2")->name, "n1") == 0);
	endpoint_index_free(x);
	free(js);
}

static void load_long_pods(void *arg)
{
	size_t len;
	char *js = test_repeat(
		"{\"nodes\":[{\"name\":\"n1\"}],\"pods\":[",
		"{\"namespace\":\"k\",\"name\":\"p\",\"node\":\"n1\",\"host_network\":true}",
		LONG_ARRAY,
		",{\"namespace\":\"k\",\"name\":\"q\",\"node\":\"n1\",\"ips\":[\"10.0.0.2\"]}]}",
		&len);
	struct endpoint_index *x = parse_expecting_success(js, len);

	(void)arg;
	EXPECT(x && at(x, "10.0.0.2") && strcmp(at(x, "10.0.0.2")->name, "q") == 0);
	endpoint_index_free(x);
	free(js);
}

static void load_long_nodes(void *arg)
{
	char *js = malloc(64 * LONG_OBJECTS);
	size_t len = (size_t)sprintf(js, "{\"nodes\":[");
	struct endpoint_index *x;

	(void)arg;
	for (int i = 0; i < LONG_OBJECTS; i++)
		len += (size_t)sprintf(js + len, "{\"name\":\"n%d\"},", i);
	len += (size_t)sprintf(js + len, "{\"name\":\"last\",\"ips\":[\"10.0.0.2\"]}]}");
	x = parse_expecting_success(js, len);
	EXPECT(x && endpoint_count(x, ENDPOINT_NODE) == LONG_OBJECTS + 1);
	EXPECT(x && at(x, "10.0.0.2") && strcmp(at(x, "10.0.0.2")->name, "last") == 0);
	endpoint_index_free(x);
	free(js);
}

static void load_long_externals(void *arg)
{
	size_t len;
	char *js =
		test_repeat("{\"external\":[", "{\"name\":\"x\",\"cidr\":\"10.0.0.0/8\"}",
			    LONG_OBJECTS, ",{\"name\":\"last\",\"cidr\":\"10.0.0.0/16\"}]}", &len);
	struct endpoint_index *x = parse_expecting_success(js, len);

	(void)arg;
	EXPECT(x && at(x, "10.0.0.2") && strcmp(at(x, "10.0.0.2")->name, "last") == 0);
	endpoint_index_free(x);
	free(js);
}

static void test_long_topology_arrays(void)
{
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, load_long_ips, NULL);
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, load_long_pods, NULL);
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, load_long_nodes, NULL);
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, load_long_externals, NULL);
}

/*
 * 131,072 node names crafted to share a bucket of up to 2^19 under the old FNV-1a-64 string
 * hash, and as many addresses crafted to share its old address hash outright, are added and
 * found in a small part of LONG_CPU_SECONDS. Under the unkeyed hashes they formed one run
 * of the open-addressed tables, which each insert and each lookup walked: 8.6 * 10^9 probes.
 */
#define CRAFTED (1u << COLLIDE_FNV64_STAGES)

static void index_crafted_names(void *arg)
{
	struct endpoint_index *x = endpoint_index_new();
	char name[8 * COLLIDE_FNV64_STAGES + 1];
	size_t same = 0;
	uint64_t first = 0;

	(void)arg;
	for (uint32_t i = 0; i < CRAFTED; i++) {
		uint64_t h;
		collide_fnv64_name(COLLIDE_FNV64_STAGES, i, name);
		h = collide_old_fnv64(name, strlen(name)) & ((1u << 19) - 1);
		if (i == 0)
			first = h;
		same += h == first;
		EXPECT(endpoint_add_node(x, name, "z", "r") != NULL);
	}
	EXPECT_EQ(same, CRAFTED);
	for (uint32_t i = 0; i < CRAFTED; i += 7) {
		collide_fnv64_name(COLLIDE_FNV64_STAGES, i, name);
		EXPECT(endpoint_node(x, name) && strcmp(endpoint_node(x, name)->name, name) == 0);
	}
	EXPECT_EQ(endpoint_count(x, ENDPOINT_NODE), CRAFTED);
	endpoint_index_free(x);
}

static void index_crafted_addresses(void *arg)
{
	struct endpoint_index *x = endpoint_index_new();
	struct endpoint *n1 = endpoint_add_node(x, "n1", "z", "r");
	uint8_t addr[16];
	size_t same = 0, wrong = 0;

	(void)arg;
	for (uint32_t i = 0; i < CRAFTED; i++) {
		collide_addr(i, 42, addr);
		same += collide_old_addr_hash(addr) == 42;
		EXPECT_EQ(endpoint_add_address(x, addr, n1), 0);
	}
	EXPECT_EQ(same, CRAFTED);
	for (uint32_t i = 0; i < 2 * CRAFTED; i++) { /* the second half is absent */
		collide_addr(i, 42, addr);
		wrong += endpoint_lookup(x, addr) != (i < CRAFTED ? n1 : NULL);
	}
	EXPECT_EQ(wrong, 0);
	endpoint_index_free(x);
}

static void test_crafted_names(void)
{
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, index_crafted_names, NULL);
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, index_crafted_addresses, NULL);
}

int main(void)
{
	test_attribution();
	test_topology_errors();
	RUN(test_example_file);
	RUN(test_many_pods);
	RUN(test_merge);
	RUN(test_long_topology_arrays);
	RUN(test_crafted_names);
	return test_done();
}
