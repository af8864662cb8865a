-- cli.lua: the command line. boot.lua parses argv once (phanes.cli.options:
-- every option and command, declared once) and hands the parsed line here;
-- main dispatches it to the command's function and returns the exit code.
-- Modules are required inside the command that needs them, so `phanes
-- version` loads nothing but this file.
--
--   phanes apply dev --config config.yaml --dry-run
--   phanes --profile dev --config config.yaml        (same as apply dev)
--   phanes --modules baseline,docker --config config.yaml
--   phanes list | --list ; phanes status [--json] ; phanes check dev --config F
--   phanes host ...        -> phanes.remote.host.main(args)
--   phanes serve ...       -> phanes.serve.main.main(args)
--   phanes --remote[=T] .. -> phanes.remote.main(p)
--
-- Exit codes: phanes.cli.exit.
local loader = require "phanes.loader"
local options = require "phanes.cli.options"
local M = {}

M.EXIT = require "phanes.cli.exit"
M.OPTIONS, M.COMMANDS = options.OPTIONS, options.COMMANDS

-- Each command's help: usage, what it does, examples. The options section
-- (and the main screen's command list) is generated from phanes.cli.options.
M.HELP = {
  main = [[
usage: phanes COMMAND [OPTIONS]

Provision this server from Lua modules and profiles.

%COMMANDS%
%OPTIONS%
examples:
  phanes apply dev --config config.yaml --dry-run
  phanes --profile dev --config config.yaml
  phanes --modules baseline,docker --config config.yaml
  phanes --remote deploy@web1 apply web --config config.yaml
  phanes status

exit codes: 0 ok, 1 a module failed, 2 usage or config error, 3 connection
failure, 70 internal error, 75 state file locked by another run, 130 interrupted
]],
  apply = [[
usage: phanes apply PROFILE|MODULE|FILE.lua [OPTIONS]
       phanes --profile PROFILE [OPTIONS]
       phanes --modules m1,m2 [OPTIONS]

Apply a profile (profiles/NAME.lua on the search path, a module name, or a
.lua file that returns a profile or a single module). Modules run in order, requirements
first; each one checks before it acts, so a second run changes nothing.

examples:
  phanes apply dev --config config.yaml --dry-run
  phanes apply web --config config.yaml --only caddy,security
  phanes apply ./my-profile.lua --config config.yaml --set swap.size=2G
  phanes apply modules/redis.lua --config config.yaml --json > report.json

exit codes: 0 ok, 1 a module failed, 2 usage or config error, 4 changes
(only with --detailed-exitcode), 75 another phanes run holds the state lock, 130 interrupted (Ctrl-C: the run
stops after the current resource; a second Ctrl-C kills running commands)
]],
  check = [[
usage: phanes check [PROFILE] [--config FILE] [--set KEY=VALUE]... [--json]

Validate the config (and the profile and its modules) without running
anything. Every error names the file, line and key. Without a PROFILE, the
modules the config has a section for are checked (with what they require),
as a run of them would load it. Without --config, the config is found as
apply finds it: PHANES_CONFIG, ./phanes.yaml, ./config.yaml,
~/.config/phanes/config.yaml, /etc/phanes/config.yaml (as root, a file
found, not named, must pass the rule modules do). --json prints { valid,
config, config_from, profile, modules, errors, exit_code }.

examples:
  phanes check --config config.yaml
  phanes check dev --config config.yaml
  phanes check @web web --config config.yaml

With HOST or @GROUP (an inventory host or group) first, each host's own
config is checked: config.yaml with its group vars, host vars and vault
block (see `phanes help config`); every error is prefixed with the host.
]],
  config = [[
usage: phanes config show [HOST|@GROUP] [--origin] [--json] [--config FILE] [--set K=V]...

Print the merged config of a host (of each host of a group), secrets
masked. Layers, lowest first: module defaults; config.yaml; group vars
(`all`, then the host's groups in inventory order; for each,
group_vars/GROUP.yaml beside the config, then the inventory's
`groups: {GROUP: {vars: ...}}`); host vars (host_vars/NAME.yaml beside the
config, then `vars:` on the host in the inventory); the vault's
hosts.NAME block; PHANES_* environment; --set. Maps merge deeply; lists and
scalars replace. With --origin, each value says where it came from
(config.yaml:12, group_vars/web.yaml:3, inventory web1.vars,
vault hosts.web1, env PHANES_REDIS_PORT, --set, default (module redis)).

examples:
  phanes config show web1 --origin --config config.yaml
  phanes config show @web --json --config config.yaml
]],
  list = [[
usage: phanes list [-v] [--json]

List the modules (with description and where each was loaded from: a path
or "embedded") and the profiles with their modules, then the engine files
and templates taken from disk instead of the binary. -v also shows each
module's requirements and config keys.

examples:
  phanes list
  phanes --path ./my-modules list -v
]],
  status = [[
usage: phanes status [PROFILE] [--json] [--state PATH] [--config FILE]

Show what phanes installed on this machine, from the state file. With
--config, also says for each module whether its config changed since it
was applied (give the PROFILE it was applied with when that profile sets
config defaults).

examples:
  phanes status
  phanes status --config config.yaml
  phanes status dev --config config.yaml
  phanes status --json --state /tmp/state.json
]],
  facts = [[
usage: phanes facts [--json]

Print the facts phanes gathers about this machine (OS, architecture,
virtualization, memory, init system, ...).

examples:
  phanes facts
  phanes facts --json
]],
  lua = [[
usage: phanes lua SCRIPT [ARGS]

Run the Lua script SCRIPT (ARGS in `arg` and `...`) with phanes' primitives
(phanes.file, phanes.exec, phanes.sys, ...) and its modules at hand. The specs
run busted this way. As root, SCRIPT and every directory above it must be
owned by root or the invoking user and not group- or world-writable (as for
modules; so not under /tmp), else phanes refuses it (exit 2). SCRIPT "-"
(or /dev/stdin) reads the script from standard input.

examples:
  phanes lua /usr/bin/busted --run=unit
  phanes lua ./inspect.lua /etc/phanes.yaml
]],
  init = [[
usage: phanes init [DIR] [--inventory]

Start a project in DIR (default: here): a commented config.yaml, modules/
with an example module, profiles/ with an example profile and, with
--inventory, an inventory.yaml. A file that exists is kept, never
overwritten. The result passes `phanes check example --config config.yaml`.

examples:
  phanes init myservers
  phanes init . --inventory
]],
  completion = [[
usage: phanes completion bash|zsh|fish

Print a completion script for the shell: commands, options, profiles and
modules (yours too), inventory hosts and @groups.

examples:
  source <(phanes completion bash)         # in ~/.bashrc
  source <(phanes completion zsh)          # in ~/.zshrc, after compinit
  phanes completion fish > ~/.config/fish/completions/phanes.fish
]],
  version = [[
usage: phanes version [-v] [--json]

Print phanes' version. -v: also the commit and architecture of the build
and the versions of the libraries linked into it (Lua, libyaml, libssh2,
OpenSSL, zlib, LuaFileSystem), as each reports itself; --json: the same
as JSON (implies -v).
]],
  show = [[
usage: phanes show MODULE [--json]

Describe a module from its own table: description, requirements, every
config key with its type, default, allowed values and limits, whether it
is secret, and an example config section. Your modules (on --path, ./modules
or ~/.config/phanes/modules) are described the same way.

examples:
  phanes show redis
  phanes show redis --json
  phanes help redis
]],
  help = [[
usage: phanes help [COMMAND|MODULE]

examples:
  phanes help apply
  phanes help redis
  phanes apply --help
]],
}

-- The command list of the main help, from phanes.cli.options.
local function command_lines()
  local t = { "commands:\n" }
  for _, name in ipairs(options.COMMAND_ORDER) do
    local c = options.COMMANDS[name]
    local head = name .. (c.usage and c.usage ~= "" and (" " .. c.usage) or "")
    local pad = #head > 23 and ("\n" .. string.rep(" ", 27)) or string.rep(" ", 25 - #head)
    if not c.hidden then t[#t + 1] = "  " .. head .. pad .. options.wrap(c.summary, 27) .. "\n" end
  end
  return table.concat(t)
end

-- cli.help_text(topic) -> the help screen of a command (nil: the main one),
-- its options section generated from the declaration | nil (no such command)
function M.help_text(topic)
  local exit_line = "exit codes: " .. M.EXIT.SUMMARY
  if not topic or topic == "main" then
    return (M.HELP.main:gsub("%%COMMANDS%%\n", function() return command_lines() end)
      :gsub("%%OPTIONS%%\n", function() return "\n" .. options.help(nil) .. "\n" end)
      :gsub("exit codes:.-\n$", function() return options.wrap(exit_line, 0) .. "\n" end))
  end
  local c = options.COMMANDS[topic]
  if not c or c.own then return M.HELP[topic] end
  local text = M.HELP[topic] or ("usage: phanes " .. topic .. (c.usage ~= "" and (" " .. c.usage) or "") .. "\n\n" .. c.summary .. "\n")
  local opts = options.help(topic)
  local at = text:find("\nexamples?:\n") or text:find("\nexit codes:") or #text
  return text:sub(1, at) .. opts .. "\n" .. text:sub(at + 1)
end

local function usage_error(msg, cmd)
  io.stderr:write("phanes: ", msg, "\n")
  local help = M.help_text(cmd) or M.help_text()
  io.stderr:write(help:match "^(usage:[^\n]*\n)", "try: phanes help", cmd and (" " .. cmd) or "", "\n")
  return M.EXIT.usage
end

-- cli.parse(argv) -> p | nil, err, cmd: phanes.cli.options.parse, with a
-- "did you mean" for a mistyped option or command.
function M.parse(argv)
  local p, err, cmd, unknown = options.parse(argv)
  if p or not unknown then return p, err, cmd end
  local resolve = require "phanes.engine.resolve"
  local names = {}
  local is_cmd = err:match "^unknown command"
  for k, d in pairs(is_cmd and options.COMMANDS or options.OPTIONS) do
    if not d.hidden then names[#names + 1] = k end
  end
  table.sort(names)
  local guess = resolve.suggest(unknown, names)
  if guess then err = err .. (is_cmd and (" (did you mean '" .. guess .. "'?)") or (" (did you mean --" .. guess .. "?)")) end
  return nil, err, cmd
end

-- phanes version [-v] [--json]
function M.version(p)
  if p.opts.verbose or p.opts.json then return require("phanes.cli.commands").version(p) end
  io.stdout:write("phanes ", loader.version, "\n")
  return M.EXIT.ok
end

-- phanes help [COMMAND|MODULE]
function M.help(p)
  local topic = p.args[1]
  local c = topic and options.COMMANDS[topic]
  if c and c.own and not M.HELP[topic] then
    if topic == "vault" then return require("phanes.cli.vault").main { "--help" } end
    if topic == "deploy" then io.stdout:write(require("phanes.deploy").HELP) return M.EXIT.ok end
    if topic == "host" then io.stdout:write(require("phanes.remote.host").USAGE) return M.EXIT.ok end
    if topic == "serve" then io.stdout:write(require("phanes.serve.main").HELP) return M.EXIT.ok end
  end
  if topic and not c then -- a module: its reference (as `phanes show`)
    if not loader.find("modules/" .. topic .. ".lua") then
      return usage_error("no help on '" .. topic .. "' (neither a command nor a module; see phanes list)")
    end
    return require("phanes.cli.docs").show(p)
  end
  io.stdout:write(M.help_text(topic))
  return M.EXIT.ok
end

-- The config files looked for when --config is not given, in order.
function M.config_candidates(env)
  env = env or os.getenv
  local home = env "HOME"
  return {
    { "./phanes.yaml", "the working directory" }, { "./config.yaml", "the working directory" },
    home and { home .. "/.config/phanes/config.yaml", "~/.config/phanes" } or nil,
    { "/etc/phanes/config.yaml", "/etc/phanes" },
  }
end

-- cli.discover_config(p) -> true | nil, err: without --config, the config of
-- a command that reads one is PHANES_CONFIG, else the first of
-- config_candidates that exists. p.opts.config is set (and forwarded to a
-- remote run), p.config_from says where it was found. As root a file found
-- (not named) passes phanes.trust, as a module on the search path does.
function M.discover_config(p)
  p.config_from = p.opts.config and "--config" or nil
  if p.opts.config or not ({ apply = 1, check = 1, config = 1 })[p.cmd] then return true end
  local function use(path, from)
    p.opts.config, p.config_from = path, from
    p.given[#p.given + 1] = { "config", path }
    return true
  end
  local env = os.getenv "PHANES_CONFIG"
  if env and env ~= "" then return use(env, "PHANES_CONFIG") end
  local exists = require("phanes.file").exists
  for i = 1, 4 do
    local c = M.config_candidates()[i]
    if c and exists(c[1]) then
      if loader.strict then
        local real, err = require("phanes.trust").check(c[1])
        if not real then
          return nil, err .. "\n  (" .. c[1] .. " was found, not named: give it with --config to use it anyway)"
        end
      end
      return use(c[1], c[2])
    end
  end
  return true
end

-- cli.main(argv[, p]) -> exit code. p: argv as boot.lua parsed it (else
-- parsed here).
function M.main(argv, p)
  if not p then
    local err, cmd
    p, err, cmd = M.parse(argv)
    if not p then return usage_error(err, cmd) end
  end
  local c = options.COMMANDS[p.cmd]
  if c.own == "script" then return usage_error("which script? e.g. phanes lua ./inspect.lua", p.cmd) end
  if c.own then return require(c.run)[c.fn](p.rest, p) end
  if c.max and #p.args > c.max then
    return usage_error("unexpected argument '" .. p.args[c.max + 1] .. "' to '" .. p.cmd .. "'", p.cmd)
  end
  if p.opts.help and p.explicit then
    io.stdout:write(M.help_text(p.cmd))
    return M.EXIT.ok
  end
  local found, ferr = M.discover_config(p)
  if not found then io.stderr:write("phanes: ", ferr, "\n") return M.EXIT.usage end
  if p.opts.remote and p.cmd ~= "help" then return require("phanes.remote").main(p) end
  return require(c.run)[c.fn or p.cmd](p)
end

return M
