/* SPDX-License-Identifier: Apache-2.0 */
/*
 * udpflood: sends small UDP datagrams as fast as sendmmsg allows, round robin over FLOWS
 * destination ports (each a flow for the agent), for SECONDS, and prints how many it sent.
 *
 *   udpflood DST_IPV4 FLOWS SECONDS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

int main(int argc, char **argv)
{
	struct sockaddr_in dst[BATCH];
	struct mmsghdr msgs[BATCH];
	struct iovec iov = {.iov_base = "kubezonnet-bench", .iov_len = 18};
	unsigned long long sent = 0;
	struct timespec start, now;
	int fd, flows, next = 0;
	double seconds;

	if (argc != 4) {
		fprintf(stderr, "usage: udpflood DST_IPV4 FLOWS SECONDS\n");
		return 2;
	}
	flows = atoi(argv[2]);
	seconds = atof(argv[3]);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || flows < 1) {
		perror("udpflood: socket");
		return 1;
	}
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		dst[i].sin_family = AF_INET;
		if (inet_pton(AF_INET, argv[1], &dst[i].sin_addr) != 1) {
			fprintf(stderr, "udpflood: bad address %s\n", argv[1]);
			return 2;
		}
		msgs[i].msg_hdr.msg_name = &dst[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(dst[i]);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		for (int i = 0; i < BATCH; i++) {
			dst[i].sin_port = htons((uint16_t)(10000 + next));
			next = (next + 1) % flows;
		}
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0)
			sent += (unsigned long long)n;
		else if (n < 0 && errno != ENOBUFS && errno != ECONNREFUSED)
			perror("udpflood: sendmmsg");
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 <
		 seconds);
	printf("%llu\n", sent);
	return 0;
}
