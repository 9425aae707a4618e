/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubezonnet-agent: loads the embedded BPF program, attaches it to netfilter POSTROUTING for
 * IPv4 and IPv6 in the current network namespace, and runs until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/netfilter.h>
#include <bpf/libbpf.h>

#include "bpf/kubezonnet.h"
#include "kubezonnet.skel.h"
#include "version.h"

static volatile sig_atomic_t agent_stop;

static void agent_on_signal(int sig)
{
	(void)sig;
	agent_stop = 1;
}

static void agent_log(const char *fmt, ...)
{
	char when[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s kubezonnet-agent: ", when);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int agent_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	fprintf(stderr, "libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

static void agent_usage(FILE *out)
{
	fprintf(out,
		"usage: kubezonnet-agent [--help] [--version]\n"
		"\n"
		"Counts the bytes and packets of every flow leaving this network namespace with\n"
		"an eBPF program on netfilter POSTROUTING (IPv4 and IPv6). Needs root (or\n"
		"CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON) and Linux 6.4 or newer.\n"
		"\n"
		"  -h, --help     this text\n"
		"  -V, --version  print the version and exit\n");
}

/* agent_attach attaches prog to POSTROUTING for one protocol family; NULL on failure. */
static struct bpf_link *agent_attach(struct bpf_program *prog, int pf, const char *name)
{
	LIBBPF_OPTS(bpf_netfilter_opts, opts, .pf = (__u32)pf, .hooknum = NF_INET_POST_ROUTING,
		    .priority = KZN_NF_PRIORITY);
	struct bpf_link *link = bpf_program__attach_netfilter(prog, &opts);

	if (!link)
		agent_log("attach netfilter %s POSTROUTING: %s", name, strerror(errno));
	return link;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct kubezonnet_bpf *skel = NULL;
	struct bpf_link *link4 = NULL, *link6 = NULL;
	struct sigaction sa = {.sa_handler = agent_on_signal};
	sigset_t block, old;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "hV", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			agent_usage(stdout);
			return 0;
		case 'V':
			printf("kubezonnet-agent %s\n", KUBEZONNET_VERSION);
			return 0;
		default:
			agent_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kubezonnet-agent: unexpected argument '%s'\n", argv[optind]);
		agent_usage(stderr);
		return 2;
	}

	libbpf_set_print(agent_libbpf_print);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	skel = kubezonnet_bpf__open();
	if (!skel) {
		agent_log("open BPF object: %s", strerror(errno));
		goto cleanup;
	}
	if (kubezonnet_bpf__load(skel) != 0) {
		agent_log("load BPF program: %s (needs root and Linux 6.4+)", strerror(errno));
		goto cleanup;
	}
	link4 = agent_attach(skel->progs.kzn_postrouting, NFPROTO_IPV4, "IPv4");
	link6 = agent_attach(skel->progs.kzn_postrouting, NFPROTO_IPV6, "IPv6");
	if (!link4 || !link6)
		goto cleanup;
	agent_log("attached to netfilter POSTROUTING (IPv4, IPv6) at priority %d", KZN_NF_PRIORITY);

	while (!agent_stop)
		sigsuspend(&old);
	agent_log("stopping");
	rc = 0;
cleanup:
	bpf_link__destroy(link6);
	bpf_link__destroy(link4);
	kubezonnet_bpf__destroy(skel);
	return rc;
}
