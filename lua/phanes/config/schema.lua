-- schema.lua: module config schemas — checking the declarations, checking
-- and coercing values against them, and "did you mean" hints. Used by
-- phanes.config; nothing here knows about files or layers.
--
-- A field declaration: { type = "string"|"integer"|"number"|"boolean"|
-- "list"|"map"|"enum", default = v, required = bool, secret = bool,
-- values = {...} (enum), items = decl (list), fields = { name = decl } (map;
-- a map without fields is free-form), description = "..." }.
-- Limits on the value:
--   min = n, max = n           integer and number: the range, inclusive
--   min_length = n, max_length = n   string: length in bytes (a secret
--                              string: at least M.SECRET_MIN, 8, unless empty)
--   pattern = "[%w.-]+"        string: a Lua pattern the WHOLE value matches
--   format = "host"            string: a named format (see M.FORMATS)
--   hint = "like 10m or 1h"    what the value looks like, said in errors
--   multiline = true           string: may hold line breaks (default: one line)
-- Strings are one line, without control characters, unless multiline. An
-- empty string skips pattern and format when the field's default is "", or
-- when it has no default and is not required (empty means "none" there). A secret's value never appears in a message.
local M = {}

M.TYPES = { "boolean", "enum", "integer", "list", "map", "number", "string" }
local TYPE_SET = {}
for _, t in ipairs(M.TYPES) do TYPE_SET[t] = true end

local DECL_KEYS = { "default", "description", "fields", "format", "hint", "items", "max", "max_length", "min",
  "min_length", "multiline", "pattern", "required", "secret", "type", "values" }
local DECL_SET = {}
for _, k in ipairs(DECL_KEYS) do DECL_SET[k] = true end

-- Optimal string alignment distance (Damerau-Levenshtein with adjacent
-- transpositions), case-insensitive.
function M.distance(a, b)
  a, b = a:lower(), b:lower()
  local la, lb = #a, #b
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end

-- M.suggest(word, candidates) -> the closest candidate within distance 2
-- (1 for words of up to 3 letters), or nil. Ties go to the first in sorted order. The one "did you mean" of
-- phanes (config keys, modules, profiles, commands, options, vault keys).
function M.suggest(word, candidates)
  local best, best_d
  local limit = #word <= 3 and 1 or 2
  local sorted = {}
  for _, c in ipairs(candidates) do sorted[#sorted + 1] = c end
  table.sort(sorted)
  for _, c in ipairs(sorted) do
    local dist = M.distance(word, c)
    if dist <= limit and (not best_d or dist < best_d) then best, best_d = c, dist end
  end
  return best
end

function M.is_list(v)
  if type(v) ~= "table" then return false end
  local n = #v
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

-- The name of a value's kind, as errors say it: "an integer", "a map".
function M.kind(v)
  local t = type(v)
  if t == "number" then return math.type(v) == "integer" and "an integer" or "a float" end
  if t == "table" then return M.is_list(v) and next(v) ~= nil and "a list" or "a map" end
  if t == "boolean" then return "a boolean" end
  if t == "nil" then return "null" end
  return "a " .. t
end

local EXPECT = { string = "a string", integer = "an integer", number = "a number",
  boolean = "true or false", list = "a list", map = "a map" }

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function M.expected(decl)
  if decl.type == "enum" then
    local vals = {}
    for i, v in ipairs(decl.values) do vals[i] = show(v) end
    return "one of " .. table.concat(vals, ", ")
  end
  return EXPECT[decl.type]
end

function M.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  return ks
end

function M.copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = M.copy(x) end
  return out
end

------------------------------------------------------------------------
-- Coercion of strings from --set and the environment.

local TRUE = { ["true"] = true, yes = true, on = true, ["1"] = true }
local FALSE = { ["false"] = true, no = true, off = true, ["0"] = true }

-- M.coerce(s, decl) -> value | nil: the string as the declared type.
function M.coerce(s, decl)
  local t = decl.type
  if t == "string" then return s end
  local trimmed = s:match "^%s*(.-)%s*$"
  if t == "integer" then
    if trimmed:match "^[-+]?%d+$" then return math.tointeger(tonumber(trimmed)) end
    return nil
  elseif t == "number" then
    local n = tonumber(trimmed)
    if n and n == n and n ~= math.huge and n ~= -math.huge then return n end
    return nil
  elseif t == "boolean" then
    local l = trimmed:lower()
    if TRUE[l] then return true end
    if FALSE[l] then return false end
    return nil
  elseif t == "enum" then
    for _, v in ipairs(decl.values) do
      if tostring(v) == s or tostring(v) == trimmed then return v end
    end
    return nil
  elseif t == "list" then
    local out = {}
    if trimmed == "" then return out end
    for item in (s .. ","):gmatch "([^,]*)," do out[#out + 1] = item:match "^%s*(.-)%s*$" end
    return out
  end
  return nil
end

------------------------------------------------------------------------
-- Formats: what a string value may look like, by name (decl.format).
-- Each is a test(s) -> true | false[, "why"] and what it says in errors.
-- They allow only the characters the file formats they land in take as
-- plain words: no quotes, ';', '{', '#', '=' or spaces unless stated.

local function matches(p) return function(s) return s:match(p) ~= nil end end

local function is_port(n) n = tonumber(n) return n and n >= 1 and n <= 65535 end

local function host(s)
  if #s > 253 then return false end
  if s:match "^[%w_][%w_.%-]*$" then return true end
  return s:match "^[%x:]*:[%x:.]*$" ~= nil and #s >= 2 -- IPv6
end

local function package(s)
  local name, rest = s:match "^([a-z0-9][a-z0-9+.%-]*)(.*)$"
  if not name or #name < 2 then return false end
  if rest == "" then return true end
  return rest:match "^:[a-z0-9%-]+$" ~= nil or rest:match "^=[%w.+:~%-]+$" ~= nil
    or rest:match "^:[a-z0-9%-]+=[%w.+:~%-]+$" ~= nil
end

local function port_spec(s)
  local ports, proto = s:match "^([%d:]+)/(%a+)$"
  if not ports then ports = s:match "^([%d:]+)$" end
  if not ports or (proto and proto ~= "tcp" and proto ~= "udp") then return false end
  local lo, hi = ports:match "^(%d+):(%d+)$"
  if lo then return is_port(lo) and is_port(hi) and tonumber(lo) < tonumber(hi) end
  return ports:match "^%d+$" ~= nil and is_port(ports)
end

local function cidr(s)
  local addr, bits = s:match "^([%x:.]+)/(%d+)$"
  if not addr then return false end
  local v4 = addr:match "^%d+%.%d+%.%d+%.%d+$"
  if v4 then
    for o in addr:gmatch "%d+" do if tonumber(o) > 255 then return false end end
    return tonumber(bits) <= 32
  end
  return addr:find ":" ~= nil and tonumber(bits) <= 128
end

local function hhmm(s)
  local h, m = s:match "^(%d%d):(%d%d)$"
  return h ~= nil and tonumber(h) < 24 and tonumber(m) < 60
end

local function ssh_public_key(s)
  local ok, why = require("phanes.remote.sshkey").parse(s)
  return ok ~= nil, why
end

local function timezone(s)
  return s:match "^%a[%w_+%-]*$" ~= nil or (s:match "^%a[%w_+%-]*/[%w_+%-/]*[%w_+%-]$" ~= nil
    and not s:find "//" and #s <= 64)
end

M.FORMATS = {
  host = { test = host, says = "a host name or IP address, like example.com or 10.0.0.5" },
  address = { test = function(s) return s == "*" or host(s) or (s:match "^%[[%x:.]+%]$" ~= nil) end,
    says = "one address to listen on, like 127.0.0.1, ::1 or 0.0.0.0" },
  url = { test = matches "^https?://[%w%-._~:/%[%]@%%+=?&]+$",
    says = "an http(s) URL without spaces or quotes, like https://example.com/path" },
  path = { test = matches "^/[%w._/+@~%-]*$", says = "an absolute path (letters, digits, . _ - + @ ~ /)" },
  size = { test = matches "^%d+[kKmMgG]?[bB]?$", says = "a size like 512k, 10m or 1g" },
  duration = { test = matches "^%-?%d+[a-z]*$", says = "a time like 600, 10m, 1h or 1d" },
  email = { test = matches "^[%w._%+%-]+@[%w%-]+%.[%w.%-]+$", says = "an email address like admin@example.com" },
  name = { test = function(s) return #s <= 32 and s:match "^[a-z_][a-z0-9_%-]*$" ~= nil end,
    says = "a user or group name (lower case letters, digits, _ and -, at most 32)" },
  package = { test = package, says = "a Debian package name, like htop or libssl3:amd64" },
  port_spec = { test = port_spec, says = "a port like \"80\", \"443/tcp\" or \"60000:61000/udp\"" },
  cidr = { test = cidr, says = "a network in CIDR notation, like 10.0.0.0/8" },
  hhmm = { test = hhmm, says = "a time of day HH:MM, like 03:00" },
  ssh_public_key = { test = ssh_public_key, says = "an SSH public key like \"ssh-ed25519 AAAAC3Nza... me@laptop\"" },
  timezone = { test = timezone, says = "a zoneinfo name like Europe/Paris or UTC" },
  locale = { test = matches "^[%w_@.%-]+$", says = "a locale name like en_US.UTF-8" },
}

-- A secret string is at least this long, declared or not: masking a short
-- one would hide common words in every line of output.
M.SECRET_MIN = 8

-- Values from the vault (vault.add_secret fills it): never shown in a
-- message, whatever field they are in, as if the field were secret.
M.hidden = {}

local function hidden(v, decl)
  return decl.secret or (v ~= nil and M.hidden[tostring(v)] == true)
end

local function shown(v, decl)
  if hidden(v, decl) then return "a value that does not fit (hidden: secret)" end
  return (string.format("%q", v):gsub("\\\n", "\\n"))
end

-- M.limits(v, decl) -> nil | "expected ..., got ...": min/max, lengths,
-- one line, pattern, format. v already has the declared type.
function M.limits(v, decl)
  if type(v) == "number" then
    if v ~= v and (decl.min or decl.max) then return "expected a number, got NaN" end
    if (decl.min and v < decl.min) or (decl.max and v > decl.max) then
      local range = decl.min and decl.max and string.format("%s to %s", decl.min, decl.max)
        or decl.min and "at least " .. decl.min or "at most " .. decl.max
      return "expected " .. range .. ", got " .. (hidden(v, decl) and "a value out of range (hidden: secret)" or tostring(v))
    end
    return nil
  end
  if type(v) ~= "string" then return nil end
  if not decl.multiline and v:find "[%c\127]" then
    local what = v:find "[\r\n]" and "a line break" or "a control character"
    return "expected one line of text, got " .. (hidden(v, decl) and "a value with " .. what .. " (hidden: secret)"
      or shown(v, decl) .. " (it has " .. what .. ")")
  end
  local min = decl.min_length or (decl.secret and v ~= "" and M.SECRET_MIN)
  if min and #v < min then
    return string.format("expected at least %d characters, got %d", min, #v)
  end
  if decl.max_length and #v > decl.max_length then
    return string.format("expected at most %d characters, got %d", decl.max_length, #v)
  end
  if v == "" and (decl.default == "" or (decl.default == nil and not decl.required)) then return nil end
  local f = decl.format and M.FORMATS[decl.format]
  if f then
    local ok, why = f.test(v)
    if not ok then
      return "expected " .. (decl.hint or f.says) .. ", got " .. shown(v, decl)
        .. (why and not hidden(v, decl) and " (" .. why .. ")" or "")
    end
  end
  if decl.pattern and not v:find("^" .. decl.pattern .. "$") then
    return "expected " .. (decl.hint or "text matching " .. decl.pattern) .. ", got " .. shown(v, decl)
  end
  return nil
end

------------------------------------------------------------------------
-- Values.

-- M.check(v, decl, ctx) -> normalized value | nil (an error was reported).
-- ctx = { path = "postgres.version", coerce = bool, report = function(path,
-- msg, parent, key), at = parent table, key = key in parent, origin =
-- function(path, parent, key) (optional, records where a leaf came from) }.
function M.check(v, decl, path, ctx, parent, key)
  local t = decl.type
  local coerce = ctx.coerce or (ctx.coerce_paths and ctx.coerce_paths[path]) -- a !vault value is text
  local raw_string = coerce and type(v) == "string" and t ~= "string" and t ~= "map"
  if raw_string then
    local c = M.coerce(v, decl)
    if c == nil then
      local got = hidden(v, decl) and "a value that does not fit (hidden: secret)" or string.format("%q", v)
      ctx.report(path, "expected " .. M.expected(decl) .. ", got " .. got, parent, key)
      return nil
    end
    v = c
  end
  local ok
  if t == "string" then ok = type(v) == "string"
  elseif t == "integer" then ok = math.type(v) == "integer"
  elseif t == "number" then ok = type(v) == "number"
  elseif t == "boolean" then ok = type(v) == "boolean"
  elseif t == "enum" then
    ok = false
    for _, x in ipairs(decl.values) do if x == v then ok = true end end
  elseif t == "list" then ok = M.is_list(v)
  elseif t == "map" then ok = type(v) == "table" and not (M.is_list(v) and next(v) ~= nil)
  end
  if not ok then
    local got = M.kind(v)
    if t == "enum" and not hidden(v, decl) and type(v) ~= "table" then
      got = show(v) .. (type(v) == "string" and "" or " (" .. M.kind(v) .. ")")
    end
    ctx.report(path, "expected " .. M.expected(decl) .. ", got " .. got, parent, key)
    return nil
  end
  local over = M.limits(v, decl)
  if over then
    ctx.report(path, over, parent, key)
    return nil
  end
  if t == "list" then
    if not decl.items then
      if ctx.origin then ctx.origin(path, parent, key) end
      return M.copy(v)
    end
    local out, good = {}, true
    for i, item in ipairs(v) do
      local c = M.check(item, decl.items, string.format("%s[%d]", path, i), ctx, v, i)
      if c == nil then good = false end
      out[i] = c
    end
    if ctx.origin then ctx.origin(path, parent, key) end
    return good and out or nil
  end
  if t == "map" then
    if not decl.fields then
      if ctx.origin then ctx.origin(path, parent, key) end
      return M.copy(v)
    end
    return M.check_fields(v, decl.fields, path, ctx)
  end
  if ctx.origin then ctx.origin(path, parent, key) end
  return v
end

-- M.check_fields(tbl, fields, path, ctx) -> normalized table (unknown or bad
-- keys left out, each reported). `ctx.order(tbl)` may give the key order
-- (document order for YAML); keys are sorted otherwise.
function M.check_fields(tbl, fields, path, ctx)
  local out = {}
  local names = {}
  for k in pairs(fields) do names[#names + 1] = k end
  local keys = ctx.order and ctx.order(tbl) or M.sorted_keys(tbl)
  for _, k in ipairs(keys) do
    local sub = path == "" and tostring(k) or path .. "." .. tostring(k)
    local decl = type(k) == "string" and fields[k]
    if decl then
      out[k] = M.check(tbl[k], decl, sub, ctx, tbl, k)
    else
      local hint = type(k) == "string" and M.suggest(k, names)
      local msg = "unknown key '" .. sub .. "'"
      if hint then
        msg = msg .. " (did you mean '" .. (path == "" and hint or path .. "." .. hint) .. "'?)"
      elseif ctx.elsewhere then
        local where = ctx.elsewhere(path, k)
        if where then msg = msg .. " (" .. where .. ")" end
      end
      ctx.report(nil, msg, tbl, k)
    end
  end
  return out
end

------------------------------------------------------------------------
-- Declarations.

-- M.check_decl(decl, where, errs): checks a field declaration; appends
-- "where: message" to errs.
function M.check_decl(decl, where, errs)
  local before = #errs
  local function err(msg) errs[#errs + 1] = where .. ": " .. msg end
  if type(decl) ~= "table" then
    err('expected a declaration like { type = "string" }, got ' .. M.kind(decl))
    return
  end
  for k in pairs(decl) do
    if type(k) ~= "string" or not DECL_SET[k] then
      local hint = type(k) == "string" and M.suggest(k, DECL_KEYS)
      err("unknown declaration key '" .. tostring(k) .. "'" .. (hint and " (did you mean '" .. hint .. "'?)" or ""))
    end
  end
  local t = decl.type
  if not TYPE_SET[t] then
    local hint = type(t) == "string" and M.suggest(t, M.TYPES)
    err((t == nil and "missing type" or "unknown type '" .. tostring(t) .. "'") ..
      (hint and " (did you mean '" .. hint .. "'?)" or "") .. "; types: " .. table.concat(M.TYPES, ", "))
    return
  end
  for _, flag in ipairs { "required", "secret" } do
    if decl[flag] ~= nil and type(decl[flag]) ~= "boolean" then err(flag .. " must be true or false") end
  end
  if decl.description ~= nil and type(decl.description) ~= "string" then err "description must be a string" end
  for _, n in ipairs { "min", "max" } do
    if decl[n] ~= nil and (type(decl[n]) ~= "number" or (t ~= "integer" and t ~= "number")) then
      err(n .. " is a number, only for type integer or number")
    end
  end
  for _, n in ipairs { "min_length", "max_length" } do
    if decl[n] ~= nil and (math.type(decl[n]) ~= "integer" or t ~= "string") then
      err(n .. " is an integer, only for type string")
    end
  end
  for _, n in ipairs { "pattern", "hint" } do
    if decl[n] ~= nil and (type(decl[n]) ~= "string" or t ~= "string") then
      err(n .. " is a string, only for type string")
    end
  end
  if decl.pattern and type(decl.pattern) == "string" and not pcall(string.find, "", decl.pattern) then
    err("pattern '" .. decl.pattern .. "' is not a Lua pattern")
  end
  if decl.multiline ~= nil and (type(decl.multiline) ~= "boolean" or t ~= "string") then
    err "multiline is true or false, only for type string"
  end
  if decl.format ~= nil and (t ~= "string" or not M.FORMATS[decl.format]) then
    local names = M.sorted_keys(M.FORMATS)
    err("format is for type string, one of: " .. table.concat(names, ", "))
  end
  if decl.secret and t == "string" and decl.min_length and decl.min_length < M.SECRET_MIN then
    err("a secret string needs min_length of at least " .. M.SECRET_MIN .. " (a short secret cannot be masked)")
  end
  if t == "enum" then
    if not M.is_list(decl.values) or #decl.values == 0 then err "an enum needs values = { ... }" return end
  elseif decl.values ~= nil then
    err "values is only for type enum"
  end
  if decl.items ~= nil then
    if t ~= "list" then err "items is only for type list" else M.check_decl(decl.items, where .. ".items", errs) end
  end
  if decl.fields ~= nil then
    if t ~= "map" then err "fields is only for type map"
    elseif type(decl.fields) ~= "table" then err "fields must be a table of declarations"
    else
      for _, k in ipairs(M.sorted_keys(decl.fields)) do
        M.check_decl(decl.fields[k], where .. "." .. tostring(k), errs)
      end
    end
  end
  if decl.default ~= nil and #errs == before then
    local ctx = { report = function(p, msg) err("default" .. (p and p ~= "" and " " .. p or "") .. ": " .. msg) end }
    M.check(decl.default, decl, "", ctx)
  end
end

-- M.same(a, b) -> true | false, "what differs": two declarations of one
-- key. Descriptions are not compared.
local function equal(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

function M.same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return equal(a, b), "declaration" end
  local keys, diff = {}, {}
  for k in pairs(a) do keys[k] = true end
  for k in pairs(b) do keys[k] = true end
  for _, k in ipairs(M.sorted_keys(keys)) do
    if k ~= "description" and not equal(a[k], b[k]) then diff[#diff + 1] = tostring(k) end
  end
  if #diff == 0 then return true end
  return false, table.concat(diff, ", ") .. (#diff == 1 and " differs" or " differ")
end

return M
