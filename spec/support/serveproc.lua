-- spec/support/serveproc.lua: `phanes serve` as a process of its own in a
-- spec's home (spec/support/runcli.lua at_home), and curl as its client.
--
--   local serveproc = require "spec.support.serveproc"
--   local srv = serveproc.start(home, "--parallel 2 --config " .. q(cfg))
--   local code, doc, raw = srv.curl("GET", "/api/health")
--   srv.log(), srv.exited(), srv.token, srv.pid; srv.stop() in teardown
local runcli = require "spec.support.runcli"

local M = {}

local q = runcli.quote

local read = runcli.read

-- start(home, args) -> the server started with `serve --listen
-- 127.0.0.1:0 ARGS` (a shell fragment); the kernel picks a free port, the
-- server says which in home/serve.log. Its exit code goes to home/exit.
function M.start(home, args)
  local srv = { home = home }
  local cmd = "(" .. runcli.at_home_command(home, "serve --listen 127.0.0.1:0 " .. args) .. " >"
    .. q(home .. "/serve.log") .. " 2>&1 </dev/null; echo $? >" .. q(home .. "/exit") .. ") >/dev/null 2>&1 & echo $!"
  -- the subshell's pid: the server is its child
  srv.pid = runcli.shell(cmd):match "%d+"
  function srv.log() return read(home .. "/serve.log") or "" end
  -- srv.exited() -> the server's exit code and a newline, nil while it runs
  function srv.exited() return read(home .. "/exit") end
  local port
  for _ = 1, 300 do
    port = srv.log():match "listening on http://127%.0%.0%.1:(%d+)/"
    if port then break end
    os.execute "sleep 0.1"
  end
  assert(port, "the server did not start:\n" .. srv.log())
  srv.base = "http://127.0.0.1:" .. port
  srv.token = read(home .. "/.config/phanes/serve.token"):match "%S+"

  -- curl(method, path[, opts]) -> HTTP status, the body decoded when it is
  -- JSON, the raw body; opts: token, body, headers (a list), max_time
  function srv.curl(method, path, opts)
    opts = opts or {}
    local words = { "curl", "-s", "--max-time", tostring(opts.max_time or 600), "-X", method, "-w", "'\\n%{http_code}'" }
    if opts.token then words[#words + 1] = "-H " .. q("Authorization: Bearer " .. opts.token) end
    if opts.body then
      words[#words + 1] = "--data-binary @" .. q(home .. "/body")
      runcli.write(home .. "/body", opts.body)
    end
    for _, h in ipairs(opts.headers or {}) do words[#words + 1] = "-H " .. q(h) end
    words[#words + 1] = q(srv.base .. path)
    local out = runcli.shell(table.concat(words, " "))
    local body, code = out:match "^(.*)\n(%d%d%d)$"
    assert(code, "curl failed: " .. out)
    return tonumber(code), require("phanes.json").decode(body), body
  end

  -- stop(): SIGTERM, unless it exited already
  function srv.stop()
    if not srv.exited() then os.execute("pkill -TERM -P " .. srv.pid .. " 2>/dev/null") end
  end
  return srv
end

return M
