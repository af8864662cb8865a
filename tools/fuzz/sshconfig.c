/* fuzz target: ssh_config parsing and the lookup of a host in it. */
#include "harness.h"

FUZZ_LUA_TARGET("sshconfig", "local sshconfig = require 'phanes.remote.sshconfig'\n"
	"local opts = { name = 'fuzz_config', home = '/home/fuzz', read = function() return nil end }\n"
	"return function(s)\n"
	"  local blocks, err = sshconfig.parse(s, opts)\n"
	"  if not blocks then assert(type(err) == 'string') return end\n"
	"  for _, host in ipairs { 'web1', 'db.example.com', '10.0.0.1' } do\n"
	"    assert(type(sshconfig.lookup(blocks, host, '/home/fuzz')) == 'table')\n"
	"  end\n"
	"end\n")
