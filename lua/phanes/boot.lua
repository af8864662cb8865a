-- boot.lua: the first chunk the binary runs (always the embedded copy).
-- It sets the search path, so that a file on disk wins over the embedded
-- one, then hands argv to phanes.cli. Returns the process exit code.
--
-- Search path: --path DIR (repeatable, or DIR:DIR), PHANES_PATH, ./,
-- ~/.config/phanes, then the tree embedded in the binary.
local argv = ...
local embedded = require "phanes.embedded"

local function split_dirs(s, into)
  for dir in s:gmatch "[^:]+" do into[#into + 1] = dir end
end

local function search_dirs(args)
  local dirs = {}
  for i = 1, #args do
    local v = args[i]:match "^%-%-path=(.*)$"
    if v then split_dirs(v, dirs)
    elseif args[i] == "--path" and args[i + 1] then split_dirs(args[i + 1], dirs) end
  end
  split_dirs(os.getenv "PHANES_PATH" or "", dirs)
  dirs[#dirs + 1] = "."
  local home = os.getenv "HOME"
  if home then dirs[#dirs + 1] = home .. "/.config/phanes" end
  return dirs
end

local loader = { dirs = search_dirs(argv), version = embedded.version }

-- loader.find("modules/redis.lua") -> text, origin ("embedded" or a path)
function loader.find(rel)
  for _, dir in ipairs(loader.dirs) do
    local path = dir .. "/" .. rel
    local f = io.open(path, "rb")
    if f then
      local text, err = f:read "a"
      f:close()
      if text then return text, path end
      if err then return nil, path .. ": " .. err end
    end
  end
  local text = embedded.get(rel)
  if text then return text, "embedded" end
  return nil
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
    if lfs.attributes(base, "mode") == "directory" then
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

-- require "phanes.x.y" looks for lua/phanes/x/y.lua on the search path.
local function searcher(name)
  if not name:match "^phanes%." and name ~= "phanes" then return nil end
  local rel = "lua/" .. name:gsub("%.", "/") .. ".lua"
  local chunk, origin = loader.load(rel)
  if not chunk then
    if origin and not origin:match ": not found$" then error(origin, 0) end
    return "\n\tno file '" .. rel .. "' on the phanes search path"
  end
  return chunk, origin
end

package.loaded["phanes.loader"] = loader
table.insert(package.searchers, 2, searcher)

-- `phanes lua SCRIPT [ARGS]`: run a Lua script with the primitives at hand
-- (how the specs run: `phanes lua /usr/bin/busted`). Not advertised.
if argv[1] == "lua" and argv[2] then
  local script = {}
  for i = 2, #argv do script[i - 2] = argv[i] end
  _G.arg = script
  local chunk = assert(loadfile(argv[2]))
  chunk(table.unpack(script))
  return 0
end

-- Everything else is the CLI's, under one protected call. lfs sets a
-- global of its own when opened, so it is opened before globals go strict.
require "lfs"
setmetatable(_G, {
  __newindex = function(_, k) error("assignment to undeclared global '" .. tostring(k) .. "'", 2) end,
  __index = function(_, k) error("undeclared global '" .. tostring(k) .. "'", 2) end,
})
local ok, code = xpcall(function()
  return require("phanes.cli").main(argv)
end, debug.traceback)
if not ok then
  io.stderr:write("phanes: internal error: ", tostring(code), "\n",
    "This is a bug in phanes or in a module it loaded; the traceback names the file.\n")
  return 70
end
return code or 0
