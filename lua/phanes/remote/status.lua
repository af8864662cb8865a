-- remote/status.lua: `phanes --remote TARGET status [--json] [--state PATH]`
-- reads each target's state file over SSH (no phanes binary needed there)
-- and prints it: the per-module table for one host, a fleet table (host,
-- reachable, modules installed, failed, last apply) for several.
local util = require "phanes.remote.util"
local M = {}

local DEFAULT_STATE = "/var/lib/phanes/state.json"

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

local function options(rest)
  local o, i, seen = { path = DEFAULT_STATE }, 1, false
  while rest[i] do
    local a = rest[i]
    if a == "status" and not seen then seen = true
    elseif a == "--json" then o.json = true
    elseif a == "--color" then i = i + 1
    elseif a == "--state" then o.path = rest[i + 1]; i = i + 1
    elseif a:match "^%-%-state=" then o.path = a:match "=(.*)$"
    elseif a:match "^%-%-color" or a == "--no-color" then -- handled locally
    else return nil, "status --remote: unknown argument '" .. a .. "'" end
    i = i + 1
  end
  if not o.path then return nil, "--state needs a path" end
  return o
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

local function decode(text, where)
  local ok, statefile = pcall(require, "phanes.statefile")
  if ok and statefile.decode then return statefile.decode(text, where) end
  local v, e = require("phanes.json").decode(text)
  if type(v) ~= "table" then return nil, where .. ": corrupt state file: " .. tostring(e) end
  v.modules = v.modules or {}
  return v
end

local function fetch(t, ro, o)
  local row = { host = t.name, address = t.host }
  local s, msg = require("phanes.remote").connect(t, ro)
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
    row.state, row.error = decode(text, t.name .. ":" .. o.path)
  end
  return row
end

local function sorted_modules(state)
  local names = {}
  for name in pairs(state.modules or {}) do names[#names + 1] = name end
  table.sort(names)
  return names
end

local function print_lines(lines) for _, l in ipairs(lines) do io.stdout:write(l, "\n") end end

local function show_one(row, o)
  local st = row.state
  if st.missing then
    io.stdout:write(row.host, ": no phanes state (", o.path, "): nothing applied yet\n")
    return
  end
  io.stdout:write(string.format("%s: state %s, updated %s by phanes %s\n", row.host, o.path,
    tostring(st.updated_at or "?"), tostring(st.phanes_version or "?")))
  local rows = {}
  for _, name in ipairs(sorted_modules(st)) do
    local m = st.modules[name]
    rows[#rows + 1] = { name, m.status or "?", m.installed_at or "", m.updated_at or "", m.version or "" }
  end
  print_lines(require("phanes.remote.fleet").format_table({ "module", "status", "installed at", "updated at", "version" }, rows))
  for _, name in ipairs(sorted_modules(st)) do
    local m = st.modules[name]
    if m.status == "failed" and m.last_error then io.stdout:write(name, ": ", tostring(m.last_error), "\n") end
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
  print_lines(require("phanes.remote.fleet").format_table({ "host", "reachable", "modules installed", "failed", "last apply" }, out))
  for _, r in ipairs(rows) do
    if r.error then err(r.host .. ": " .. r.error) end
  end
end

function M.main(targets, ro, rest)
  local o, e = options(rest)
  if not o then err(e) return 2 end
  local rows, code = {}, 0
  for i, t in ipairs(targets) do
    rows[i] = fetch(t, ro, o)
    if not rows[i].reachable then code = 3 elseif rows[i].error and code == 0 then code = 1 end
  end
  if o.json then
    local json = require "phanes.json"
    local out = {}
    for i, r in ipairs(rows) do
      out[i] = { host = r.host, address = r.address, reachable = r.reachable, error = r.error, state = r.state }
    end
    io.stdout:write(json.encode(#targets == 1 and out[1] or out, { pretty = true }), "\n")
  elseif #targets == 1 then
    if rows[1].state then show_one(rows[1], o) else err(rows[1].host .. ": " .. tostring(rows[1].error)) end
  else
    show_fleet(rows)
  end
  return code
end

return M
