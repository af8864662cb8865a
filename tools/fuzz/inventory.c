/* fuzz target: the inventory file: decode, encode, decode again. */
#include "harness.h"

FUZZ_LUA_TARGET("inventory", "local inventory = require 'phanes.remote.inventory'\n"
	"return function(s)\n"
	"  local inv, err = inventory.decode(s, 'hosts.yaml')\n"
	"  if not inv then assert(type(err) == 'string') return end\n"
	"  local text = inventory.encode(inv)\n"
	"  assert(inventory.decode(text, 'again.yaml'))\n"
	"  inventory.names(inv)\n"
	"  inventory.groups(inv)\n"
	"end\n")
