/* harness.c: a Lua state with the phanes primitives (as src/main.c preloads
 * them) and a loader that finds Lua, modules and profiles in the embedded
 * tree only. libFuzzer sees the C code's coverage from its instrumentation;
 * the Lua code's comes from a line hook that counts (chunk, line) edges in
 * libFuzzer's extra counters. A count hook stops an input after a budget of
 * VM instructions (a slow input is not a crash of the parser). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lualib.h>
#include "phanes.h"
#include "harness.h"

#define COV_SIZE (1u << 16)
#define BUDGET_STEP 1000
#define BUDGET_STEPS 20000 /* 20M instructions an input */
#define BUDGET_MSG "fuzz: instruction budget spent"

__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t lua_cov[COV_SIZE];

static lua_State *fuzz_L;
static const char *fuzz_name;
static uintptr_t prev_edge;
static unsigned steps;

static void hook(lua_State *L, lua_Debug *ar)
{
	if (ar->event == LUA_HOOKCOUNT) {
		if (++steps > BUDGET_STEPS)
			luaL_error(L, BUDGET_MSG);
		return;
	}
	if (!lua_getinfo(L, "S", ar))
		return;
	uintptr_t cur = ((uintptr_t)ar->source >> 4) * 2654435761u ^ (uintptr_t)ar->currentline * 40503u;
	lua_cov[(cur ^ prev_edge) & (COV_SIZE - 1)]++;
	prev_edge = cur >> 1;
}

static const char boot[] =
	"local embedded = require 'phanes.embedded'\n"
	"local loader = { dirs = {}, version = embedded.version }\n"
	"function loader.find(rel)\n"
	"  local text = embedded.get(rel)\n"
	"  if text then return text, 'embedded' end\n"
	"end\n"
	"function loader.load(rel, env)\n"
	"  local text = embedded.get(rel)\n"
	"  if not text then return nil, rel .. ': not found' end\n"
	"  local chunk, err\n"
	"  if env then chunk, err = load(text, '@' .. rel, 't', env) else chunk, err = load(text, '@' .. rel, 't') end\n"
	"  if not chunk then return nil, err end\n"
	"  return chunk, 'embedded'\n"
	"end\n"
	"function loader.list(prefix, suffix)\n"
	"  local names = {}\n"
	"  for _, n in ipairs(embedded.list(prefix)) do\n"
	"    if not n:sub(#prefix + 1):find '/' and (not suffix or n:sub(-#suffix) == suffix) then\n"
	"      names[#names + 1] = n\n"
	"    end\n"
	"  end\n"
	"  return names\n"
	"end\n"
	"package.loaded['phanes.loader'] = loader\n"
	"table.insert(package.searchers, 2, function(name)\n"
	"  if not name:match '^phanes%.' then return nil end\n"
	"  local rel = 'lua/' .. name:gsub('%.', '/') .. '.lua'\n"
	"  local chunk, err = loader.load(rel)\n"
	"  if not chunk then return '\\n\\tno embedded ' .. rel .. ': ' .. err end\n"
	"  return chunk, rel\n"
	"end)\n";

static void die(const char *what)
{
	fprintf(stderr, "fuzz %s: %s\n", fuzz_name, what);
	abort();
}

static int traceback(lua_State *L)
{
	luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
	return 1;
}

int fuzz_lua_init(const char *name, const char *setup)
{
	fuzz_name = name;
	lua_State *L = luaL_newstate();
	if (L == NULL)
		die("cannot create the Lua state");
	luaL_openlibs(L);
	phanes_preload(L);
	lua_pushcfunction(L, traceback);
	if (luaL_loadbuffer(L, boot, sizeof boot - 1, "=fuzz-boot") != LUA_OK ||
	    lua_pcall(L, 0, 0, 1) != LUA_OK)
		die(lua_tostring(L, -1));
	if (luaL_loadstring(L, setup) != LUA_OK || lua_pcall(L, 0, 1, 1) != LUA_OK)
		die(lua_tostring(L, -1));
	if (!lua_isfunction(L, -1))
		die("the setup chunk must return a function");
	lua_setfield(L, LUA_REGISTRYINDEX, "phanes.fuzz");
	lua_settop(L, 0);
	lua_sethook(L, hook, LUA_MASKLINE | LUA_MASKCOUNT, BUDGET_STEP);
	fuzz_L = L;
	return 0;
}

int fuzz_lua_run(const uint8_t *data, size_t size)
{
	static unsigned runs;
	lua_State *L = fuzz_L;
	steps = 0;
	prev_edge = 0;
	lua_pushcfunction(L, traceback);
	lua_getfield(L, LUA_REGISTRYINDEX, "phanes.fuzz");
	lua_pushlstring(L, (const char *)data, size);
	if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (msg == NULL || strstr(msg, BUDGET_MSG) == NULL)
			die(msg ? msg : "a non-string error");
	}
	lua_settop(L, 0);
	if (++runs % 256 == 0)
		lua_gc(L, LUA_GCCOLLECT);
	return 0;
}
