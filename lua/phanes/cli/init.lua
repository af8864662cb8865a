-- init_cmd.lua: `phanes init [DIR] [--inventory]`, a project to start from:
-- a commented config.yaml, modules/ with an example module, profiles/ with
-- an example profile and, with --inventory, an inventory file. A file that
-- exists is kept as it is ("kept X"), never overwritten. What it writes
-- passes `phanes check example --config config.yaml` (see init_spec).
local F = require "phanes.file"
local EXIT = require "phanes.cli.exit"
local M = {}

M.FILES = {
  { path = "config.yaml", text = [[
# phanes configuration. Every key of a module sits under the module's name;
# `phanes list -v` shows each module's keys, `phanes check` validates this
# file without running anything:
#   phanes check example --config config.yaml
#   phanes apply example --config config.yaml --dry-run   # what would change
#   phanes apply example --config config.yaml             # do it
# Values can also come from --set KEY=VALUE or PHANES_KEY=VALUE, secrets
# from the vault (phanes vault --help). See config.yaml.example in the
# source for every built-in module's keys.

# state_path: /var/lib/phanes/state.json   # what phanes installed (phanes status)

# The example module (modules/example.lua):
example:
  greeting: "Provisioned by phanes"   # the first line of /etc/motd
]] },
  { path = "modules/example.lua", text = [[
-- modules/example.lua: an example module. A module is a table: a name, a
-- description, its config keys (typed, with defaults) and apply(ctx, cfg),
-- which declares resources; each checks before it acts, so a second run
-- changes nothing. `phanes list -v` lists the modules phanes can see.
return {
  name = "example",
  description = "A greeting in /etc/motd",
  -- requires = { "baseline" },         -- modules that run first
  config = {
    greeting = { type = "string", default = "Welcome", description = "the first line of /etc/motd" },
  },
  apply = function(ctx, cfg)
    ctx.file.content { path = "/etc/motd", content = cfg.greeting .. "\n", mode = "0644" }
  end,
}
]] },
  { path = "profiles/example.lua", text = [[
-- profiles/example.lua: a profile is the list of modules one kind of server
-- gets (requirements are added and ordered by phanes), and defaults for
-- their config, which config.yaml overrides.
--   phanes apply example --config config.yaml --dry-run
return {
  name = "example",
  description = "The example module on top of the essential packages",
  modules = { "baseline", "example" },
  config = {},
}
]] },
  { path = "inventory.yaml", inventory = true, text = [[
# The hosts phanes runs on over SSH. Use this file with
#   export PHANES_INVENTORY=$PWD/inventory.yaml
# then `phanes host add NAME [user@]host[:port] --group G` adds to it, and
#   phanes --remote @web apply example --config config.yaml --dry-run
# runs on each host of a group.
hosts: {}
#  web1: { address: 203.0.113.10, user: deploy, groups: [web] }
]] },
}

-- init.scaffold(dir, { inventory = bool }) -> { {path, created} } | nil, err
function M.scaffold(dir, opts)
  local done = {}
  for _, f in ipairs(M.FILES) do
    if opts.inventory or not f.inventory then
      local path = dir .. "/" .. f.path
      if F.exists(path) then
        done[#done + 1] = { path = path, created = false }
      else
        local parent = path:match "^(.*)/[^/]*$"
        local ok, err = F.mkdir(parent, { mode = tonumber("0755", 8), parents = true })
        if not ok then return nil, parent .. ": " .. tostring(err) end
        ok, err = F.write(path, f.text, { mode = tonumber("0644", 8) })
        if not ok then return nil, path .. ": " .. tostring(err) end
        done[#done + 1] = { path = path, created = true }
      end
    end
  end
  return done
end

-- phanes init [DIR] [--inventory]
function M.main(p)
  local dir = (p.args[1] or "."):gsub("(.)/+$", "%1")
  local done, err = M.scaffold(dir, { inventory = p.opts.inventory })
  if not done then
    io.stderr:write("phanes: init: cannot write ", err, "\n")
    return EXIT.usage
  end
  for _, d in ipairs(done) do
    io.stdout:write(d.created and "created " or "kept ", d.path, d.created and "" or " (exists)", "\n")
  end
  io.stdout:write("next: cd ", dir, " && phanes check example --config config.yaml\n")
  return EXIT.ok
end

return M
