/* state.c: the phanes.state primitives: the lock that keeps two phanes
 * runs from changing one machine at the same time. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>
#include "phanes.h"

#define LOCK_MT "phanes.state.lock"
#define POLL_NS (50 * 1000 * 1000)

/* Created closed (fd -1), so __gc always finds a consistent object. */
struct lock {
	int fd;
};

static int lock_release(lua_State *L)
{
	struct lock *l = luaL_checkudata(L, 1, LOCK_MT);
	if (l->fd >= 0)
		close(l->fd); /* closing the only descriptor drops the flock */
	l->fd = -1;
	return 0;
}

/* lock:unlock() -> true (also when already unlocked) */
static int l_unlock(lua_State *L)
{
	lock_release(L);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_tostring(lua_State *L)
{
	struct lock *l = luaL_checkudata(L, 1, LOCK_MT);
	lua_pushstring(L, l->fd >= 0 ? "phanes.state.lock (held)" : "phanes.state.lock (released)");
	return 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Nothing is written into the lock file: it may be a file that matters. */
static int refused(lua_State *L, const char *path)
{
	return phanes_failf(L, "%s: locked by another phanes run", path);
}

/* Try, then (when waiting) retry every 50 ms until the deadline. Returns 0
 * when locked, else an errno (EWOULDBLOCK: held elsewhere, EINTR: a trapped
 * signal arrived while waiting). */
static int acquire(int fd, int wait, double timeout)
{
	double until = now() + timeout;
	int seen = phanes_signals_seen();
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return errno;
		if (!wait || (timeout > 0 && now() >= until))
			return EWOULDBLOCK;
		if (phanes_signals_seen() != seen)
			return EINTR;
		struct timespec ts = {0, POLL_NS};
		nanosleep(&ts, NULL);
	}
}

/* state.lock(path[, {wait = false, timeout = s}]) -> lock | nil, err
 * Without wait, a held lock is refused at once; with wait, retried until
 * timeout (forever when none), or until a trapped signal arrives. */
static int l_lock(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int wait = 0;
	double timeout = 0;
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		int t = lua_getfield(L, 2, "wait");
		luaL_argcheck(L, t == LUA_TNIL || t == LUA_TBOOLEAN, 2, "opts.wait must be a boolean");
		wait = lua_toboolean(L, -1);
		int wait_given = t != LUA_TNIL;
		t = lua_getfield(L, 2, "timeout");
		luaL_argcheck(L, t == LUA_TNIL || (t == LUA_TNUMBER && lua_tonumber(L, -1) >= 0), 2,
			      "opts.timeout must be seconds >= 0");
		timeout = lua_tonumber(L, -1);
		if (t != LUA_TNIL && !wait_given)
			wait = 1; /* {timeout = 5} means wait up to 5 s */
		lua_pop(L, 2);
	}
	struct lock *l = lua_newuserdatauv(L, sizeof *l, 0);
	l->fd = -1;
	luaL_setmetatable(L, LOCK_MT);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return phanes_fail(L, path, errno);
	l->fd = fd; /* from here __gc closes it, whatever happens */
	int e = acquire(fd, wait, timeout);
	if (e == 0)
		return 1;
	close(fd);
	l->fd = -1;
	if (e == EWOULDBLOCK)
		return refused(L, path);
	if (e == EINTR)
		return phanes_failf(L, "%s: interrupted while waiting for the lock", path);
	return phanes_fail(L, path, e);
}

int luaopen_phanes_state(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"unlock", l_unlock},
		{NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"lock", l_lock},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, LOCK_MT)) {
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, lock_release);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, lock_release);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, l_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
