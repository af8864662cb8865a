/* fuzz target: json.decode; what decodes encodes, and reads back the same. */
#include "harness.h"

FUZZ_LUA_TARGET("json", "local json = require 'phanes.json'\n"
	"return function(s)\n"
	"  local v, err = json.decode(s)\n"
	"  if v == nil and err ~= nil then assert(type(err) == 'string') return end\n"
	"  local text = json.encode(v)\n"
	"  local again, err2 = json.decode(text)\n"
	"  assert(err2 == nil and json.encode(again) == text, text)\n"
	"  json.encode(v, { pretty = true })\n"
	"end\n")
