/* sys.c: the phanes.sys primitives: clocks, signals, identity of the
 * process and the machine, users and groups, a password prompt. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "phanes.h"

extern char **environ;

/* Signal state is process-wide by nature, hence C globals; the handler
 * only touches these and kill(2). */
static volatile sig_atomic_t signals_seen;
static volatile sig_atomic_t kill_children_at; /* 0: never */

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	signals_seen++;
	if (kill_children_at > 0 && signals_seen >= kill_children_at)
		phanes_kill_children(SIGTERM);
	errno = saved;
}

/* sys.trap_signals([kill_children_at]) — SIGINT and SIGTERM only count
 * (see sys.interrupted()); children run on, in their own process groups.
 * With n, the n-th signal and later ones also send SIGTERM to every running
 * child group, since no Lua code runs while exec.run waits. */
static int l_trap_signals(lua_State *L)
{
	lua_Integer n = luaL_optinteger(L, 1, 0);
	luaL_argcheck(L, n >= 0 && n < 1000, 1, "expected a small count");
	kill_children_at = (sig_atomic_t)n;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: a blocking call returns EINTR and can look */
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return phanes_fail(L, "sys.trap_signals", errno);
	lua_pushboolean(L, 1);
	return 1;
}

int phanes_signals_seen(void)
{
	return signals_seen;
}

static int l_interrupted(lua_State *L)
{
	lua_pushinteger(L, signals_seen);
	return 1;
}

/* sys.signal_name(15) -> "SIGTERM"; "signal 99" when unknown */
static int l_signal_name(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	const char *abbrev = n > 0 && n < 128 ? sigabbrev_np((int)n) : NULL;
	if (abbrev)
		lua_pushfstring(L, "SIG%s", abbrev);
	else
		lua_pushfstring(L, "signal %I", n);
	return 1;
}

static double clock_seconds(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int l_now(lua_State *L)
{
	lua_pushnumber(L, clock_seconds(CLOCK_MONOTONIC));
	return 1;
}

static int l_time(lua_State *L)
{
	lua_pushnumber(L, clock_seconds(CLOCK_REALTIME));
	return 1;
}

/* sys.sleep(s) -> true, or false when a signal cut it short */
static int l_sleep(lua_State *L)
{
	lua_Number s = luaL_checknumber(L, 1);
	luaL_argcheck(L, s >= 0 && s < 1e9, 1, "expected seconds >= 0");
	struct timespec ts = {(time_t)s, (long)((s - (lua_Number)(time_t)s) * 1e9)};
	lua_pushboolean(L, nanosleep(&ts, NULL) == 0);
	return 1;
}

static int l_isatty(lua_State *L)
{
	lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
	return 1;
}

static int l_getuid(lua_State *L)
{
	lua_pushinteger(L, getuid());
	return 1;
}

static int l_geteuid(lua_State *L)
{
	lua_pushinteger(L, geteuid());
	return 1;
}

static int l_getpid(lua_State *L)
{
	lua_pushinteger(L, getpid());
	return 1;
}

static int l_hostname(lua_State *L)
{
	char name[HOST_NAME_MAX + 1];
	if (gethostname(name, sizeof name) < 0)
		return phanes_fail(L, "hostname", errno);
	name[HOST_NAME_MAX] = '\0';
	lua_pushstring(L, name);
	return 1;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
	lua_pushstring(L, v);
	lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

static int l_uname(lua_State *L)
{
	struct utsname u;
	if (uname(&u) < 0)
		return phanes_fail(L, "uname", errno);
	lua_createtable(L, 0, 5);
	set_str(L, "sysname", u.sysname);
	set_str(L, "release", u.release);
	set_str(L, "version", u.version);
	set_str(L, "machine", u.machine);
	set_str(L, "nodename", u.nodename);
	return 1;
}

static int l_exe(lua_State *L)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
	if (n < 0)
		return phanes_fail(L, "/proc/self/exe", errno);
	lua_pushlstring(L, path, (size_t)n);
	return 1;
}

static int l_environ(lua_State *L)
{
	lua_newtable(L);
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (eq == NULL)
			continue;
		lua_pushlstring(L, *e, (size_t)(eq - *e));
		lua_pushstring(L, eq + 1);
		lua_rawset(L, -3);
	}
	return 1;
}

static int l_maxrss(lua_State *L)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return phanes_fail(L, "getrusage", errno);
	lua_pushinteger(L, ru.ru_maxrss);
	return 1;
}

/* sys.getpass(prompt) -> text | nil, err: read a line from /dev/tty with
 * echo off; the terminal is restored before returning. */
static int l_getpass(lua_State *L)
{
	size_t plen;
	const char *prompt = luaL_optlstring(L, 1, "Password: ", &plen);
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return phanes_fail(L, "/dev/tty", errno);
	struct termios old, quiet;
	if (tcgetattr(fd, &old) < 0) {
		int e = errno;
		close(fd);
		return phanes_fail(L, "/dev/tty", e);
	}
	quiet = old;
	quiet.c_lflag &= (tcflag_t)~(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	ssize_t w = write(fd, prompt, plen);
	int e = tcsetattr(fd, TCSAFLUSH, &quiet) < 0 ? errno : 0;
	char line[4096];
	size_t n = 0;
	while (!e && n < sizeof line) {
		ssize_t r = read(fd, line + n, 1);
		if (r < 0 && errno == EINTR)
			e = EINTR; /* Ctrl-C at the prompt: give up */
		else if (r < 0)
			e = errno;
		else if (r == 0 || line[n] == '\n')
			break;
		else
			n++;
	}
	tcsetattr(fd, TCSAFLUSH, &old);
	w = write(fd, "\n", 1);
	(void)w;
	close(fd);
	if (e) {
		explicit_bzero(line, sizeof line);
		return phanes_fail(L, "/dev/tty", e);
	}
	lua_pushlstring(L, line, n);
	explicit_bzero(line, sizeof line);
	return 1;
}

/* Names or numeric ids: sys.getpwnam("root") or sys.getpwnam(0). */
static int l_getpwnam(lua_State *L)
{
	errno = 0;
	struct passwd *pw = lua_type(L, 1) == LUA_TNUMBER ? getpwuid((uid_t)luaL_checkinteger(L, 1))
							   : getpwnam(luaL_checkstring(L, 1));
	if (pw == NULL)
		return errno && errno != ENOENT && errno != ESRCH ? phanes_fail(L, "getpwnam", errno) : 0;
	lua_createtable(L, 0, 5);
	set_str(L, "name", pw->pw_name);
	set_int(L, "uid", pw->pw_uid);
	set_int(L, "gid", pw->pw_gid);
	set_str(L, "home", pw->pw_dir);
	set_str(L, "shell", pw->pw_shell);
	return 1;
}

static int l_getgrnam(lua_State *L)
{
	errno = 0;
	struct group *gr = lua_type(L, 1) == LUA_TNUMBER ? getgrgid((gid_t)luaL_checkinteger(L, 1))
							 : getgrnam(luaL_checkstring(L, 1));
	if (gr == NULL)
		return errno && errno != ENOENT && errno != ESRCH ? phanes_fail(L, "getgrnam", errno) : 0;
	lua_createtable(L, 0, 3);
	set_str(L, "name", gr->gr_name);
	set_int(L, "gid", gr->gr_gid);
	lua_newtable(L);
	for (int i = 0; gr->gr_mem && gr->gr_mem[i]; i++) {
		lua_pushstring(L, gr->gr_mem[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "members");
	return 1;
}

static int l_statvfs(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct statvfs st;
	if (statvfs(path, &st) < 0)
		return phanes_fail(L, path, errno);
	lua_createtable(L, 0, 2);
	set_int(L, "avail", (lua_Integer)(st.f_bavail * st.f_frsize));
	set_int(L, "size", (lua_Integer)(st.f_blocks * st.f_frsize));
	return 1;
}

/* sys.realpath(path) -> absolute path without symlinks, "." or ".."
 * | nil, "path: why", errno */
static int l_realpath(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	char buf[PATH_MAX];
	if (realpath(path, buf) == NULL)
		return phanes_fail(L, path, errno);
	lua_pushstring(L, buf);
	return 1;
}

int luaopen_phanes_sys(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"now", l_now},
		{"time", l_time},
		{"sleep", l_sleep},
		{"trap_signals", l_trap_signals},
		{"interrupted", l_interrupted},
		{"signal_name", l_signal_name},
		{"isatty", l_isatty},
		{"getuid", l_getuid},
		{"geteuid", l_geteuid},
		{"getpid", l_getpid},
		{"hostname", l_hostname},
		{"uname", l_uname},
		{"exe", l_exe},
		{"environ", l_environ},
		{"maxrss", l_maxrss},
		{"getpass", l_getpass},
		{"getpwnam", l_getpwnam},
		{"getgrnam", l_getgrnam},
		{"statvfs", l_statvfs},
		{"realpath", l_realpath},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	return 1;
}
