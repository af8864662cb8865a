-- boot.lua: the first chunk the binary runs (always the embedded copy).
-- It sets the search path (phanes.loader), so that a file on disk wins over
-- the embedded one, checks it as root (phanes.trust: exit 2 before anything
-- else runs when a file or directory on it fails), then hands argv to
-- phanes.cli. Returns the process exit code.
local argv = ...
local embedded = require "phanes.embedded"
local file = require "phanes.file"

-- The rule and the loader always come from the binary: --path may replace
-- the engine, but only after its files passed the rule.
local function builtin(name, ...)
  local rel = "lua/phanes/" .. name .. ".lua"
  return assert(load(embedded.get(rel), "@" .. rel, "t"))(...)
end
local trust = builtin "trust"
package.loaded["phanes.trust"] = trust
local loader = builtin("loader", argv, trust)
package.loaded["phanes.loader"] = loader

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

table.insert(package.searchers, 2, searcher)

-- As root, nothing on disk is used unless all of it passes the rule.
if loader.strict then
  local ok, err = loader.audit()
  if not ok then
    io.stderr:write("phanes: ", err, "\n")
    return 2
  end
end

-- `phanes lua SCRIPT [ARGS]`: run a Lua script with the primitives and the
-- phanes modules at hand (how the specs run: `phanes lua /usr/bin/busted`).
-- As root the script passes the same rule as everything else loaded.
-- SCRIPT "-" or /dev/stdin reads standard input: what the invoker pipes in
-- is theirs, as a command line is (there is no path to check).
if argv[1] == "lua" and argv[2] then
  local path = argv[2]
  local from_stdin = path == "-" or path == "/dev/stdin"
  if loader.strict and not from_stdin then
    local real, err = trust.check(path)
    if not real then
      io.stderr:write("phanes lua: ", err, "\n")
      return 2
    end
    path = real
  end
  local text, err
  if from_stdin then text, err = io.stdin:read "a" else text, err = file.read(path) end
  if not text then
    io.stderr:write("phanes lua: ", tostring(err), "\n")
    return 2
  end
  local chunk, lerr = load((text:gsub("^#[^\n]*", "", 1)), "@" .. argv[2], "t")
  if not chunk then
    io.stderr:write("phanes lua: ", lerr, "\n")
    return 2
  end
  local script = {}
  for i = 2, #argv do script[i - 2] = argv[i] end
  _G.arg = script
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
