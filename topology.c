/* SPDX-License-Identifier: Apache-2.0 */
/* topology.c: see topology.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "topology.h"

#define TOPOLOGY_MAX_BYTES (256u << 20)
#define TOPOLOGY_STRING	   254

struct topology_parser {
	const char *js;
	struct json_token *t;
	char *err;
	size_t err_len;
};

/* topology_fail writes "line L, column C: message" for the token at index i. */
static void topology_fail(struct topology_parser *p, int i, const char *fmt, ...)
{
	unsigned line, col;
	size_t n;
	va_list ap;

	json_line_column(p->js, i >= 0 ? p->t[i].start : 0, &line, &col);
	n = (size_t)snprintf(p->err, p->err_len, "line %u, column %u: ", line, col);
	if (n >= p->err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->err_len - n, fmt, ap);
	va_end(ap);
}

/* topology_string copies the string member key of object obj; optional members may be absent. */
static int topology_string(struct topology_parser *p, int obj, const char *key, char *out,
			   int required)
{
	int v = json_get(p->js, p->t, obj, key);

	out[0] = '\0';
	if (v < 0 || p->t[v].type == JSON_NULL) {
		if (required)
			topology_fail(p, obj, "missing \"%s\"", key);
		return required ? -1 : 0;
	}
	if (p->t[v].type != JSON_STRING) {
		topology_fail(p, v, "\"%s\" must be a string", key);
		return -1;
	}
	if (json_string(p->js, p->t, v, out, TOPOLOGY_STRING) <= 0) {
		topology_fail(p, v, "\"%s\" must be 1 to %d bytes of text", key,
			      TOPOLOGY_STRING - 1);
		return -1;
	}
	return 0;
}

/* topology_array returns the array member key of obj (absent: -2), or -1 after an error. */
static int topology_array(struct topology_parser *p, int obj, const char *key)
{
	int v = json_get(p->js, p->t, obj, key);

	if (v < 0)
		return -2;
	if (p->t[v].type != JSON_ARRAY) {
		topology_fail(p, v, "\"%s\" must be an array", key);
		return -1;
	}
	return v;
}

static int topology_ips(struct topology_parser *p, struct endpoint_index *x, int obj,
			struct endpoint *e)
{
	int ips = topology_array(p, obj, "ips");

	if (ips == -1)
		return -1;
	for (int v = json_first(p->t, ips); v >= 0; v = json_next(p->t, ips, v)) {
		char s[TOPOLOGY_STRING];
		uint8_t addr[16];

		if (p->t[v].type != JSON_STRING || json_string(p->js, p->t, v, s, sizeof(s)) <= 0 ||
		    endpoint_parse_address(s, addr, NULL) != 0) {
			topology_fail(p, v, "not an IPv4 or IPv6 address");
			return -1;
		}
		if (endpoint_add_address(x, addr, e) != 0) {
			topology_fail(p, v, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* topology_pod_cidrs records a node's "pod_cidrs" (who its connections may come from). */
static int topology_pod_cidrs(struct topology_parser *p, struct endpoint_index *x, int obj,
			      struct endpoint *node)
{
	int cidrs = topology_array(p, obj, "pod_cidrs");

	if (cidrs == -1)
		return -1;
	for (int v = json_first(p->t, cidrs); v >= 0; v = json_next(p->t, cidrs, v)) {
		char s[TOPOLOGY_STRING];
		uint8_t addr[16];
		unsigned int prefix;

		if (p->t[v].type != JSON_STRING || json_string(p->js, p->t, v, s, sizeof(s)) <= 0 ||
		    endpoint_parse_address(s, addr, &prefix) != 0 || !strchr(s, '/')) {
			topology_fail(p, v, "not a CIDR such as 10.244.1.0/24");
			return -1;
		}
		if (endpoint_add_node_cidr(x, addr, prefix, node) != 0) {
			topology_fail(p, v, "out of memory");
			return -1;
		}
	}
	return 0;
}

static int topology_build(struct topology_parser *p, struct endpoint_index *x)
{
	char name[TOPOLOGY_STRING], zone[TOPOLOGY_STRING], region[TOPOLOGY_STRING];
	char ns[TOPOLOGY_STRING], node[TOPOLOGY_STRING], wl[TOPOLOGY_STRING], kind[TOPOLOGY_STRING];
	int nodes, pods, ext;

	if (p->t[0].type != JSON_OBJECT) {
		topology_fail(p, 0, "the topology must be a JSON object");
		return -1;
	}
	nodes = topology_array(p, 0, "nodes");
	pods = topology_array(p, 0, "pods");
	ext = topology_array(p, 0, "external");
	if (nodes == -1 || pods == -1 || ext == -1)
		return -1;
	for (int o = json_first(p->t, nodes); o >= 0; o = json_next(p->t, nodes, o)) {
		struct endpoint *e;

		if (p->t[o].type != JSON_OBJECT) {
			topology_fail(p, o, "a node must be an object");
			return -1;
		}
		if (topology_string(p, o, "name", name, 1) ||
		    topology_string(p, o, "zone", zone, 0) ||
		    topology_string(p, o, "region", region, 0))
			return -1;
		e = endpoint_add_node(x, name, zone[0] ? zone : "unknown",
				      region[0] ? region : NULL);
		if (!e) {
			topology_fail(p, o, "node \"%s\" appears twice", name);
			return -1;
		}
		if (topology_ips(p, x, o, e) || topology_pod_cidrs(p, x, o, e))
			return -1;
	}
	for (int o = json_first(p->t, pods); o >= 0; o = json_next(p->t, pods, o)) {
		struct endpoint *e;
		int hn;

		if (p->t[o].type != JSON_OBJECT) {
			topology_fail(p, o, "a pod must be an object");
			return -1;
		}
		if (topology_string(p, o, "namespace", ns, 1) ||
		    topology_string(p, o, "name", name, 1) ||
		    topology_string(p, o, "node", node, 1) ||
		    topology_string(p, o, "workload", wl, 0) ||
		    topology_string(p, o, "workload_kind", kind, 0))
			return -1;
		if (!endpoint_node(x, node)) {
			topology_fail(p, json_get(p->js, p->t, o, "node"), "no node named \"%s\"",
				      node);
			return -1;
		}
		hn = json_get(p->js, p->t, o, "host_network");
		if (hn >= 0 && p->t[hn].type == JSON_TRUE)
			continue; /* its addresses are the node's */
		e = endpoint_add_pod(x, ns, name, wl[0] ? wl : NULL, kind[0] ? kind : "Pod", node);
		if (!e || topology_ips(p, x, o, e)) {
			if (!e)
				topology_fail(p, o, "out of memory");
			return -1;
		}
	}
	for (int o = json_first(p->t, ext); o >= 0; o = json_next(p->t, ext, o)) {
		int c;
		char cidr[TOPOLOGY_STRING];
		uint8_t addr[16];
		unsigned int prefix;
		struct endpoint *e;

		if (p->t[o].type != JSON_OBJECT) {
			topology_fail(p, o, "an external network must be an object");
			return -1;
		}
		if (topology_string(p, o, "name", name, 1) ||
		    topology_string(p, o, "cidr", cidr, 1) ||
		    topology_string(p, o, "zone", zone, 0) ||
		    topology_string(p, o, "region", region, 0))
			return -1;
		c = json_get(p->js, p->t, o, "cidr");
		if (endpoint_parse_address(cidr, addr, &prefix) != 0 || !strchr(cidr, '/')) {
			topology_fail(p, c, "\"%s\" is not a CIDR such as 10.0.0.0/8", cidr);
			return -1;
		}
		e = endpoint_add_external(x, name, zone[0] ? zone : NULL,
					  region[0] ? region : NULL);
		if (!e || endpoint_add_cidr(x, addr, prefix, e) != 0) {
			topology_fail(p, o, "out of memory");
			return -1;
		}
	}
	return 0;
}

struct endpoint_index *topology_parse(const char *js, size_t len, char *err, size_t err_len)
{
	struct topology_parser p = {.js = js, .err = err, .err_len = err_len};
	struct endpoint_index *x = NULL;
	size_t at = 0;
	int n = json_parse(js, len, NULL, 0, &at);

	if (n < 0) {
		unsigned line, col;
		json_line_column(js, at, &line, &col);
		snprintf(err, err_len, "line %u, column %u: %s", line, col, json_error_string(n));
		return NULL;
	}
	p.t = malloc(sizeof(*p.t) * (size_t)n);
	x = endpoint_index_new();
	if (!p.t || !x || json_parse(js, len, p.t, (uint32_t)n, NULL) != n) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	if (topology_build(&p, x) != 0)
		goto fail;
	free(p.t);
	return x;
fail:
	free(p.t);
	endpoint_index_free(x);
	return NULL;
}

struct endpoint_index *topology_load(const char *path, char *err, size_t err_len)
{
	FILE *f = fopen(path, "rb");
	struct endpoint_index *x = NULL;
	char msg[512];
	char *buf = NULL;
	long n;

	if (!f) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (long)TOPOLOGY_MAX_BYTES ||
	    fseek(f, 0, SEEK_SET) != 0) {
		snprintf(err, err_len, "%s: cannot read (or larger than %u bytes)", path,
			 TOPOLOGY_MAX_BYTES);
		goto out;
	}
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		snprintf(err, err_len, "%s: %s", path, buf ? "short read" : "out of memory");
		goto out;
	}
	x = topology_parse(buf, (size_t)n, msg, sizeof(msg));
	if (!x)
		snprintf(err, err_len, "%s: %s", path, msg);
out:
	free(buf);
	fclose(f);
	return x;
}
