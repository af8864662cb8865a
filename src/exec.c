/* exec.c: the phanes.exec primitives: run a program, feed its stdin, capture
 * (and optionally stream) its stdout and stderr, with a timeout.
 *
 * The child runs in its own process group, so a terminal Ctrl-C reaches
 * phanes only; the group is what a timeout or exec.kill_all() signals.
 * Every descriptor is close-on-exec; every child is reaped, also when a
 * stream callback raises.
 *
 * A child dies with phanes (PR_SET_PDEATHSIG, SIGKILL), also when phanes
 * itself is killed with SIGKILL and can run no cleanup. The other way out,
 * letting children inherit the lock so it is held until the last one
 * exits, is wrong here: a command that starts a daemon (an init script, a
 * `cmd &`) would then hold the machine's lock for the daemon's lifetime,
 * and a half-done step would still run on unsupervised. Killing the child
 * leaves the step half done, which every resource must resume from anyway
 * (see modules/swap.lua). Grandchildren in the child's process group
 * (`sh -c 'a; b'`) do not get the death signal: the lock's watchdog
 * (state.c) kills those groups once phanes is gone, and only then lets the
 * lock go. It learns of each group here (phanes_exec_watch). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "exec.h"

extern char **environ;

#define RUN_MT "phanes.exec.run"
#define CHUNK 65536
#define KILL_GRACE 2.0 /* seconds between SIGTERM and SIGKILL */
#define MAX_DRAIN (1024 * CHUNK) /* what we still read once the child is gone */

/* Process groups of running children. A process-wide table rather than Lua
 * state: it is read by a signal handler (sys.trap_signals) and children are
 * process-wide too. Slot value 0 means free. */
#define MAX_CHILDREN 64
static volatile sig_atomic_t child_groups[MAX_CHILDREN];

/* The lock watchdog's socket (state.c), -1 when none: +pgid for each
 * started child, -pgid once reaped. Never blocks, never raises SIGPIPE: a
 * message lost to a full or closed socket only weakens a fallback. */
static int watch_fd = -1;

void phanes_exec_watch(int fd)
{
	watch_fd = fd;
}

int phanes_exec_watching(void)
{
	return watch_fd;
}

static void tell_watch(pid_t v)
{
	int msg = (int)v;
	if (watch_fd >= 0 && send(watch_fd, &msg, sizeof msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		return;
}

static int register_child(pid_t pgid)
{
	tell_watch(pgid);
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (child_groups[i] == 0) {
			child_groups[i] = pgid;
			return i;
		}
	}
	return -1; /* more than MAX_CHILDREN nested runs: not killable, still reaped */
}

/* Async-signal-safe: only kill(2). Returns how many groups were signalled. */
int phanes_kill_children(int sig)
{
	int n = 0;
	for (int i = 0; i < MAX_CHILDREN; i++) {
		pid_t pg = child_groups[i];
		if (pg > 0 && kill(-pg, sig) == 0)
			n++;
	}
	return n;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the running child: a userdata so any raise still frees it ---- */

struct buf {
	char *p;
	size_t len, cap;
};

struct run {
	pid_t pid;       /* > 0 until reaped */
	int slot;        /* in child_groups, -1 when none */
	int in, out, err, pidfd; /* -1 when closed */
	int res;         /* exec.spawn's result pipe (the child's fd 3), -1 when none */
	const char *stdin_p;
	size_t stdin_len, stdin_off;
	struct buf bout, berr;
	int status;
	int exited;
};

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void reap(struct run *r)
{
	if (r->pid <= 0)
		return;
	while (waitpid(r->pid, &r->status, 0) < 0 && errno == EINTR)
		;
	tell_watch(-r->pid);
	r->pid = 0;
	r->exited = 1;
	if (r->slot >= 0)
		child_groups[r->slot] = 0;
	r->slot = -1;
}

/* Idempotent; __gc and __close. A child still running here was abandoned
 * by an error: kill its group (no Lua can run to be polite) and reap it. */
static void run_release(struct run *r)
{
	close_fd(&r->in);
	close_fd(&r->out);
	close_fd(&r->err);
	close_fd(&r->pidfd);
	close_fd(&r->res);
	if (r->pid > 0) {
		kill(-r->pid, SIGKILL);
		kill(r->pid, SIGKILL);
		reap(r);
	}
	free(r->bout.p);
	free(r->berr.p);
	r->bout.p = r->berr.p = NULL;
}

static int run_gc(lua_State *L)
{
	run_release(luaL_checkudata(L, 1, RUN_MT));
	return 0;
}

static struct run *new_run(lua_State *L)
{
	struct run *r = lua_newuserdatauv(L, sizeof *r, 0);
	memset(r, 0, sizeof *r);
	r->slot = -1;
	r->in = r->out = r->err = r->pidfd = r->res = -1;
	luaL_setmetatable(L, RUN_MT);
	return r;
}

/* pipe2 with both ends >= 3, so the child's dup2 onto 0..2 never meets them. */
static int pipe_hi(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		if (fds[i] < 3) {
			int hi = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
			int e = errno;
			close(fds[i]);
			fds[i] = hi;
			if (hi < 0) {
				close(fds[1 - i]);
				errno = e;
				return -1;
			}
		}
	}
	return 0;
}

/* ---- the child side, between fork and exec: async-signal-safe calls only ---- */

static void child_report(int fd, int stage, int err)
{
	int msg[2] = {stage, err};
	ssize_t w = write(fd, msg, sizeof msg);
	(void)w;
	_exit(127);
}

/* exec.spawn's result pipe becomes the child's fd 3, without close-on-exec;
 * the report pipe moves out of its way first. */
static int child_result_fd(int res_w, int *report)
{
	if (res_w < 0)
		return 0;
	if (*report == RESULT_FD && (*report = fcntl(*report, F_DUPFD_CLOEXEC, RESULT_FD + 1)) < 0)
		return -1;
	if (res_w == RESULT_FD)
		return fcntl(res_w, F_SETFD, 0);
	return dup2(res_w, RESULT_FD) < 0 ? -1 : 0;
}

static void child(const struct spawn *sp, int in_r, int out_w, int err_w, int report, pid_t parent)
{
	/* Dies with phanes; if phanes died before this line, the signal will
	 * never come: we are init's already, so go now. The raw call: ASan
	 * intercepts prctl, slowly, in every child. */
	if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		child_report(report, 0, errno);
	if (getppid() != parent)
		_exit(127);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	static const int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], SIG_DFL);
	setpgid(0, 0);
	if (in_r < 0)
		in_r = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (in_r < 0 || dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0 ||
	    child_result_fd(sp->res_w, &report) < 0)
		child_report(report, 0, errno);
	if (sp->cwd && chdir(sp->cwd) < 0)
		child_report(report, 1, errno);
	if (sp->umask >= 0)
		umask((mode_t)sp->umask);
	if (sp->envp)
		environ = sp->envp;
	execvp(sp->argv[0], sp->argv);
	child_report(report, 2, errno);
}

/* Fork and exec; on failure pushes nil, err, errno and returns 3. */
static int start(lua_State *L, struct spawn *sp, struct run *r)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1}, res[2] = {-1, -1};
	int ok = (!sp->has_stdin || pipe_hi(in) == 0) && pipe_hi(out) == 0 &&
		 (sp->merge || pipe_hi(err) == 0) && (!sp->result || pipe_hi(res) == 0) && pipe_hi(rep) == 0;
	pid_t parent = getpid();
	sp->res_w = res[1];
	pid_t pid = ok ? fork() : -1;
	int e = errno;
	if (pid == 0)
		child(sp, in[0], out[1], sp->merge ? out[1] : err[1], rep[1], parent);
	close_fd(&in[0]);
	close_fd(&out[1]);
	close_fd(&err[1]);
	close_fd(&rep[1]);
	close_fd(&res[1]);
	sp->res_w = -1;
	r->in = in[1], r->out = out[0], r->err = err[0], r->res = res[0];
	if (pid < 0) {
		close_fd(&rep[0]);
		run_release(r);
		return phanes_fail(L, "exec: cannot start a process", e);
	}
	r->pid = pid;
	setpgid(pid, pid); /* also here, so the group exists before we signal it */
	r->slot = register_child(pid);
	int msg[2];
	ssize_t n;
	while ((n = read(rep[0], msg, sizeof msg)) < 0 && errno == EINTR)
		;
	close_fd(&rep[0]);
	if (n <= 0)
		return 0; /* exec succeeded: the report pipe closed on exec */
	run_release(r);
	luaL_pushfail(L);
	if (msg[0] == 1)
		lua_pushfstring(L, "exec: cannot enter %s: %s", sp->cwd, strerror(msg[1]));
	else if (msg[0] == 2)
		lua_pushfstring(L, "exec: %s: %s", sp->argv[0], strerror(msg[1]));
	else
		lua_pushfstring(L, "exec: cannot set up the child's descriptors: %s", strerror(msg[1]));
	lua_pushinteger(L, msg[1]);
	return 3;
}

/* ---- the parent's loop: feed stdin, drain outputs, watch the clock ---- */

static int buf_reserve(struct buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return 0;
	size_t cap = b->cap ? b->cap : CHUNK;
	while (cap - b->len < more)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Our ends of the child's pipes, so the poll loop never blocks; -1 with
 * errno when fcntl fails. */
static int set_nonblock(int fd)
{
	if (fd < 0)
		return 0;
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Stream a chunk to the callback under lua_pcall; on error the message is
 * left on the stack and LUA_ERR* returned. */
static int call_stream(lua_State *L, int fn, const char *kind, const char *p, size_t n)
{
	lua_pushvalue(L, fn);
	lua_pushstring(L, kind);
	lua_pushlstring(L, p, n);
	return lua_pcall(L, 2, 0, 0);
}

/* Read what is there on *fd; 0 ok (or EAGAIN), 1 when the callback raised,
 * -1 on ENOMEM. Closes *fd at end of file. */
static int drain(lua_State *L, int *fd, struct buf *b, const char *kind, int stream, size_t limit)
{
	size_t got = 0;
	while (*fd >= 0 && got < limit) {
		if (buf_reserve(b, CHUNK) < 0)
			return -1;
		ssize_t n = read(*fd, b->p + b->len, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			close_fd(fd);
			return 0;
		}
		b->len += (size_t)n;
		got += (size_t)n;
		if (stream && call_stream(L, stream, kind, b->p + b->len - n, (size_t)n) != LUA_OK)
			return 1;
		if (limit == CHUNK)
			return 0; /* one read per wake-up keeps stdout and stderr fair */
	}
	return 0;
}

static void feed(struct run *r)
{
	while (r->in >= 0 && r->stdin_off < r->stdin_len) {
		ssize_t n = write(r->in, r->stdin_p + r->stdin_off, r->stdin_len - r->stdin_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) { /* EPIPE: the child does not read its stdin, fine */
			close_fd(&r->in);
			return;
		}
		r->stdin_off += (size_t)n;
	}
	close_fd(&r->in);
}

static void check_exited(struct run *r)
{
	if (r->pid <= 0)
		return;
	pid_t p;
	while ((p = waitpid(r->pid, &r->status, WNOHANG)) < 0 && errno == EINTR)
		;
	if (p == r->pid || (p < 0 && errno == ECHILD)) {
		tell_watch(-r->pid);
		r->pid = 0;
		r->exited = 1;
		if (r->slot >= 0)
			child_groups[r->slot] = 0;
		r->slot = -1;
	}
}

struct clock {
	double start, deadline, kill_at; /* 0: not set */
	int timed_out;
	double tick, next_tick; /* opts.tick: the stream's "tick" calls */
};

/* Timeout handling: SIGTERM at the deadline, SIGKILL KILL_GRACE later.
 * Returns the poll timeout in milliseconds (-1: none). */
static int tick(struct run *r, struct clock *c)
{
	double t = now(), until = 0;
	if (c->deadline && !c->timed_out && t >= c->deadline) {
		c->timed_out = 1;
		kill(-r->pid, SIGTERM);
		c->kill_at = t + KILL_GRACE;
	}
	if (c->kill_at && t >= c->kill_at) {
		kill(-r->pid, SIGKILL);
		c->kill_at = 0;
	}
	if (c->kill_at)
		until = c->kill_at;
	else if (c->deadline && !c->timed_out)
		until = c->deadline;
	int ms = until ? (int)((until - t) * 1000) + 1 : -1;
	if (c->tick > 0) {
		int tms = c->next_tick > t ? (int)((c->next_tick - t) * 1000) + 1 : 0;
		if (ms < 0 || tms < ms)
			ms = tms;
	}
	/* No pidfd (kernel < 5.3, valgrind): notice the exit by polling
	 * waitpid, often once the pipes are closed, since then it is near. */
	int near = r->out < 0 && r->err < 0 ? 2 : 50;
	if (r->pidfd < 0 && r->pid > 0 && (ms < 0 || ms > near))
		ms = near;
	return ms;
}

/* SIGTERM, up to KILL_GRACE for the group to go, then SIGKILL; reaps. Used
 * when a stream callback raised: the run is abandoned. */
static void terminate(struct run *r)
{
	if (r->pid <= 0)
		return;
	kill(-r->pid, SIGTERM);
	double until = now() + KILL_GRACE;
	while (r->pid > 0 && now() < until) {
		check_exited(r);
		if (r->pid > 0) {
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	if (r->pid > 0)
		kill(-r->pid, SIGKILL);
	reap(r);
}

/* 0 done, 1 the callback raised (error on the stack), -1 errno set. */
static int loop(lua_State *L, struct run *r, int stream, struct clock *c)
{
	while (r->pid > 0) {
		struct pollfd pf[4];
		int n = 0, iin = -1, iout = -1, ierr = -1;
		if (r->in >= 0)
			iin = n, pf[n++] = (struct pollfd){r->in, POLLOUT, 0};
		if (r->out >= 0)
			iout = n, pf[n++] = (struct pollfd){r->out, POLLIN, 0};
		if (r->err >= 0)
			ierr = n, pf[n++] = (struct pollfd){r->err, POLLIN, 0};
		if (r->pidfd >= 0)
			pf[n++] = (struct pollfd){r->pidfd, POLLIN, 0};
		int ms = tick(r, c);
		if (poll(pf, (nfds_t)n, ms) < 0) {
			if (errno == EINTR)
				continue; /* a trapped signal: the child keeps running */
			return -1;
		}
		if (iin >= 0 && pf[iin].revents)
			feed(r);
		int rc = 0;
		if (iout >= 0 && pf[iout].revents)
			rc = drain(L, &r->out, &r->bout, "stdout", stream, CHUNK);
		if (rc == 0 && ierr >= 0 && pf[ierr].revents)
			rc = drain(L, &r->err, &r->berr, "stderr", stream, CHUNK);
		if (rc == 0 && stream && c->tick > 0 && now() >= c->next_tick) {
			c->next_tick = now() + c->tick;
			rc = call_stream(L, stream, "tick", "", 0) != LUA_OK;
		}
		if (rc)
			return rc < 0 ? (errno = ENOMEM, -1) : 1;
		check_exited(r);
	}
	/* The child is gone: what it wrote is in the pipes now. Background
	 * processes it left may hold them open; we do not wait for those. */
	close_fd(&r->in);
	int rc = drain(L, &r->out, &r->bout, "stdout", stream, MAX_DRAIN);
	if (rc == 0)
		rc = drain(L, &r->err, &r->berr, "stderr", stream, MAX_DRAIN);
	close_fd(&r->out);
	close_fd(&r->err);
	return rc < 0 ? (errno = ENOMEM, -1) : rc;
}

static void push_result(lua_State *L, struct run *r, struct clock *c)
{
	struct phanes_result res = {
		.code = WIFEXITED(r->status) ? WEXITSTATUS(r->status) : 0,
		.signal = WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0,
		.out = r->bout.p, .out_len = r->bout.len,
		.err = r->berr.p, .err_len = r->berr.len,
		.timed_out = c->timed_out,
		.duration = now() - c->start,
	};
	phanes_push_result(L, &res);
}

/* Writing to a child that closed its stdin raises SIGPIPE, which would kill
 * phanes: block it while feeding, and swallow the one we caused. The block
 * is per thread and the child clears its mask, so nothing else notices. */
static int hold_sigpipe(sigset_t *old, int feeding)
{
	if (!feeding)
		return 0;
	sigset_t pipe, pending;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, old);
	sigpending(&pending);
	return sigismember(&pending, SIGPIPE);
}

static void release_sigpipe(const sigset_t *old, int feeding, int was_pending)
{
	if (!feeding)
		return;
	sigset_t pipe, pending;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	sigpending(&pending);
	if (!was_pending && sigismember(&pending, SIGPIPE)) {
		struct timespec zero = {0, 0};
		while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* exec.run(opts) -> res | nil, err, errno */
static int l_run(lua_State *L)
{
	struct spawn sp;
	phanes_exec_opts(L, &sp);
	struct clock c = {now(), 0, 0, 0, sp.tick, 0};
	c.next_tick = c.start + sp.tick;
	if (sp.timeout > 0)
		c.deadline = c.start + sp.timeout;
	struct run *r = new_run(L); /* ..., run */
	r->stdin_p = sp.stdin_p;
	r->stdin_len = sp.stdin_len;
	int nret = start(L, &sp, r);
	if (nret)
		return nret;
#ifdef SYS_pidfd_open
	r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0); /* close-on-exec by default */
#endif
	if (r->pidfd < 0)
		r->pidfd = -1;
	if (set_nonblock(r->in) < 0 || set_nonblock(r->out) < 0 || set_nonblock(r->err) < 0) {
		int e = errno;
		terminate(r);
		run_release(r);
		return phanes_fail(L, "exec: setting up the child's pipes", e);
	}
	sigset_t old;
	int pipe_was_pending = hold_sigpipe(&old, sp.has_stdin);
	int rc = loop(L, r, sp.stream, &c);
	int e = errno;
	release_sigpipe(&old, sp.has_stdin, pipe_was_pending);
	if (rc != 0) {
		terminate(r);
		run_release(r);
		if (rc == 1)
			return lua_error(L); /* the callback's error, after cleanup */
		return phanes_fail(L, "exec: waiting for the child", e);
	}
	push_result(L, r, &c);
	run_release(r);
	return 1;
}

/* ---- exec.spawn / exec.wait: several children at once, one poll ----
 *
 * A proc is a running child of exec.spawn: its stdout, stderr (unless
 * merged) and, with opts.result, a pipe on its fd 3, all read by
 * exec.wait, which polls every proc it is given at once and hands back what
 * happened as events. The child is started as exec.run starts one (own
 * process group, dies with phanes, known to the lock's watchdog). __gc and
 * __close kill a child still running and reap it. */

#define PROC_MT "phanes.exec.proc"

struct proc {
	struct run r;  /* pid > 0 until reaped; out, err, res, pidfd */
	int reported;  /* its exit event was handed out */
};

static int proc_gc(lua_State *L)
{
	struct proc *p = luaL_checkudata(L, 1, PROC_MT);
	run_release(&p->r);
	return 0;
}

/* opts.stdin of exec.spawn: at most PIPE_BUF bytes, so one write into the
 * empty pipe neither blocks nor splits; then the write end is closed (the
 * child reads end of file after it). A child that is gone already (EPIPE)
 * is no error: its exit tells. 0, or -1 with errno. */
static int feed_once(struct run *r, const struct spawn *sp)
{
	sigset_t old;
	int was_pending = hold_sigpipe(&old, 1);
	ssize_t n;
	while ((n = write(r->in, sp->stdin_p, sp->stdin_len)) < 0 && errno == EINTR)
		;
	int e = errno;
	release_sigpipe(&old, 1, was_pending);
	int c = close(r->in);
	r->in = -1;
	if (n < 0 && e != EPIPE) {
		errno = e;
		return -1;
	}
	if (n >= 0 && (size_t)n != sp->stdin_len) {
		errno = EIO;
		return -1;
	}
	return c < 0 && errno != EINTR ? -1 : 0;
}

/* exec.spawn(opts) -> proc | nil, err, errno. opts: as exec.run's (argv or
 * shell, env, clear_env, cwd, umask, merge) without timeout and stream; stdin: a
 * string of at most PIPE_BUF bytes on a pipe that is the child's fd 0
 * (else it reads /dev/null); result = true: a pipe on the child's fd 3,
 * read as "result" events. */
static int l_spawn(lua_State *L)
{
	struct spawn sp;
	phanes_spawn_opts(L, &sp);
	struct proc *p = lua_newuserdatauv(L, sizeof *p, 0);
	memset(p, 0, sizeof *p);
	p->r.slot = -1;
	p->r.in = p->r.out = p->r.err = p->r.pidfd = p->r.res = -1;
	luaL_setmetatable(L, PROC_MT);
	int nret = start(L, &sp, &p->r);
	if (nret)
		return nret;
	if (sp.has_stdin && feed_once(&p->r, &sp) < 0) {
		int e = errno;
		run_release(&p->r);
		return phanes_fail(L, "exec.spawn: writing the child's stdin", e);
	}
#ifdef SYS_pidfd_open
	p->r.pidfd = (int)syscall(SYS_pidfd_open, p->r.pid, 0);
#endif
	if (p->r.pidfd < 0)
		p->r.pidfd = -1;
	if (set_nonblock(p->r.out) < 0 || set_nonblock(p->r.err) < 0 || set_nonblock(p->r.res) < 0) {
		int e = errno;
		run_release(&p->r);
		return phanes_fail(L, "exec.spawn: setting up the child's pipes", e);
	}
	return 1;
}

/* proc:pid() -> the child's pid (also its process group), nil once reaped */
static int proc_pid(lua_State *L)
{
	struct proc *p = luaL_checkudata(L, 1, PROC_MT);
	if (p->r.pid <= 0)
		return 0;
	lua_pushinteger(L, p->r.pid);
	return 1;
}

/* proc:kill([sig]) -> true | false when it is no longer running. Signals
 * the child's process group (default SIGTERM). */
static int proc_kill(lua_State *L)
{
	struct proc *p = luaL_checkudata(L, 1, PROC_MT);
	lua_Integer sig = luaL_optinteger(L, 2, SIGTERM);
	luaL_argcheck(L, sig > 0 && sig < 65, 2, "not a signal number");
	if (p->r.pid <= 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (kill(-p->r.pid, (int)sig) < 0 && kill(p->r.pid, (int)sig) < 0)
		return phanes_fail(L, "exec: kill", errno);
	lua_pushboolean(L, 1);
	return 1;
}

/* proc:close(): kills the child if it still runs, reaps it, closes its pipes. */
static int proc_close(lua_State *L)
{
	struct proc *p = luaL_checkudata(L, 1, PROC_MT);
	run_release(&p->r);
	return 0;
}

/* The event table on top: { proc = procs[i], index = i, kind = kind }. */
static void push_event(lua_State *L, int procs, lua_Integer i, const char *kind)
{
	lua_createtable(L, 0, 5);
	lua_rawgeti(L, procs, i);
	lua_setfield(L, -2, "proc");
	lua_pushinteger(L, i);
	lua_setfield(L, -2, "index");
	lua_pushstring(L, kind);
	lua_setfield(L, -2, "kind");
}

static void append(lua_State *L, int events)
{
	lua_rawseti(L, events, (lua_Integer)lua_rawlen(L, events) + 1);
}

/* Read what *fd has, up to limit bytes, one event per read; closes *fd at
 * end of file or on an error other than EAGAIN. */
static void read_events(lua_State *L, int procs, int events, lua_Integer i, int *fd, const char *kind, size_t limit)
{
	char buf[CHUNK];
	size_t got = 0;
	while (*fd >= 0 && got < limit) {
		ssize_t n = read(*fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close_fd(fd);
			return;
		}
		got += (size_t)n;
		push_event(L, procs, i, kind);
		lua_pushlstring(L, buf, (size_t)n);
		lua_setfield(L, -2, "data");
		append(L, events);
	}
}

/* The child is gone: what it wrote is in its pipes; hand that out, then
 * its exit event. Processes it left behind may hold the pipes open: what
 * they write later is not waited for. */
static void exit_event(lua_State *L, int procs, int events, lua_Integer i, struct proc *p)
{
	read_events(L, procs, events, i, &p->r.out, "stdout", MAX_DRAIN);
	read_events(L, procs, events, i, &p->r.err, "stderr", MAX_DRAIN);
	read_events(L, procs, events, i, &p->r.res, "result", MAX_DRAIN);
	close_fd(&p->r.out);
	close_fd(&p->r.err);
	close_fd(&p->r.res);
	close_fd(&p->r.pidfd);
	p->reported = 1;
	push_event(L, procs, i, "exit");
	if (WIFEXITED(p->r.status)) {
		lua_pushinteger(L, WEXITSTATUS(p->r.status));
		lua_setfield(L, -2, "code");
	} else if (WIFSIGNALED(p->r.status)) {
		lua_pushinteger(L, WTERMSIG(p->r.status));
		lua_setfield(L, -2, "signal");
	}
	append(L, events);
}

/* The procs argument: a list of procs; -> how many. */
static lua_Integer check_procs(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer n = luaL_len(L, 1);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 1, i);
		if (luaL_testudata(L, -1, PROC_MT) == NULL)
			luaL_error(L, "exec.wait: procs[%d] is not a process of exec.spawn", (int)i);
		lua_pop(L, 1);
	}
	return n;
}

static struct proc *proc_at(lua_State *L, lua_Integer i)
{
	lua_rawgeti(L, 1, i);
	struct proc *p = lua_touserdata(L, -1); /* anchored by procs */
	lua_pop(L, 1);
	return p;
}

/* exec.wait(procs[, timeout]) -> events, running. Waits (at most timeout
 * seconds; none: until something happens) for output or an exit among
 * procs, and returns what happened, in order: { proc, index, kind =
 * "stdout" | "stderr" | "result", data } and { proc, index, kind = "exit",
 * code | signal }, after which the proc is reaped and done. running: how
 * many of procs have not been reported as exited. A signal that interrupts
 * the wait (Ctrl-C) returns what there is, maybe nothing. */
static int l_wait(lua_State *L)
{
	lua_Integer n = check_procs(L);
	double timeout = luaL_optnumber(L, 2, -1);
	luaL_argcheck(L, lua_isnoneornil(L, 2) || timeout >= 0, 2, "must be a number of seconds >= 0");
	lua_settop(L, 2);
	struct pollfd *pf = lua_newuserdatauv(L, ((size_t)n * 4 + 1) * sizeof *pf, 0);
	lua_newtable(L);
	int events = lua_gettop(L);
	nfds_t k = 0;
	int need_tick = 0;
	lua_Integer running = 0;
	for (lua_Integer i = 1; i <= n; i++) {
		struct proc *p = proc_at(L, i);
		if (p->reported)
			continue;
		if (p->r.pid <= 0) { /* closed by its owner: nothing more will come */
			exit_event(L, 1, events, i, p);
			continue;
		}
		running++;
		int fds[4] = {p->r.out, p->r.err, p->r.res, p->r.pidfd};
		for (int j = 0; j < 4; j++)
			if (fds[j] >= 0)
				pf[k++] = (struct pollfd){fds[j], POLLIN, 0};
		need_tick |= p->r.pidfd < 0;
	}
	if (running == 0 || lua_rawlen(L, events) > 0)
		goto done;
	int ms = timeout < 0 ? -1 : (int)(timeout * 1000);
	if (need_tick && (ms < 0 || ms > 50))
		ms = 50; /* no pidfd: an exit is noticed by polling waitpid */
	if (poll(pf, k, ms) < 0) {
		if (errno == EINTR)
			goto done;
		return phanes_fail(L, "exec.wait: poll", errno);
	}
	for (lua_Integer i = 1; i <= n; i++) {
		struct proc *p = proc_at(L, i);
		if (p->reported)
			continue;
		read_events(L, 1, events, i, &p->r.out, "stdout", CHUNK);
		read_events(L, 1, events, i, &p->r.err, "stderr", CHUNK);
		read_events(L, 1, events, i, &p->r.res, "result", CHUNK);
		check_exited(&p->r);
		if (p->r.pid <= 0) {
			exit_event(L, 1, events, i, p);
			running--;
		}
	}
done:
	lua_pushvalue(L, events);
	lua_pushinteger(L, running);
	return 2;
}

/* exec.write_result(text) -> true | nil, err, errno: the child's side of
 * opts.result: writes text to fd 3, which must be a pipe (a spawned child's
 * result pipe, not whatever else fd 3 may be). A parent that stopped
 * reading costs an EPIPE, not a SIGPIPE. */
static int l_write_result(lua_State *L)
{
	size_t len, off = 0;
	const char *text = luaL_checklstring(L, 1, &len);
	struct stat st;
	if (fstat(RESULT_FD, &st) < 0)
		return phanes_fail(L, "exec.write_result: fd 3", errno);
	if (!S_ISFIFO(st.st_mode))
		return phanes_fail(L, "exec.write_result: fd 3 is not a pipe", EBADF);
	sigset_t old;
	int was_pending = hold_sigpipe(&old, 1);
	int e = 0;
	while (off < len) {
		ssize_t n = write(RESULT_FD, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			break;
		}
		off += (size_t)n;
	}
	release_sigpipe(&old, 1, was_pending);
	if (e)
		return phanes_fail(L, "exec.write_result: fd 3", e);
	lua_pushboolean(L, 1);
	return 1;
}

/* A spawned phanes (PHANES_RESULT_FD=3) keeps its result pipe for
 * exec.write_result, but the programs it runs do not inherit it. */
static void keep_result_fd(void)
{
	const char *v = getenv("PHANES_RESULT_FD");
	if (v == NULL || strcmp(v, "3") != 0)
		return;
	int fl = fcntl(RESULT_FD, F_GETFD);
	if (fl >= 0 && fcntl(RESULT_FD, F_SETFD, fl | FD_CLOEXEC) < 0)
		return; /* best effort: a child that inherits it only holds it open */
}

static void open_proc_mt(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"pid", proc_pid},
		{"kill", proc_kill},
		{"close", proc_close},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, PROC_MT)) {
		lua_pushcfunction(L, proc_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, proc_gc);
		lua_setfield(L, -2, "__close");
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
}

/* exec.kill_all() -> number of process groups sent SIGTERM */
static int l_kill_all(lua_State *L)
{
	lua_pushinteger(L, phanes_kill_children(SIGTERM));
	return 1;
}

int luaopen_phanes_exec(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"run", l_run},
		{"kill_all", l_kill_all},
		{"spawn", l_spawn},
		{"wait", l_wait},
		{"write_result", l_write_result},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, RUN_MT)) {
		lua_pushcfunction(L, run_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, run_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	open_proc_mt(L);
	keep_result_fd();
	luaL_newlib(L, funcs);
	return 1;
}
