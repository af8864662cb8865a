-- remote/run.lua: one host, start to end: connect, probe (one round trip
-- that also unpacks the run's files), upload the binary when it is not
-- cached, run it (via sudo when not root) with its output streamed back,
-- fetch its JSON report, record the run locally.
--
--   local code = require("phanes.remote.run").run(target, opts, args, files)
local util = require "phanes.remote.util"
local M = {}

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

-- The probe: arch, uid, sudo, cached binary, OS, and a private run
-- directory (the run's files are untarred into it from stdin).
function M.probe_script(sha, with_files)
  return table.concat({
    "umask 077",
    'C="$HOME/.cache/phanes"; mkdir -p "$C" && chmod 700 "$C" || exit 90',
    'echo "cache=$C"',
    'echo "arch=$(uname -m)"',
    'echo "uid=$(id -u)"',
    'if [ "$(id -u)" = 0 ]; then echo sudo=root; elif ! command -v sudo >/dev/null 2>&1; then echo sudo=missing;'
      .. ' elif sudo -n true 2>/dev/null; then echo sudo=nopasswd; else echo sudo=password; fi',
    'B="$C/phanes-' .. sha .. '"',
    -- The cached name only ever appears by a rename after its sha256 was
    -- checked (upload_binary), in a 0700 directory of the login user: its
    -- presence is the check, and a no-op run does not hash 5 MB again.
    'if [ -f "$B" ] && [ -x "$B" ]; then echo "cached=' .. sha .. '"; fi',
    '(. /etc/os-release 2>/dev/null && echo "os=$PRETTY_NAME")',
    'find "$C" -maxdepth 1 -name "run.*" -mmin +1440 -exec rm -rf {} + 2>/dev/null',
    'D=$(mktemp -d "$C/run.XXXXXX") || exit 91',
    'echo "dir=$D"',
    with_files and 'tar -x -C "$D" -f - || exit 92' or "",
  }, "\n")
end

function M.parse_probe(text)
  local p = {}
  for k, v in text:gmatch "([%w_]+)=([^\n]*)" do p[k] = v end
  return p
end

local function local_arch()
  local ok, sys = pcall(require, "phanes.sys")
  if ok and sys.uname then return sys.uname().machine end
  local f = io.popen("uname -m")
  local a = f and f:read "l"
  if f then f:close() end
  return a
end

-- Upload to a temporary name, check its sha256 there, then rename: a
-- half-sent binary is never run. Returns bytes sent | nil, err.
local function upload_binary(s, exe, sha, cache)
  local tmp = string.format("%s/phanes-%s.tmp%d", cache, sha, math.random(1, 1e9))
  local ok, e = s:upload({ path = exe }, tmp, tonumber("0700", 8))
  if not ok then return nil, "uploading the phanes binary: " .. e end
  local q = util.shquote
  local res, e2 = s:exec(table.concat({
    "cd " .. q(cache) .. " || exit 1",
    'if [ "$(sha256sum ' .. q(tmp) .. ' | cut -c1-64)" != ' .. sha .. " ]; then rm -f " .. q(tmp) .. "; exit 2; fi",
    "chmod 700 " .. q(tmp) .. " && mv -f " .. q(tmp) .. " phanes-" .. sha .. " || exit 3",
    "ls -t phanes-* 2>/dev/null | grep -v '\\.tmp' | tail -n +4 | xargs rm -f",
  }, "\n"))
  if not res then return nil, "checking the uploaded binary: " .. e2 end
  if res.code == 2 then return nil, "the uploaded binary's sha256 does not match (transfer corrupted?); try again" end
  if res.code ~= 0 then return nil, "installing the uploaded binary: " .. res.stderr end
  local f = io.open(exe, "rb")
  local size = f and f:seek "end" or 0
  if f then f:close() end
  return size
end

local function is_apply(args)
  for _, a in ipairs(args) do
    if type(a) == "string" then
      if a == "apply" or a == "--profile" or a == "--modules" or a:match "^%-%-profile=" or a:match "^%-%-modules=" then return true end
      if not a:match "^%-" then return false end
    end
  end
  return false
end

-- The command line the target runs. The inner shell prints its pid first
-- (the process Ctrl-C signals), then becomes phanes.
local function run_command(p, bin, args, files, mode, color, report)
  local q = util.shquote
  local words = { q(bin) }
  for _, a in ipairs(args) do
    words[#words + 1] = type(a) == "table" and q(p.dir .. "/" .. a.run_file) or q(a)
  end
  for _, f in ipairs(files) do
    if f.name:match "^path/" then words[#words + 1] = "--path " .. q(p.dir .. "/path") break end
  end
  if color then words[#words + 1] = "--color=always" end
  if report then words[#words + 1] = "--report " .. q(p.dir .. "/report.json") end
  -- cwd is the run directory: the target user's ./ must not join the search path
  local inner = "cd " .. q(p.dir) .. ' && echo "PHANES-PID $$" && exec ' .. table.concat(words, " ")
  if mode == "root" then return inner end
  return "exec sudo " .. (mode == "password" and "-S -p ''" or "-n") .. " -- sh -c " .. q(inner)
end

-- Output handling: drop the pid line, show remote paths as local ones,
-- keep a copy for the run log. Errors before the pid line (sudo's) are held.
local function output(t, p, files, log)
  local st = { held = {} }
  local swaps = {}
  for _, f in ipairs(files) do swaps[#swaps + 1] = { p.dir .. "/" .. f.name, f.local_path or f.name } end
  swaps[#swaps + 1] = { p.dir .. "/path/", "" }
  local function fix(line)
    for _, sw in ipairs(swaps) do
      local i = line:find(sw[1], 1, true)
      while i do
        line = line:sub(1, i - 1) .. sw[2] .. line:sub(i + #sw[1])
        i = line:find(sw[1], i + #sw[2], true)
      end
    end
    return line
  end
  st.out = util.liner(function(line)
    if not st.pid then
      local pid = line:match "^PHANES%-PID (%d+)$"
      if pid then
        st.pid = pid
        return
      end
    end
    line = fix(line)
    log[#log + 1] = line
    io.stdout:write(line, "\n")
    io.stdout:flush()
  end)
  st.err = util.liner(function(line)
    if not st.pid then st.held[#st.held + 1] = line return end
    line = fix(line)
    log[#log + 1] = line
    io.stderr:write(line, "\n")
  end)
  return st
end

local function sudo_password(t, o, user)
  if o.password then return o.password end
  if util.isatty(0) and not os.getenv "PHANES_NO_PROMPT" then
    local pw = require("phanes.sys").getpass(string.format("[sudo] password for %s@%s: ", user, t.name))
    if pw and pw ~= "" then o.password = pw return pw end
  end
  return nil
end

local function summarize(rec, report)
  if type(report) ~= "table" then return end
  rec.report_status = report.status
  rec.counts = report.counts
  rec.modules = {}
  for _, m in ipairs(report.modules or {}) do
    rec.modules[#rec.modules + 1] = { name = m.name, status = m.status, changed = m.changed, reason = m.reason, error = m.error }
  end
  local c = report.counts or {}
  rec.changed, rec.failed = 0, c.failed or 0
  for _, m in ipairs(report.modules or {}) do
    if (m.changed or 0) > 0 or m.status == "changed" then rec.changed = rec.changed + 1 end
  end
end

local function interrupt_tick(s, st, mode, pw, name)
  local ok, sys = pcall(require, "phanes.sys")
  if not ok or not sys.interrupted then return nil end
  local handled = 0
  return function()
    local n = sys.interrupted()
    if n <= handled then return end
    handled = n
    if n >= 2 or not st.pid then error("interrupted", 0) end
    err(name .. ": interrupted: the remote run stops after its current step (Ctrl-C again to disconnect)")
    local cmd = "kill -INT " .. st.pid
    if mode ~= "root" then cmd = (mode == "password" and "sudo -S -p '' " or "sudo -n ") .. cmd end
    s:exec(cmd, { stdin = mode == "password" and (pw .. "\n") or nil })
  end
end

-- Run the remote phanes and turn what happened into an exit code.
local function execute(s, t, o, rec, ctx)
  local p, mode, pw = ctx.probe, ctx.mode, ctx.pw
  local color = util.isatty(1) or os.getenv "PHANES_REMOTE_COLOR" == "1"
  local cmd = run_command(p, ctx.bin, ctx.args, ctx.files, mode, color, is_apply(ctx.args))
  local st = output(t, p, ctx.files, ctx.log)
  local tick = interrupt_tick(s, st, mode, pw, t.name)
  local ok, res, e, kind = pcall(s.exec, s, cmd, {
    stdin = mode == "password" and (pw .. "\n") or nil, capture = false, tick = tick,
    stream = function(k, chunk) (k == "stdout" and st.out or st.err).feed(chunk) end,
  })
  st.out.flush()
  st.err.flush()
  if not ok then
    if tostring(res):match "interrupted" then return 130, "interrupted", "interrupted locally; disconnected" end
    error(res, 0)
  end
  if not res then
    return 3, "lost", e .. "\n  the run on " .. t.name .. " may have been cut short; its state file is written atomically:"
      .. " check it with `phanes --remote " .. t.name .. " status`", kind
  end
  local held = table.concat(st.held, "\n")
  if not st.pid then
    if held:find "incorrect password" or held:find "Sorry, try again" then
      return 3, "sudo", "sudo on " .. t.name .. " refused the password for " .. rec.user
    elseif held:find "not in the sudoers" or held:find "not allowed" then
      return 3, "sudo", rec.user .. " may not use sudo on " .. t.name .. ": log in as root or grant sudo"
    end
    if held ~= "" then io.stderr:write(held, "\n") end
    return res.code or 1, "error", "the remote phanes did not start (exit " .. tostring(res.code) .. ")"
  end
  if res.signal then return 1, "failed", "the remote phanes was killed (SIG" .. res.signal .. ")" end
  local status = ({ [0] = "ok", [1] = "failed", [2] = "error", [130] = "interrupted" })[res.code] or "failed"
  return res.code, status
end

local function prepare(s, t, o, rec, files)
  local sys, file = require "phanes.sys", require "phanes.file"
  local exe = sys.exe()
  local sha, serr = file.sha256_file(exe)
  if not sha then return nil, 70, "cannot hash the phanes binary " .. tostring(exe) .. ": " .. tostring(serr) end
  local tarball, terr = nil, nil
  if #files > 0 then
    tarball, terr = util.tar(files)
    if not tarball then return nil, 2, terr end
  end
  local res, e = s:exec(M.probe_script(sha, tarball ~= nil), { stdin = tarball })
  if not res then return nil, 3, e end
  local p = M.parse_probe(res.stdout)
  if res.code ~= 0 or not p.dir then
    return nil, 3, "probing " .. t.name .. " failed (exit " .. tostring(res.code) .. "): " .. res.stderr
  end
  rec.remote = { arch = p.arch, os = p.os, uid = tonumber(p.uid), sudo = p.sudo }
  local arch = local_arch()
  if p.arch ~= arch then
    return nil, 2, string.format("%s is %s but this phanes binary is built for %s: run phanes from an %s machine, or use an %s build of phanes",
      t.name, p.arch, arch, p.arch, p.arch), p
  end
  local mode = p.sudo == "root" and "root" or p.sudo == "nopasswd" and "nopasswd" or p.sudo == "password" and "password"
  if not mode then
    return nil, 3, rec.user .. " on " .. t.name .. " is not root and sudo is not installed: log in as root (--user root)", p
  end
  local pw
  if mode == "password" then
    pw = sudo_password(t, o, rec.user)
    if not pw then
      return nil, 3, "sudo on " .. t.name .. " needs the password of " .. rec.user .. ": give it with --password-env VAR (or run on a terminal)", p
    end
  end
  local bin = p.cache .. "/phanes-" .. sha
  rec.upload = { binary = false, files = #files }
  if p.cached ~= sha then
    local t0 = util.now()
    local size, uerr = upload_binary(s, exe, sha, p.cache)
    if not size then return nil, 3, uerr, p end
    rec.upload.binary, rec.upload.bytes, rec.upload.seconds = true, size, util.now() - t0
  end
  return { probe = p, mode = mode, pw = pw, bin = bin }
end

-- run.run(target, opts, args, files) -> exit code
function M.run(t, o, args, files)
  local record = require "phanes.remote.record"
  local t0 = util.now()
  local rec = { host = t.name, address = t.host, port = t.port or o.port or 22,
    user = t.user or o.user or os.getenv "USER" or "root", started_at = util.iso(), command = {} }
  for _, a in ipairs(args) do rec.command[#rec.command + 1] = type(a) == "table" and a.run_file or a end
  local log = {}
  local function finish(code, status, reason)
    rec.exit_code, rec.status, rec.reason, rec.duration = code, status, reason, util.now() - t0
    if reason then
      err(t.name:find(t.host, 1, true) and reason or (t.name .. ": " .. reason))
      log[#log + 1] = "phanes: " .. reason
    end
    local ok, werr = record.write(t.name, rec, log)
    if not ok then err("cannot record the run of " .. t.name .. ": " .. tostring(werr)) end
    return code
  end
  local s, msg, kind = require("phanes.remote").connect(t, o)
  if not s then
    if kind == "interrupted" then return finish(130, "interrupted", "interrupted while connecting") end
    return finish(3, kind == "auth" and "auth" or kind == "hostkey_changed" and "hostkey changed" or "unreachable", msg)
  end
  rec.user = s:info().user
  local ctx, code, perr, probe = prepare(s, t, o, rec, files)
  if not ctx then
    -- the run directory may hold the config (secrets): do not leave it there
    if probe and probe.dir then s:exec('rm -rf "' .. probe.dir .. '"') end
    s:close()
    return finish(code, code == 3 and "error" or "refused", perr)
  end
  ctx.args, ctx.files, ctx.log = args, files, log
  local okS, sys = pcall(require, "phanes.sys")
  if okS and sys.interrupted and sys.interrupted() > 0 then
    s:exec('rm -rf "' .. ctx.probe.dir .. '"')
    s:close()
    return finish(130, "interrupted", "interrupted before the run started")
  end
  local rcode, status, reason = execute(s, t, o, rec, ctx)
  local gone = status == "lost" or (reason or ""):match "disconnected$"
  if not gone then
    local res = s:exec('cat "' .. ctx.probe.dir .. '/report.json" 2>/dev/null; rm -rf "' .. ctx.probe.dir .. '"')
    if res and res.stdout ~= "" then
      local okj, json = pcall(require, "phanes.json")
      if okj and json.decode then summarize(rec, json.decode(res.stdout)) end
    end
  end
  if status == "ok" and (rec.changed or 0) > 0 then status = "changed" end
  if not gone and (rec.changed or 0) > 0 then require("phanes.remote.hostkeys").update(s, t, o, err) end
  s:close()
  return finish(rcode, status, reason)
end

return M
