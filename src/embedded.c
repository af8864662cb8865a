/* embedded.c: the Lua tree compiled into the binary (see tools/embed.c). */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include "phanes.h"

static size_t count_files(void)
{
	size_t n = 0;
	while (phanes_files[n].name)
		n++;
	return n;
}

/* phanes_files is sorted (the Makefile sorts with LC_ALL=C): bisect. */
const struct phanes_file *phanes_file_find(const char *name)
{
	size_t lo = 0, hi = count_files();
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, phanes_files[mid].name);
		if (c == 0)
			return &phanes_files[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int phanes_fail(lua_State *L, const char *what, int err)
{
	luaL_pushfail(L);
	lua_pushfstring(L, "%s: %s", what, strerror(err));
	lua_pushinteger(L, err);
	return 3;
}

int phanes_failf(lua_State *L, const char *fmt, ...)
{
	va_list ap;
	luaL_pushfail(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return 2;
}

/* embedded.get(name) -> string | nil */
static int l_get(lua_State *L)
{
	const struct phanes_file *f = phanes_file_find(luaL_checkstring(L, 1));
	if (f == NULL)
		return 0;
	lua_pushlstring(L, (const char *)f->data, f->len);
	return 1;
}

/* embedded.list([prefix]) -> sorted list of names starting with prefix */
static int l_list(lua_State *L)
{
	size_t plen;
	const char *prefix = luaL_optlstring(L, 1, "", &plen);
	lua_newtable(L);
	lua_Integer n = 0;
	for (const struct phanes_file *f = phanes_files; f->name; f++) {
		if (strncmp(f->name, prefix, plen) == 0) {
			lua_pushstring(L, f->name);
			lua_rawseti(L, -2, ++n);
		}
	}
	return 1;
}

int luaopen_phanes_embedded(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"get", l_get},
		{"list", l_list},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	lua_pushliteral(L, PHANES_VERSION);
	lua_setfield(L, -2, "version");
	return 1;
}
