-- inventory.lua: the hosts phanes knows, in one portable YAML file
-- (~/.config/phanes/inventory.yaml, or $PHANES_INVENTORY), and the parsing
-- of --remote targets. The file holds only what the user typed; what phanes
-- learns about a host (last run, OS, version) lives under
-- ~/.local/state/phanes/hosts/<name>/, so the file can be copied elsewhere.
--
--   default: web1
--   hosts:
--     web1: { address: 10.0.0.5, user: deploy, port: 22, key: ~/.ssh/web, groups: [web],
--             vars: { redis: { port: 6380 } } }
--   groups:
--     web: { vars: { redis: { maxmemory: 1gb } } }   (vars: see phanes.config.layers)
--
--   local inv = assert(inventory.load())
--   inventory.add(inv, "web1", { address = "10.0.0.5", user = "deploy", groups = { "web" } })
--   assert(inventory.save(inv))
--   local targets, err = inventory.resolve(inv, "@web,db1,root@10.0.0.9:2222")
local F = require "phanes.file"

local M = {}

local ENOENT, ENOTDIR = 2, 20

local NAME = "^[%w][%w%._%-]*$"

-- The file's format: 1 has `format: 1` (and host descriptions); a file
-- without it (format 0) is rewritten once on load, the old text kept as
-- <file>.migrated; a newer format is refused.
M.FORMAT = 1

function M.path()
  return os.getenv "PHANES_INVENTORY" or ((os.getenv "HOME" or "") .. "/.config/phanes/inventory.yaml")
end

-- inventory.parse_target("user@host:port") -> { user, host, port } | nil, err
-- IPv6 literals go in brackets: "root@[fd00::5]:22".
function M.parse_target(s)
  local user, rest = s:match "^([^@]+)@(.+)$"
  rest = rest or s
  if s:find "@" and not user then return nil, "bad target '" .. s .. "': empty user" end
  local host, port = rest:match "^%[([^%]]+)%]:?(%d*)$"
  if not host then
    host, port = rest:match "^([^:]+):(%d+)$"
    if not host then
      if rest:find ":" and rest:match "^[%x:]+$" then host, port = rest, "" -- bare IPv6
      elseif rest:find ":" then return nil, "bad target '" .. s .. "': expected [user@]host[:port]"
      else host, port = rest, "" end
    end
  end
  if host == "" or host:find "[%s/,@]" then return nil, "bad target '" .. s .. "': bad host name" end
  local p
  if port ~= "" then
    p = tonumber(port)
    if not p or p < 1 or p > 65535 then return nil, "bad target '" .. s .. "': port out of range" end
  end
  return { user = user, host = host, port = p }
end

local function empty() return { hosts = {}, default = nil } end

local function list_of(v)
  if type(v) == "string" then return { v } end
  if type(v) == "table" then
    local out = {}
    for _, g in ipairs(v) do out[#out + 1] = tostring(g) end
    return out
  end
  return {}
end

-- inventory.decode(text, name) -> inv | nil, err (validated)
function M.decode(text, name)
  local yaml = require "phanes.yaml"
  local doc, err = yaml.decode(text, name)
  if doc == nil and type(err) == "string" then return nil, err end
  local inv = empty()
  if doc == nil then return inv end
  if type(doc) ~= "table" then return nil, name .. ": expected a mapping with `hosts:`" end
  if doc.format ~= nil then
    local f = math.tointeger(tonumber(doc.format))
    if not f or f < 0 then return nil, name .. ": format: expected a whole number, got '" .. tostring(doc.format) .. "'" end
    if f > M.FORMAT then
      return nil, string.format("%s: format %d is newer than this phanes reads (%d): upgrade phanes", name, f, M.FORMAT)
    end
    inv.format = f
  end
  if doc.hosts ~= nil and type(doc.hosts) ~= "table" then return nil, name .. ": hosts: expected a mapping" end
  for hname, h in pairs(doc.hosts or {}) do
    if type(h) == "string" then h = { address = h } end
    if type(h) ~= "table" or type(h.address) ~= "string" then
      return nil, string.format("%s: hosts.%s: expected a mapping with an address", name, tostring(hname))
    end
    if h.vars ~= nil and (type(h.vars) ~= "table" or h.vars[1] ~= nil) then
      return nil, string.format("%s: hosts.%s.vars: expected a map of config settings", name, tostring(hname))
    end
    if h.description ~= nil and type(h.description) ~= "string" then
      return nil, string.format("%s: hosts.%s.description: expected a string", name, tostring(hname))
    end
    inv.hosts[tostring(hname)] = { address = h.address, user = h.user, port = tonumber(h.port),
      key = h.key, groups = list_of(h.groups), vars = h.vars, description = h.description }
  end
  -- groups: { web: { vars: {...} } }: config for every host of the group (phanes.config.layers)
  if doc.groups ~= nil and type(doc.groups) ~= "table" then return nil, name .. ": groups: expected a mapping" end
  for g, gv in pairs(doc.groups or {}) do
    if type(gv) ~= "table" or (gv.vars ~= nil and (type(gv.vars) ~= "table" or gv.vars[1] ~= nil)) then
      return nil, string.format("%s: groups.%s: expected a mapping with vars: (a map of config settings)", name, tostring(g))
    end
    inv.groups = inv.groups or {}
    inv.groups[tostring(g)] = { vars = gv.vars }
  end
  if doc.default ~= nil then
    if not inv.hosts[tostring(doc.default)] then
      return nil, string.format("%s: default: '%s' is not a host in this file", name, tostring(doc.default))
    end
    inv.default = tostring(doc.default)
  end
  return inv
end

-- inventory.encode(inv) -> YAML text
function M.encode(inv)
  local yaml = require "phanes.yaml"
  local hosts = {}
  for name, h in pairs(inv.hosts) do
    local groups = nil
    if h.groups and #h.groups > 0 then groups = h.groups end
    hosts[name] = { address = h.address, user = h.user, port = h.port, key = h.key, groups = groups, vars = h.vars,
      description = h.description }
  end
  return "# phanes inventory: `phanes host add|remove|default` edit it; safe to copy to another machine.\n"
    .. yaml.encode({ format = M.FORMAT, default = inv.default, hosts = hosts, groups = inv.groups })
end

-- inventory.load([path]) -> inv (empty when the file is absent) | nil, err
function M.load(path)
  path = path or M.path()
  local text, rerr, code = F.read(path)
  if not text then
    if code == ENOENT or code == ENOTDIR then return empty() end
    return nil, rerr
  end
  local inv, err = M.decode(text, path)
  if not inv then return nil, err end
  inv.path = path
  if (inv.format or 0) < M.FORMAT and text:find "%S" then
    -- once: the old text beside it, then the file in today's format
    local ok, merr = F.write(path .. ".migrated", text, { mode = tonumber("0600", 8) })
    if ok then ok, merr = M.save(inv, path) end
    if ok then
      io.stderr:write("phanes: ", path, ": rewritten in inventory format ", M.FORMAT, " (the old file is ", path, ".migrated)\n")
    else
      io.stderr:write("phanes: ", path, ": cannot migrate it to format ", M.FORMAT, ": ", tostring(merr), "\n")
    end
  end
  inv.format = nil
  return inv
end

-- inventory.save(inv[, path]) -> true | nil, err (atomic, mode 0600)
function M.save(inv, path)
  path = path or inv.path or M.path()
  local dir = path:match "^(.*)/[^/]*$"
  if dir and dir ~= "" and not F.exists(dir) then
    local ok, err = F.mkdir(dir, { mode = tonumber("0700", 8), parents = true })
    if not ok then return nil, err end
  end
  local ok, err = F.write(path, M.encode(inv), { mode = tonumber("0600", 8) })
  if not ok then return nil, err end
  inv.path = path
  return true
end

-- inventory.add(inv, name, { address, user, port, key, groups }, default) -> true | nil, err
-- The first host added becomes the default.
function M.add(inv, name, h, make_default)
  if type(name) ~= "string" or not name:match(NAME) then
    return nil, "bad host name '" .. tostring(name) .. "': letters, digits, '.', '_', '-'"
  end
  if type(h.address) ~= "string" or h.address == "" then return nil, "host " .. name .. ": an address is required" end
  local vars = h.vars or (inv.hosts[name] and inv.hosts[name].vars) -- kept when a host is added again
  local description = h.description or (inv.hosts[name] and inv.hosts[name].description)
  inv.hosts[name] = { address = h.address, user = h.user, port = h.port, key = h.key, groups = list_of(h.groups), vars = vars,
    description = description }
  if make_default or inv.default == nil then inv.default = name end
  return true
end

-- inventory.remove(inv, name) -> true | nil, err. Removing the default
-- makes the first remaining name (sorted) the default.
function M.remove(inv, name)
  if not inv.hosts[name] then return nil, M.unknown(inv, name) end
  inv.hosts[name] = nil
  if inv.default == name then inv.default = M.names(inv)[1] end
  return true
end

function M.set_default(inv, name)
  if not inv.hosts[name] then return nil, M.unknown(inv, name) end
  inv.default = name
  return true
end

function M.names(inv)
  local names = {}
  for name in pairs(inv.hosts) do names[#names + 1] = name end
  table.sort(names)
  return names
end

function M.groups(inv)
  local seen, out = {}, {}
  for _, name in ipairs(M.names(inv)) do
    for _, g in ipairs(inv.hosts[name].groups or {}) do
      if not seen[g] then seen[g] = true; out[#out + 1] = g end
    end
  end
  table.sort(out)
  return out
end

-- The message for a name the inventory does not hold.
function M.unknown(inv, name)
  local names = M.names(inv)
  if #names == 0 then
    return string.format("unknown host '%s': the inventory (%s) is empty; add one with `phanes host add %s ADDRESS`, or give [user@]address",
      name, inv.path or M.path(), name)
  end
  return string.format("unknown host '%s'; known hosts: %s (or give [user@]address)", name, table.concat(names, ", "))
end

local function looks_like_address(host)
  return host == "localhost" or host:find "[%.:]" ~= nil
end

-- A target of another connector than ssh (remote/connector.lua):
-- "docker:NAME" (a running container here), "local:" (this machine).
-- -> target | nil (an ssh target) | nil, err
local function other_connector(name, address, entry)
  local user, rest = address:match "^([^@:]+)@(.*)$"
  rest = rest or address
  local container = rest:match "^docker:(.*)$"
  if container then
    if not container:match "^[%w][%w_.%-]*$" then
      return nil, "bad target '" .. address .. "': expected docker:CONTAINER (a container's name or id)"
    end
    return { name = name, connector = "docker", host = container, user = user or (entry and entry.user),
      groups = entry and entry.groups }
  end
  if rest == "local:" then
    return { name = name, connector = "local", host = "localhost", groups = entry and entry.groups }
  end
end

-- One target from an inventory entry, a parsed [user@]host[:port], and
-- ssh_config (lowest precedence for what the others leave unset). The port:
-- --port > the target's :port > the inventory's > ssh_config's Port > 22.
local function target(name, t, entry, sshcfg, over)
  local other, oerr = other_connector(name, entry and entry.address or "", entry)
  if other or oerr then return other, oerr end
  local parsed = entry and (M.parse_target(entry.address) or { host = entry.address }) or { host = t.host }
  local sc = sshcfg and require("phanes.remote.sshconfig").lookup(sshcfg, parsed.host) or {}
  if sc.proxy then
    return nil, string.format("%s: %s: %s %s%s: phanes connects directly and does not support %s; "
      .. "give this host an address phanes can reach, or set `%s none` for it before that line",
      name, sc.proxy.where, sc.proxy.key, sc.proxy.value, sc.proxy.match and " (in a Match block, which phanes does not evaluate)" or "",
      sc.proxy.key, sc.proxy.key)
  end
  return {
    name = name,
    host = sc.hostname or parsed.host,
    user = t.user or (entry and entry.user) or parsed.user or sc.user,
    port = over.port or t.port or (entry and entry.port) or parsed.port or sc.port or 22,
    key = entry and entry.key,
    identities = sc.identityfile,
    groups = entry and entry.groups,
    strict = sc.stricthostkeychecking, strict_where = sc.strict_where,
    known_hosts = sc.userknownhostsfile, global_known_hosts = sc.globalknownhostsfile, hostkey_alias = sc.hostkeyalias,
    hash_known_hosts = sc.hashknownhosts,
  }
end

-- inventory.resolve(inv, spec, sshcfg[, over]) -> { targets } | nil, err
-- spec: nil (the default host), "name", "@group", "[user@]host[:port]",
-- or a comma list of those. Duplicates are dropped. over.port (--port)
-- overrides every other port. A host that ssh_config sends through
-- ProxyJump or ProxyCommand is refused, naming the file:line.
function M.resolve(inv, spec, sshcfg, over)
  over = over or {}
  if spec == nil or spec == "" then
    if not inv.default then
      return nil, "no target given and no default host: use --remote [user@]host, or `phanes host add NAME ADDRESS --default`"
    end
    spec = inv.default
  end
  local out, seen, bad = {}, {}, nil
  local function push(t, err)
    if not t then bad = bad or err return end
    if not seen[t.name] then seen[t.name] = true; out[#out + 1] = t end
  end
  for item in spec:gmatch "[^,]+" do
    item = item:match "^%s*(.-)%s*$"
    if item:sub(1, 1) == "@" then
      local g, any = item:sub(2), false
      for _, name in ipairs(M.names(inv)) do
        for _, hg in ipairs(inv.hosts[name].groups or {}) do
          if hg == g then any = true; push(target(name, {}, inv.hosts[name], sshcfg, over)) break end
        end
      end
      if not any then
        local groups = M.groups(inv)
        return nil, string.format("no host in group @%s; groups: %s", g,
          #groups > 0 and table.concat(groups, ", ") or "(none: add one with `phanes host add NAME ADDRESS --group G`)")
      end
    elseif item:match "^[^@:]*@?docker:" or item == "local:" then
      push(other_connector(item, item))
    else
      local t, err = M.parse_target(item)
      if not t then return nil, err end
      local entry = inv.hosts[t.host]
      if entry then
        push(target(t.host, t, entry, sshcfg, over))
      else
        local alias = sshcfg and require("phanes.remote.sshconfig").lookup(sshcfg, t.host).hostname
        if not t.user and not alias and not looks_like_address(t.host) then return nil, M.unknown(inv, t.host) end
        push(target(item, t, nil, sshcfg, over))
      end
    end
  end
  if bad then return nil, bad end
  return out
end

return M
