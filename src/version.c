/* version.c: phanes.build, what this binary is made of: the versions the
 * linked libraries report themselves, the git commit it was built from and
 * the architecture it was built for (`phanes version -v`). */
#include <lua.h>
#include <openssl/crypto.h>
#include <libssh2.h>
#include <yaml.h>
#include <zlib.h>
#include "phanes.h"

#ifndef PHANES_COMMIT
#define PHANES_COMMIT "unknown"
#endif

#if defined(__x86_64__)
#define PHANES_ARCH "x86_64"
#elif defined(__aarch64__)
#define PHANES_ARCH "aarch64"
#else
#define PHANES_ARCH "unknown"
#endif

static void field(lua_State *L, const char *key, const char *value)
{
	lua_pushstring(L, value != NULL ? value : "unknown");
	lua_setfield(L, -2, key);
}

/* build.info() -> { version, commit, arch, lua, libyaml, libssh2, openssl, zlib } */
static int l_info(lua_State *L)
{
	lua_createtable(L, 0, 8);
	field(L, "version", PHANES_VERSION);
	field(L, "commit", PHANES_COMMIT);
	field(L, "arch", PHANES_ARCH);
	field(L, "lua", LUA_RELEASE);
	field(L, "libyaml", yaml_get_version_string());
	field(L, "libssh2", libssh2_version(0));
	field(L, "openssl", OpenSSL_version(OPENSSL_VERSION));
	field(L, "zlib", zlibVersion());
	return 1;
}

int luaopen_phanes_build(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"info", l_info},
		{NULL, NULL},
	};
	luaL_newlib(L, fns);
	return 1;
}
