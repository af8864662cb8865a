-- cli/options.lua: every option and every command of the command line,
-- declared once, and the one parser of argv. boot.lua loads the binary's
-- copy before anything else (it needs --path for the search path), parses
-- argv and hands the result to phanes.cli; remote runs and the fleet
-- re-serialise it (options.forward) instead of reading argv again. The
-- help screens, the man page, doc/cli.md and shell completion are
-- generated from these tables. No require here: it runs before the search
-- path exists. A new option: one entry in LIST; a new command: one entry
-- in COMMANDS and its function (doc/internals.md).
--
--   local p = options.parse { "--remote", "web1", "apply", "dev", "-n" }
--   p.cmd == "apply"; p.args == { "dev" }; p.opts.remote == "web1"
--   options.forward(p) == { "apply", "dev", "--dry-run" }
local M = {}

-- The commands a remote run takes (--remote and its options go with them).
local REMOTE = { "apply", "check", "list", "status", "facts", "version", "config", "deploy" }
local CONFIG = { "apply", "check", "status", "config" }

-- Each option: name, short letter, kind ("flag"; "value"; "list": comma
-- separated, repeatable; "multi": repeatable; "target": an optional value),
-- arg (the value's placeholder), cmds ("*" or the commands that take it),
-- help (one line), forward (sent to the remote run of a --remote command:
-- true, or false for the controller's own), remote (a connection option:
-- the controller's, listed apart in the help), alias (the option it sets),
-- hidden (internal: in no help).
local LIST = {
  { "help", short = "h", kind = "flag", cmds = "*", help = "this help" },
  { "verbose", short = "v", kind = "flag", count = true, cmds = "*", forward = true,
    help = "more detail (apply: a line for every resource and each command's output; -vv: the command lines too)" },
  { "color", kind = "value", arg = "auto|always|never", cmds = "*", forward = true,
    help = "colour output (auto: on a terminal, unless NO_COLOR is set or TERM=dumb)" },
  { "path", kind = "multi", arg = "DIR", cmds = "*", forward = true, -- a fleet's runs need it; remote.lua sends the files
    help = "look for modules/profiles/templates (and lua/, the engine) in DIR first; also PHANES_PATH=DIR:DIR" },
  { "config", short = "c", kind = "value", arg = "FILE", cmds = CONFIG, forward = true,
    help = "the config (YAML); else PHANES_CONFIG, ./phanes.yaml, ./config.yaml, ~/.config/phanes/config.yaml, /etc/phanes/config.yaml" },
  { "dry-run", short = "n", kind = "flag", cmds = { "apply" }, forward = true, help = "show what would change, with diffs; change nothing" },
  { "check", kind = "flag", cmds = { "apply" }, alias = "dry-run", forward = true, help = "the same as --dry-run" },
  { "diff", kind = "flag", cmds = { "apply" }, forward = true, help = "show file diffs in a real run too" },
  { "quiet", short = "q", kind = "flag", cmds = { "apply" }, forward = true, help = "print only changes and errors" },
  { "detailed-exitcode", kind = "flag", cmds = { "apply" }, forward = true,
    help = "exit 4 when something changed (or, with --dry-run, would change), 0 when nothing did: drift in CI" },
  { "only", kind = "list", arg = "m1,m2", cmds = { "apply" }, forward = true, help = "run exactly these modules of the profile" },
  { "modules", kind = "list", arg = "m1,m2", cmds = { "apply", "check" }, forward = true, help = "run these modules (and what they require)" },
  { "profile", kind = "value", arg = "PROFILE", cmds = { "apply", "check" }, forward = true, help = "the profile (as the first word)" },
  { "keep-going", short = "k", kind = "flag", cmds = { "apply" }, forward = true, help = "run the remaining modules after one fails" },
  { "set", kind = "multi", arg = "KEY=VALUE", cmds = CONFIG, forward = true,
    help = "override a config value (repeatable), e.g. --set redis.bind=0.0.0.0" },
  { "vault-password-file", kind = "value", arg = "FILE", cmds = CONFIG, forward = true,
    help = "the vault's password (else PHANES_VAULT_PASSWORD, else asked)" },
  { "state", kind = "value", arg = "PATH", cmds = { "apply", "status" }, forward = true,
    help = "state file (default /var/lib/phanes/state.json, or PHANES_STATE, or config state_path)" },
  { "json", kind = "flag", cmds = { "apply", "check", "status", "facts", "list", "config", "version", "show" }, forward = true,
    help = "print JSON instead of human output" },
  { "report", kind = "value", arg = "FILE", cmds = { "apply" }, forward = true, help = "also write the JSON report to FILE" },
  { "origin", kind = "flag", cmds = { "config" }, forward = true, help = "say where each value comes from" },
  { "inventory", kind = "flag", cmds = { "init" }, help = "also write an inventory.yaml" },
  { "list", kind = "flag", cmds = "*", help = "the same as the list command" },
  { "version", kind = "flag", cmds = "*", help = "the same as the version command" },
  { "overrides", kind = "value", arg = "FILE", cmds = { "apply", "check", "status" }, hidden = true,
    help = "a remote run's --set and PHANES_* values (JSON)" },
  -- remote runs: the controller's own, never sent to the target
  { "remote", kind = "target", arg = "[user@]host[:port]|@GROUP", cmds = REMOTE, remote = true,
    help = "run the command on a server (or each host of a group) over SSH; no value: the inventory's default" },
  { "user", kind = "value", arg = "USER", cmds = REMOTE, remote = true, help = "log in as USER (else the target's, ssh_config's, $USER)" },
  { "port", kind = "value", arg = "N", cmds = REMOTE, remote = true,
    help = "SSH port (wins over the target's :port, the inventory's and ssh_config's)" },
  { "key", kind = "value", arg = "PATH", cmds = REMOTE, remote = true, help = "private key (else the agent and ssh_config's)" },
  { "password-env", kind = "value", arg = "VAR", cmds = REMOTE, remote = true,
    help = "the login/sudo password is in the environment variable VAR" },
  { "parallel", kind = "value", arg = "N", cmds = REMOTE, remote = true, help = "hosts at a time for a group (default 10)" },
  { "timeout", kind = "value", arg = "S", cmds = REMOTE, remote = true, help = "connect timeout in seconds (default 10)" },
  { "strict-host-keys", kind = "flag", cmds = REMOTE, remote = true, help = "refuse unknown host keys (else recorded on first use)" },
  { "known-hosts", kind = "value", arg = "PATH", cmds = REMOTE, remote = true, help = "known_hosts file (default ~/.ssh/known_hosts)" },
  { "binary", kind = "value", arg = "PATH", cmds = REMOTE, remote = true,
    help = "the phanes to upload for targets of its architecture" },
}

M.OPTIONS, M.ORDER, M.SHORT = {}, {}, {}
for i, o in ipairs(LIST) do
  o.name, o[1] = o[1], nil
  if o.cmds ~= "*" then
    local set = {}
    for _, c in ipairs(o.cmds) do set[c] = 1 end
    o.cmds = set
  end
  M.OPTIONS[o.name], M.ORDER[i] = o, o.name
  if o.short then M.SHORT[o.short] = o.name end
end

-- Each command: name, usage (after `phanes NAME`), summary (the main help),
-- run (the module whose field NAME, or `fn`, runs it with the parsed line),
-- max (how many words may follow; nil: the command checks), own (the
-- command reads its own arguments: "after" the words after it, "others"
-- argv without it, "argv" all of argv, "script" the words after it, none
-- of them options of ours), hidden (in no help).
local COMMANDS = {
  { "apply", usage = "PROFILE|FILE.lua", summary = "apply a profile (or one module file)", run = "phanes.cli.commands" },
  { "check", usage = "[PROFILE]", summary = "validate the config (and the profile) without running anything",
    run = "phanes.cli.commands" },
  { "config", usage = "show [HOST|@GROUP]", summary = "a host's merged config (--origin: where each value comes from)",
    run = "phanes.cli.commands" },
  { "list", usage = "", summary = "modules and profiles, and where each comes from", run = "phanes.cli.commands", max = 0 },
  { "status", usage = "[PROFILE]", summary = "what phanes installed here (the state file)", run = "phanes.cli.commands", max = 1 },
  { "facts", usage = "", summary = "what phanes knows about this machine", run = "phanes.cli.commands", max = 0 },
  { "host", usage = "add|remove|list|default|test ...", summary = "manage remote hosts (phanes host --help)",
    run = "phanes.remote.host", fn = "main", own = "after" },
  { "vault", usage = "...", summary = "the encrypted secrets file (phanes vault --help)", run = "phanes.cli.vault",
    fn = "main", own = "after" },
  { "serve", usage = "", summary = "HTTP API and dashboard for remote runs (phanes serve --help)",
    run = "phanes.serve.main", fn = "main", own = "others" },
  { "deploy", usage = "DIR [--host NAME] [--site NAME]", summary = "upload a site as an atomic release (phanes help deploy)",
    run = "phanes.deploy", fn = "main", own = "argv" },
  { "lua", usage = "SCRIPT [ARGS]", summary = "run a Lua script with phanes' primitives (phanes help lua)", own = "script" },
  { "version", usage = "", summary = "print the version", run = "phanes.cli", fn = "version", max = 0 },
  { "completion", usage = "bash|zsh|fish", summary = "a shell completion script", run = "phanes.cli.completion",
    fn = "main", max = 1 },
  { "init", usage = "[DIR]", summary = "start a project: config.yaml, modules/, profiles/", run = "phanes.cli.init",
    fn = "main", max = 1 },
  { "show", usage = "MODULE", summary = "a module's config keys (type, default, limits), example", run = "phanes.cli.docs",
    fn = "show", max = 1 },
  { "help", usage = "[COMMAND|MODULE]", summary = "help on a command, or on a module (as show)", run = "phanes.cli",
    fn = "help", max = 1 },
  -- hidden: shell completion asks for candidates; make docs writes doc/
  { "__complete", hidden = true, run = "phanes.cli.completion", fn = "complete", own = "after" },
  { "__docs", hidden = true, run = "phanes.cli.docs", fn = "generate", own = "after" },
}
M.COMMANDS, M.COMMAND_ORDER = {}, {}
for i, c in ipairs(COMMANDS) do
  c.name, c[1] = c[1], nil
  M.COMMANDS[c.name], M.COMMAND_ORDER[i] = c, c.name
end

-- options.takes(o, cmd) -> whether option o goes with command cmd.
function M.takes(o, cmd)
  return o.cmds == "*" or o.cmds[cmd] ~= nil
end

local function split_list(v, into)
  for item in v:gmatch "[^,%s]+" do into[#into + 1] = item end
  return into
end

-- The option a word names: o, value (after =), shown name | nil
local function long(a)
  local name, value = a:match "^%-%-([^=]+)=(.*)$"
  name = name or a:sub(3)
  return M.OPTIONS[name], value, name
end

-- options.parse(argv) -> p | nil, err, cmd, unknown, partial
-- p = { cmd, args = { words after the command }, opts = { name = value },
-- given = { { name, value }, ... in order }, taken = { [argv index] =
-- the option that word was read as }, explicit (the command was a word),
-- rest (own commands: their arguments, see COMMANDS) }.
-- Options go before or after the command: `--name=value` or `--name
-- value`; short flags group (-nv). err names the problem; unknown is the
-- mistyped option or command (for a "did you mean"); partial, what was
-- parsed before the error (boot.lua takes --path from it, so that an
-- engine of the user's own still loads).
function M.parse(argv)
  local p = { opts = {}, args = {}, given = {}, taken = {} }
  local opts, typed, cmd, own, at, took = p.opts, {}, nil, nil, nil, nil
  local function set(o, value, shown)
    took = o.alias or o.name
    if o.alias then typed[o.alias] = shown end
    local name = o.alias or o.name
    local kind = M.OPTIONS[name].kind
    if kind == "flag" then opts[name] = M.OPTIONS[name].count and (tonumber(opts[name]) or 0) + 1 or true
    elseif kind == "value" or kind == "target" then opts[name] = value
    elseif kind == "list" then opts[name] = split_list(value, opts[name] or {})
    else
      opts[name] = opts[name] or {}
      table.insert(opts[name], value)
    end
    p.given[#p.given + 1] = { name, value }
  end
  local i = 1
  -- A word after a command that reads its own arguments: only what is
  -- ours for that command is taken (the word stays in p.rest too).
  local function own_word(a)
    local o, value = nil, nil
    if a:sub(1, 2) == "--" then o, value = long(a)
    elseif a:match "^%-%a$" then o = M.OPTIONS[M.SHORT[a:sub(2)] or ""] end
    if not (o and M.takes(o, cmd)) then return end
    if o.kind == "flag" then
      if not value then set(o, true, o.name) end
    elseif value then set(o, value, o.name)
    elseif argv[i + 1] and not (o.kind == "target" and argv[i + 1]:sub(1, 1) == "-") then
      i = i + 1
      set(o, argv[i], o.name)
    elseif o.kind == "target" then set(o, true, o.name)
    end
  end
  -- --name, --name=value, --name value -> nil | err, unknown
  local function long_option(a)
    local o, value, name = long(a)
    if not o then return "unknown option --" .. name, name end
    if o.kind == "flag" then
      if value then return "option --" .. name .. " takes no value" end
      value = true
    elseif o.kind == "target" then -- its value, unless the next word is an option or a command
      local nxt = argv[i + 1]
      if not value and nxt and nxt:sub(1, 1) ~= "-" and not M.COMMANDS[nxt] then value, i = nxt, i + 1 end
      value = value or true
    elseif not value then
      i = i + 1
      value = argv[i]
      if not value then return "option --" .. name .. " needs a value" end
    end
    set(o, value, name)
  end
  -- -n, -nvk, -c FILE, -cFILE -> nil | err
  local function short_options(a)
    for k = 2, #a do
      local name = M.SHORT[a:sub(k, k)]
      if not name then return "unknown option -" .. a:sub(k, k) end
      local o = M.OPTIONS[name]
      if o.kind ~= "flag" then
        local value = a:sub(k + 1)
        if value == "" then
          i = i + 1
          value = argv[i]
        end
        if not value then return "option -" .. a:sub(k, k) .. " needs a value" end
        set(o, value, name)
        return
      end
      set(o, true, name)
    end
  end
  while i <= #argv do
    local a, start, err, unknown = argv[i], i, nil, nil
    took = nil
    if own == "script" then break
    elseif own then own_word(a)
    elseif a == "--" then
      for j = i + 1, #argv do p.args[#p.args + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then err, unknown = long_option(a)
    elseif a:sub(1, 1) == "-" and #a > 1 then err = short_options(a)
    elseif not cmd then
      if not M.COMMANDS[a] then return nil, "unknown command '" .. a .. "'", nil, a, p end
      cmd, at, p.explicit = a, i, true
      own = M.COMMANDS[a].own
    else
      p.args[#p.args + 1] = a
    end
    if err then return nil, err, not unknown and cmd or nil, unknown, p end
    for j = start, took and i or 0 do p.taken[j] = took end
    i = i + 1
  end
  if own then
    local from = own == "others" and 1 or own == "argv" and 1 or at + 1
    p.rest = {}
    for j = from, #argv do
      if own ~= "others" or j ~= at then p.rest[#p.rest + 1] = argv[j] end
    end
  end
  -- The command: the first word, or implied by the design's forms.
  if not cmd then
    if opts.profile or opts.modules then cmd = "apply"
    elseif opts.list then cmd = "list"
    elseif opts.version then cmd = "version"
    else cmd = "help" end
  end
  p.cmd = cmd
  for name in pairs(opts) do -- (asking for help never fails on them)
    if not opts.help and not M.takes(M.OPTIONS[name], cmd) then
      return nil, "option --" .. (typed[name] or name) .. " does not apply to '" .. cmd .. "'", cmd, nil, p
    end
  end
  if opts.color and not own and not ({ auto = 1, always = 1, never = 1 })[opts.color] then
    return nil, "--color must be auto, always or never, not '" .. opts.color .. "'", cmd, nil, p
  end
  return p
end

-- options.forward(p) -> argv of the remote run: the command, its words,
-- then every option marked forward, as given (aliases as their option).
function M.forward(p)
  local out = { p.cmd }
  for _, a in ipairs(p.args) do out[#out + 1] = a end
  for _, g in ipairs(p.given) do
    local o = M.OPTIONS[g[1]]
    if o.forward then
      out[#out + 1] = "--" .. o.name
      if o.kind ~= "flag" then out[#out + 1] = g[2] end
    end
  end
  return out
end

-- options.wrap(text, indent, first) -> text folded at 79 columns, every
-- line after the first indented by `indent` spaces (first: the columns the
-- first line already uses).
function M.wrap(text, indent, first)
  local lines, line, used = {}, {}, first or indent
  for word in text:gmatch "%S+" do
    if #line > 0 and used + 1 + #word > 79 then
      lines[#lines + 1] = table.concat(line, " ")
      line, used = {}, indent
    end
    used = used + (#line > 0 and 1 or 0) + #word
    line[#line + 1] = word
  end
  lines[#lines + 1] = table.concat(line, " ")
  return table.concat(lines, "\n" .. string.rep(" ", indent))
end

-- options.help(cmd) -> the "options:" lines of cmd's help (nil: those of
-- every command), from the declaration, remote ones apart.
function M.help(cmd)
  local function line(o)
    local head = (o.short and ("-" .. o.short .. ", ") or "    ") .. "--" .. o.name
      .. (o.kind ~= "flag" and (o.kind == "target" and (" [" .. o.arg .. "]") or (" " .. o.arg)) or "")
    if #head > 26 then return "  " .. head .. "\n" .. string.rep(" ", 29) .. M.wrap(o.help, 29) .. "\n" end
    return "  " .. head .. string.rep(" ", 27 - #head) .. M.wrap(o.help, 29) .. "\n"
  end
  local own, remote = {}, {}
  for _, name in ipairs(M.ORDER) do
    local o = M.OPTIONS[name]
    local wanted = cmd and M.takes(o, cmd) or (not cmd and (o.cmds == "*" or o.remote))
    if wanted and not o.hidden and not (cmd and (name == "list" or name == "version")) then
      if o.remote then remote[#remote + 1] = cmd and ("--" .. o.name) or line(o) else own[#own + 1] = line(o) end
    end
  end
  local t = { cmd and "options:\n" or "options for every command:\n", table.concat(own) }
  if #remote > 0 and cmd then -- named here, described once in the main help
    local head = "remote runs: phanes --remote TARGET " .. cmd .. " ... with "
    t[#t + 1] = "\n" .. head .. M.wrap(table.concat(remote, ", ", 2) .. " (see phanes --help)", 2, #head) .. "\n"
  elseif #remote > 0 then
    t[#t + 1] = "\nremote runs (phanes --remote TARGET COMMAND ...):\n" .. table.concat(remote)
  end
  return table.concat(t)
end

return M
