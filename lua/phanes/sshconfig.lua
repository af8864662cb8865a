-- sshconfig.lua: read ~/.ssh/config (never written) for the options phanes
-- honours: HostName, User, Port, IdentityFile, with Host patterns (`*`,
-- `?`, `!negation`) and Include. As in OpenSSH, the first value obtained for
-- an option wins, IdentityFile accumulates, and `Match` blocks are skipped.
--
--   local sshconfig = require "phanes.sshconfig"
--   local cfg = sshconfig.load()                 -- ~/.ssh/config, or an empty one
--   local o = sshconfig.lookup(cfg, "web1")
--   -- o = { hostname = "10.0.0.5", user = "deploy", port = 2222,
--   --       identityfile = { "/home/me/.ssh/web" } }   (fields absent when unset)
local F = require "phanes.file"

local M = {}

local ENOENT, ENOTDIR = 2, 20

local KNOWN = { hostname = true, user = true, port = true, identityfile = true }

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
        local opts_ = blocks[#blocks].options
        opts_[#opts_ + 1] = { key, w[2], where }
      end
    end
  end
  return blocks
end

-- sshconfig.lookup(blocks, host, user) -> { hostname, user, port, identityfile }
-- %h (the host name), %u, %r (remote user), %d and ~ (home) are expanded in
-- IdentityFile.
function M.lookup(blocks, host, home)
  home = home or os.getenv "HOME" or ""
  local o = {}
  for _, b in ipairs(blocks or {}) do
    if not b.match and (b.patterns == nil or M.match(b.patterns, host)) then
      for _, kv in ipairs(b.options) do
        local k, v = kv[1], kv[2]
        if k == "identityfile" and v then
          o.identityfile = o.identityfile or {}
          o.identityfile[#o.identityfile + 1] = v
        elseif v and o[k] == nil then
          if k == "port" then
            o.port = tonumber(v)
          else
            o[k] = v
          end
        end
      end
    end
  end
  -- values are literal text in gsub replacements ("%" in a user name)
  local function lit(v) return (v:gsub("%%", "%%%%")) end
  if o.hostname then o.hostname = o.hostname:gsub("%%h", lit(host)) end
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
