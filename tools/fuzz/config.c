/* fuzz target: the config checker (what `phanes check` runs) with every
 * embedded module in the run, then secrets, masking and the keyed hash. */
#include "harness.h"

FUZZ_LUA_TARGET("config", "local config = require 'phanes.config'\n"
	"local resolve = require 'phanes.engine.resolve'\n"
	"local mods = {}\n"
	"for _, name in ipairs(resolve.known_modules()) do mods[#mods + 1] = assert(resolve.module(name)) end\n"
	"local key = ('k'):rep(32)\n"
	"return function(s)\n"
	"  local cfg, info = config.load { text = s, name = 'fuzz.yaml', modules = mods, known = mods, env = {} }\n"
	"  if not cfg then assert(type(info) == 'table' and #info > 0) return end\n"
	"  config.secrets(cfg, mods)\n"
	"  config.mask(cfg, mods)\n"
	"  for _, m in ipairs(mods) do config.hash(cfg[m.name], m.config or {}, key) end\n"
	"end\n")
