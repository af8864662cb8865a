/* fuzz target: template.compile, then rendering with a few variables. */
#include "harness.h"

FUZZ_LUA_TARGET("template", "local template = require 'phanes.template'\n"
	"local vars = { name = 'web1', port = 8080, on = true, off = false, ratio = 0.5,\n"
	"  users = { 'alice', 'bob' }, map = { a = 1, b = 'two' }, nested = { list = { { x = 1 }, { x = 2 } } } }\n"
	"return function(s)\n"
	"  local fn, err = template.compile(s, 'fuzz.tmpl')\n"
	"  if not fn then assert(type(err) == 'string') return end\n"
	"  local out, rerr = fn(vars)\n"
	"  assert(type(out) == 'string' or type(rerr) == 'string')\n"
	"end\n")
