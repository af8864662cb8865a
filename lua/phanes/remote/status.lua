-- remote/status.lua: `phanes --remote TARGET status [--json] [--state PATH]`
-- reads each target's state file over SSH (no phanes binary needed there)
-- and prints it: the per-module table for one host, a fleet table (host,
-- reachable, modules installed, failed, last apply) for several, read in
-- parallel (one child process per host, --parallel at a time, as apply's
-- fleet). --json: one host's { host, address, reachable, error, state };
-- a fleet's { hosts = { NAME = state | { error, exit_code } },
-- exit_code } (fleet.document), also for a group of one host. Exit: 3 when
-- a host is unreachable, else 1 when a state could not be read.
local util = require "phanes.remote.util"
local EXIT = require "phanes.cli.exit"
local M = {}

local DEFAULT_STATE = "/var/lib/phanes/state.json"

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

-- What the parsed status command line (phanes.cli.options) asks:
-- { path, json }. Colour and -v are local.
local function options(p)
  local extra, options = p.args[1], require "phanes.cli.options"
  for name in pairs(p.opts) do -- the connection options are remote.lua's
    if not (options.OPTIONS[name].remote or ({ json = 1, state = 1, color = 1, path = 1, verbose = 1 })[name]) then
      extra = "--" .. name
    end
  end
  if extra then return nil, "status --remote: unknown argument '" .. extra .. "'" end
  return { path = p.opts.state or DEFAULT_STATE, json = p.opts.json }
end

-- Read the state file as the login user, else through sudo (-n, or with
-- the password on stdin). Returns text | false (no file) | nil, err.
function M.read_state(s, path, o, name)
  local q = util.shquote(path)
  local res, e = s:exec(table.concat({
    "P=" .. q,
    '[ -e "$P" ] || exit 78',
    '[ -r "$P" ] && exec cat "$P"',
    '[ "$(id -u)" != 0 ] && sudo -n true 2>/dev/null && exec sudo -n cat "$P"',
    "exit 77",
  }, "\n"))
  if not res then return nil, e end
  if res.code == 78 then return false end
  if res.code == 77 then
    local pw = o.password
    if not pw and util.isatty(0) and not os.getenv "PHANES_NO_PROMPT" then
      pw = require("phanes.sys").getpass("[sudo] password on " .. name .. ": ")
      o.password = pw
    end
    if not pw then return nil, path .. " is not readable by the login user and sudo needs a password: --password-env VAR" end
    res, e = s:exec("sudo -S -p '' cat " .. q, { stdin = pw .. "\n" })
    if not res then return nil, e end
  end
  if res.code ~= 0 then return nil, "reading " .. path .. ": " .. res.stderr:gsub("%s+$", "") end
  return res.stdout
end

local function fetch(t, ro, o)
  local row = { host = t.name, address = t.host }
  local s, msg = require("phanes.remote.connector").open(t, ro)
  if not s then
    row.reachable, row.error = false, msg
    return row
  end
  row.reachable = true
  local text, e = M.read_state(s, o.path, ro, t.name)
  s:close()
  if text == false then
    row.state = { format = 1, modules = {}, missing = true }
  elseif not text then
    row.error = e
  else
    row.state, row.error = require("phanes.engine.statefile").decode(text, t.name .. ":" .. o.path)
  end
  return row
end

local function sorted_modules(state)
  local names = {}
  for name in pairs(state.modules or {}) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- what a target's state holds reaches the terminal only sanitized
local clean = require("phanes.engine.output").sanitize
local function print_lines(lines) for _, l in ipairs(lines) do io.stdout:write(clean(l), "\n") end end

local function show_one(row, o)
  local st = row.state
  if st.missing then
    io.stdout:write(clean(row.host .. ": no phanes state (" .. o.path .. "): nothing applied yet"), "\n")
    return
  end
  io.stdout:write(clean(string.format("%s: state %s, updated %s by phanes %s", row.host, o.path,
    tostring(st.updated_at or "?"), tostring(st.phanes_version or "?"))), "\n")
  local rows = {}
  for _, name in ipairs(sorted_modules(st)) do
    local m = st.modules[name]
    rows[#rows + 1] = { name, m.changing and "interrupted" or m.status or "?", m.installed_at or "", m.updated_at or "", m.version or "" }
  end
  print_lines(require("phanes.engine.output").format_table({ "module", "status", "installed at", "updated at", "version" }, rows))
  for _, name in ipairs(sorted_modules(st)) do
    local m = st.modules[name]
    if m.status == "failed" and m.last_error then io.stdout:write(clean(name .. ": " .. tostring(m.last_error)), "\n") end
  end
end

local function show_fleet(rows)
  local out = {}
  for _, r in ipairs(rows) do
    local installed, failed = 0, 0
    for _, m in pairs(r.state and r.state.modules or {}) do
      if m.status == "installed" then installed = installed + 1 elseif m.status == "failed" then failed = failed + 1 end
    end
    out[#out + 1] = { r.host, r.reachable and "yes" or "no", r.state and installed or "-", r.state and failed or "-",
      r.state and r.state.updated_at or (r.state and r.state.missing and "never") or "-" }
  end
  print_lines(require("phanes.engine.output").format_table({ "host", "reachable", "modules installed", "failed", "last apply" }, out))
  for _, r in ipairs(rows) do
    if r.error then err(r.host .. ": " .. r.error) end
  end
end

-- status.entry(row) -> entry for fleet.document: the host's state, or its
-- error with 3 (unreachable) or 1 (reached, state not read) as exit code.
function M.entry(row)
  if row.state and not row.error then return { name = row.host, code = 0, value = row.state } end
  return { name = row.host, code = row.reachable and EXIT.failed or EXIT.connect, error = row.error or "no state" }
end

-- status.row(name, code, stdout, stderr) -> row: what a child
-- `phanes --remote NAME status --json` printed, or an error row.
function M.row(name, code, stdout, stderr)
  local v = stdout and stdout:match "%S" and require("phanes.json").decode(stdout)
  if type(v) == "table" and v.host then
    v.host = name
    return v
  end
  local fleet = require "phanes.remote.fleet"
  return { host = name, reachable = code ~= 3, error = fleet.last_error(stderr) or ("exit " .. tostring(code)) }
end

-- Several hosts: each read by its own child process (at most --parallel at
-- a time), their messages on stderr prefixed by the host's name.
local function fleet_rows(targets, ro, o)
  local fleet = require "phanes.remote.fleet"
  local sys = require "phanes.sys"
  if sys.trap_signals then sys.trap_signals() end
  local width = 0
  for _, t in ipairs(targets) do width = math.max(width, #t.name) end
  local jobs = fleet.run_all(targets, ro, { "status", "--json", "--state", o.path }, { split = true,
    on_line = function(job, line)
      local name = job.target.name
      io.stderr:write(name, string.rep(" ", width - #name), " | ", line, "\n")
    end })
  local rows = {}
  for i, job in ipairs(jobs) do rows[i] = M.row(job.target.name, job.code, job.stdout, job.stderr) end
  return rows
end

function M.main(targets, ro, p)
  local o, e = options(p)
  if not o then err(e) return EXIT.usage end
  local json = require "phanes.json"
  if require("phanes.remote.fleet").is_fleet(ro.target, targets) then
    local rows = fleet_rows(targets, ro, o)
    local entries = {}
    for i, r in ipairs(rows) do entries[i] = M.entry(r) end
    local doc = require("phanes.remote.fleet").document(entries)
    if o.json then
      io.stdout:write(json.encode(doc, { pretty = true }), "\n")
    else
      show_fleet(rows)
    end
    return doc.exit_code
  end
  local row = fetch(targets[1], ro, o)
  local code = not row.reachable and EXIT.connect or row.error and EXIT.failed or EXIT.ok
  if o.json then
    local out = { host = row.host, address = row.address, reachable = row.reachable, error = row.error, state = row.state }
    io.stdout:write(json.encode(out, { pretty = true }), "\n")
  elseif row.state then
    show_one(row, o)
  else
    err(row.host .. ": " .. tostring(row.error))
  end
  return code
end

return M
