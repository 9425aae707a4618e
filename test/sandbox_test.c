/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sandbox.h in child processes: a call on the allow list works; any other call ends the
 * process with one log line naming it and status 159; a call on the kill list kills it with
 * SIGSYS before any handler runs; the process reports NoNewPrivs 1, Seccomp 2 and no
 * effective capabilities beyond those it kept.
 */
#include <stdio.h>
#include <sys/wait.h>

#include "../sandbox.h"
#include "test.h"

static const int allow[] = {SYS_write, SYS_exit_group, SYS_getpid,	SYS_openat, SYS_read,
			    SYS_close, SYS_fstat,      SYS_newfstatat,	SYS_lseek,  SYS_brk,
			    SYS_mmap,  SYS_munmap,     SYS_rt_sigreturn};

/* run forks, runs fn sandboxed in the child with stderr into err, and returns wait status. */
static int run(void (*fn)(void), char *err, size_t len)
{
	int p[2], status = 0;
	pid_t pid;
	ssize_t n, got = 0;

	if (pipe(p) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		close(p[0]);
		if (sandbox_drop_caps(0) != 0 ||
		    sandbox_seccomp("sandbox_test", allow, sizeof(allow) / sizeof(allow[0])) != 0)
			_exit(90);
		fn();
		_exit(0);
	}
	close(p[1]);
	while (got < (ssize_t)len - 1 && (n = read(p[0], err + got, len - 1 - (size_t)got)) > 0)
		got += n;
	err[got] = '\0';
	close(p[0]);
	waitpid(pid, &status, 0);
	return status;
}

static void allowed(void)
{
	if (syscall(SYS_getpid) <= 0)
		_exit(91);
}

static void forbidden(void)
{
	syscall(SYS_getppid);
	_exit(92); /* not reached */
}

static void killed(void)
{
	char *argv[] = {"/bin/true", NULL};
	syscall(SYS_execve, "/bin/true", argv, NULL);
	_exit(93); /* not reached */
}

static void status(void)
{
	char buf[4096];
	FILE *f = fopen("/proc/self/status", "r");
	int nnp = -1, seccomp = -1;
	unsigned long long eff = 1;

	if (!f)
		_exit(94);
	while (fgets(buf, sizeof(buf), f)) {
		sscanf(buf, "NoNewPrivs: %d", &nnp);
		sscanf(buf, "Seccomp: %d", &seccomp);
		sscanf(buf, "CapEff: %llx", &eff);
	}
	fclose(f);
	_exit(nnp == 1 && seccomp == 2 && eff == 0 ? 0 : 95);
}

int main(void)
{
	char err[1024];
	int st;

	if (!SANDBOX_ARCH || SANDBOX_SANITIZED) {
		printf("ok - sandbox # SKIP no seccomp filter %s\n",
		       SANDBOX_SANITIZED ? "in a sanitized build" : "for this architecture");
		return test_done();
	}
	st = run(allowed, err, sizeof(err));
	EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	test_result("sandbox: an allowed call works");

	st = run(forbidden, err, sizeof(err));
	EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == SANDBOX_EXIT_STATUS);
	char want[64];
	snprintf(want, sizeof(want), "sandbox_test: forbidden system call %d ", SYS_getppid);
	EXPECT(strstr(err, want) != NULL);
	if (!strstr(err, want))
		printf("#   stderr: %s\n", err);
	test_result("sandbox: another call ends the process with one line naming it");

	st = run(killed, err, sizeof(err));
	EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	EXPECT(err[0] == '\0');
	test_result("sandbox: execve kills the process at once (SECCOMP_RET_KILL_PROCESS)");

	st = run(status, err, sizeof(err));
	EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	test_result("sandbox: NoNewPrivs 1, Seccomp 2, no effective capabilities");
	return test_done();
}
