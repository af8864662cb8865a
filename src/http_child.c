/* http_child.c: http.spawn, a child process that does not block the server:
 * its stdout and stderr come on two non-blocking pipes to watch
 * (srv:watch(child:fd(1)), child:fd(2)), its exit is polled, its process
 * group is what child:kill() signals. stdin is /dev/null.
 *
 *   local c <close> = assert(http.spawn { argv = { "/proc/self/exe", "version" } })
 *   srv:watch(c:fd(1)); ...; local data = c:read(1) -- "" nothing yet, nil at end
 *   local code, signal = c:poll()                   -- nil while running
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "http.h"

#define CHILD_MT "phanes.http.child"
#define READ_CHUNK 65536

extern char **environ;

struct child {
	pid_t pid; /* > 0 until reaped */
	int fd[3]; /* [1] stdout, [2] stderr; -1 once closed */
	int status, reaped;
};

/* Idempotent: a child still running is killed with its group and reaped. */
static void child_release(struct child *c)
{
	for (int i = 1; i <= 2; i++) {
		if (c->fd[i] >= 0)
			close(c->fd[i]);
		c->fd[i] = -1;
	}
	if (c->pid > 0) {
		kill(-c->pid, SIGKILL);
		while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
			;
		c->pid = 0;
		c->reaped = 1;
	}
}

static int child_gc(lua_State *L)
{
	child_release(luaL_checkudata(L, 1, CHILD_MT));
	return 0;
}

/* A NULL-terminated array of the strings in the list at field, kept in a
 * userdata on the stack; NULL when the field is nil. */
static char **string_list(lua_State *L, const char *field)
{
	if (lua_getfield(L, 1, field) == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	luaL_argcheck(L, lua_istable(L, -1), 1, field);
	int t = lua_gettop(L);
	lua_Integer n = luaL_len(L, t);
	char **v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char *), 1);
	lua_pushvalue(L, t);
	lua_setiuservalue(L, -2, 1); /* the strings stay referenced */
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, t, i);
		v[i - 1] = (char *)lua_tostring(L, -1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "http.spawn: %s[%d] must be a string", field, (int)i);
		lua_pop(L, 1);
	}
	v[n] = NULL;
	return v;
}

static void in_child(char **argv, char **envp, int out, int err, int report)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	static const int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], SIG_DFL);
	setpgid(0, 0);
	int in = open("/dev/null", O_RDONLY);
	if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
		int e = errno;
		ssize_t w = write(report, &e, sizeof e);
		(void)w;
		_exit(127);
	}
	if (envp)
		environ = envp;
	execvp(argv[0], argv);
	int e = errno;
	ssize_t w = write(report, &e, sizeof e);
	(void)w;
	_exit(127);
}

/* Pipes with both ends >= 3 (so dup2 onto 0..2 never meets them), cloexec. */
static int pipe3(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		if (p[i] >= 3)
			continue;
		int hi = fcntl(p[i], F_DUPFD_CLOEXEC, 3);
		close(p[i]);
		p[i] = hi;
	}
	if (p[0] < 0 || p[1] < 0) {
		if (p[0] >= 0)
			close(p[0]);
		if (p[1] >= 0)
			close(p[1]);
		return -1;
	}
	return 0;
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* http.spawn{ argv = {...}, env = {"K=V", ...} } -> child | nil, err */
static int l_spawn(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	char **argv = string_list(L, "argv");
	luaL_argcheck(L, argv && argv[0], 1, "argv: a non-empty list");
	char **envp = string_list(L, "env");
	struct child *c = lua_newuserdatauv(L, sizeof *c, 0);
	memset(c, 0, sizeof *c);
	c->fd[0] = c->fd[1] = c->fd[2] = -1;
	luaL_setmetatable(L, CHILD_MT);
	int out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1};
	if (pipe3(out) < 0 || pipe3(err) < 0 || pipe3(rep) < 0) {
		int e = errno;
		int *all[] = {out, err, rep};
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 2; j++)
				if (all[i][j] >= 0)
					close(all[i][j]);
		return phanes_fail(L, "http.spawn: pipe", e);
	}
	pid_t pid = fork();
	if (pid == 0)
		in_child(argv, envp, out[1], err[1], rep[1]);
	int e = errno;
	close(out[1]);
	close(err[1]);
	close(rep[1]);
	c->fd[1] = out[0];
	c->fd[2] = err[0];
	if (pid < 0) {
		close(rep[0]);
		child_release(c);
		return phanes_fail(L, "http.spawn: fork", e);
	}
	c->pid = pid;
	setpgid(pid, pid);
	int cerr = 0;
	ssize_t n;
	while ((n = read(rep[0], &cerr, sizeof cerr)) < 0 && errno == EINTR)
		;
	close(rep[0]);
	if (n > 0 || nonblock(c->fd[1]) < 0 || nonblock(c->fd[2]) < 0) {
		if (n <= 0)
			cerr = errno;
		child_release(c);
		return phanes_failf(L, "http.spawn: %s: %s", argv[0], strerror(cerr));
	}
	return 1;
}

static struct child *check_child(lua_State *L)
{
	return luaL_checkudata(L, 1, CHILD_MT);
}

static int *check_stream(lua_State *L, struct child *c)
{
	lua_Integer which = luaL_checkinteger(L, 2);
	luaL_argcheck(L, which == 1 || which == 2, 2, "1 (stdout) or 2 (stderr)");
	return &c->fd[which];
}

/* child:fd(1|2) -> stdout's or stderr's pipe descriptor, or nil once closed */
static int child_fd(lua_State *L)
{
	int *fd = check_stream(L, check_child(L));
	if (*fd < 0)
		return 0;
	lua_pushinteger(L, *fd);
	return 1;
}

static int child_pid(lua_State *L)
{
	struct child *c = check_child(L);
	lua_pushinteger(L, c->pid);
	return 1;
}

/* child:read(1|2) -> data ("" when nothing is there yet) | nil at end of
 * output; the descriptor stays open (and watched) until child:close(1|2). */
static int child_read(lua_State *L)
{
	int *fd = check_stream(L, check_child(L));
	if (*fd < 0)
		return 0;
	luaL_Buffer b;
	char *p = luaL_buffinitsize(L, &b, READ_CHUNK);
	ssize_t n;
	while ((n = read(*fd, p, READ_CHUNK)) < 0 && errno == EINTR)
		;
	if (n < 0 && errno == EAGAIN)
		n = -2;
	if (n == 0 || n == -1) /* end of output, or an error: the pipe is done */
		return 0;
	luaL_pushresultsize(&b, n > 0 ? (size_t)n : 0);
	return 1;
}

/* child:close(1|2): after srv:unwatch, so libevent never sees a closed fd */
static int child_close(lua_State *L)
{
	int *fd = check_stream(L, check_child(L));
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	return 0;
}

/* child:poll() -> nil while running | exit code | nil, signal number */
static int child_poll(lua_State *L)
{
	struct child *c = check_child(L);
	if (c->pid > 0) {
		pid_t p;
		while ((p = waitpid(c->pid, &c->status, WNOHANG)) < 0 && errno == EINTR)
			;
		if (p == c->pid || (p < 0 && errno == ECHILD)) {
			c->pid = 0;
			c->reaped = 1;
		}
	}
	if (!c->reaped)
		return 0;
	if (WIFSIGNALED(c->status)) {
		lua_pushnil(L);
		lua_pushinteger(L, WTERMSIG(c->status));
		return 2;
	}
	lua_pushinteger(L, WEXITSTATUS(c->status));
	return 1;
}

/* child:kill([sig]) -> true | nil, err: signals the child's process group */
static int child_kill(lua_State *L)
{
	struct child *c = check_child(L);
	lua_Integer sig = luaL_optinteger(L, 2, SIGTERM);
	luaL_argcheck(L, sig > 0 && sig < 65, 2, "a signal number");
	if (c->pid <= 0)
		return phanes_failf(L, "http: the child has exited");
	if (kill(-c->pid, (int)sig) < 0)
		return phanes_fail(L, "http: kill", errno);
	lua_pushboolean(L, 1);
	return 1;
}

void phanes_http_child_register(lua_State *L)
{
	static const luaL_Reg m[] = {
		{"fd", child_fd}, {"pid", child_pid}, {"read", child_read},
		{"poll", child_poll}, {"close", child_close}, {"kill", child_kill}, {NULL, NULL},
	};
	lua_pushcfunction(L, l_spawn);
	lua_setfield(L, -2, "spawn");
	lua_newtable(L);
	lua_pushinteger(L, SIGINT);
	lua_setfield(L, -2, "INT");
	lua_pushinteger(L, SIGTERM);
	lua_setfield(L, -2, "TERM");
	lua_pushinteger(L, SIGKILL);
	lua_setfield(L, -2, "KILL");
	lua_setfield(L, -2, "signals");
	luaL_newmetatable(L, CHILD_MT);
	luaL_newlib(L, m);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, child_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, child_gc);
	lua_setfield(L, -2, "__close");
	lua_pop(L, 1);
}
