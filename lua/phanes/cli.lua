-- cli.lua: command-line entry (skeleton; the full CLI replaces this).
local loader = require "phanes.loader"
local M = {}

function M.main(argv)
  local cmd = argv[1]
  if cmd == "version" or cmd == "--version" then
    io.stdout:write("phanes ", loader.version, "\n")
    return 0
  end
  io.stderr:write("usage: phanes version\n")
  return 2
end

return M
