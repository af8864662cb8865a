-- res/ufw.lua: the UFW firewall's rules, default policies and switch.
--
--   ctx.ufw.allow { "22/tcp", "80/tcp", "60000:61000/udp", "53",
--     comment = "phanes", exclusive = true }
--   ctx.ufw.enabled { incoming = "deny", outgoing = "allow" }
--
-- allow adds each missing rule in the order given (`ufw allow PORT comment
-- COMMENT`), so the SSH port listed first is open before anything else;
-- with exclusive = true it then deletes the simple allow rules carrying the
-- same comment (rules phanes added earlier) that the list no longer has.
-- Rules without that comment are never touched. A port is "80", "80/tcp"
-- or a range "6000:6010/udp" (no protocol: both). enabled sets the default
-- incoming and outgoing policies, then turns the firewall on (`ufw --force
-- enable`): call it after allow. Both read ufw's own files
-- (/etc/ufw/user.rules, /etc/default/ufw, /etc/ufw/ufw.conf; run.paths
-- ufw_dir and ufw_defaults move them) and run ufw only for a difference;
-- a dry run reports what would change.
local context = require "phanes.engine.context"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { ufw = N }

local fail = context.fail

local function dir(ctx) return ctx.paths.ufw_dir or "/etc/ufw" end
local function defaults_path(ctx) return ctx.paths.ufw_defaults or "/etc/default/ufw" end

-- parse_port("80/tcp") -> "80", "tcp"; "53" -> "53", nil; nil when not a port
function M.parse_port(spec)
  spec = tostring(spec)
  local port, proto = spec:match "^(%d+[:%d]*)/(%a+)$"
  if not port then port = spec:match "^(%d+[:%d]*)$" end
  if not port then return nil end
  if proto and proto ~= "tcp" and proto ~= "udp" then return nil end
  for n in port:gmatch "%d+" do
    if tonumber(n) < 1 or tonumber(n) > 65535 then return nil end
  end
  return port, proto
end

-- parse_rules(user.rules text) -> { ["22/tcp"] = { comment = "phanes", simple = true }, ["53"] = {...} }
-- A tuple line reads: ### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=7068616e6573
-- simple: allow, incoming, from anywhere to anywhere, any source port.
function M.parse_rules(text)
  local rules = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local action, proto, dport, dst, sport, src, way, rest =
      line:match "^### tuple ### (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)(.*)$"
    if action then
      local key = proto == "any" and dport or (dport .. "/" .. proto)
      local hex = rest:match "comment=(%x+)"
      local comment = hex and hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
      local simple = action == "allow" and way == "in" and sport == "any"
        and (dst == "0.0.0.0/0" or dst == "::/0") and (src == "0.0.0.0/0" or src == "::/0")
      rules[key] = { comment = comment, simple = simple }
    end
  end
  return rules
end

-- setting(text, "KEY") -> the value of KEY=value (quotes dropped) or nil
function M.setting(text, key)
  text = "\n" .. (text or "")
  return text:match("\n%s*" .. key .. "%s*=%s*\"?([^\"\n]*)")
end

-- The rule keys wanted, in order, without duplicates; fails on a bad port.
local function wanted(kind, o)
  local list, seen = {}, {}
  for i, spec in ipairs(o) do
    local port, proto = M.parse_port(spec)
    if not port then
      fail(kind, tostring(spec), "not a port (\"80/tcp\", \"443\", \"6000:6010/udp\"), item " .. i)
    end
    local key = proto and (port .. "/" .. proto) or port
    if not seen[key] then seen[key] = true; list[#list + 1] = key end
  end
  return list, seen
end

local function ufw(ctx, kind, target, argv, what)
  table.insert(argv, 1, "ufw")
  ctx.run:check({ argv = argv }, kind, target, what)
end

function N.allow(ctx, o)
  local kind = "ufw.allow"
  o = type(o) == "table" and o or {}
  local comment = o.comment or "phanes"
  local list, keep = wanted(kind, o)
  local target = table.concat(list, " ")
  return ctx.run:resource(ctx, kind, target, function()
    local have = M.parse_rules(F.read(dir(ctx) .. "/user.rules"))
    local add, drop = {}, {}
    for _, key in ipairs(list) do
      if not have[key] then add[#add + 1] = key end
    end
    if o.exclusive then
      for key, rule in pairs(have) do
        if rule.comment == comment and rule.simple and not keep[key] then drop[#drop + 1] = key end
      end
      table.sort(drop)
    end
    if #add == 0 and #drop == 0 then return { status = "ok" } end
    local msg = {}
    if #add > 0 then msg[#msg + 1] = "allowed " .. table.concat(add, ", ") end
    if #drop > 0 then msg[#msg + 1] = "deleted " .. table.concat(drop, ", ") end
    msg = table.concat(msg, "; ")
    if ctx.dry_run then return { status = "would change", message = msg } end
    for _, key in ipairs(add) do ufw(ctx, kind, key, { "allow", key, "comment", comment }, "ufw allow " .. key) end
    for _, key in ipairs(drop) do ufw(ctx, kind, key, { "delete", "allow", key }, "ufw delete allow " .. key) end
    return { status = "changed", message = msg }
  end)
end

-- ufw's policy words -> the iptables target /etc/default/ufw records
local POLICY = { deny = "DROP", allow = "ACCEPT", reject = "REJECT" }

local function policy(kind, o, way, default)
  local p = o[way] or default
  if not POLICY[p] then fail(kind, way, "policy must be deny, allow or reject, not " .. tostring(p)) end
  return p
end

function N.enabled(ctx, o)
  local kind = "ufw.enabled"
  o = type(o) == "table" and o or {}
  local incoming, outgoing = policy(kind, o, "incoming", "deny"), policy(kind, o, "outgoing", "allow")
  return ctx.run:resource(ctx, kind, "ufw", function()
    local defaults = F.read(defaults_path(ctx))
    local steps = {}
    if M.setting(defaults, "DEFAULT_INPUT_POLICY") ~= POLICY[incoming] then
      steps[#steps + 1] = { "default", incoming, "incoming" }
    end
    if M.setting(defaults, "DEFAULT_OUTPUT_POLICY") ~= POLICY[outgoing] then
      steps[#steps + 1] = { "default", outgoing, "outgoing" }
    end
    if M.setting(F.read(dir(ctx) .. "/ufw.conf"), "ENABLED") ~= "yes" then
      steps[#steps + 1] = { "--force", "enable" }
    end
    if #steps == 0 then return { status = "ok" } end
    local msg = {}
    for _, s in ipairs(steps) do msg[#msg + 1] = s[1] == "--force" and "enabled" or (s[3] .. " " .. s[2]) end
    msg = table.concat(msg, ", ")
    if ctx.dry_run then return { status = "would change", message = msg } end
    for _, s in ipairs(steps) do
      local what = "ufw " .. table.concat(s, " ")
      ufw(ctx, kind, "ufw", s, what)
    end
    return { status = "changed", message = msg }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["ufw.allow"] = { "UFW allow rules, added in order; with exclusive, this comment's rules no longer listed are deleted", {
    { "...", "string", true, "(positional) ports: \"22/tcp\", \"53\", \"6000:6010/udp\"" },
    { "comment", "string", false, "the rules' comment (default \"phanes\")" },
    { "exclusive", "boolean", false, "delete the simple allow rules with this comment not listed" },
  } },
  ["ufw.enabled"] = { "UFW's default policies set, then the firewall on (call it after ufw.allow)", {
    { "incoming", "string", false, "deny (default), allow or reject" },
    { "outgoing", "string", false, "allow (default), deny or reject" },
  } },
}

return M
