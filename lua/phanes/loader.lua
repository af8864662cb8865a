-- loader.lua: the search path, and the files found on it (phanes.loader).
-- boot.lua runs the binary's copy with the --path values (as
-- phanes.cli.options parsed them) and phanes.trust, before anything on
-- disk is read.
--
-- Search path, in order:
--   --path DIR (repeatable, or DIR:DIR), then PHANES_PATH: everything,
--     the engine (lua/phanes/*) included. Overriding the runner is a
--     feature (it is Lua users may edit), so it is allowed, but only from a
--     directory named explicitly.
--   ./ (the working directory), then ~/.config/phanes: modules/, profiles/
--     and templates/ only. Never lua/: a directory one happens to stand in,
--     or a config directory, must not replace the engine without a word.
--   the tree embedded in the binary.
-- As root, every file on disk and every directory above it must pass
-- phanes.trust (OpenSSH's StrictModes): loader.audit() before anything
-- runs, and loader.find() again for each file it reads.
local paths, trust = ...
local embedded = require "phanes.embedded"
-- The primitives as they are now: specs (and modules) may replace fields
-- of phanes.file later; what the loader reads must not change with them.
local file = {}
for k, v in pairs(require "phanes.file") do file[k] = v end
-- what a path is, following links (no passwd lookup, unlike file.stat)
local mode_of = require("lfs").attributes
local function exists(path) return mode_of(path, "mode") ~= nil end
-- What a directory on the search path serves: "all", or the user's own
-- modules, profiles and templates.
local USER_TOPS = { "modules", "profiles", "templates" }
local ALL_TOPS = { "modules", "profiles", "templates", "lua" }

local function search_dirs(paths)
  local dirs, kind = {}, {}
  local function add(dir, from, engine)
    if dir == "" or kind[dir] then return end
    dirs[#dirs + 1] = dir
    kind[dir] = { from = from, engine = engine }
  end
  local function split(s, from)
    for dir in s:gmatch "[^:]+" do add(dir, from, true) end
  end
  for _, v in ipairs(paths) do split(v, "--path") end
  split(os.getenv "PHANES_PATH" or "", "PHANES_PATH")
  add(".", "the working directory", false)
  local home = os.getenv "HOME"
  if home then add(home .. "/.config/phanes", "~/.config/phanes", false) end
  return dirs, kind
end

local loader = { version = embedded.version }
-- loader.dirs: the directories, in order (specs may insert their own);
-- loader.kind[dir] = { from, engine } for those the command line, the
-- environment and the defaults gave. loader.strict: the trust rule applies.
loader.dirs, loader.kind = search_dirs(paths)
loader.strict = trust.active()
-- Who may own what is loaded, and the directories already found good (a
-- good directory stays good: only its trusted owner or root can change it,
-- or move it, its parent being good too).
local trusted = { uids = trust.uids(), seen = {} }
local function trust_opts(from) return { uids = trusted.uids, seen = trusted.seen, from = from } end

local function tops(dir)
  local k = loader.kind[dir]
  return (k == nil or k.engine) and ALL_TOPS or USER_TOPS
end

local function serves(dir, rel)
  local top = rel:match "^([^/]+)/"
  for _, t in ipairs(tops(dir)) do
    if t == top then return true end
  end
  return false
end

-- loader.find("modules/redis.lua") -> text, origin ("embedded" or a path)
-- | nil, err (a file that cannot be read, or refused as root).
function loader.find(rel)
  for _, dir in ipairs(loader.dirs) do
    local path = dir .. "/" .. rel
    if serves(dir, rel) and exists(path) then
      local src = path
      if loader.strict and loader.kind[dir] then
        local real, err = trust.check(path, trust_opts(loader.kind[dir].from))
        if not real then return nil, err end
        src = real
      end
      local text, err = file.read(src)
      if not text then return nil, path .. ": " .. tostring(err) end
      return text, path
    end
  end
  local text = embedded.get(rel)
  if text then return text, "embedded" end
  return nil
end

-- loader.read(path) -> text | nil, err, missing: a Lua file named on the
-- command line (`phanes apply ./mine.lua`), under the same rule as the
-- search path; missing is true when there is no such file.
function loader.read(path)
  if not exists(path) then return nil, path .. ": no such file", true end
  local src = path
  if loader.strict then
    local real, err = trust.check(path, trust_opts())
    if not real then return nil, err end
    src = real
  end
  return file.read(src)
end

-- loader.audit() -> true | nil, err: as root, every directory of the
-- search path that serves something, and all below it, pass phanes.trust.
-- A directory named with --path/PHANES_PATH is checked itself too.
function loader.audit()
  for _, dir in ipairs(loader.dirs) do
    local k = loader.kind[dir]
    if k and exists(dir) then
      local opts = trust_opts(k.from)
      if k.engine then
        local ok, err = trust.check(dir, opts)
        if not ok then return nil, err end
      end
      for _, top in ipairs(tops(dir)) do
        local sub = dir .. "/" .. top
        if exists(sub) then
          local ok, err = trust.tree(sub, opts)
          if not ok then return nil, err end
        end
      end
    end
  end
  return true
end

-- loader.disk_files(prefix) -> { {name = rel, path = path}, ... }, sorted:
-- every file under prefix ("templates/", "lua/") found on disk on the
-- search path, the one that wins for each name.
function loader.disk_files(prefix)
  local seen, out = {}, {}
  local function walk(dir, rel)
    local path = dir .. "/" .. rel
    local mode = mode_of(path, "mode")
    if mode == "directory" and require("lfs").symlinkattributes(path, "mode") == "directory" then
      for _, name in ipairs(file.list(path) or {}) do walk(dir, rel .. "/" .. name) end
    elseif mode == "file" and not seen[rel] then
      seen[rel] = true
      out[#out + 1] = { name = rel, path = path }
    end
  end
  for _, dir in ipairs(loader.dirs) do
    if serves(dir, prefix) then walk(dir, (prefix:gsub("/$", ""))) end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- loader.load(rel) -> chunk, origin; chunknames name real files
function loader.load(rel, env)
  local text, origin = loader.find(rel)
  if not text then return nil, origin or (rel .. ": not found") end
  local name = origin == "embedded" and "@" .. rel or "@" .. origin
  local chunk, err
  if env then chunk, err = load(text, name, "t", env) else chunk, err = load(text, name, "t") end
  if not chunk then return nil, err end
  return chunk, origin
end

-- loader.list("modules/") -> sorted names (relative) from disk and binary
function loader.list(prefix, suffix)
  local seen, names = {}, {}
  local function add(name)
    if (not suffix or name:sub(-#suffix) == suffix) and not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  local lfs = require "lfs"
  for _, dir in ipairs(loader.dirs) do
    local base = dir .. "/" .. prefix
    if serves(dir, prefix) and lfs.attributes(base, "mode") == "directory" then
      for entry in lfs.dir(base) do
        if entry:sub(1, 1) ~= "." and lfs.attributes(base .. entry, "mode") == "file" then
          add(prefix .. entry)
        end
      end
    end
  end
  for _, name in ipairs(embedded.list(prefix)) do
    if not name:sub(#prefix + 1):find "/" then add(name) end
  end
  table.sort(names)
  return names
end

return loader
