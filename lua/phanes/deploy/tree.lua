-- deploy/tree.lua: the local side of a deploy, no network: the site name
-- and release id rules, the directory walk (refusing what must not be
-- shipped), the sha256 manifest, its diff against the current release's,
-- and the tar stream of what changed.
--
--   local tree = require "phanes.deploy.tree"
--   local t = assert(tree.scan("./public"))          -- { entries, by_path, files, bytes }
--   local d = tree.diff(tree.parse(old_text), t.entries)  -- { upload, link, unchanged }
local file = require "phanes.file"
local M = {}

-- A site name: a plain word (letters, digits, - and _; 1 to 64; no leading - or _).
function M.valid_site(name)
  return type(name) == "string" and #name <= 64 and name:match "^[%w][%w_%-]*$" ~= nil
end

-- A release id: <UTC time>-<8 hex>[-<n>] (what M.release_id makes).
function M.valid_id(id)
  return type(id) == "string" and (id:match "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ%-%x%x%x%x%x%x%x%x$" ~= nil
    or id:match "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ%-%x%x%x%x%x%x%x%x%-%d+$" ~= nil)
end

function M.release_id(time, hash)
  return os.date("!%Y%m%dT%H%M%SZ", time) .. "-" .. hash:sub(1, 8)
end

local function split(path)
  local parts = {}
  for p in path:gmatch "[^/]+" do parts[#parts + 1] = p end
  return parts
end

-- Where a link at rel (inside root) leads, following links inside root;
-- nil when it leaves root (absolute target, too many "..", a loop).
local function inside(root, rel, depth)
  if depth > 40 then return nil end
  local st = file.stat(root .. "/" .. rel)
  local target = st and st.target or file.readlink(root .. "/" .. rel)
  if not target or target:sub(1, 1) == "/" then return nil end
  local stack = split(rel)
  stack[#stack] = nil
  for _, c in ipairs(split(target)) do
    if c == ".." then
      if #stack == 0 then return nil end
      stack[#stack] = nil
    elseif c ~= "." then
      stack[#stack + 1] = c
      local here = table.concat(stack, "/")
      local s = file.stat(root .. "/" .. here)
      if s and s.type == "link" then
        local r = inside(root, here, depth + 1)
        if not r then return nil end
        stack = split(r)
      end
    end
  end
  return table.concat(stack, "/")
end

local function bad_name(rel)
  return rel:find "[%c]" ~= nil
end

-- tree.scan(dir) -> { entries = { {kind = "d"|"f"|"l", path, mode, size, sha, target} },
--   by_path, files = n, bytes = n } | nil, err (each err names the path)
function M.scan(dir)
  local st = file.stat(dir, true)
  if not st then return nil, dir .. ": no such directory" end
  if st.type ~= "directory" then return nil, dir .. ": not a directory" end
  local t = { entries = {}, by_path = {}, files = 0, bytes = 0 }
  local function add(e)
    t.entries[#t.entries + 1] = e
    t.by_path[e.path] = e
  end
  local function walk(rel)
    local names, lerr = file.list(rel == "" and dir or (dir .. "/" .. rel))
    if not names then return nil, lerr end
    for _, n in ipairs(names) do
      local r = rel == "" and n or (rel .. "/" .. n)
      if bad_name(r) then return nil, dir .. "/" .. r .. ": a name with a control character (newline, tab): rename it" end
      if rel == "" and n:match "^%.phanes%-" then return nil, dir .. "/" .. r .. ": names starting with .phanes- are phanes' own: rename it" end
      local s, serr = file.stat(dir .. "/" .. r)
      if not s then return nil, serr end
      if s.type == "directory" then
        add { kind = "d", path = r, mode = s.mode }
        local ok, err = walk(r)
        if not ok then return nil, err end
      elseif s.type == "file" then
        local sha, herr = file.sha256_file(dir .. "/" .. r)
        if not sha then return nil, herr end
        add { kind = "f", path = r, mode = (s.mode & 73) ~= 0 and 493 or 420, size = s.size, sha = sha }
        t.files, t.bytes = t.files + 1, t.bytes + s.size
      elseif s.type == "link" then
        local target = s.target or file.readlink(dir .. "/" .. r)
        if not target or bad_name(target) or not inside(dir, r, 0) then
          return nil, string.format("%s/%s: a symlink pointing outside the directory (-> %s): copy what it points to into %s instead",
            dir, r, tostring(target), dir)
        end
        add { kind = "l", path = r, target = target }
      else
        return nil, dir .. "/" .. r .. ": not a file, directory or symlink (a socket or device?): remove it"
      end
    end
    return true
  end
  local ok, err = walk("")
  if not ok then return nil, err end
  if t.files == 0 then return nil, dir .. ": empty (no file to deploy)" end
  return t
end

-- The manifest: one line per entry, sorted by path, tab separated.
--   f <mode octal> <size> <sha256> <path> | d <path> | l <target> <path>
function M.text(entries)
  local lines, sorted = {}, {}
  for i, e in ipairs(entries) do sorted[i] = e end
  table.sort(sorted, function(a, b) return a.path < b.path end)
  for _, e in ipairs(sorted) do
    if e.kind == "f" then lines[#lines + 1] = string.format("f\t%o\t%d\t%s\t%s", e.mode, e.size, e.sha, e.path)
    elseif e.kind == "d" then lines[#lines + 1] = "d\t" .. e.path
    else lines[#lines + 1] = "l\t" .. e.target .. "\t" .. e.path end
  end
  return table.concat(lines, "\n") .. (#lines > 0 and "\n" or "")
end

-- tree.parse(text) -> { [path] = entry } (lines it cannot read are skipped)
function M.parse(text)
  local out = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local mode, size, sha, path = line:match "^f\t([0-7]+)\t(%d+)\t(%x+)\t(.+)$"
    if mode then
      out[path] = { kind = "f", path = path, mode = tonumber(mode, 8), size = tonumber(size), sha = sha }
    else
      local d = line:match "^d\t(.+)$"
      if d then out[d] = { kind = "d", path = d }
      else
        local target, p = line:match "^l\t([^\t]+)\t(.+)$"
        if target then out[p] = { kind = "l", path = p, target = target } end
      end
    end
  end
  return out
end

-- tree.diff(old_by_path, new_entries) -> { upload = {entries}, link = {paths},
--   bytes = upload size }: a file is linked when the old release has it
-- with the same content and mode, else uploaded.
function M.diff(old, entries)
  local d = { upload = {}, link = {}, bytes = 0 }
  for _, e in ipairs(entries) do
    if e.kind == "f" then
      local o = old[e.path]
      if o and o.kind == "f" and o.sha == e.sha and o.mode == e.mode then
        d.link[#d.link + 1] = e.path
      else
        d.upload[#d.upload + 1] = e
        d.bytes = d.bytes + e.size
      end
    end
  end
  return d
end

local function octal(n, width)
  return string.format("%0" .. (width - 1) .. "o", n) .. "\0"
end

local function pad(s, n) return s .. string.rep("\0", n - #s) end

local function header(name, size, mode, mtime, kind, link)
  local prefix = ""
  if #name > 100 then
    local cut = name:sub(1, 155):match "^(.*)/"
    if not cut or #name - #cut - 1 > 100 then return nil, name .. ": path too long to deploy (tar: 255 bytes)" end
    prefix, name = cut, name:sub(#cut + 2)
  end
  if link and #link > 100 then return nil, name .. ": symlink target too long to deploy (100 bytes)" end
  local h = pad(name, 100) .. octal(mode, 8) .. octal(0, 8) .. octal(0, 8) .. octal(size, 12)
    .. octal(mtime, 12) .. "        " .. kind .. pad(link or "", 100) .. "ustar\0" .. "00"
    .. pad("", 32) .. pad("", 32) .. octal(0, 8) .. octal(0, 8) .. pad(prefix, 155) .. pad("", 12)
  local sum = 0
  for i = 1, #h do sum = sum + h:byte(i) end
  return h:sub(1, 148) .. string.format("%06o\0 ", sum) .. h:sub(157)
end

-- tree.tar(dir, t, d, extra) -> bytes | nil, err: every directory and
-- symlink of the tree, the files of d.upload (read from dir), then the
-- extra members { {name, data} } (the link list, the manifest).
function M.tar(dir, t, d, extra)
  local parts, now = {}, os.time()
  local function put(name, data, mode, kind, link)
    local h, err = header(name, #data, mode, now, kind, link)
    if not h then return nil, err end
    parts[#parts + 1] = h
    parts[#parts + 1] = data
    parts[#parts + 1] = string.rep("\0", (512 - #data % 512) % 512)
    return true
  end
  for _, e in ipairs(t.entries) do
    local ok, err = true, nil
    if e.kind == "d" then ok, err = put(e.path .. "/", "", 493, "5")
    elseif e.kind == "l" then ok, err = put(e.path, "", 511, "2", e.target) end
    if not ok then return nil, err end
  end
  for _, e in ipairs(d.upload) do
    local data, rerr = file.read(dir .. "/" .. e.path)
    if not data then return nil, rerr end
    if file.sha256(data) ~= e.sha then return nil, dir .. "/" .. e.path .. ": changed while deploying; try again" end
    local ok, err = put(e.path, data, e.mode, "0")
    if not ok then return nil, err end
  end
  for _, x in ipairs(extra or {}) do
    local ok, err = put(x.name, x.data, 420, "0")
    if not ok then return nil, err end
  end
  parts[#parts + 1] = string.rep("\0", 1024)
  return table.concat(parts)
end

return M
