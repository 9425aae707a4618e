/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for k8s/objects.c against the real API responses in ../shared/fixtures/k8s/:
 * workloads derived from owner references, which pods' addresses are their own, node zone
 * and region label fallbacks, and the endpoint index built from a NodeList and a PodList.
 */
#include "../k8s/objects.h"
#include "../k8s/store.h"
#include "collide.h"
#include "test.h"

/* find_pod decodes the index-th pod named name in the fixture's items. */
static int find_pod(const char *file, const char *name, int nth, struct k8s_pod *out)
{
	size_t len;
	char *js = test_fixture(file, &len);
	int n, items, found = -1;
	struct json_token *t;

	if (!js)
		return -2;
	n = json_parse(js, len, NULL, 0, NULL);
	t = malloc(sizeof(*t) * (size_t)n);
	json_parse(js, len, t, (uint32_t)n, NULL);
	items = json_get(js, t, 0, "items");
	for (int k = json_first(t, items); k >= 0 && found < 0; k = json_next(t, items, k)) {
		struct k8s_pod p;
		if (k8s_pod_decode(js, t, k, &p) == 0 && strcmp(p.name, name) == 0 && nth-- == 0) {
			*out = p;
			found = 0;
		}
	}
	free(t);
	free(js);
	return found;
}

static const struct {
	const char *file, *pod;
	int nth;
	const char *kind, *workload;
	int owns_ips;
} pods[] = {
	{"podlist_eks_vpccni_hostnetwork_bare_pod_cloudability.json", "coredns-7f5998f4c-5fblt", 0,
	 "Deployment", "coredns", 1},
	{"podlist_eks_vpccni_hostnetwork_bare_pod_cloudability.json",
	 "cloudability-metrics-agent-f564d999d-8qwp8", 0, "Deployment",
	 "cloudability-metrics-agent", 1},
	{"podlist_eks_vpccni_hostnetwork_bare_pod_cloudability.json", "aws-node-48cfw", 0,
	 "DaemonSet", "aws-node", 0},
	{"podlist_eks_vpccni_hostnetwork_bare_pod_cloudability.json", "stress2", 0, "Pod",
	 "stress2", 1},
	{"podlist_kind_kube_system_static_mirror_pending_unscheduled_sonobuoy.json",
	 "etcd-kind-control-plane", 0, "Node", "kind-control-plane", 0},
	{"podlist_kind_kube_system_static_mirror_pending_unscheduled_sonobuoy.json",
	 "coredns-74ff55c5b-ppjrs", 0, "Deployment", "coredns", 0},
	{"podlist_kind_kube_system_static_mirror_pending_unscheduled_sonobuoy.json",
	 "coredns-74ff55c5b-cpfqs", 0, "Deployment", "coredns", 1},
	{"podlist_kind_succeeded_pod_owned_by_pod_sonobuoy.json",
	 "sonobuoy-e2e-job-1d0e9c62fc114e08", 0, "Pod", "sonobuoy", 0},
	{"podlist_kind_succeeded_pod_owned_by_pod_sonobuoy.json",
	 "sonobuoy-systemd-logs-daemon-set-7a10f4effeb44d32-7n2cj", 0, "DaemonSet",
	 "sonobuoy-systemd-logs-daemon-set-7a10f4effeb44d32", 0},
	{"podlist_onprem_calico_hostnetwork_daemonsets_honeycomb.json",
	 "nginx-ingress-controller-86cd89648c-dkmjf", 0, "Deployment", "nginx-ingress-controller",
	 0},
	{"podlist_onprem_calico_hostnetwork_daemonsets_honeycomb.json", "seashell-ptsqm", 0,
	 "DaemonSet", "seashell", 1},
	{"podlist_same_name_recreated_new_uid_sonobuoy.json", "sonobuoy", 2, "Pod", "sonobuoy", 1},
	{"podlist_dualstack_and_ipv6_primary_derived.json", "sonobuoy-ipv6-primary", 0, "Pod",
	 "sonobuoy-ipv6-primary", 1},
};

static void test_pods(void)
{
	for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
		struct k8s_pod p;
		int rc = find_pod(pods[i].file, pods[i].pod, pods[i].nth, &p);

		if (rc == -2) {
			printf("ok - k8s: pod %s # SKIP fixtures not found\n", pods[i].pod);
			continue;
		}
		EXPECT_EQ(rc, 0);
		if (rc == 0) {
			if (strcmp(p.workload_kind, pods[i].kind) != 0 ||
			    strcmp(p.workload, pods[i].workload) != 0)
				test_fail(__FILE__, __LINE__, "workload %s/%s, want %s/%s",
					  p.workload_kind, p.workload, pods[i].kind,
					  pods[i].workload);
			EXPECT_EQ(k8s_pod_owns_ips(&p), pods[i].owns_ips);
		}
		test_result("k8s: pod %s is %s %s%s", pods[i].pod, pods[i].kind, pods[i].workload,
			    pods[i].owns_ips ? "" : ", addresses not its own");
	}
}

/* The CronJob rule has no fixture: build its JSON here. */
static void test_cronjob_and_hash_rules(void)
{
	static const struct {
		const char *json, *kind, *workload;
	} rows[] = {
		{"{\"metadata\":{\"uid\":\"u\",\"namespace\":\"n\",\"name\":\"report-28912345-"
		 "x7k2q\",\"generateName\":\"report-28912345-\","
		 "\"ownerReferences\":[{\"kind\":\"Job\",\"name\":\"report-28912345\","
		 "\"controller\":true}]}}",
		 "CronJob", "report"},
		{"{\"metadata\":{\"uid\":\"u\",\"namespace\":\"n\",\"name\":\"migrate-1234-abcde\","
		 "\"generateName\":\"migrate-1234-\","
		 "\"ownerReferences\":[{\"kind\":\"Job\",\"name\":\"migrate-1234\",\"controller\":"
		 "true}]}}",
		 "Job", "migrate-1234"}, /* 4 digits: a plain Job */
		{"{\"metadata\":{\"uid\":\"u\",\"namespace\":\"n\",\"name\":\"web-5d8f-abc\","
		 "\"generateName\":\"web-5d8f-\","
		 "\"labels\":{\"pod-template-hash\":\"9999\"},"
		 "\"ownerReferences\":[{\"kind\":\"ReplicaSet\",\"name\":\"web-5d8f\","
		 "\"controller\":true}]}}",
		 "ReplicaSet", "web-5d8f"}, /* hash does not match the name: a bare ReplicaSet */
		{"{\"metadata\":{\"uid\":\"u\",\"namespace\":\"n\",\"name\":\"x\","
		 "\"ownerReferences\":[{\"kind\":\"Other\",\"name\":\"o\"},{\"kind\":"
		 "\"StatefulSet\",\"name\":\"db\",\"controller\":true}]}}",
		 "StatefulSet", "db"}, /* the controller owner wins */
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct json_token t[64];
		struct k8s_pod p;
		EXPECT(json_parse(rows[i].json, strlen(rows[i].json), t, 64, NULL) > 0);
		EXPECT_EQ(k8s_pod_decode(rows[i].json, t, 0, &p), 0);
		if (strcmp(p.workload_kind, rows[i].kind) != 0 ||
		    strcmp(p.workload, rows[i].workload) != 0)
			test_fail(__FILE__, __LINE__, "row %zu: %s/%s, want %s/%s", i,
				  p.workload_kind, p.workload, rows[i].kind, rows[i].workload);
	}
	struct json_token t[16];
	struct k8s_pod p;
	const char *no_uid = "{\"metadata\":{\"namespace\":\"n\",\"name\":\"x\"}}";
	EXPECT(json_parse(no_uid, strlen(no_uid), t, 16, NULL) > 0);
	EXPECT_EQ(k8s_pod_decode(no_uid, t, 0, &p), -1);
}

static void test_nodes(void)
{
	size_t len;
	char *js = test_fixture("nodelist_zone_label_variants_derived.json", &len);
	static const struct {
		const char *name, *zone, *region;
		int n_ips;
	} want[] = {
		{"legacy-beta-labels-only", "us-central1-c", "us-central1", 1},
		{"aks-nonzonal-vmss000000", "0", "southcentralus", 1},
		{"dualstack-conflicting-labels", "us-east-1a", "unknown", 3},
	};
	struct json_token *t;
	int n, items;

	if (!js) {
		printf("ok - test_nodes # SKIP fixtures not found\n");
		return;
	}
	n = json_parse(js, len, NULL, 0, NULL);
	t = malloc(sizeof(*t) * (size_t)n);
	json_parse(js, len, t, (uint32_t)n, NULL);
	items = json_get(js, t, 0, "items");
	EXPECT_EQ(t[items].size, 3);
	for (uint32_t k = 0; k < 3 && k < t[items].size; k++) {
		struct k8s_node node;
		EXPECT_EQ(k8s_node_decode(js, t, json_child(t, items, k), &node), 0);
		if (strcmp(node.name, want[k].name) || strcmp(node.zone, want[k].zone) ||
		    strcmp(node.region, want[k].region) || node.n_ips != want[k].n_ips)
			test_fail(__FILE__, __LINE__, "%s: zone %s region %s, %d addresses",
				  node.name, node.zone, node.region, node.n_ips);
	}
	free(t);
	free(js);
}

/*
 * The tunnel addresses CNIs publish as node annotations (Calico's IP-in-IP and VXLAN, with or
 * without a prefix; Cilium's cilium_host) are where the node's agent may connect from.
 */
static void test_node_tunnel_annotations(void)
{
	static const char js[] = "{\"metadata\":{\"name\":\"n1\",\"annotations\":{"
				 "\"projectcalico.org/IPv4IPIPTunnelAddr\":\"192.168.77.0\","
				 "\"projectcalico.org/IPv4VXLANTunnelAddr\":\"192.168.78.64/26\","
				 "\"network.cilium.io/ipv6-cilium-host\":\"fd00:1::a\","
				 "\"example.com/other\":\"10.9.9.9\"}},"
				 "\"spec\":{\"podCIDR\":\"10.244.3.0/24\"},"
				 "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":"
				 "\"172.18.0.9\"}]}}";
	struct json_token t[64];
	struct k8s_node node;
	int n = json_parse(js, sizeof(js) - 1, t, 64, NULL);
	char got[4][64];

	EXPECT(n > 0);
	EXPECT_EQ(k8s_node_decode(js, t, 0, &node), 0);
	EXPECT_EQ(node.n_tunnel_ips, 3);
	for (int i = 0; i < node.n_tunnel_ips && i < 4; i++)
		endpoint_format_address(node.tunnel_ips[i], got[i], sizeof(got[i]));
	EXPECT(node.n_tunnel_ips == 3 && strcmp(got[0], "192.168.77.0") == 0 &&
	       strcmp(got[1], "192.168.78.64") == 0 && strcmp(got[2], "fd00:1::a") == 0);
	EXPECT(node.n_pod_cidrs == 1 && node.pod_cidr_len[0] == 120); /* spec.podCIDR alone */
}

static const struct endpoint *lookup(const struct endpoint_index *x, const char *ip)
{
	uint8_t a[16];
	return endpoint_parse_address(ip, a, NULL) == 0 ? endpoint_lookup(x, a) : NULL;
}

static void test_index_from_lists(void)
{
	size_t nl, pl, sl, dl;
	char *nodes = test_fixture("nodelist_kind_no_zone_labels_podcidrs_sonobuoy.json", &nl);
	char *pods = test_fixture(
		"podlist_kind_kube_system_static_mirror_pending_unscheduled_sonobuoy.json", &pl);
	char *succeeded =
		test_fixture("podlist_kind_succeeded_pod_owned_by_pod_sonobuoy.json", &sl);
	char *dual = test_fixture("podlist_dualstack_and_ipv6_primary_derived.json", &dl);
	char err[256] = "";
	struct endpoint_index *x;
	const struct endpoint *e;

	if (!nodes || !pods || !succeeded || !dual) {
		printf("ok - test_index_from_lists # SKIP fixtures not found\n");
		return;
	}
	x = k8s_index_from_lists(nodes, nl, pods, pl, err, sizeof(err));
	EXPECT(x != NULL);
	if (x) {
		e = lookup(x, "10.244.0.4");
		EXPECT(e && e->kind == ENDPOINT_POD && strcmp(e->workload, "coredns") == 0 &&
		       strcmp(e->zone, "unknown") == 0 &&
		       strcmp(e->node->name, "kind-control-plane") == 0);
		e = lookup(x, "172.18.0.4"); /* hostNetwork pods' address: the node */
		EXPECT(e && e->kind == ENDPOINT_NODE && strcmp(e->name, "kind-control-plane") == 0);
		EXPECT_EQ(endpoint_count(x, ENDPOINT_NODE), 3);
		EXPECT_EQ(endpoint_count(x, ENDPOINT_POD), 2); /* two scheduled coredns pods */
		/*
		 * Who a node's agent may connect from (spec.podCIDRs): its own address, and an
		 * address of its pod CIDR that no pod has (its bridge or tunnel device), but not
		 * a pod's address, nor another node's CIDR.
		 */
		const struct endpoint *w = endpoint_node(x, "kind-worker"), *cp;
		cp = endpoint_node(x, "kind-control-plane");
		uint8_t a[16];
		EXPECT(w && cp);
		endpoint_parse_address("172.18.0.2", a, NULL);
		EXPECT(endpoint_is_node_address(x, w, a) && !endpoint_is_node_address(x, cp, a));
		endpoint_parse_address("10.244.2.0", a, NULL); /* kind-worker: 10.244.2.0/24 */
		EXPECT(endpoint_is_node_address(x, w, a) && !endpoint_is_node_address(x, cp, a));
		endpoint_parse_address("10.244.0.4", a,
				       NULL); /* a coredns pod on kind-control-plane */
		EXPECT(!endpoint_is_node_address(x, cp, a) && !endpoint_is_node_address(x, w, a));
		endpoint_parse_address("10.244.0.1", a, NULL); /* its bridge: no pod's */
		EXPECT(endpoint_is_node_address(x, cp, a) && !endpoint_is_node_address(x, w, a));
		EXPECT(lookup(x, "10.244.0.1") == NULL); /* the CIDR is not an address mapping */
		endpoint_parse_address("10.245.0.1", a, NULL);
		EXPECT(!endpoint_is_node_address(x, cp, a) && !endpoint_is_node_address(x, w, a));
		EXPECT(!endpoint_is_node_address(x, lookup(x, "10.244.0.4"), a)); /* not a node */
		endpoint_index_free(x);
	}
	x = k8s_index_from_lists(nodes, nl, succeeded, sl, err, sizeof(err));
	EXPECT(x && lookup(x, "10.244.2.2") == NULL); /* Succeeded: the IP is not its own */
	EXPECT(x && lookup(x, "10.244.1.3") && lookup(x, "10.244.1.3")->kind == ENDPOINT_POD);
	endpoint_index_free(x);
	x = k8s_index_from_lists(nodes, nl, dual, dl, err, sizeof(err));
	EXPECT(x && lookup(x, "fd00:10:244:1::3") == lookup(x, "10.244.1.3") &&
	       lookup(x, "10.244.1.3"));
	EXPECT(x && lookup(x, "fd00:10:244:1::4") &&
	       lookup(x, "10.244.1.4") == lookup(x, "fd00:10:244:1::4"));
	endpoint_index_free(x);
	EXPECT(k8s_index_from_lists("{", 1, pods, pl, err, sizeof(err)) == NULL);
	EXPECT(strncmp(err, "NodeList: line 1", 16) == 0);
	free(nodes);
	free(pods);
	free(succeeded);
	free(dual);
}

/* apply_lines decodes and applies each line of a .jsonl fixture; returns the events. */
static int apply_lines(struct k8s_store *st, const char *file, struct k8s_event *evs, int max)
{
	size_t len;
	char *js = test_fixture(file, &len);
	struct k8s_tokens tokens = {0};
	int n = 0;

	if (!js)
		return -1;
	for (char *line = js, *nl; *line && n < max; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line);
		if (nl == line)
			break;
		if (k8s_event_decode(line, (size_t)(nl - line), &evs[n], &tokens) != 0)
			test_fail(__FILE__, __LINE__, "%s: event %d does not decode", file, n + 1);
		k8s_store_apply(st, &evs[n]);
		n++;
		if (!*nl)
			break;
	}
	free(js);
	k8s_tokens_free(&tokens);
	return n;
}

static void test_watch_pods(void)
{
	struct k8s_store *st = k8s_store_new();
	static struct k8s_event evs[8];
	struct endpoint_index *x;
	int n;

	/* Apply the stream one event at a time and check the index after each. */
	size_t len;
	char *js = test_fixture("watch_events_pods_recreated_bookmark_410_derived.jsonl", &len);
	if (!js) {
		printf("ok - test_watch_pods # SKIP fixtures not found\n");
		k8s_store_free(st);
		return;
	}
	free(js);
	n = apply_lines(st, "watch_events_pods_recreated_bookmark_410_derived.jsonl", evs, 8);
	EXPECT_EQ(n, 6);
	EXPECT(evs[0].type == K8S_ADDED && evs[1].type == K8S_DELETED && evs[2].type == K8S_ADDED &&
	       evs[3].type == K8S_MODIFIED && evs[4].type == K8S_BOOKMARK &&
	       evs[5].type == K8S_ERROR);
	EXPECT(strcmp(evs[4].resource_version, "248000") == 0);
	EXPECT_EQ(evs[5].code, 410);
	EXPECT(strcmp(evs[0].pod.uid, evs[2].pod.uid) != 0); /* same name, new UID */
	EXPECT_EQ(k8s_store_count(st, K8S_POD), 1);
	x = k8s_store_index(st);
	EXPECT(x && lookup(x, "10.244.2.6") == NULL); /* the deleted pod's address is gone */
	EXPECT(x && lookup(x, "10.244.2.7") &&
	       strcmp(lookup(x, "10.244.2.7")->name, "sonobuoy") == 0);
	endpoint_index_free(x);

	/* A new pod takes an address before the old pod's deletion arrives: it keeps it. */
	struct k8s_event a = evs[0], b = evs[3];
	k8s_store_apply(st, &a);		/* old pod (10.244.2.6) back */
	memcpy(b.pod.ips[0], a.pod.ips[0], 16); /* new pod now claims 10.244.2.6 */
	b.type = K8S_MODIFIED;
	k8s_store_apply(st, &b);
	a.type = K8S_DELETED;
	k8s_store_apply(st, &a); /* the old pod's deletion arrives late */
	x = k8s_store_index(st);
	const struct endpoint *e = x ? lookup(x, "10.244.2.6") : NULL;
	EXPECT(e && strcmp(e->name, "sonobuoy") == 0);
	EXPECT_EQ(k8s_store_count(st, K8S_POD), 1);
	endpoint_index_free(x);

	/* A relist without the pod deletes it. */
	k8s_store_begin_relist(st, K8S_POD);
	k8s_store_end_relist(st, K8S_POD);
	EXPECT_EQ(k8s_store_count(st, K8S_POD), 0);
	k8s_store_free(st);
}

static void test_watch_nodes(void)
{
	struct k8s_store *st = k8s_store_new();
	static struct k8s_event evs[8];
	size_t len;
	char *list = test_fixture("nodelist_kind_no_zone_labels_podcidrs_sonobuoy.json", &len);
	struct json_token *t;
	int n, items;

	if (!list) {
		printf("ok - test_watch_nodes # SKIP fixtures not found\n");
		k8s_store_free(st);
		return;
	}
	/* The first list, as a relist of everything. */
	n = json_parse(list, len, NULL, 0, NULL);
	t = malloc(sizeof(*t) * (size_t)n);
	json_parse(list, len, t, (uint32_t)n, NULL);
	items = json_get(list, t, 0, "items");
	k8s_store_begin_relist(st, K8S_NODE);
	for (int k = json_first(t, items); k >= 0; k = json_next(t, items, k)) {
		struct k8s_event ev = {.type = K8S_ADDED, .kind = K8S_NODE};
		EXPECT_EQ(k8s_node_decode(list, t, k, &ev.node), 0);
		k8s_store_apply(st, &ev);
	}
	k8s_store_end_relist(st, K8S_NODE);
	free(t);
	free(list);
	EXPECT_EQ(k8s_store_count(st, K8S_NODE), 3);
	n = apply_lines(st, "watch_events_nodes_zone_label_added_deleted_derived.jsonl", evs, 8);
	EXPECT_EQ(n, 4);
	EXPECT_EQ(k8s_store_count(st, K8S_NODE), 2); /* kind-worker2 deleted */
	struct endpoint_index *x = k8s_store_index(st);
	const struct endpoint *w = x ? endpoint_node(x, "kind-worker") : NULL;
	EXPECT(w && strcmp(w->zone, "zone-b") == 0); /* the label added by MODIFIED */
	EXPECT(x && endpoint_node(x, "kind-worker2") == NULL);
	endpoint_index_free(x);
	k8s_store_free(st);
}

static void test_event_rejects(void)
{
	static const char *const bad[] = {
		"",
		"{}",
		"{\"type\":\"ADDED\"}",
		"{\"type\":\"RESYNC\",\"object\":{}}",
		"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\"}}}",
		"{\"type\":\"ADDED\",\"object\":[]}",
		"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\","
		"\"namespace\":\"n\",\"uid\":\"u\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct k8s_event ev;
		struct k8s_tokens tokens = {0};
		if (k8s_event_decode(bad[i], strlen(bad[i]), &ev, &tokens) != -1)
			test_fail(__FILE__, __LINE__, "accepted bad event %zu: %s", i, bad[i]);
		k8s_tokens_free(&tokens);
	}
}

/*
 * Long arrays cost their length, not its square: one pod or node with a million podIPs,
 * ownerReferences or addresses entries, and lists of a million items, each decode in a small
 * part of LONG_CPU_SECONDS. Walked with json_child(k) for each k, 100,000 podIPs took 14 s
 * and a million would take hours. The last entry is the one that counts, so the walk must
 * reach it.
 */
#define LONG_ARRAY	 1000000
#define LONG_CPU_SECONDS 10

#define LONG_POD_HEAD                                                                              \
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"u\",\"namespace\":\"n\","         \
	"\"name\":\"p\""

static void decode_long_pod_ips(void *arg)
{
	static struct k8s_event ev;
	struct k8s_tokens tokens = {0};
	size_t len;
	char *js = test_repeat(LONG_POD_HEAD "},\"spec\":{\"nodeName\":\"n1\"},\"status\":{"
					     "\"phase\":\"Running\",\"podIPs\":[",
			       "{\"ip\":\"10.0.0.1\"}", LONG_ARRAY, ",{\"ip\":\"10.0.0.2\"}]}}}",
			       &len);

	(void)arg;
	EXPECT_EQ(k8s_event_decode(js, len, &ev, &tokens), 0);
	EXPECT_EQ(ev.pod.n_ips, 2);
	k8s_tokens_free(&tokens);
	free(js);
}

static void decode_long_owner_references(void *arg)
{
	static struct k8s_event ev;
	struct k8s_tokens tokens = {0};
	size_t len;
	char *js = test_repeat(
		LONG_POD_HEAD ",\"ownerReferences\":[", "{\"kind\":\"ReplicaSet\",\"name\":\"rs\"}",
		LONG_ARRAY, ",{\"kind\":\"StatefulSet\",\"name\":\"db\",\"controller\":true}]}}}",
		&len);

	(void)arg;
	EXPECT_EQ(k8s_event_decode(js, len, &ev, &tokens), 0);
	EXPECT(strcmp(ev.pod.workload_kind, "StatefulSet") == 0 &&
	       strcmp(ev.pod.workload, "db") == 0);
	k8s_tokens_free(&tokens);
	free(js);
}

static void decode_long_node_addresses(void *arg)
{
	static struct k8s_event ev;
	struct k8s_tokens tokens = {0};
	size_t len;
	char *js = test_repeat("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Node\",\"metadata\":{"
			       "\"name\":\"n1\"},\"status\":{\"addresses\":[",
			       "{\"type\":\"Hostname\",\"address\":\"n1\"}", LONG_ARRAY,
			       ",{\"type\":\"InternalIP\",\"address\":\"10.0.0.9\"}]}}}", &len);

	(void)arg;
	EXPECT_EQ(k8s_event_decode(js, len, &ev, &tokens), 0);
	EXPECT_EQ(ev.kind, K8S_NODE);
	EXPECT_EQ(ev.node.n_ips, 1);
	k8s_tokens_free(&tokens);
	free(js);
}

static void index_from_long_lists(void *arg)
{
	size_t nl, pl;
	char *nodes = test_repeat("{\"items\":[", "{}", LONG_ARRAY,
				  ",{\"metadata\":{\"name\":\"n1\"}}]}", &nl);
	char *pods =
		test_repeat("{\"items\":[", "{}", LONG_ARRAY,
			    ",{\"metadata\":{\"uid\":\"u\",\"namespace\":\"n\",\"name\":\"p\"},"
			    "\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"podIP\":\"10.0.0.1\"}}]}",
			    &pl);
	char err[256] = "";
	struct endpoint_index *x = k8s_index_from_lists(nodes, nl, pods, pl, err, sizeof(err));

	(void)arg;
	EXPECT(x != NULL);
	EXPECT(x && endpoint_count(x, ENDPOINT_NODE) == 1 && endpoint_count(x, ENDPOINT_POD) == 1);
	endpoint_index_free(x);
	free(nodes);
	free(pods);
}

static void test_long_arrays(void)
{
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, decode_long_pod_ips, NULL);
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, decode_long_owner_references, NULL);
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, decode_long_node_addresses, NULL);
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, index_from_long_lists, NULL);
}

/*
 * 131,072 pods whose workload names were crafted to share one FNV-1a-32 hash, and whose UIDs
 * share one in each of four groups (a UID holds 63 bytes: 15 stages of 4, then "-0" to
 * "-3"), are added, changed and deleted in a small part of LONG_CPU_SECONDS: the store's UID
 * table and its interned strings hash with a key. Under the unkeyed hash each new pod
 * compared its workload with every one before it and its UID with every one in its group:
 * 10^10 string comparisons.
 */
#define CRAFTED_PODS (1u << 17)

static void store_crafted_pods(void *arg)
{
	static struct k8s_event ev;
	struct k8s_store *st = k8s_store_new();
	size_t added = 0, same = 0;
	uint32_t first[4] = {0}, first_workload = 0;

	(void)arg;
	for (int type = K8S_ADDED; type <= K8S_DELETED; type++) {
		for (uint32_t i = 0; i < CRAFTED_PODS; i++) {
			memset(&ev.pod, 0, sizeof(ev.pod));
			ev.type = (enum k8s_event_type)type;
			ev.kind = K8S_POD;
			/* 15 stages, a dash and a digit: 62 bytes, the most a UID holds is 63. */
			collide_fnv32_name(15, i & 0x7fff, ev.pod.uid);
			snprintf(ev.pod.uid + 60, 4, "-%u", i >> 15);
			collide_fnv32_name(COLLIDE_FNV32_STAGES, i, ev.pod.workload);
			snprintf(ev.pod.namespace, sizeof(ev.pod.namespace), "n");
			snprintf(ev.pod.name, sizeof(ev.pod.name), "p%u", i);
			snprintf(ev.pod.node, sizeof(ev.pod.node), "n1");
			snprintf(ev.pod.workload_kind, sizeof(ev.pod.workload_kind), "ReplicaSet");
			ev.pod.phase = K8S_PHASE_RUNNING;
			if (type == K8S_ADDED) {
				uint32_t h = collide_old_fnv32(ev.pod.uid, strlen(ev.pod.uid));
				uint32_t w =
					collide_old_fnv32(ev.pod.workload, strlen(ev.pod.workload));
				if ((i & 0x7fff) == 0)
					first[i >> 15] = h;
				if (i == 0)
					first_workload = w;
				same += h == first[i >> 15] && w == first_workload;
			}
			EXPECT_EQ(k8s_store_apply(st, &ev), 0);
		}
		if (type == K8S_ADDED)
			added = k8s_store_count(st, K8S_POD);
	}
	EXPECT_EQ(same, CRAFTED_PODS);
	EXPECT_EQ(added, CRAFTED_PODS);
	EXPECT_EQ(k8s_store_count(st, K8S_POD), 0);
	k8s_store_free(st);
}

static void test_crafted_names(void)
{
	EXPECT_WITHIN_CPU(LONG_CPU_SECONDS, store_crafted_pods, NULL);
}

int main(void)
{
	test_pods();
	RUN(test_watch_pods);
	RUN(test_watch_nodes);
	RUN(test_event_rejects);
	RUN(test_cronjob_and_hash_rules);
	RUN(test_nodes);
	RUN(test_node_tunnel_annotations);
	RUN(test_index_from_lists);
	RUN(test_long_arrays);
	RUN(test_crafted_names);
	return test_done();
}
