-- cli/exit.lua: phanes' exit codes, one name each; every `return CODE`
-- and os.exit in lua/ names one of these (no literal 2 or 3).
--
--   local EXIT = require "phanes.cli.exit"
--   if not cfg then return EXIT.usage end
local M = {
  ok = 0,            -- done
  failed = 1,        -- a module (or, with several hosts, a host) failed
  usage = 2,         -- usage or config error: nothing ran
  connect = 3,       -- connection, authentication or sudo failure (remote)
  drift = 4,         -- changes made or pending (only with --detailed-exitcode)
  internal = 70,     -- a bug: phanes or a module it loaded raised an error
  locked = 75,       -- another phanes run holds the state file's lock
  interrupted = 130, -- Ctrl-C (SIGINT) or SIGTERM
  none = 4,          -- deploy: nothing to list or roll back to
}

-- The help screens' line, in code order.
M.SUMMARY = "0 ok, 1 a module failed, 2 usage or config error, 3 connection failure, "
  .. "4 changes (--detailed-exitcode), 70 internal error, 75 state file locked by another run, 130 interrupted"

return M
