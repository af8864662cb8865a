-- boot.lua: the first chunk the binary runs (always the embedded copy).
-- It sets the search path (phanes.loader), so that a file on disk wins over
-- the embedded one, checks it as root (phanes.trust: exit 2 before anything
-- else runs when a file or directory on it fails), then hands argv, parsed
-- by phanes.cli.options, to phanes.cli. Returns the process exit code.
local argv = ...
local embedded = require "phanes.embedded"
local file = require "phanes.file"

-- The rule and the loader always come from the binary: --path may replace
-- the engine, but only after its files passed the rule.
local function builtin(name, ...)
  local rel = "lua/phanes/" .. name .. ".lua"
  return assert(load(embedded.get(rel), "@" .. rel, "t"))(...)
end
local EXIT = builtin "cli/exit"
local trust = builtin "trust"
package.loaded["phanes.trust"] = trust
-- argv parsed once, by the declaration of every option and command (a
-- wrong line is parsed again by phanes.cli, to say what is wrong).
local options = builtin "cli/options"
package.loaded["phanes.cli.options"], package.loaded["phanes.cli.exit"] = options, EXIT
local parsed, _, _, _, partial = options.parse(argv)
local loader = builtin("loader", (parsed or partial).opts.path or {}, trust)
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
    return EXIT.usage
  end
end

-- `phanes lua SCRIPT [ARGS]`: run a Lua script with the primitives and the
-- phanes modules at hand (how the specs run: `phanes lua /usr/bin/busted`).
-- As root the script passes the same rule as everything else loaded.
-- SCRIPT "-" or /dev/stdin reads standard input: what the invoker pipes in
-- is theirs, as a command line is (there is no path to check).
if parsed and parsed.cmd == "lua" and parsed.rest[1] then
  local path = parsed.rest[1]
  local from_stdin = path == "-" or path == "/dev/stdin"
  if loader.strict and not from_stdin then
    local real, err = trust.check(path)
    if not real then
      io.stderr:write("phanes lua: ", err, "\n")
      return EXIT.usage
    end
    path = real
  end
  local text, err
  if from_stdin then text, err = io.stdin:read "a" else text, err = file.read(path) end
  if not text then
    io.stderr:write("phanes lua: ", tostring(err), "\n")
    return EXIT.usage
  end
  local chunk, lerr = load((text:gsub("^#[^\n]*", "", 1)), "@" .. parsed.rest[1], "t")
  if not chunk then
    io.stderr:write("phanes lua: ", lerr, "\n")
    return EXIT.usage
  end
  local script = {}
  for i, a in ipairs(parsed.rest) do script[i - 1] = a end
  _G.arg = script
  chunk(table.unpack(script))
  return EXIT.ok
end

-- Everything else is the CLI's, under one protected call. lfs sets a
-- global of its own when opened, so it is opened before globals go strict.
require "lfs"
setmetatable(_G, {
  __newindex = function(_, k) error("assignment to undeclared global '" .. tostring(k) .. "'", 2) end,
  __index = function(_, k) error("undeclared global '" .. tostring(k) .. "'", 2) end,
})
local ok, code = xpcall(function()
  return require("phanes.cli").main(argv, parsed)
end, debug.traceback)
if not ok then
  io.stderr:write("phanes: internal error: ", tostring(code), "\n",
    "This is a bug in phanes or in a module it loaded; the traceback names the file.\n")
  return EXIT.internal
end
return code or EXIT.ok
