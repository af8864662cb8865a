-- spec/support/fallback.lua: pure-Lua stand-ins used by the runner specs
-- ONLY while the real primitives (phanes.json/file/state/sys/exec) and Lua
-- pieces (phanes.context, phanes.config) are not in the binary yet. Each
-- stand-in fills a missing function and never replaces a real one, so the
-- specs run against the real code as soon as it lands.
-- M.real(name) says whether a piece is the real one.
local M = { filled = {} }
local lfs = require "lfs"

-- Stand-ins go into a proxy of the real module (package.loaded[name] is
-- replaced, the real table is never changed), so busted's per-file
-- insulation restores the real module for the other spec files.
local originals = {}
local function fill(modname, fname, fn)
  local mod = require(modname)
  if not originals[modname] then
    originals[modname] = mod
    mod = setmetatable({}, { __index = mod })
    package.loaded[modname] = mod
  elseif package.loaded[modname] == originals[modname] then
    -- a new spec file: busted put the real one back
    mod = setmetatable({}, { __index = originals[modname] })
    package.loaded[modname] = mod
  end
  if originals[modname][fname] == nil then
    mod[fname] = fn
    M.filled[modname] = true
  end
  return mod
end

function M.real(modname)
  if modname == "phanes.context" or modname == "phanes.config" then
    return package.preload[modname] == nil and require("phanes.embedded").get(
      "lua/" .. modname:gsub("%.", "/") .. ".lua") ~= nil
  end
  require(modname)
  return not M.filled[modname]
end

---------------------------------------------------------------- json
local null = setmetatable({}, { __tostring = function() return "null" end })
local arrays = setmetatable({}, { __mode = "k" })

local function encode(v, pretty, ind)
  local t = type(v)
  if v == null or v == nil then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.14g", v)
  end
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local map = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
      return map[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  end
  local nl = pretty and ("\n" .. string.rep("  ", ind + 1)) or ""
  local close = pretty and ("\n" .. string.rep("  ", ind)) or ""
  local sep = pretty and ": " or ":"
  local n = #v
  local is_array = arrays[v] or n > 0
  if is_array then
    if n == 0 then return "[]" end
    local parts = {}
    for i = 1, n do parts[i] = nl .. encode(v[i], pretty, ind + 1) end
    return "[" .. table.concat(parts, ",") .. close .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  if #keys == 0 then return "{}" end
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = nl .. encode(k) .. sep .. encode(v[k] == nil and v[tonumber(k)] or v[k], pretty, ind + 1)
  end
  return "{" .. table.concat(parts, ",") .. close .. "}"
end

local function decode(s)
  local i = 1
  local function err(msg) error({ msg = "1:" .. i .. ": " .. msg }, 0) end
  local function ws() i = s:find("[^ \t\r\n]", i) or #s + 1 end
  local value
  local function str()
    local out = {}
    i = i + 1
    while true do
      local c = s:sub(i, i)
      if c == "" then err "unterminated string" end
      if c == '"' then i = i + 1 break end
      if c == "\\" then
        local e = s:sub(i + 1, i + 1)
        local map = { n = "\n", t = "\t", r = "\r", b = "\b", f = "\f", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
        if e == "u" then
          out[#out + 1] = utf8.char(tonumber(s:sub(i + 2, i + 5), 16))
          i = i + 6
        else
          out[#out + 1] = map[e] or err "bad escape"
          i = i + 2
        end
      else
        out[#out + 1] = c
        i = i + 1
      end
    end
    return table.concat(out)
  end
  function value()
    ws()
    local c = s:sub(i, i)
    if c == "{" then
      local t = {}
      i = i + 1
      ws()
      if s:sub(i, i) == "}" then i = i + 1 return t end
      while true do
        ws()
        if s:sub(i, i) ~= '"' then err "expected a key" end
        local k = str()
        ws()
        if s:sub(i, i) ~= ":" then err "expected ':'" end
        i = i + 1
        t[k] = value()
        ws()
        local d = s:sub(i, i)
        i = i + 1
        if d == "}" then return t end
        if d ~= "," then err "expected ',' or '}'" end
      end
    elseif c == "[" then
      local t = {}
      arrays[t] = true
      i = i + 1
      ws()
      if s:sub(i, i) == "]" then i = i + 1 return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = s:sub(i, i)
        i = i + 1
        if d == "]" then return t end
        if d ~= "," then err "expected ',' or ']'" end
      end
    elseif c == '"' then return str()
    elseif s:sub(i, i + 3) == "true" then i = i + 4 return true
    elseif s:sub(i, i + 4) == "false" then i = i + 5 return false
    elseif s:sub(i, i + 3) == "null" then i = i + 4 return null
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
      if not num or num == "" then err "unexpected character" end
      i = i + #num
      return math.tointeger(tonumber(num)) or tonumber(num)
    end
  end
  local ok, res = pcall(function()
    local v = value()
    ws()
    if i <= #s then err "trailing characters" end
    return v
  end)
  if not ok then return nil, type(res) == "table" and res.msg or tostring(res) end
  return res
end

fill("phanes.json", "encode", function(v, opts) return encode(v, opts and opts.pretty, 0) end)
fill("phanes.json", "decode", decode)
fill("phanes.json", "array", function(t) arrays[t] = true return t end)
fill("phanes.json", "null", null)

---------------------------------------------------------------- file
fill("phanes.file", "read", function(path)
  local f, err, errno = io.open(path, "rb")
  if not f then return nil, err, errno end
  local d = f:read "a"
  f:close()
  return d
end)
fill("phanes.file", "write", function(path, data, opts)
  local tmp = path .. ".tmp" .. math.random(1e9)
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  if opts and opts.mode then os.execute(string.format("chmod %o '%s'", opts.mode, tmp)) end
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp) return nil, rerr end
  return true
end)
fill("phanes.file", "exists", function(path) return lfs.attributes(path) ~= nil end)
fill("phanes.file", "mkdir", function(path)
  local ok = os.execute("mkdir -p '" .. path .. "'")
  if not ok then return nil, path .. ": cannot create" end
  return true
end)
fill("phanes.file", "diff", function(a, b)
  if a == b then return "" end
  local out = { "--- a", "+++ b" }
  for l in (a or ""):gmatch "[^\n]+" do out[#out + 1] = "-" .. l end
  for l in (b or ""):gmatch "[^\n]+" do out[#out + 1] = "+" .. l end
  return table.concat(out, "\n") .. "\n"
end)

fill("phanes.file", "sha256", function(data)
  local tmp = os.tmpname()
  local f = io.open(tmp, "wb")
  f:write(data)
  f:close()
  local p = io.popen("sha256sum " .. tmp)
  local hex = p:read("a"):match "^(%x+)"
  p:close()
  os.remove(tmp)
  return hex
end)

---------------------------------------------------------------- sys
local t0 = os.time()
fill("phanes.sys", "now", function() return os.time() - t0 + os.clock() end)
fill("phanes.sys", "time", function() return os.time() end)
fill("phanes.sys", "trap_signals", function() end)
fill("phanes.sys", "interrupted", function() return 0 end)
fill("phanes.sys", "isatty", function() return false end)
fill("phanes.sys", "hostname", function() return "testhost" end)
fill("phanes.sys", "environ", function() return {} end)
fill("phanes.sys", "getpid", function()
  local f = io.open "/proc/self/stat"
  local pid = f and f:read("l"):match "^(%d+)"
  if f then f:close() end
  return tonumber(pid)
end)

---------------------------------------------------------------- state
-- flock(1) holds the lock in a child process until its stdin closes.
fill("phanes.state", "lock", function(path, opts)
  local marker = os.tmpname()
  local wait = (opts and opts.wait) and (opts.timeout or 1e6) or 0
  local h = io.popen(string.format("flock -x -w %s '%s' sh -c 'echo ok > %s; exec cat >/dev/null' "
    .. "2>/dev/null || echo fail > %s", wait, path, marker, marker), "w")
  local res
  repeat
    local f = io.open(marker)
    res = f and f:read "l"
    if f then f:close() end
    if not res then os.execute "sleep 0.02" end
  until res
  os.remove(marker)
  if res ~= "ok" then
    h:close()
    return nil, path .. ": locked by another phanes run"
  end
  local l = { h = h }
  function l.unlock(self) if self.h then self.h:close() self.h = nil end end
  return l
end)

---------------------------------------------------------------- exec
fill("phanes.exec", "run", function(opts)
  local errf = os.tmpname()
  local cmd = opts.shell
  if not cmd then
    local q = {}
    for i, a in ipairs(opts.argv) do q[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
    cmd = table.concat(q, " ")
  end
  local p = io.popen("(" .. cmd .. ") 2>" .. errf)
  local out = p:read "a"
  local _, _, code = p:close()
  local ef = io.open(errf)
  local err = ef and ef:read "a" or ""
  if ef then ef:close() end
  os.remove(errf)
  if opts.stream and out ~= "" then opts.stream("stdout", out) end
  return { code = code, stdout = out, stderr = err, duration = 0 }
end)
fill("phanes.exec", "kill_all", function() end)

---------------------------------------------------------------- context / config
-- The real context needs the real file/exec/sys primitives: use the
-- stand-in context while any of them is a stand-in.
function M.primitives_real()
  for _, m in ipairs { "phanes.file", "phanes.exec", "phanes.sys", "phanes.state", "phanes.json" } do
    if not M.real(m) then return false end
  end
  return true
end

-- fallback.context() -> the context module the runner specs should use.
function M.context()
  if M.real "phanes.context" and M.primitives_real() then return require "phanes.context" end
  M.stub_context = M.stub_context or dofile "spec/support/context_stub.lua"
  return M.stub_context
end

-- For spec/support/cli.lua (a process of its own): route require there.
function M.route()
  if not (M.real "phanes.context" and M.primitives_real()) then
    package.loaded["phanes.context"] = M.context()
  end
  if not M.real "phanes.config" then
    package.preload["phanes.config"] = function() return dofile "spec/support/config_stub.lua" end
  end
end

return M
