-- remote/run.lua: one host, start to end: connect, then ONE exec channel:
-- a prologue as the login user (probe line, arch check, the binary from
-- stdin when this is an upload) that execs, as root (sudo when not root),
-- a script that verifies its own copy of the binary, unpacks the run's
-- files from stdin into a private directory, runs phanes there with its
-- output streamed back and hands the JSON report back in-band. The
-- gzip-compressed binary travels ahead of the payload on that stdin when
-- no record says this binary is in the login user's cache there; when the
-- prologue finds it missing (or root finds it changed), the run starts
-- again on a new channel, bringing it. Record the run locally. The
-- scripts themselves are in remote/script.lua.
--
--   local code = require("phanes.remote.run").run(target, opts, args, files, overrides)
local util = require "phanes.remote.util"
local script = require "phanes.remote.script"
local EXIT = require "phanes.cli.exit"
local M = {}

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

-- A single-host run says each step it waited on and how long it took, on
-- stderr ("web1: connecting to 10.0.0.5:22: 0.3s"); a fleet's children
-- (PHANES_NO_PROMPT) do not, their summary says it.
local function phase(t, what, seconds)
  if os.getenv "PHANES_NO_PROMPT" == "1" then return end
  io.stderr:write(t.name, ": ", what, ": ", require("phanes.engine.output").duration(seconds), "\n")
  io.stderr:flush()
end

-- The shell scripts (remote/script.lua), also under this module's name.
M.probe_script, M.parse_probe = script.probe_script, script.parse_probe
M.prologue, M.parse_probe_line = script.prologue, script.parse_probe_line
M.root_script, M.run_words = script.root_script, script.run_words

local function local_arch() return require("phanes.sys").uname().machine end

local function nonce()
  local t = {}
  for i = 1, 16 do t[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(t)
end

-- Output handling: the pid line, the report between its markers (kept,
-- not shown), remote paths shown as local ones, a copy for the run log
-- (secret values masked). Errors before the pid line (sudo's) are held.
local function output(files, log, mask, tag)
  local st = { held = {}, blanks = 0 }
  local swaps = {}
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
  local function show(stream, line)
    line = mask(fix(line)) -- the target masks its secret fields; the controller, what it resolved from the vault
    log[#log + 1] = line
    stream:write(require("phanes.engine.output").sanitize(line), "\n")
    stream:flush()
  end
  st.out = util.liner(function(line)
    if st.report then
      if line == "PHANES-REPORT-END " .. tag then
        st.report_text, st.report = table.concat(st.report, "\n"), nil
      else
        st.report[#st.report + 1] = line
      end
      return
    end
    if not st.pid then
      local probe = not st.probe and script.parse_probe_line(line, tag)
      if probe then st.probe = probe return end
      local pid, dir = line:match "^PHANES%-PID (%d+) (%S+)$"
      if pid then
        st.pid, st.started = pid, util.now()
        for _, f in ipairs(files) do swaps[#swaps + 1] = { dir .. "/" .. f.name, f.local_path or f.name } end
        swaps[#swaps + 1] = { dir .. "/path/", "" }
        swaps[#swaps + 1] = { " --path " .. dir .. "/path", "" } -- a hint's `phanes check --path` of the run's copy
        -- stderr may overtake the pid line: what it held is the run's
        for _, l in ipairs(st.held) do show(io.stderr, l) end
        st.held = {}
        return
      end
    end
    -- the report's marker follows a newline of its own
    if line == "" then st.blanks = st.blanks + 1 return end
    if line == "PHANES-REPORT " .. tag then
      st.blanks, st.report = math.max(st.blanks - 1, 0), {}
    end
    for _ = 1, st.blanks do show(io.stdout, "") end
    st.blanks = 0
    if not st.report then show(io.stdout, line) end
  end)
  st.err = util.liner(function(line)
    if not st.pid then st.held[#st.held + 1] = line return end
    show(io.stderr, line)
  end)
  function st.flush()
    st.out.flush()
    st.err.flush()
    for _ = 1, st.blanks do show(io.stdout, "") end
    st.blanks = 0
  end
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

-- run.changed_module(rec, name) -> true when the run's report says module
-- name changed something
function M.changed_module(rec, name)
  for _, m in ipairs(rec.modules or {}) do
    if m.name == name and ((m.changed or 0) > 0 or m.status == "changed") then return true end
  end
  return false
end

local function interrupt_tick(s, st, ctx, name)
  local sys = require "phanes.sys"
  local handled = 0
  return function()
    local n = sys.interrupted()
    if n <= handled then return end
    handled = n
    if n >= 2 or not st.pid then error("interrupted", 0) end
    err(name .. ": interrupted: the remote run stops after its current step (Ctrl-C again to disconnect)")
    local mode, pw = ctx.mode, ctx.pw
    local cmd = "kill -INT " .. st.pid
    if mode ~= "root" then cmd = (mode == "password" and "sudo -S -p '' " or "sudo -n ") .. cmd end
    s:exec(cmd, { stdin = mode == "password" and (pw .. "\n") or nil })
  end
end

-- What the held lines (before phanes started) say went wrong.
local function before_start(t, rec, res, held)
  if res.code == 97 then
    local mine = held:match "PHANES%-ERR ([^\n]*)"
    return EXIT.connect, "nostore", t.name .. ": " .. (mine or "cannot store the phanes binary")
  end
  if res.code == 96 then return EXIT.connect, "otherarch", nil end
  if res.code == 95 or res.code == 98 then return EXIT.connect, "error", nil end
  if res.code == 93 or res.code == 94 then
    return res.code, "badbin", res.code == 93 and "the cached phanes binary is missing" or
      "the cached phanes binary does not match its sha256"
  end
  if held:find "a password is required" then
    return EXIT.connect, "needpw", "sudo on " .. t.name .. " needs the password of " .. rec.user
      .. ": give it with --password-env VAR (or run on a terminal)"
  elseif held:find "incorrect password" or held:find "Sorry, try again" then
    return EXIT.connect, "sudo", "sudo on " .. t.name .. " refused the password for " .. rec.user
  elseif held:find "not in the sudoers" or held:find "not allowed" then
    return EXIT.connect, "sudo", rec.user .. " may not use sudo on " .. t.name .. ": log in as root or grant sudo"
  end
  local mine = held:match "PHANES%-ERR ([^\n]*)"
  if mine then return EXIT.connect, "error", t.name .. ": " .. mine end
  if held ~= "" then io.stderr:write(held, "\n") end
  return res.code or EXIT.failed, "error", "the remote phanes did not start (exit " .. tostring(res.code) .. ")"
end

-- Run the remote phanes and turn what happened into an exit code.
-- -> code, status, reason, kind
local function execute(s, t, rec, ctx)
  local color = util.isatty(1) or os.getenv "PHANES_REMOTE_COLOR" == "1"
  local tag = nonce()
  local root = script.root_script { sha = ctx.sha, size = ctx.size, payload = ctx.payload ~= nil,
    words = script.run_words(ctx.args, ctx.files, color, ctx.apply), nonce = tag }
  local gz = ctx.upload and ctx.gz
  local prologue = script.prologue { sha = ctx.sha, arch = ctx.arch, root = root, nonce = tag,
    password = ctx.mode == "password", gz = gz and #gz, check = true, apply = ctx.apply,
    min_glibc = require("phanes.remote.binary").MIN_GLIBC }
  local stdin = (gz or "") .. (ctx.mode == "password" and (ctx.pw .. "\n") or "") .. (ctx.payload or "")
  local st = output(ctx.files, ctx.log, ctx.mask, tag)
  local interrupt = interrupt_tick(s, st, ctx, t.name)
  local function tick()
    ctx.settle()
    return interrupt()
  end
  local t0 = util.now()
  local ok, res, e, kind = pcall(s.exec, s, prologue, {
    stdin = stdin ~= "" and stdin or nil, capture = false, tick = tick,
    stream = function(k, chunk)
      ctx.settle()
      local before, sink = st.started, k == "stdout" and st.out or st.err
      sink.feed(chunk)
      if st.started and not before and gz then
        phase(t, string.format("uploading phanes (%.1f MB)", #gz / 1e6), st.started - t0)
      end
      if st.probe and not ctx.probe then M.probed(rec, ctx, st.probe) end
    end,
  })
  st.flush()
  if st.started then phase(t, "running", util.now() - st.started) end
  if gz and st.started then rec.upload.seconds = st.started - t0 end
  -- root ran this binary: it is in this login user's cache now
  if st.pid then rec.binary_sha256 = ctx.sha end
  ctx.cached_hint = st.probe and st.probe.cached == "yes"
  if st.report_text then
    summarize(rec, require("phanes.engine.output").mask_deep(require("phanes.json").decode(st.report_text), ctx.mask))
  end
  if not ok then
    if tostring(res):match "interrupted" then return EXIT.interrupted, "interrupted", "interrupted locally; disconnected" end
    error(res, 0)
  end
  if not res then
    return EXIT.connect, "lost", e .. "\n  the run on " .. t.name .. " may have been cut short; its state file is written atomically:"
      .. " check it with `phanes --remote " .. t.name .. " status`", kind
  end
  if not st.pid then
    local code, status, reason = before_start(t, rec, res, table.concat(st.held, "\n"))
    if res.code == 95 or res.code == 96 or res.code == 98 then reason = M.refusal(t, rec, ctx, res.code) end
    return code, status, reason
  end
  if res.signal then return EXIT.failed, "failed", "the remote phanes was killed (SIG" .. (res.signal_name or res.signal) .. ")" end
  local status = ({ [0] = "ok", [1] = "failed", [2] = "error", [4] = "changed", [130] = "interrupted" })[res.code] or "failed"
  return res.code, status
end

-- What the probe line said: the record's view of the target, and how
-- root is reached (root itself, or sudo).
function M.probed(rec, ctx, p)
  ctx.probe = p
  rec.remote = { arch = p.arch, os = p.os, uid = tonumber(p.uid), sudo = p.sudo }
  if p.sudo == "root" then ctx.mode = "root" end
  -- an apply the prologue refuses (exit 98); anything else runs, with a word
  local ok, warning = require("phanes.remote.binary").check_target(p, rec.command)
  if ok and warning and not ctx.warned then
    ctx.warned = true
    err("warning: " .. warning)
  end
end

-- Why the prologue stopped before root: exit 96 another arch, 95 no sudo.
function M.refusal(t, rec, ctx, code)
  local p = ctx.probe or {}
  if code == 98 then
    local _, why = require("phanes.remote.binary").check_target(p, rec.command)
    return t.name .. ": " .. tostring(why or "the target cannot run phanes")
  end
  if code == 96 then
    return string.format("%s is %s but this phanes binary is built for %s: run phanes from an %s machine, or use an %s build of phanes",
      t.name, tostring(p.arch), ctx.arch, tostring(p.arch), tostring(p.arch))
  end
  return rec.user .. " on " .. t.name .. " is not root and sudo is not installed: log in as root (--user root)"
end

-- The binary, gzip-compressed: it travels ahead of the payload on the
-- run's own stdin (the prologue stores it in the login user's cache; root
-- checks its sha256 before it runs it). Compressing takes a few hundred ms,
-- so it is done once per binary and kept here, in ~/.cache/phanes (0600);
-- a copy there that was damaged only makes root refuse the upload, and is
-- then removed (forget_gzip).
local gz_memo = {}
local function gz_path(sha)
  local base = os.getenv "XDG_CACHE_HOME"
  if not base or base:sub(1, 1) ~= "/" then base = (os.getenv "HOME" or "") .. "/.cache" end
  return base .. "/phanes", "phanes-" .. sha .. ".gz"
end

local function gzipped(ctx)
  if gz_memo[ctx.sha] then return gz_memo[ctx.sha] end
  local file = require "phanes.file"
  local dir, name = gz_path(ctx.sha)
  local gz = file.read(dir .. "/" .. name)
  if not gz or gz:sub(1, 2) ~= "\31\139" then
    local e
    gz, e = require("phanes.ssh").gzip({ path = ctx.exe }, 6)
    if not gz then return nil, "compressing the phanes binary: " .. e end
    -- best effort: without the copy, the next first contact compresses again
    if util.mkdir_p(dir) and file.write(dir .. "/" .. name, gz, { mode = tonumber("0600", 8) }) then
      for _, n in ipairs(file.list(dir) or {}) do
        if n ~= name and n:match "^phanes%-%x+%.gz$" then file.remove(dir .. "/" .. n) end
      end
    end
  end
  gz_memo[ctx.sha] = gz
  return gz
end

local function forget_gzip(ctx)
  gz_memo[ctx.sha] = nil
  local dir, name = gz_path(ctx.sha)
  require("phanes.file").remove(dir .. "/" .. name)
end

local want_upload

-- run.use_binary(rec, ctx, o): the target said it is another architecture
-- (exit 96 after its probe line): switch to the binary built for it.
function M.use_binary(rec, ctx, o)
  local binary, file = require "phanes.remote.binary", require "phanes.file"
  local path, err = binary.select_binary(ctx.probe.arch, { binary = o.binary, exe = ctx.exe, arch = ctx.arch })
  if not path then return nil, err end
  local sum, serr = file.sha256_file(path)
  if not sum then return nil, "cannot hash " .. path .. ": " .. tostring(serr) end
  local st = file.stat(path, true)
  ctx.foreign, ctx.exe, ctx.sha, ctx.size, ctx.arch = true, path, sum, st and st.size, ctx.probe.arch
  return want_upload(rec, ctx)
end

function want_upload(rec, ctx)
  local gz, e = gzipped(ctx)
  if not gz then return nil, e end
  ctx.upload, ctx.gz = true, gz
  rec.upload.binary, rec.upload.bytes, rec.upload.compressed = true, ctx.size, #gz
  return true
end

-- sudo's password, checked once on its own channel: the run's stdin then
-- carries the password line and the payload, and a wrong password must
-- not make sudo read the payload as more attempts.
local function check_password(s, t, rec, pw)
  local res, e = s:exec("sudo -k -S -p '' true", { stdin = pw .. "\n" })
  if not res then return nil, e end
  if res.code == 0 then return true end
  if res.stderr:find "incorrect password" or res.stderr:find "Sorry, try again" then
    return nil, "sudo on " .. t.name .. " refused the password for " .. rec.user
  end
  return nil, rec.user .. " may not use sudo on " .. t.name .. ": " .. (res.stderr:match "[^\n]+" or ("exit " .. tostring(res.code)))
end

-- sudo wants a password (sudo -n said so): take it, check it, and run
-- with it from now on. -> true | nil, err
local function use_password(s, t, o, rec, ctx)
  local pw = sudo_password(t, o, rec.user)
  if not pw then
    return nil, "sudo on " .. t.name .. " needs the password of " .. rec.user .. ": give it with --password-env VAR (or run on a terminal)"
  end
  local ok, perr = check_password(s, t, rec, pw)
  if not ok then return nil, perr end
  ctx.mode, ctx.pw = "password", pw
  return true
end

-- The running binary's sha256, kept in ~/.cache/phanes/self.sha256 with
-- what identifies that file (path, device, inode, size, mtime and ctime):
-- hashing 6 MB on every run costs more than the rest of a no-op here. Only
-- a file unchanged for two seconds before it was hashed is remembered
-- (timestamps are in seconds; any later write changes its ctime). What the
-- target runs is still checked there: root hashes its own copy.
local SELF = "self.sha256"

local function identity(path)
  local a = require("lfs").attributes(path)
  if not a then return nil end
  return table.concat({ path, a.dev, a.ino, a.size, a.modification, a.change }, " "), a
end

-- run.self_sha(exe[, dir]) -> sha, size | nil, err (dir: ~/.cache/phanes)
local function self_sha(exe, dir)
  local file = require "phanes.file"
  dir = dir or gz_path("")
  local t0 = os.time()
  local id, a = identity(exe)
  local memo = id and file.read(dir .. "/" .. SELF)
  local sha = memo and memo:match("^(%x+) " .. id:gsub("%p", "%%%0") .. "\n$")
  if sha and #sha == 64 then return sha, a.size end
  local err
  sha, err = file.sha256_file(exe)
  if not sha then return nil, err end
  -- best effort: without the copy, the next run hashes again
  if a and a.change < t0 - 1 and identity(exe) == id and util.mkdir_p(dir) then
    file.write(dir .. "/" .. SELF, sha .. " " .. id .. "\n", { mode = tonumber("0600", 8), sync = false })
  end
  return sha, a and a.size
end

local function forget_self()
  require("phanes.file").remove(gz_path("") .. "/" .. SELF)
end
M.self_sha = self_sha

local function prepare(rec, files)
  local sys = require "phanes.sys"
  local exe = sys.exe()
  local sha, size = self_sha(exe)
  if not sha then return nil, EXIT.internal, "cannot hash the phanes binary " .. tostring(exe) .. ": " .. tostring(size) end
  local payload, terr = nil, nil
  if #files > 0 then
    payload, terr = util.tar(files)
    if not payload then return nil, EXIT.usage, terr end
  end
  rec.upload = { binary = false, files = #files }
  return { mode = "nopasswd", exe = exe, sha = sha, size = size, arch = local_arch(), payload = payload }
end

-- run.run(target, opts, args, files[, overrides]) -> exit code
-- overrides: remote.overrides' answer (what the record shows of --set and
-- the PHANES_* settings, and the secret values its log masks).
function M.run(t, o, args, files, ov)
  local record = require "phanes.remote.record"
  ov = ov or { shown = {}, env_names = {}, secrets = {} }
  local masker = require("phanes.engine.output").masker
  local masking = masker(ov.secrets)
  local function mask(s) return masking(s) end
  local t0 = util.now()
  local via = require("phanes.remote.connector").name(t)
  local rec = { host = t.name, address = t.host, port = via == "ssh" and (t.port or o.port or 22) or nil,
    user = t.user or o.user or os.getenv "USER" or "root", started_at = util.iso(), command = {} }
  for _, a in ipairs(args) do rec.command[#rec.command + 1] = type(a) == "table" and a.run_file or a end
  local nargs = #rec.command
  -- which --set values are secrets (ov.pending: every module loaded) is
  -- settled while the target starts: at the exchange's first tick or
  -- output, at the latest before the record
  local settled = false
  local function settle()
    if settled then return end
    settled = true
    if ov.pending then ov.pending() masking = masker(ov.secrets) end
    for i, a in ipairs(ov.shown) do rec.command[nargs + i] = a end
  end
  if not ov.pending then settle() end
  if #ov.env_names > 0 then rec.env = ov.env_names end
  local log = {}
  local function finish(code, status, reason)
    settle()
    rec.exit_code, rec.status, rec.reason, rec.duration = code, status, reason and mask(reason), util.now() - t0
    if reason then
      err(t.name:find(t.host, 1, true) and reason or (t.name .. ": " .. reason))
      log[#log + 1] = "phanes: " .. mask(reason)
    end
    local ok, werr = record.write(t.name, rec, log)
    if not ok then err("cannot record the run of " .. t.name .. ": " .. tostring(werr)) end
    require("phanes.remote.fleet").send_result(rec, files) -- to a fleet that started this run
    return code
  end
  local s, msg, kind = require("phanes.remote.connector").open(t, o)
  if s then phase(t, "connecting to " .. (rec.port and (t.host .. ":" .. rec.port) or t.name), util.now() - t0) end
  if not s then
    if kind == "interrupted" then return finish(130, "interrupted", "interrupted while connecting") end
    return finish(3, kind == "auth" and "auth" or kind == "hostkey_changed" and "hostkey changed" or "unreachable", msg)
  end
  rec.user = s:info().user
  local ctx, code, perr = prepare(rec, files)
  if not ctx then
    s:close()
    return finish(code, code == EXIT.connect and "error" or "refused", perr)
  end
  ctx.args, ctx.files, ctx.log, ctx.mask, ctx.apply = args, files, log, mask, o.cmd == "apply"
  ctx.settle = settle
  -- no record of this binary in this login user's cache there (a first
  -- contact, a new version): it goes with the first exchange
  local last = util.read_record(t.name)
  if not (last and last.binary_sha256 == ctx.sha and last.user == rec.user and last.address == rec.address
      and last.port == rec.port) then
    local ok, gerr = want_upload(rec, ctx)
    if not ok then
      s:close()
      return finish(70, "error", gerr)
    end
  end
  if require("phanes.sys").interrupted() > 0 then
    s:close()
    return finish(130, "interrupted", "interrupted before the run started")
  end
  local rcode, status, reason
  for _ = 1, 3 do
    rcode, status, reason = execute(s, t, rec, ctx)
    local ok, rerr = true, nil
    if status == "badbin" and not ctx.upload then
      -- not cached (first contact), or the login user's copy changed since
      -- it was uploaded: root ran nothing; run again, bringing the binary
      if ctx.cached_hint then
        err(t.name .. ": " .. reason .. " (changed since it was uploaded?): root refused it; uploading it again")
      end
      ok, rerr = want_upload(rec, ctx)
    elseif status == "otherarch" and not ctx.foreign and ctx.probe and ctx.probe.arch then
      -- the target is another architecture: its binary (phanes-ARCH beside
      -- this one, ~/.cache/phanes/dist, --binary), brought in the next exchange
      ok, rerr = M.use_binary(rec, ctx, o)
    elseif status == "nostore" and not ctx.recompressed then
      -- gunzip refused what we sent (a damaged copy here?): compress afresh
      ctx.recompressed = true
      forget_gzip(ctx)
      ok, rerr = want_upload(rec, ctx)
    elseif status == "needpw" and ctx.mode == "nopasswd" then
      ctx.upload = false -- stored already: the prologue does that before sudo
      ok, rerr = use_password(s, t, o, rec, ctx)
    else
      break
    end
    if not ok then rcode, status, reason = 3, "error", rerr break end
  end
  if status == "badbin" then
    forget_gzip(ctx)
    forget_self()
    rcode, status, reason = 3, "error", reason .. " right after its upload: root refused it"
  end
  if status == "otherarch" then status, reason = "refused", M.refusal(t, rec, ctx, 96) end
  if status == "needpw" then status = "sudo" end
  if status == "nostore" then status = "error" end
  if rec.remote then rec.remote.sudo = ctx.mode end
  if status == "ok" and (rec.changed or 0) > 0 then status = "changed" end
  if via == "ssh" then rec.ssh = s:stats() else rec.connector = via end
  -- the security module may have changed the host keys sshd offers: record
  -- the new ones, read over this verified connection (one more exec, only then)
  if via == "ssh" and status == "changed" and M.changed_module(rec, "security") then
    require("phanes.remote.hostkeys").update(s, t, o, err)
  end
  s:close()
  return finish(rcode, status, reason)
end

return M
