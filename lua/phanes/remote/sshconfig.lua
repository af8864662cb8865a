-- sshconfig.lua: read ~/.ssh/config (never written) for the options phanes
-- honours: HostName, User, Port, IdentityFile, StrictHostKeyChecking,
-- UserKnownHostsFile, GlobalKnownHostsFile, HostKeyAlias, HashKnownHosts, with Host patterns (`*`, `?`,
-- `!negation`) and Include. As in OpenSSH, the first value obtained for an
-- option wins, IdentityFile accumulates, and `Match` blocks are skipped.
-- ProxyJump and ProxyCommand are not supported: lookup reports where they
-- are set (also inside a Match block) so the caller refuses the host.
--
--   local sshconfig = require "phanes.remote.sshconfig"
--   local cfg = sshconfig.load()                 -- ~/.ssh/config, or an empty one
--   local o = sshconfig.lookup(cfg, "web1")
--   -- o = { hostname = "10.0.0.5", user = "deploy", port = 2222,
--   --       identityfile = { "/home/me/.ssh/web" },
--   --       stricthostkeychecking = "yes" | "accept-new" | "no" | "ask",
--   --       userknownhostsfile = { paths }, globalknownhostsfile = { paths },
--   --       proxy = { key = "ProxyJump", value = "bastion", where = "~/.ssh/config:7" } }
--   --   (fields absent when unset)
local F = require "phanes.file"

local M = {}

local ENOENT, ENOTDIR = 2, 20

local KNOWN = { hostname = true, user = true, port = true, identityfile = true, stricthostkeychecking = true,
  userknownhostsfile = true, globalknownhostsfile = true, hostkeyalias = true, hashknownhosts = true,
  proxyjump = true, proxycommand = true }
-- options whose value is every word after the keyword
local LIST = { userknownhostsfile = true, globalknownhostsfile = true, proxycommand = true }
local STRICT = { yes = "yes", ["true"] = "yes", ask = "ask", ["accept-new"] = "accept-new",
  no = "no", off = "no", ["false"] = "no" }
local NAMES = { proxyjump = "ProxyJump", proxycommand = "ProxyCommand" }

-- A value OpenSSH would refuse is refused here too, with its file:line.
local function check_value(key, w, where)
  local v = w[2]
  if v == nil then return nil, where .. ": " .. w[1] .. " needs a value" end
  if key == "port" then
    local n = tonumber(v)
    if not n or n ~= math.floor(n) or n < 1 or n > 65535 then
      return nil, where .. ": Port: expected a number from 1 to 65535, got '" .. v .. "'"
    end
  elseif key == "hashknownhosts" and v:lower() ~= "yes" and v:lower() ~= "no" then
    return nil, where .. ": HashKnownHosts: expected yes or no, got '" .. v .. "'"
  elseif key == "stricthostkeychecking" and not STRICT[v:lower()] then
    return nil, where .. ": StrictHostKeyChecking: expected yes, accept-new, no or ask, got '" .. v .. "'"
  end
  return true
end

-- Split a line into words, honouring double quotes; `Key=value` too.
local function words(line)
  local out, i, n = {}, 1, #line
  line = line:gsub("^%s*([%w]+)%s*=%s*", "%1 ", 1)
  n = #line
  while i <= n do
    local c = line:sub(i, i)
    if c:match "%s" then
      i = i + 1
    elseif c == '"' then
      local j = line:find('"', i + 1, true)
      if not j then return nil, "unterminated quote" end
      out[#out + 1] = line:sub(i + 1, j - 1)
      i = j + 1
    else
      local j = line:find("[%s\"]", i) or n + 1
      out[#out + 1] = line:sub(i, j - 1)
      i = j
    end
  end
  return out
end

-- Does a Host pattern (`*` any run, `?` one character) match all of s?
-- Backtracks to the last `*` only, so it takes O(#s * #glob) whatever the
-- pattern (a Lua pattern of many `.*` backtracks exponentially).
local function glob_match(glob, s)
  local g, i, star, mark = 1, 1, nil, 0
  while i <= #s do
    local c = glob:sub(g, g)
    if c == "?" or (c ~= "*" and c ~= "" and c == s:sub(i, i)) then
      g, i = g + 1, i + 1
    elseif c == "*" then
      star, mark, g = g, i, g + 1
    elseif star then
      g, mark = star + 1, mark + 1
      i = mark
    else
      return false
    end
  end
  while glob:sub(g, g) == "*" do g = g + 1 end
  return g > #glob
end

-- sshconfig.match(patterns, host) -> bool: any positive pattern matches
-- and no negated one does.
function M.match(patterns, host)
  local yes = false
  for _, pat in ipairs(patterns) do
    local neg = pat:sub(1, 1) == "!"
    if neg then pat = pat:sub(2) end
    if glob_match(pat:lower(), host:lower()) then
      if neg then return false end
      yes = true
    end
  end
  return yes
end

local function expand_home(path, home)
  if path:sub(1, 2) == "~/" then return home .. path:sub(2) end
  return path
end

-- Files named by an Include argument (a glob in the last component only).
local function include_files(arg, home)
  local path = expand_home(arg, home)
  if path:sub(1, 1) ~= "/" then path = home .. "/.ssh/" .. path end
  local dir, base = path:match "^(.*)/([^/]*)$"
  if not base:find "[%*%?]" then return { path } end
  local files = {}
  for _, name in ipairs(F.list(dir) or {}) do
    if name:sub(1, 1) ~= "." and glob_match(base, name) then files[#files + 1] = dir .. "/" .. name end
  end
  table.sort(files)
  return files
end

-- sshconfig.parse(text, opts) -> blocks | nil, "name:line: message"
-- opts.name (for messages), opts.home, opts.read(path) -> text|nil (Include),
-- blocks = { { patterns = {...} | nil (top of file), options = { {key, value, where} } } }
function M.parse(text, opts)
  opts = opts or {}
  local name, home = opts.name or "ssh_config", opts.home or os.getenv "HOME" or ""
  local blocks = { { options = {} } }
  local depth = opts.depth or 0
  local lineno = 0
  for line in (text .. "\n"):gmatch "([^\n]*)\n" do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    local w, err = words(line:gsub("^%s+", ""))
    if not w then return nil, string.format("%s:%d: %s", name, lineno, err) end
    local key = w[1] and w[1]:lower()
    if key and key:sub(1, 1) ~= "#" then
      local where = name .. ":" .. lineno
      if key == "host" then
        local pats = {}
        for i = 2, #w do pats[#pats + 1] = w[i] end
        blocks[#blocks + 1] = { patterns = pats, options = {} }
      elseif key == "match" then
        blocks[#blocks + 1] = { patterns = {}, match = true, options = {} }
      elseif key == "include" then
        if depth >= 16 then return nil, where .. ": Include nested too deeply" end
        for i = 2, #w do
          for _, file in ipairs(include_files(w[i], home)) do
            local sub = opts.read and opts.read(file)
            if sub then
              local inc, ierr = M.parse(sub, { name = file, home = home, read = opts.read, depth = depth + 1 })
              if not inc then return nil, ierr end
              -- an Include inside a Host block applies under that block's patterns
              local cur = blocks[#blocks]
              for _, b in ipairs(inc) do
                if b.patterns == nil and cur.patterns then
                  for _, o in ipairs(b.options) do cur.options[#cur.options + 1] = o end
                else
                  blocks[#blocks + 1] = b
                end
              end
              if blocks[#blocks] ~= cur and cur.patterns then
                blocks[#blocks + 1] = { patterns = cur.patterns, match = cur.match, options = {} }
              end
            end
          end
        end
      elseif KNOWN[key] then
        local ok, verr = check_value(key, w, where)
        if not ok then return nil, verr end
        local opts_ = blocks[#blocks].options
        local v = w[2]
        if LIST[key] then v = { table.unpack(w, 2) } end
        opts_[#opts_ + 1] = { key, v, where }
      end
    end
  end
  return blocks
end

-- sshconfig.lookup(blocks, host, user) -> { hostname, user, port, identityfile }
-- %h (the host name), %u, %r (remote user), %d and ~ (home) are expanded in
-- IdentityFile.
-- A ProxyJump or ProxyCommand in a Match block phanes does not evaluate:
-- it might apply, so it is reported rather than ignored.
local function match_proxy(o, b)
  for _, kv in ipairs(b.options) do
    local v = type(kv[2]) == "table" and table.concat(kv[2], " ") or kv[2]
    if NAMES[kv[1]] and v:lower() ~= "none" and o.proxy == nil then
      o.proxy = { key = NAMES[kv[1]], value = v, where = kv[3], match = true }
    end
  end
end

local function set(o, k, v, where)
  if k == "identityfile" then
    o.identityfile = o.identityfile or {}
    o.identityfile[#o.identityfile + 1] = v
  elseif NAMES[k] then
    if o.proxy == nil then
      local text = type(v) == "table" and table.concat(v, " ") or v
      o.proxy = false -- "none": no proxy, and later values do not count
      if text:lower() ~= "none" then o.proxy = { key = NAMES[k], value = text, where = where } end
    end
  elseif o[k] == nil then
    if k == "port" then v = tonumber(v)
    elseif k == "stricthostkeychecking" then v = STRICT[v:lower()]; o.strict_where = where
    elseif k == "hashknownhosts" then v = v:lower() == "yes" end
    o[k] = v
  end
end

-- Known hosts files: ~, %d (home), %u (local user), %h (host name), %%;
-- "none" reads nothing (and records nowhere).
local function known_files(list, home, host)
  local out = {}
  for _, f in ipairs(list) do
    if f:lower() == "none" then return { "/dev/null" } end
    f = expand_home(f, home):gsub("%%(.)", { d = home, u = os.getenv "USER" or "", h = host, ["%"] = "%" })
    out[#out + 1] = f
  end
  return out
end

function M.lookup(blocks, host, home)
  home = home or os.getenv "HOME" or ""
  local o = {}
  for _, b in ipairs(blocks or {}) do
    if b.match then
      match_proxy(o, b)
    elseif b.patterns == nil or M.match(b.patterns, host) then
      for _, kv in ipairs(b.options) do
        if kv[2] ~= nil then set(o, kv[1], kv[2], kv[3]) end
      end
    end
  end
  if o.proxy == false then o.proxy = nil end
  -- values are literal text in gsub replacements ("%" in a user name)
  local function lit(v) return (v:gsub("%%", "%%%%")) end
  if o.hostname then o.hostname = o.hostname:gsub("%%h", lit(host)) end
  for _, k in ipairs { "userknownhostsfile", "globalknownhostsfile" } do
    if o[k] then o[k] = known_files(o[k], home, o.hostname or host) end
  end
  for i, f in ipairs(o.identityfile or {}) do
    f = expand_home(f, home):gsub("%%d", lit(home)):gsub("%%h", lit(o.hostname or host))
    f = f:gsub("%%u", lit(os.getenv "USER" or "")):gsub("%%r", lit(o.user or os.getenv "USER" or ""))
    if f:sub(1, 1) ~= "/" then f = home .. "/.ssh/" .. f end
    o.identityfile[i] = f
  end
  return o
end

local function read(path) return (F.read(path)) end

-- sshconfig.load([path]) -> blocks (an empty list when the file is absent)
-- | nil, err for a file that cannot be parsed.
function M.load(path)
  local home = os.getenv "HOME" or ""
  path = path or home .. "/.ssh/config"
  local text, err, code = F.read(path)
  if not text then
    if code == ENOENT or code == ENOTDIR then return {} end
    return nil, err
  end
  return M.parse(text, { name = path, home = home, read = read })
end

return M
