/* file.c: the phanes.file primitives (not written yet). */
#include "phanes.h"

int luaopen_phanes_file(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	return 1;
}
