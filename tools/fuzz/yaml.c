/* fuzz target: yaml.decode, and yaml.encode of what it decoded. */
#include "harness.h"

FUZZ_LUA_TARGET("yaml", "local yaml = require 'phanes.yaml'\n"
	"return function(s)\n"
	"  local v, marks = yaml.decode(s, 'fuzz.yaml')\n"
	"  if v == nil then assert(marks == nil or type(marks) == 'string' or type(marks) == 'table') return end\n"
	"  assert(type(marks) == 'table')\n"
	"  local ok, text = pcall(yaml.encode, v)\n"
	"  if ok then\n"
	"    local again, err = yaml.decode(text, 'again.yaml')\n"
	"    assert(again ~= nil or err == nil, err)\n"
	"  end\n"
	"end\n")
