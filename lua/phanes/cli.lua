-- cli.lua: the command line. Parses argv, dispatches to a command, returns
-- the exit code. Modules are required inside the command that needs them,
-- so `phanes version` loads nothing but this file.
--
--   phanes apply dev --config config.yaml --dry-run
--   phanes --profile dev --config config.yaml        (same as apply dev)
--   phanes --modules baseline,docker --config config.yaml
--   phanes list | --list ; phanes status [--json] ; phanes check dev --config F
--   phanes host ...        -> phanes.remote.host.main(args)
--   phanes serve ...       -> phanes.serve.main.main(args)
--   phanes --remote[=T] .. -> phanes.remote.main(argv)
--
-- Exit codes: 0 ok, 1 a module failed, 2 usage or config error, 3
-- connection failure (remote), 4 changes pending or made (only with
-- --detailed-exitcode), 70 internal error, 75 the state file is
-- locked by another run, 130 interrupted.
local loader = require "phanes.loader"
local M = {}

M.EXIT = { ok = 0, failed = 1, usage = 2, connection = 3, changes = 4, internal = 70, locked = 75, interrupted = 130 }

-- Every option: kind ("flag", "value", "list" (comma separated, repeatable),
-- "multi" (repeatable)), the commands that take it ("*" = all), an optional
-- short letter, `alias` (the option it sets instead) and `help` (one line,
-- shown by shell completion). `phanes completion` reads this table.
local OPTIONS = {
  help = { kind = "flag", cmds = "*", short = "h" },
  verbose = { kind = "flag", cmds = "*", short = "v" },
  color = { kind = "value", cmds = "*" },
  path = { kind = "multi", cmds = "*" },  -- read by boot.lua
  config = { kind = "value", cmds = { apply = 1, check = 1, status = 1, config = 1 }, short = "c" },
  ["dry-run"] = { kind = "flag", cmds = { apply = 1 }, short = "n" },
  check = { kind = "flag", cmds = { apply = 1 }, alias = "dry-run" },
  diff = { kind = "flag", cmds = { apply = 1 } },
  quiet = { kind = "flag", cmds = { apply = 1 }, short = "q" },
  ["detailed-exitcode"] = { kind = "flag", cmds = { apply = 1 } },
  inventory = { kind = "flag", cmds = { init = 1 } },
  ["vault-password-file"] = { kind = "value", cmds = { apply = 1, check = 1, status = 1, config = 1 } },
  only = { kind = "list", cmds = { apply = 1 } },
  json = { kind = "flag", cmds = { apply = 1, status = 1, facts = 1, list = 1, config = 1, version = 1, show = 1 } },
  origin = { kind = "flag", cmds = { config = 1 } },
  ["keep-going"] = { kind = "flag", cmds = { apply = 1 }, short = "k" },
  set = { kind = "multi", cmds = { apply = 1, check = 1, status = 1, config = 1 } },
  overrides = { kind = "value", cmds = { apply = 1, check = 1, status = 1 }, hidden = true }, -- a remote run's --set/PHANES_* (JSON)
  state = { kind = "value", cmds = { apply = 1, status = 1 } },
  report = { kind = "value", cmds = { apply = 1 } },
  profile = { kind = "value", cmds = { apply = 1, check = 1 } },
  modules = { kind = "list", cmds = { apply = 1, check = 1 } },
  list = { kind = "flag", cmds = "*" },
  version = { kind = "flag", cmds = "*" },
}
local SHORT = {}
for name, o in pairs(OPTIONS) do if o.short then SHORT[o.short] = name end end
M.OPTIONS = OPTIONS

M.HELP = {
  main = [[
usage: phanes COMMAND [OPTIONS]

Provision this server from Lua modules and profiles.

commands:
  apply PROFILE|FILE.lua   apply a profile (or one module file)
  check [PROFILE]          validate the config without running anything
  check HOST|@GROUP [PROFILE]  validate each host's merged config
  config show [HOST|@GROUP]  a host's merged config (--origin: where each value comes from)
  list                     modules and profiles, and where each comes from
  status                   what phanes installed here (the state file)
  facts                    what phanes knows about this machine
  host ...                 manage remote hosts (phanes host --help)
  vault ...                the encrypted secrets file (phanes vault --help)
  serve                    HTTP API and dashboard for remote runs (phanes serve --help)
  deploy DIR [--host NAME] [--site NAME]  upload a site as an atomic release (phanes help deploy)
  lua SCRIPT [ARGS]        run a Lua script with phanes' primitives (phanes help lua)
  version                  print the version
  completion bash|zsh|fish  a shell completion script
  init [DIR]               start a project: config.yaml, modules/, profiles/
  show MODULE              a module's config keys (type, default, limits), example
  help [COMMAND|MODULE]    help on a command, or on a module (as show)

options for every command:
  --path DIR               look for modules/profiles/templates (and lua/, the
                           engine) in DIR first; also PHANES_PATH=DIR:DIR
  --color=auto|always|never  colour output (auto: on a terminal, unless NO_COLOR
                           is set or TERM=dumb)
  -v, --verbose            more detail
  --remote [user@]host[:port]  run the command on a server over SSH

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

options:
  -c, --config FILE        the config (YAML); without it, defaults only
  -n, --dry-run, --check   show what would change, with diffs; change nothing
      --diff               show file diffs in a real run too
  -q, --quiet              print only changes and errors
      --detailed-exitcode  exit 4 when something changed (or, with --dry-run,
                           would change), 0 when nothing did: drift in CI
      --only m1,m2         run exactly these modules of the profile
      --modules m1,m2      run these modules (and what they require)
  -k, --keep-going         run the remaining modules after one fails
      --set KEY=VALUE      override a config value (repeatable), e.g. --set redis.bind=0.0.0.0
      --state PATH         state file (default /var/lib/phanes/state.json,
                           or PHANES_STATE, or config state_path)
      --json               print a JSON report instead of human output
      --report FILE        also write the JSON report to FILE
  -v, --verbose            a line for every resource, not only changes

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
usage: phanes check [PROFILE] --config FILE [--set KEY=VALUE]...

Validate the config (and the profile and its modules) without running
anything. Every error names the file, line and key.

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

local COMMANDS = { apply = true, check = true, list = true, status = true, facts = true, config = true,
  version = true, help = true }
COMMANDS.completion = true
COMMANDS.init = true
COMMANDS.show = true
M.COMMANDS = COMMANDS

-- How many words may follow a command (those not listed check their own).
local MAX_ARGS = { version = 0, list = 0, facts = 0, status = 1, help = 1, completion = 1, init = 1, show = 1 }

local function usage_error(msg, cmd)
  io.stderr:write("phanes: ", msg, "\n")
  local help = M.HELP[cmd or "main"] or M.HELP.main
  io.stderr:write(help:match "^(usage:[^\n]*\n)", "try: phanes help", cmd and (" " .. cmd) or "", "\n")
  return M.EXIT.usage
end

local function split_list(v, into)
  for item in v:gmatch "[^,%s]+" do into[#into + 1] = item end
  return into
end

-- cli.parse(argv) -> { cmd, args = {...}, opts = {...} } | nil, err, cmd
-- Options may come before or after the command; `--name=value` or
-- `--name value`; short flags may be grouped (-nv).
function M.parse(argv)
  local opts, args, i = {}, {}, 1
  local typed = {} -- the name given, for an alias (--check for --dry-run)
  local function set(name, value)
    if OPTIONS[name].alias then typed[OPTIONS[name].alias] = name end
    name = OPTIONS[name].alias or name
    local o = OPTIONS[name]
    if o.kind == "flag" then opts[name] = true
    elseif o.kind == "value" then opts[name] = value
    elseif o.kind == "list" then opts[name] = split_list(value, opts[name] or {})
    else
      opts[name] = opts[name] or {}
      table.insert(opts[name], value)
    end
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do args[#args + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match "^%-%-([^=]+)=(.*)$"
      name = name or a:sub(3)
      local o = OPTIONS[name]
      if not o then
        local guess = require("phanes.engine.resolve").suggest(name, (function()
          local t = {} for k in pairs(OPTIONS) do t[#t + 1] = k end table.sort(t) return t end)())
        return nil, "unknown option --" .. name .. (guess and (" (did you mean --" .. guess .. "?)") or "")
      end
      if o.kind == "flag" then
        if value then return nil, "option --" .. name .. " takes no value" end
      elseif not value then
        i = i + 1
        value = argv[i]
        if not value then return nil, "option --" .. name .. " needs a value" end
      end
      set(name, value)
    elseif a:sub(1, 1) == "-" and #a > 1 then
      for k = 2, #a do
        local name = SHORT[a:sub(k, k)]
        if not name then return nil, "unknown option -" .. a:sub(k, k) end
        if OPTIONS[name].kind ~= "flag" then
          local value = a:sub(k + 1)
          if value == "" then
            i = i + 1
            value = argv[i]
          end
          if not value then return nil, "option -" .. a:sub(k, k) .. " needs a value" end
          set(name, value)
          break
        end
        set(name, true)
      end
    else
      args[#args + 1] = a
    end
    i = i + 1
  end
  -- The command: first word, or implied by the design's forms.
  local cmd, explicit
  if args[1] then
    cmd, explicit = table.remove(args, 1), true
    if not COMMANDS[cmd] then
      local list = {}
      for k in pairs(COMMANDS) do list[#list + 1] = k end
      table.sort(list)
      local guess = require("phanes.engine.resolve").suggest(cmd, list)
      return nil, "unknown command '" .. cmd .. "'" .. (guess and (" (did you mean '" .. guess .. "'?)") or "")
    end
  elseif opts.profile or opts.modules then cmd = "apply"
  elseif opts.list then cmd = "list"
  elseif opts.version then cmd = "version"
  else cmd = "help" end
  for name in pairs(opts) do
    local c = OPTIONS[name].cmds
    if c ~= "*" and not c[cmd] then
      return nil, "option --" .. (typed[name] or name) .. " does not apply to '" .. cmd .. "'", cmd
    end
  end
  if opts.color and not ({ auto = 1, always = 1, never = 1 })[opts.color] then
    return nil, "--color must be auto, always or never, not '" .. opts.color .. "'", cmd
  end
  return { cmd = cmd, args = args, opts = opts, explicit = explicit }
end

-- Where `host` sits in argv (the first word that is not an option).
local function first_word(argv)
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--path" or a == "--color" then i = i + 2
    elseif a:sub(1, 1) == "-" then i = i + 1
    else return a, i end
  end
end

local function has_remote(argv)
  for _, a in ipairs(argv) do
    if a == "--remote" or a:match "^%-%-remote=" then return true end
  end
  return false
end

local function delegate(modname, ...)
  return require(modname).main(...)
end

function M.main(argv)
  if argv[1] == "__complete" then -- shell completion asks (phanes.cli.completion)
    return require("phanes.cli.completion").complete({ table.unpack(argv, 2) })
  end
  if argv[1] == "__docs" then return require("phanes.cli.docs").generate(argv[2]) end -- make docs
  if first_word(argv) == "deploy" then return delegate("phanes.deploy", argv) end
  if has_remote(argv) then return delegate("phanes.remote", argv) end
  local word, at = first_word(argv)
  if word == "host" or word == "vault" then
    local args = {}
    for j = at + 1, #argv do args[#args + 1] = argv[j] end
    return delegate(word == "host" and "phanes.remote.host" or "phanes.cli.vault", args)
  end
  if word == "serve" then
    local args = {}
    for j = 1, #argv do if j ~= at then args[#args + 1] = argv[j] end end
    return delegate("phanes.serve.main", args)
  end
  local p, err, cmd = M.parse(argv)
  if not p then return usage_error(err, cmd) end
  local max = MAX_ARGS[p.cmd]
  if max and #p.args > max then
    return usage_error("unexpected argument '" .. p.args[max + 1] .. "' to '" .. p.cmd .. "'", p.cmd)
  end
  if p.opts.help and p.explicit then
    io.stdout:write(M.HELP[p.cmd])
    return 0
  end
  if p.cmd == "version" then
    if p.opts.verbose or p.opts.json then return require("phanes.cli.commands").version(p) end
    io.stdout:write("phanes ", loader.version, "\n")
    return 0
  end
  if p.cmd == "completion" then return delegate("phanes.cli.completion", p.args) end
  if p.cmd == "init" then return delegate("phanes.cli.init", p) end
  if p.cmd == "show" then return require("phanes.cli.docs").show(p) end
  if p.cmd == "help" then
    local topic = p.args[1]
    if topic == "vault" then return delegate("phanes.cli.vault", { "--help" }) end
    if topic == "deploy" then io.stdout:write(require("phanes.deploy").HELP) return 0 end
    if topic == "host" then io.stdout:write(require("phanes.remote.host").USAGE) return 0 end
    if topic == "serve" then io.stdout:write(require("phanes.serve.main").HELP) return 0 end
    if topic and not M.HELP[topic] then -- a module: its reference (as `phanes show`)
      if not require("phanes.loader").find("modules/" .. topic .. ".lua") then
        return usage_error("no help on '" .. topic .. "' (neither a command nor a module; see phanes list)")
      end
      return require("phanes.cli.docs").show(p)
    end
    io.stdout:write(M.HELP[topic or "main"])
    return 0
  end
  return require("phanes.cli.commands")[p.cmd](p)
end

return M
