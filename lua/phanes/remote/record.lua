-- remote/record.lua: the controller's record of each remote run, per host:
-- ~/.local/state/phanes/hosts/<host>/last.json (the last run's manifest:
-- status, exit code, reason, times, modules and their outcome, the
-- target's OS/arch) and runs/<time>.log (what the run printed; the remote
-- side already masks secrets). The 30 newest logs are kept.
--
--   record.write("web1", { status = "ok", exit_code = 0, ... }, { "line", ... })
--   local last = require("phanes.remote.util").read_record("web1")
local util = require "phanes.remote.util"
local M = {}

M.KEEP = 30

local function prune(dir)
  local file = require "phanes.file"
  local names = file.list(dir) or {}
  local logs = {}
  for _, n in ipairs(names) do
    if n:match "%.log$" then logs[#logs + 1] = n end
  end
  table.sort(logs)
  for i = 1, #logs - M.KEEP do file.remove(dir .. "/" .. logs[i]) end
end

-- record.write(name, rec, log_lines) -> true | nil, err
function M.write(name, rec, log)
  local file, json = require "phanes.file", require "phanes.json"
  local dir = util.host_dir(name)
  local ok, err = util.mkdir_p(dir)
  if ok then ok, err = util.mkdir_p(dir .. "/runs") end
  if not ok then return nil, err end
  -- records: not worth waiting for the disk at the end of every run (a
  -- crash may lose the last one; the next run uploads the binary again)
  local opts = { mode = tonumber("0600", 8), sync = false }
  local logname = dir .. "/runs/" .. os.date("!%Y%m%dT%H%M%SZ") .. string.format("-%04d", math.random(0, 9999)) .. ".log"
  ok, err = file.write(logname, table.concat(log or {}, "\n") .. "\n", opts)
  if not ok then return nil, err end
  rec.log = logname
  rec.phanes_version = rec.phanes_version or require("phanes.loader").version
  ok, err = file.write(dir .. "/last.json", json.encode(rec, { pretty = true }) .. "\n", opts)
  if not ok then return nil, err end
  prune(dir .. "/runs")
  return true
end

return M
