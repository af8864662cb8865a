-- host.lua: `phanes host add|remove|list|default|test`, the inventory from
-- the command line.
--
--   phanes host add web1 deploy@10.0.0.5 --key ~/.ssh/web --group web --default
--   phanes host list
--   phanes host test web1
--   phanes host default db1
--   phanes host remove web1
local inventory = require "phanes.remote.inventory"
local util = require "phanes.remote.util"
local EXIT = require "phanes.cli.exit"
local M = {}

M.USAGE = [[
usage: phanes host add NAME [user@]host[:port] [--key PATH] [--group G]... [--default] [--update] [--description TEXT]
       phanes host remove NAME
       phanes host list [--json]
       phanes host default NAME
       phanes host test [NAME|TARGET] [--key PATH] [--password-env VAR] [--timeout S]
                        [--port N] [--known-hosts PATH] [--strict-host-keys] [--binary PATH]
The inventory is ]] .. "~/.config/phanes/inventory.yaml" .. " (PHANES_INVENTORY to use another file).\n"

M.USAGE = M.USAGE .. [[
Adding a NAME the inventory holds is an error unless --update is given;
--update keeps the host's groups (and key) unless new ones are given.
]]

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

local function flags(args, from)
  local o, pos, i = { groups = {} }, {}, from
  while args[i] do
    local a = args[i]
    local k, v = a:match "^(%-%-[%w%-]+)=(.*)$"
    k = k or a
    if k == "--key" or k == "--group" or k == "--password-env" or k == "--timeout" or k == "--port"
        or k == "--known-hosts" or k == "--binary" or k == "--description" then
      if not v then i = i + 1; v = args[i] end
      if not v then return nil, k .. " needs a value" end
      if k == "--group" then o.groups[#o.groups + 1] = v
      else o[k:sub(3):gsub("%-", "_")] = v end
    elseif a == "--default" then o.default = true
    elseif a == "--update" then o.update = true
    elseif a == "--strict-host-keys" then o.strict = true
    elseif a == "--json" then o.json = true
    elseif a:sub(1, 1) == "-" then return nil, "unknown option " .. a
    else pos[#pos + 1] = a end
    i = i + 1
  end
  return o, pos
end

local function load()
  local inv, e = inventory.load()
  if not inv then err(e) end
  return inv
end

local function save(inv)
  local ok, e = inventory.save(inv)
  if not ok then err("cannot write the inventory: " .. tostring(e)) return EXIT.failed end
  return EXIT.ok
end

function M.add(o, pos)
  if #pos ~= 2 then err("host add: expected NAME and [user@]host[:port]\n" .. M.USAGE) return EXIT.usage end
  local name, target = pos[1], pos[2]
  local t, e = inventory.parse_target(target)
  if not t then err(e) return EXIT.usage end
  local inv = load()
  if not inv then return EXIT.usage end
  local old = inv.hosts[name]
  local existed = old ~= nil
  if old and not o.update then
    err(string.format("host '%s' exists (%s%s); give --update to change it, or `phanes host remove %s` first",
      name, old.user and (old.user .. "@") or "", old.address, name))
    return EXIT.usage
  end
  local groups, key = o.groups, o.key
  if old and #groups == 0 then groups = old.groups end -- --update keeps what is not given
  if old and not key then key = old.key end
  local ok, aerr = inventory.add(inv, name, { address = t.host, user = t.user, port = t.port, key = key, groups = groups,
    description = o.description or (old and old.description) }, o.default)
  if not ok then err(aerr) return EXIT.usage end
  local code = save(inv)
  if code == 0 then
    io.stdout:write(string.format("%s %s (%s)%s\n", existed and "updated" or "added", name, target,
      inv.default == name and ", the default host" or ""))
  end
  return code
end

function M.remove(_, pos)
  local inv = load()
  if not inv then return EXIT.usage end
  if #pos ~= 1 then err("host remove: expected a NAME") return EXIT.usage end
  local ok, e = inventory.remove(inv, pos[1])
  if not ok then err(e) return EXIT.usage end
  local code = save(inv)
  if code == 0 then
    io.stdout:write("removed ", pos[1], inv.default and ("; the default host is " .. inv.default) or "", "\n")
  end
  return code
end

function M.default(_, pos)
  local inv = load()
  if not inv then return EXIT.usage end
  if #pos ~= 1 then
    io.stdout:write(inv.default or "(no default host)", "\n")
    return EXIT.ok
  end
  local ok, e = inventory.set_default(inv, pos[1])
  if not ok then err(e) return EXIT.usage end
  local code = save(inv)
  if code == 0 then io.stdout:write("the default host is now ", pos[1], "\n") end
  return code
end

-- One row of `host list`: the inventory entry plus what the last run learnt.
local function row(inv, name)
  local h = inv.hosts[name]
  local last = util.read_record(name) or {}
  local addr = (h.user and h.user .. "@" or "") .. h.address .. (h.port and h.port ~= 22 and ":" .. h.port or "")
  return {
    name = name, address = addr, groups = h.groups or {}, default = inv.default == name, description = h.description, -- groups: always a list
    last_seen = last.started_at, last_status = last.status, phanes_version = last.phanes_version,
    os = last.remote and last.remote.os,
  }
end

function M.list(o)
  local inv = load()
  if not inv then return EXIT.usage end
  local rows = {}
  for _, name in ipairs(inventory.names(inv)) do rows[#rows + 1] = row(inv, name) end
  if o.json then
    local json = require "phanes.json"
    for _, r in ipairs(rows) do r.groups = json.array and json.array(r.groups) or r.groups end
    io.stdout:write(json.encode(#rows > 0 and rows or (json.array and json.array {} or {}), { pretty = true }), "\n")
    return EXIT.ok
  end
  if #rows == 0 then
    io.stdout:write("no hosts yet: phanes host add NAME [user@]host[:port]\n")
    return EXIT.ok
  end
  local cells = {}
  for _, r in ipairs(rows) do
    cells[#cells + 1] = { (r.default and "* " or "  ") .. r.name, r.address, table.concat(r.groups, ","),
      r.last_seen or "never", r.last_status or "-", r.phanes_version or "-", r.os or "-", r.description or "" }
  end
  for _, line in ipairs(require("phanes.engine.output").format_table(
      { "  host", "address", "groups", "last seen", "last status", "phanes", "os", "description" }, cells)) do
    io.stdout:write(line, "\n")
  end
  return EXIT.ok
end

-- host test: connect, and tell what a run would find there.
function M.test(o, pos)
  local inv = load()
  if not inv then return EXIT.usage end
  local sshcfg, serr = require("phanes.remote.sshconfig").load()
  if not sshcfg then err(serr) return EXIT.usage end
  local port = o.port and math.tointeger(tonumber(o.port))
  if o.port and not (port and port >= 1 and port <= 65535) then
    err("--port: expected a port number from 1 to 65535, got '" .. o.port .. "'")
    return EXIT.usage
  end
  local targets, e = inventory.resolve(inv, pos[1], sshcfg, { port = port })
  if not targets then err(e) return EXIT.usage end
  local ro = { key = o.key, timeout = tonumber(o.timeout) or 10, port = port, known_hosts = o.known_hosts, strict = o.strict }
  if o.password_env then ro.password = os.getenv(o.password_env) end
  local sha = require("phanes.file").sha256_file(require("phanes.sys").exe()) or "none"
  local code = 0
  for _, t in ipairs(targets) do
    local t0 = util.now()
    local s, msg = require("phanes.remote.connector").open(t, ro)
    if not s then
      err(t.name .. ": " .. msg)
      code = EXIT.connect
    else
      local script = require("phanes.remote.run").probe_script(sha, false):gsub("\nD=.*$", "")
      local res, xerr = s:exec(script)
      local info = s:info()
      s:close()
      if not res then
        err(t.name .. ": " .. xerr)
        code = EXIT.connect
      else
        local p = require("phanes.remote.run").parse_probe(res.stdout)
        local where = info.connector == "ssh" and string.format("%s@%s:%d (%s)", info.user, info.host, info.port, info.auth)
          or string.format("%s@%s:%s", info.user, info.connector, info.host)
        io.stdout:write(string.format("%s: ok in %.2fs: %s, %s, %s, sudo: %s, phanes %s\n", t.name,
          util.now() - t0, where, p.os or "unknown OS", p.arch or "?",
          p.sudo or "?", p.cached == sha and "cached" or "not cached (uploaded on the first run)"))
        local binary = require "phanes.remote.binary"
        local ok, why = binary.check_target(p, { "apply" })
        local path, berr = binary.select_binary(p.arch, { binary = o.binary })
        io.stdout:write(string.format("  %s binary: %s\n", p.arch or "?", path or berr))
        if not ok or not path then code = EXIT.connect end
        if why then io.stdout:write("  ", ok and "warning: " or "refused: ", why, "\n") end
      end
    end
  end
  return code
end

-- host.main(args): args = { "add", NAME, ... } (what follows `phanes host`)
function M.main(args)
  local sub = args[1]
  local fn = ({ add = M.add, remove = M.remove, rm = M.remove, list = M.list, ls = M.list, default = M.default, test = M.test })[sub or ""]
  if not fn then
    if sub and sub ~= "help" and sub ~= "--help" then err("unknown host command '" .. sub .. "'") end
    io.stderr:write(M.USAGE)
    return (sub == "help" or sub == "--help") and EXIT.ok or EXIT.usage
  end
  for j = 2, #args do
    if args[j] == "--help" or args[j] == "-h" then io.stdout:write(M.USAGE) return EXIT.ok end
  end
  local o, pos = flags(args, 2)
  if not o then err(pos) return EXIT.usage end
  return fn(o, pos)
end

return M
