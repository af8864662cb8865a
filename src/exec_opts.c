/* exec_opts.c: exec.run's options: argv or shell, environment, cwd, umask,
 * stdin, timeout, stream, merge; exec.spawn's: the same but timeout and stream,
 * plus result, and a stdin of at most PIPE_BUF bytes. Everything is
 * checked here, before exec.c acquires a descriptor or a process. */
#include <limits.h>
#include <string.h>
#include "exec.h"

extern char **environ;

static const char *const known_opts[] = {
	"argv", "shell", "env", "clear_env", "cwd", "umask", "stdin", "timeout", "stream", "merge", "tick", NULL,
};
static const char *const spawn_opts[] = {
	"argv", "shell", "env", "clear_env", "cwd", "umask", "merge", "result", "stdin", NULL,
};

/* Whose options these are, for the messages: "exec.run" or "exec.spawn". */
static const char *who = "exec.run";

static void check_known(lua_State *L, int t, const char *const *known)
{
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		int ok = 0;
		for (int i = 0; k && known[i]; i++)
			ok |= strcmp(k, known[i]) == 0;
		if (!ok)
			luaL_error(L, "%s: unknown option %s", who, k ? k : luaL_typename(L, -1));
	}
}

/* opts.field as a string or nil; raises on another type. */
static const char *opt_string(lua_State *L, int t, const char *field, size_t *len)
{
	int ty = lua_getfield(L, t, field);
	if (ty == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (ty != LUA_TSTRING)
		luaL_error(L, "%s: opts.%s must be a string, got %s", who, field, lua_typename(L, ty));
	const char *s = lua_tolstring(L, -1, len);
	lua_pop(L, 1); /* still referenced by opts, which stays on the stack */
	return s;
}

static int opt_bool(lua_State *L, int t, const char *field)
{
	int ty = lua_getfield(L, t, field);
	if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
		luaL_error(L, "%s: opts.%s must be a boolean, got %s", who, field, lua_typename(L, ty));
	int b = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return b;
}

/* opts.umask: an integer 0..0777 (0022 in Lua: tonumber("022", 8)), or -1 when unset. */
static int opt_umask(lua_State *L, int t)
{
	int ty = lua_getfield(L, t, "umask");
	int isint = 0;
	lua_Integer m = lua_tointegerx(L, -1, &isint);
	if (ty != LUA_TNIL && (ty != LUA_TNUMBER || !isint || m < 0 || m > 0777))
		luaL_error(L, "%s: opts.umask must be an integer from 0 to 0777 (tonumber(\"022\", 8)), got %s", who,
			   ty == LUA_TNUMBER ? lua_tostring(L, -1) : lua_typename(L, ty));
	lua_pop(L, 1);
	return ty == LUA_TNIL ? -1 : (int)m;
}

/* A NULL-terminated char* array owned by a userdata left on the stack. */
static char **new_vector(lua_State *L, size_t n)
{
	return lua_newuserdatauv(L, (n + 1) * sizeof(char *), 0);
}

static char **build_argv(lua_State *L, int t)
{
	size_t len;
	const char *shell = opt_string(L, t, "shell", &len);
	int ty = lua_getfield(L, t, "argv");
	if (shell != NULL) {
		if (ty != LUA_TNIL)
			luaL_error(L, "%s: give opts.argv or opts.shell, not both", who);
		lua_pop(L, 1);
		char **v = new_vector(L, 3);
		v[0] = "/bin/sh";
		v[1] = "-c";
		v[2] = (char *)shell;
		v[3] = NULL;
		return v;
	}
	if (ty != LUA_TTABLE)
		luaL_error(L, "%s: opts.argv must be a list of strings (or give opts.shell)", who);
	int a = lua_absindex(L, -1);
	lua_Integer n = luaL_len(L, a);
	if (n < 1)
		luaL_error(L, "%s: opts.argv is empty", who);
	char **v = new_vector(L, (size_t)n); /* argv, vector */
	for (lua_Integer i = 1; i <= n; i++) {
		if (lua_rawgeti(L, a, i) != LUA_TSTRING)
			luaL_error(L, "%s: opts.argv[%d] must be a string, got %s", who, (int)i, luaL_typename(L, -1));
		v[i - 1] = (char *)lua_tostring(L, -1); /* anchored by opts.argv */
		lua_pop(L, 1);
	}
	v[n] = NULL;
	lua_remove(L, a); /* vector */
	return v;
}

/* environ (unless clear_env) with opts.env laid over it; a value of false
 * removes the variable. The "NAME=value" strings live in a table on the stack. */
static char **build_env(lua_State *L, int t)
{
	int clear = opt_bool(L, t, "clear_env");
	int ty = lua_getfield(L, t, "env");
	if (ty == LUA_TNIL && !clear) {
		lua_pop(L, 1);
		return NULL; /* fast path: the child inherits environ */
	}
	if (ty != LUA_TNIL && ty != LUA_TTABLE)
		luaL_error(L, "%s: opts.env must be a table, got %s", who, lua_typename(L, ty));
	if (ty == LUA_TNIL) {
		lua_pop(L, 1);
		lua_newtable(L);
	}
	int e = lua_absindex(L, -1);
	lua_newtable(L); /* env, strings */
	int s = lua_absindex(L, -1);
	lua_Integer n = 0;
	lua_pushnil(L);
	while (lua_next(L, e)) {
		if (lua_type(L, -2) != LUA_TSTRING || strchr(lua_tostring(L, -2), '=') || !*lua_tostring(L, -2))
			luaL_error(L, "%s: opts.env keys must be variable names", who);
		int vt = lua_type(L, -1);
		if (vt == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
			lua_pop(L, 1);
			continue;
		}
		if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
			luaL_error(L, "%s: opts.env.%s must be a string, got %s", who, lua_tostring(L, -2), lua_typename(L, vt));
		lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
		lua_rawseti(L, s, ++n);
		lua_pop(L, 1);
	}
	for (char **ep = clear ? NULL : environ; ep && *ep; ep++) {
		const char *eq = strchr(*ep, '=');
		if (eq == NULL)
			continue;
		lua_pushlstring(L, *ep, (size_t)(eq - *ep));
		int overridden = lua_rawget(L, e) != LUA_TNIL;
		lua_pop(L, 1);
		if (!overridden) {
			lua_pushstring(L, *ep);
			lua_rawseti(L, s, ++n);
		}
	}
	char **v = new_vector(L, (size_t)n); /* env, strings, vector */
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, s, i);
		v[i - 1] = (char *)lua_tostring(L, -1); /* anchored by strings */
		lua_pop(L, 1);
	}
	v[n] = NULL;
	lua_remove(L, e); /* strings, vector */
	return v;
}

/* What both take: argv or shell, env, clear_env, cwd, umask, merge. */
static void common_opts(lua_State *L, struct spawn *sp, const char *const *known)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	check_known(L, 1, known);
	memset(sp, 0, sizeof *sp);
	sp->res_w = -1;
	sp->argv = build_argv(L, 1);
	sp->envp = build_env(L, 1);
	sp->cwd = opt_string(L, 1, "cwd", NULL);
	sp->umask = opt_umask(L, 1);
	sp->merge = opt_bool(L, 1, "merge");
}

void phanes_spawn_opts(lua_State *L, struct spawn *sp)
{
	who = "exec.spawn";
	common_opts(L, sp, spawn_opts);
	sp->result = opt_bool(L, 1, "result");
	sp->stdin_p = opt_string(L, 1, "stdin", &sp->stdin_len);
	sp->has_stdin = sp->stdin_p != NULL;
	if (sp->has_stdin && sp->stdin_len > PIPE_BUF) /* one write that cannot block */
		luaL_error(L, "exec.spawn: opts.stdin has %d bytes, at most %d", (int)sp->stdin_len, (int)PIPE_BUF);
	if (sp->has_stdin) /* anchored: opts may change before it is written */
		lua_getfield(L, 1, "stdin");
}

void phanes_exec_opts(lua_State *L, struct spawn *sp)
{
	who = "exec.run";
	common_opts(L, sp, known_opts);
	sp->stdin_p = opt_string(L, 1, "stdin", &sp->stdin_len);
	sp->has_stdin = sp->stdin_p != NULL;
	int ty = lua_getfield(L, 1, "timeout");
	if (ty != LUA_TNIL) {
		if (ty != LUA_TNUMBER || lua_tonumber(L, -1) <= 0)
			luaL_error(L, "%s: opts.timeout must be a positive number of seconds", who);
		sp->timeout = lua_tonumber(L, -1);
	}
	lua_pop(L, 1);
	ty = lua_getfield(L, 1, "tick");
	if (ty != LUA_TNIL && (ty != LUA_TNUMBER || lua_tonumber(L, -1) <= 0))
		luaL_error(L, "exec.run: opts.tick must be a positive number of seconds");
	sp->tick = ty == LUA_TNIL ? 0 : lua_tonumber(L, -1);
	lua_pop(L, 1);
	ty = lua_getfield(L, 1, "stream");
	if (ty != LUA_TNIL && ty != LUA_TFUNCTION)
		luaL_error(L, "%s: opts.stream must be a function, got %s", who, lua_typename(L, ty));
	if (ty == LUA_TFUNCTION)
		sp->stream = lua_gettop(L); /* kept on the stack: the callback may change opts */
	else
		lua_pop(L, 1);
	if (sp->stdin_p) { /* anchor stdin on the stack for the same reason */
		lua_getfield(L, 1, "stdin");
	}
}
