/* main.c: boot Lua, preload the primitives, hand argv to lua/phanes/boot.lua.
 * Everything runs under one lua_pcall (as lua.c's pmain); the Lua side
 * returns the process exit code. */
#include <stdio.h>
#include <string.h>
#include <lualib.h>
#include "phanes.h"

#define EXIT_INTERNAL 70

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	if (msg == NULL)
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/* The C modules go to package.preload, so `require "phanes.exec"` works
 * and nothing runs before it is needed. */
static void preload(lua_State *L)
{
	static const luaL_Reg libs[] = {
		{"phanes.embedded", luaopen_phanes_embedded},
		{"phanes.exec", luaopen_phanes_exec},
		{"phanes.file", luaopen_phanes_file},
		{"phanes.sys", luaopen_phanes_sys},
		{"phanes.state", luaopen_phanes_state},
		{"phanes.yaml", luaopen_phanes_yaml},
		{"phanes.json", luaopen_phanes_json},
		{"phanes.ssh", luaopen_phanes_ssh},
		{"lfs", luaopen_lfs},
		{"phanes.build", luaopen_phanes_build},
		{NULL, NULL},
	};
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	for (const luaL_Reg *l = libs; l->name; l++) {
		lua_pushcfunction(L, l->func);
		lua_setfield(L, -2, l->name);
	}
	lua_pop(L, 1);
}

static int pmain(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = lua_touserdata(L, 2);
	luaL_checkversion(L);
	luaL_openlibs(L);
	preload(L);
	const struct phanes_file *boot = phanes_file_find("lua/phanes/boot.lua");
	if (boot == NULL)
		return luaL_error(L, "lua/phanes/boot.lua is not embedded");
	if (luaL_loadbuffer(L, (const char *)boot->data, boot->len, "@lua/phanes/boot.lua") != LUA_OK)
		return lua_error(L);
	lua_createtable(L, argc, 0); /* boot, argv */
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	lua_call(L, 1, 1); /* protected by main's lua_pcall */
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L = luaL_newstate();
	if (L == NULL) {
		fputs("phanes: cannot create the Lua state: out of memory\n", stderr);
		return EXIT_INTERNAL;
	}
	lua_pushcfunction(L, traceback);
	lua_pushcfunction(L, pmain);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	int code;
	if (lua_pcall(L, 2, 1, 1) != LUA_OK) {
		fprintf(stderr, "phanes: internal error: %s\n", lua_tostring(L, -1));
		code = EXIT_INTERNAL;
	} else if (lua_isinteger(L, -1)) {
		code = (int)lua_tointeger(L, -1);
	} else {
		code = lua_toboolean(L, -1) || lua_isnil(L, -1) ? 0 : 1;
	}
	lua_close(L);
	return code;
}
