/* api.c: the list of C primitive families, as Lua's linit.c lists its
 * libraries. Each goes to package.preload, so `require "phanes.exec"` works
 * and nothing runs before it is needed. src/main.c and the fuzz harness
 * (tools/fuzz/harness.c) both boot Lua through this one list. */
#include <lauxlib.h>
#include "phanes.h"
#include "cipher.h"

void phanes_preload(lua_State *L)
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
		{"phanes.cipher", luaopen_phanes_cipher},
		{"phanes.crypto", luaopen_phanes_crypto},
		{"phanes.http", luaopen_phanes_http},
		{"phanes.build", luaopen_phanes_build},
		{"lfs", luaopen_lfs},
		{NULL, NULL},
	};
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	for (const luaL_Reg *l = libs; l->name; l++) {
		lua_pushcfunction(L, l->func);
		lua_setfield(L, -2, l->name);
	}
	lua_pop(L, 1);
}
