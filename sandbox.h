/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sandbox.h: what the agent and the server do once set up, so that a bug exploited later
 * finds little to use: give up every capability not still needed, set no_new_privs, and
 * install a seccomp filter that allows only the system calls the process still makes.
 *
 * Written against the kernel's interfaces directly (capset(2), prctl(2), seccomp(2)), after
 * OpenSSH's sandbox-seccomp-filter.c: an allow list per architecture; a call outside it is
 * trapped, the SIGSYS handler writes one log line naming the call and the process exits
 * (status 159, as if killed by SIGSYS). A few calls that only an attacker would make
 * (execve, ptrace, changing the SIGSYS handler...) kill the process outright
 * (SECCOMP_RET_KILL_PROCESS), before any handler can run.
 */
#ifndef KUBEZONNET_SANDBOX_H
#define KUBEZONNET_SANDBOX_H

#include <fcntl.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define SANDBOX_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SANDBOX_ARCH AUDIT_ARCH_AARCH64
#else
#define SANDBOX_ARCH 0 /* no filter on other architectures: sandbox_seccomp says so */
#endif

/* A sanitizer's runtime makes calls of its own (LeakSanitizer ptraces at exit): no filter. */
#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANDBOX_SANITIZED 1
#endif
#endif
#ifndef SANDBOX_SANITIZED
#define SANDBOX_SANITIZED 0
#endif

#define SANDBOX_EXIT_STATUS 159 /* 128 + SIGSYS */

/* The calls no set-up process of ours makes once sandboxed: each kills at once. */
#define SANDBOX_KILL_LIST                                                                          \
	SYS_execve, SYS_execveat, SYS_ptrace, SYS_rt_sigaction, SYS_process_vm_writev, SYS_setuid, \
		SYS_setgid, SYS_capset, SYS_mount, SYS_unshare, SYS_setns

/*
 * The calls both processes make once set up: I/O on the descriptors they hold, sockets (name
 * resolution on every connect: files and DNS; glibc may load an NSS module), time, malloc,
 * logging, signals returning, and the exit path. Each adds its own (agent.c, server.c).
 */
#define SANDBOX_BASE_SYSCALLS_COMMON                                                               \
	SYS_read, SYS_write, SYS_writev, SYS_close, SYS_ppoll, SYS_socket, SYS_connect,            \
		SYS_sendto, SYS_recvfrom, SYS_sendmsg, SYS_recvmsg, SYS_sendmmsg, SYS_setsockopt,  \
		SYS_getsockopt, SYS_getsockname, SYS_getpeername, SYS_bind, SYS_shutdown,          \
		SYS_fcntl, SYS_ioctl, SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep,       \
		SYS_gettimeofday, SYS_getrandom, SYS_brk, SYS_mmap, SYS_munmap, SYS_mremap,        \
		SYS_madvise, SYS_mprotect, SYS_openat, SYS_fstat, SYS_newfstatat, SYS_lseek,       \
		SYS_pread64, SYS_getpid, SYS_gettid, SYS_uname, SYS_exit, SYS_exit_group,          \
		SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_restart_syscall, SYS_futex,              \
		SYS_sched_yield, SYS_sysinfo, SYS_tgkill, SYS_getuid, SYS_geteuid, SYS_faccessat,  \
		SYS_readlinkat
#ifdef SYS_poll /* x86-64's older calls; arm64 has only the *at and p* forms */
#define SANDBOX_BASE_SYSCALLS_OLD , SYS_poll, SYS_open, SYS_stat, SYS_access, SYS_readlink
#else
#define SANDBOX_BASE_SYSCALLS_OLD
#endif
#ifdef SYS_faccessat2
#define SANDBOX_BASE_SYSCALLS_FACCESSAT2 , SYS_faccessat2
#else
#define SANDBOX_BASE_SYSCALLS_FACCESSAT2
#endif
#ifdef SYS_rseq
#define SANDBOX_BASE_SYSCALLS_RSEQ , SYS_rseq
#else
#define SANDBOX_BASE_SYSCALLS_RSEQ
#endif
#define SANDBOX_BASE_SYSCALLS                                                                      \
	SANDBOX_BASE_SYSCALLS_COMMON SANDBOX_BASE_SYSCALLS_OLD SANDBOX_BASE_SYSCALLS_FACCESSAT2    \
		SANDBOX_BASE_SYSCALLS_RSEQ

static const char *sandbox_program = "kubezonnet";

/* sandbox_utoa writes n in decimal at the end of buf[0..len) and returns where it starts. */
static inline char *sandbox_utoa(unsigned long n, char *buf, size_t len)
{
	char *p = buf + len;

	*--p = '\0';
	do
		*--p = (char)('0' + n % 10);
	while ((n /= 10) && p > buf);
	return p;
}

/* The SIGSYS handler: one line on stderr (write(2) only: async-signal-safe), then exit. */
static inline void sandbox_on_sigsys(int sig, siginfo_t *info, void *ctx)
{
	char num[24];
	const char *n = sandbox_utoa((unsigned long)info->si_syscall, num, sizeof(num));
	const char *parts[] = {sandbox_program, ": forbidden system call ", n,
			       " (the sandbox allows only the calls the process is known to make; "
			       "please report this): exiting\n"};

	(void)sig;
	(void)ctx;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (write(STDERR_FILENO, parts[i], strlen(parts[i])) < 0)
			break;
	syscall(SYS_exit_group, SANDBOX_EXIT_STATUS);
}

/*
 * sandbox_selftest, with KUBEZONNET_SANDBOX_SELFTEST=forbidden (or kill) in the environment,
 * makes a call outside the allow list, mknodat (or one on the kill list, execve) once the
 * filter is in: so a node, and test/sandbox.sh, can check that the filter of the very binary
 * they run is in force. The process then ends as the filter says; were the call allowed, it
 * says so and exits 1. Unset, nothing happens.
 */
static inline void sandbox_selftest(const char *what)
{
	static const char allowed[] = "sandbox self-test: the call was allowed: no filter\n";

	if (!what)
		return;
	if (strcmp(what, "forbidden") == 0)
		syscall(SYS_mknodat, AT_FDCWD, "/", 0, 0);
	else if (strcmp(what, "kill") == 0)
		syscall(SYS_execve, "/bin/true", (char *[]){NULL}, (char *[]){NULL});
	else
		return;
	if (write(STDERR_FILENO, allowed, sizeof(allowed) - 1) < 0) {
		/* exiting either way */
	}
	syscall(SYS_exit_group, 1);
}

/*
 * sandbox_drop_caps keeps only the capabilities in keep (a mask of 1 << CAP_X), in the
 * effective and permitted sets, empties the inheritable and ambient sets, and drops the others
 * from the bounding set where the process may. Returns 0, or -1 with errno set.
 */
static inline int sandbox_drop_caps(uint64_t keep)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};

	/* The bounding set first: dropping from it needs CAP_SETPCAP, which goes below. */
	for (int cap = 0; cap < 64; cap++)
		if (!(keep & (1ull << cap)) && prctl(PR_CAPBSET_READ, cap) == 1)
			prctl(PR_CAPBSET_DROP, cap); /* EPERM without CAP_SETPCAP: the rest holds */
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	d[0].effective = d[0].permitted = (uint32_t)keep;
	d[1].effective = d[1].permitted = (uint32_t)(keep >> 32);
	if (syscall(SYS_capset, &h, d) != 0) {
		/* keep may name capabilities the process never had: keep what it has of them */
		struct __user_cap_data_struct have[2];
		if (syscall(SYS_capget, &h, have) != 0)
			return -1;
		d[0].effective = d[0].permitted = (uint32_t)keep & have[0].permitted;
		d[1].effective = d[1].permitted = (uint32_t)(keep >> 32) & have[1].permitted;
		if (syscall(SYS_capset, &h, d) != 0)
			return -1;
	}
	return 0;
}

/*
 * sandbox_seccomp sets no_new_privs and installs the filter allowing the n calls in allow.
 * program names the process in the line a forbidden call writes. Returns 0, -1 with errno
 * set, or 1 when this architecture has no filter, or this is a sanitized build (nothing
 * installed).
 */
static inline int sandbox_seccomp(const char *program, const int *allow, size_t n)
{
	static const int kill[] = {SANDBOX_KILL_LIST};
	size_t nk = sizeof(kill) / sizeof(kill[0]), len = 0;
	struct sock_filter f[8 + 2 * (sizeof(kill) / sizeof(kill[0])) + 2 * 256];
	struct sock_fprog prog;
	struct sigaction sa;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	if (!SANDBOX_ARCH || SANDBOX_SANITIZED)
		return 1;
	if (n > 256) {
		errno = E2BIG;
		return -1;
	}
	sandbox_program = program;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sandbox_on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) != 0)
		return -1;
	f[len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						offsetof(struct seccomp_data, arch));
	f[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_ARCH, 1, 0);
	f[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	f[len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
	/* x32 system calls (bit 30) reach the same table under other numbers: refuse them. */
	f[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
	f[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
	for (size_t i = 0; i < nk; i++) {
		f[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
							(uint32_t)kill[i], 0, 1);
		f[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	}
	for (size_t i = 0; i < n; i++) {
		f[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
							(uint32_t)allow[i], 0, 1);
		f[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	}
	/*
	 * KUBEZONNET_SANDBOX_LOG=1: calls outside the list are allowed and logged by the kernel
	 * (dmesg, audit: "type=1326 ... syscall=N"), to find what an environment needs.
	 */
	const char *log = getenv("KUBEZONNET_SANDBOX_LOG");
	f[len++] = (struct sock_filter)BPF_STMT(
		BPF_RET | BPF_K, log && *log == '1' ? SECCOMP_RET_LOG : SECCOMP_RET_TRAP);
	prog.len = (unsigned short)len;
	prog.filter = f;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return -1;
	sandbox_selftest(getenv("KUBEZONNET_SANDBOX_SELFTEST"));
	return 0;
}

#endif /* KUBEZONNET_SANDBOX_H */
