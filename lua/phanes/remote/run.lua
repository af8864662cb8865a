-- remote/run.lua: one host, start to end: connect, then ONE exec channel:
-- a prologue as the login user (probe line, arch check, the binary from
-- stdin when this is an upload) that execs, as root (sudo when not root),
-- a script that verifies its own copy of the binary, unpacks the run's
-- files from stdin into a private directory, runs phanes there with its
-- output streamed back and hands the JSON report back in-band. The
-- gzip-compressed binary travels ahead of the payload on that stdin when
-- no record says this binary is in the login user's cache there; when the
-- prologue finds it missing (or root finds it changed), the run starts
-- again on a new channel, bringing it. Record the run locally.
--
--   local code = require("phanes.remote.run").run(target, opts, args, files, overrides)
local util = require "phanes.remote.util"
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

-- Where root works on the target: each run in its own directory made by
-- mktemp -d (0700) under this root-owned one, removed when the run ends.
M.ROOT_DIR = "/var/lib/phanes"

-- The probe, as the login user: arch, uid, sudo, cached binary, OS. It
-- also clears run directories that older versions left in the cache.
-- lean: sudo is only looked for (sudo=present), not tried: a run tries
-- `sudo -n` first and asks for the password when sudo wants one.
function M.probe_script(sha, lean)
  return table.concat({
    "umask 077",
    'C="$HOME/.cache/phanes"',
    '[ -d "$C" ] || { mkdir -p "$C" && chmod 700 "$C"; } || exit 90',
    'echo "cache=$C"',
    'echo "arch=$(uname -m)"',
    'U=$(id -u); echo "uid=$U"',
    'if [ "$U" = 0 ]; then echo sudo=root; elif ! command -v sudo >/dev/null 2>&1; then echo sudo=missing;'
      .. (lean and " else echo sudo=present; fi" or ' elif sudo -n true 2>/dev/null; then echo sudo=nopasswd; else echo sudo=password; fi'),
    'B="$C/phanes-' .. sha .. '"',
    -- a hint only (the login user can change that file): root hashes its
    -- own copy before it runs it (root_script)
    'if [ -f "$B" ] && [ -x "$B" ]; then echo "cached=' .. sha .. '"; fi',
    '[ -r /etc/os-release ] && . /etc/os-release 2>/dev/null && echo "os=$PRETTY_NAME"',
    require("phanes.remote.binary").PROBE,
    'set -- "$C"/run.*; [ -e "$1" ] && find "$C" -maxdepth 1 -name "run.*" -exec rm -rf {} + 2>/dev/null',
    "exit 0",
  }, "\n")
end

function M.parse_probe(text)
  local p = {}
  for k, v in text:gmatch "([%w_]+)=([^\n]*)" do p[k] = v end
  return p
end

-- The shell script root runs (through sudo, or as the login shell of
-- root): it makes a private run directory, unpacks the run's files
-- (config, the user's own files, the overrides) from stdin into it, runs
-- phanes there, hands the report back on stdout between two marker lines,
-- and removes the directory however it ends.
-- The binary root runs is root's own copy, $V/bin/phanes-SHA, in a
-- directory only root can write: made once from the login user's cached
-- binary, which root copies, checks against the sha256 and then keeps. A
-- no-op run thereby reads no 6 MB and hashes nothing; what the login user
-- does to its own cache afterwards does not matter to root.
--   r = { sha =, size = bytes, bin = cached path, payload = bool, words = "args as shell words", nonce = }
-- Before phanes starts, failures say PHANES-ERR (on stderr) or exit 93 (no
-- cached binary) / 94 (it does not match the sha256): upload and retry.
function M.root_script(r)
  local q = util.shquote
  return table.concat({
    "umask 077",
    -- the cached binary: named by the caller, or the prologue's argument
    r.bin and ("B=" .. q(r.bin)) or 'B="$1"',
    "V=" .. q(M.ROOT_DIR),
    '[ -d "$V" ] || mkdir -p -m 755 "$V" 2>/dev/null',
    -- one stat for both: the work directory, then root's binaries
    'X=$(stat -c %u:%A "$V" "$V/bin" 2>/dev/null)',
    'case $X in 0:d????-??-?*) ;; *) echo "PHANES-ERR $V must be a directory owned by'
      .. ' root that only root can write, not: $(stat -c \'%U %A\' "$V" 2>&1)" >&2; exit 91;; esac',
    -- anything else where root keeps its binaries is not root's: gone
    'case $X in *"\n0:drwx------") ;; *) rm -rf "$V/bin"; mkdir -m 700 "$V/bin" || exit 91;; esac',
    'W="$V/bin/phanes-' .. r.sha .. '"',
    -- run directories a killed run left: gone after a day (find only when there are any)
    'set -- "$V"/run.*; [ -e "$1" ] && find "$V" -maxdepth 1 -type d -name "run.*" -mmin +1440 -exec rm -rf {} + 2>/dev/null',
    'D=$(mktemp -d "$V/run.XXXXXX") || { echo "PHANES-ERR cannot make a run directory in $V" >&2; exit 91; }',
    "trap 'cd /; rm -rf \"$D\"' EXIT",
    "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM",
    'if [ ! -f "$W" ] || [ -L "$W" ]; then',
    -- at most the binary's size (whatever B has become), in 1 MB reads
    '  [ -f "$B" ] && [ ! -L "$B" ] && dd if="$B" of="$D/phanes" bs=1M count=' .. math.tointeger(r.size)
      .. ' iflag=count_bytes status=none 2>/dev/null || exit 93',
    -- openssl's sha256 uses the CPU's SHA instructions: half the time of sha256sum's
    '  if command -v openssl >/dev/null; then H=$(openssl dgst -sha256 -r <"$D/phanes"); else H=$(sha256sum <"$D/phanes"); fi',
    '  [ "${H%% *}" = ' .. r.sha .. " ] || exit 94",
    '  chmod 700 "$D/phanes" && mv -f "$D/phanes" "$W" || { echo "PHANES-ERR cannot keep the phanes binary in $V/bin (disk full?)" >&2; exit 91; }',
    -- the three newest versions stay
    [[  ls -t "$V"/bin/phanes-* | tail -n +4 | xargs -r rm -f]],
    "fi",
    r.payload and 'tar -x -o -C "$D" -f - || { echo "PHANES-ERR cannot unpack the run\'s files in $D" >&2; exit 92; }' or ":",
    'cd "$D" || exit 91',
    -- the pid is the process a Ctrl-C signals (phanes itself, after exec)
    [[sh -c 'echo "PHANES-PID $$ $1"; shift; exec "$@"' sh "$D" "$W" ]] .. r.words .. " </dev/null",
    "c=$?",
    '[ -f report.json ] && printf "\\n%s\\n" "PHANES-REPORT ' .. r.nonce .. '" && cat report.json && printf "\\n%s\\n" "PHANES-REPORT-END ' .. r.nonce .. '"',
    "exit $c",
  }, "\n")
end

-- The login user's side of the one exchange (run.root_script follows it):
-- one framed probe line on stdout, old run directories cleared from the
-- cache, the arch checked, the binary taken from stdin when this run
-- brings it (gz bytes of gzip, ahead of the rest of stdin: head -c reads no
-- more than that), then root_script as root with the cached path as $1.
--   p = { sha =, arch = expected, root = root_script, nonce =, password = bool, gz = bytes | nil }
-- Exit codes before root: 90 no cache directory, 95 no sudo, 96 another
-- arch, 97 the binary could not be stored.
function M.prologue(p)
  local q = util.shquote
  local sudo = p.password and "exec sudo -k -S -p '' -- " or "exec sudo -n -- "
  return table.concat({
    "umask 077",
    '[ -r /etc/os-release ] && . /etc/os-release 2>/dev/null',
    'C="$HOME/.cache/phanes"',
    '[ -d "$C" ] || { mkdir -p "$C" && chmod 700 "$C"; } || { echo "PHANES-ERR cannot make the cache directory $C" >&2; exit 90; }',
    'B="$C/phanes-' .. p.sha .. '"',
    'U=$(id -u); A=$(uname -m)',
    'if [ "$U" = 0 ]; then S=root; elif command -v sudo >/dev/null 2>&1; then S=present; else S=missing; fi',
    -- a hint only (the login user can change that file): root hashes its own copy
    'K=no; [ -f "$B" ] && [ -x "$B" ] && K=yes',
    'L=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)',
    'P=$(for c in apt-get dpkg dnf yum apk zypper pacman; do command -v $c >/dev/null 2>&1 && printf "%s," $c; done)',
    'echo "PHANES-PROBE ' .. p.nonce .. ' arch=$A uid=$U sudo=$S cached=$K libc=$(echo "$L" | tr " " _) pkg=$P os=$PRETTY_NAME"',
    'set -- "$C"/run.*; [ -e "$1" ] && find "$C" -maxdepth 1 -name "run.*" -exec rm -rf {} + 2>/dev/null',
    '[ "$A" = ' .. q(p.arch) .. " ] || exit 96",
    -- what binary.check_target refuses (glibc < 2.34, musl, no apt for an
    -- apply): the controller says why from the probe line
    p.check and ('case "$L" in *musl*) exit 98;; "") ;; *) [ "$(printf "%s\\n" ' .. q(p.min_glibc)
      .. ' "${L##* }" | sort -V | head -n 1)" = ' .. q(p.min_glibc) .. ' ] || exit 98;; esac') or ":",
    p.apply and 'case "$P" in *apt-get,*dpkg,*) ;; *) exit 98;; esac' or ":",
    '[ "$S" = missing ] && exit 95',
    p.gz and table.concat({
      'T="$B.tmp$$"',
      "head -c " .. math.tointeger(p.gz) .. ' | gunzip > "$T" && chmod 700 "$T" && mv -f "$T" "$B" || { rm -f "$T";'
        .. ' echo "PHANES-ERR cannot store the phanes binary in $C (disk full?)" >&2; exit 97; }',
      -- the three newest versions stay
      [[ls -t "$C"/phanes-* 2>/dev/null | grep -v '\.tmp' | tail -n +4 | xargs rm -f]],
    }, "\n") or ":",
    "R=" .. q(p.root),
    'if [ "$S" = root ]; then exec sh -c "$R" sh "$B"; fi',
    sudo .. 'sh -c "$R" sh "$B"',
  }, "\n")
end

function M.parse_probe_line(line, tag)
  local rest = line:match("^PHANES%-PROBE " .. tag .. " (.*)$")
  if not rest then return nil end
  local p = {}
  for _, k in ipairs { "arch", "uid", "sudo", "cached", "libc", "pkg" } do p[k] = rest:match(k .. "=(%S*)") end
  if p.libc then p.libc = p.libc:gsub("_", " ") end
  if p.pkg then p.pkg = p.pkg:gsub(",", " ") end
  p.os = rest:match "os=(.*)$"
  if p.os == "" then p.os = nil end
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

local function is_apply(args)
  for _, a in ipairs(args) do
    if type(a) == "string" then
      if a == "apply" or a == "--profile" or a == "--modules" or a:match "^%-%-profile=" or a:match "^%-%-modules=" then return true end
      if not a:match "^%-" then return false end
    end
  end
  return false
end

-- The remote phanes' arguments, as shell words of root_script (files of
-- the run are named under its run directory "$D").
function M.run_words(args, files, color, report)
  local q = util.shquote
  local words = {}
  for _, a in ipairs(args) do
    words[#words + 1] = type(a) == "table" and ('"$D"/' .. q(a.run_file)) or q(a)
  end
  local path, overrides = false, false
  for _, f in ipairs(files) do
    if f.name:match "^path/" then path = true end
    if f.name == "overrides.json" then overrides = true end
  end
  if path then words[#words + 1] = '--path "$D/path"' end
  if overrides then words[#words + 1] = '--overrides "$D/overrides.json"' end
  if color then words[#words + 1] = "--color=always" end
  if report then words[#words + 1] = '--report "$D/report.json"' end
  return table.concat(words, " ")
end

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
      local probe = not st.probe and M.parse_probe_line(line, tag)
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
  local ok, sys = pcall(require, "phanes.sys")
  if not ok or not sys.interrupted then return nil end
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
    return 3, "nostore", t.name .. ": " .. (mine or "cannot store the phanes binary")
  end
  if res.code == 96 then return 3, "otherarch", nil end
  if res.code == 95 or res.code == 98 then return 3, "error", nil end
  if res.code == 93 or res.code == 94 then
    return res.code, "badbin", res.code == 93 and "the cached phanes binary is missing" or
      "the cached phanes binary does not match its sha256"
  end
  if held:find "a password is required" then
    return 3, "needpw", "sudo on " .. t.name .. " needs the password of " .. rec.user
      .. ": give it with --password-env VAR (or run on a terminal)"
  elseif held:find "incorrect password" or held:find "Sorry, try again" then
    return 3, "sudo", "sudo on " .. t.name .. " refused the password for " .. rec.user
  elseif held:find "not in the sudoers" or held:find "not allowed" then
    return 3, "sudo", rec.user .. " may not use sudo on " .. t.name .. ": log in as root or grant sudo"
  end
  local mine = held:match "PHANES%-ERR ([^\n]*)"
  if mine then return 3, "error", t.name .. ": " .. mine end
  if held ~= "" then io.stderr:write(held, "\n") end
  return res.code or 1, "error", "the remote phanes did not start (exit " .. tostring(res.code) .. ")"
end

-- Run the remote phanes and turn what happened into an exit code.
-- -> code, status, reason, kind
local function execute(s, t, rec, ctx)
  local color = util.isatty(1) or os.getenv "PHANES_REMOTE_COLOR" == "1"
  local tag = nonce()
  local script = M.root_script { sha = ctx.sha, size = ctx.size, payload = ctx.payload ~= nil,
    words = M.run_words(ctx.args, ctx.files, color, ctx.apply), nonce = tag }
  local gz = ctx.upload and ctx.gz
  local prologue = M.prologue { sha = ctx.sha, arch = ctx.arch, root = script, nonce = tag,
    password = ctx.mode == "password", gz = gz and #gz, check = true, apply = ctx.apply,
    min_glibc = require("phanes.remote.binary").MIN_GLIBC }
  local stdin = (gz or "") .. (ctx.mode == "password" and (ctx.pw .. "\n") or "") .. (ctx.payload or "")
  local st = output(ctx.files, ctx.log, ctx.mask, tag)
  local tick = interrupt_tick(s, st, ctx, t.name)
  local t0 = util.now()
  local ok, res, e, kind = pcall(s.exec, s, prologue, {
    stdin = stdin ~= "" and stdin or nil, capture = false, tick = tick,
    stream = function(k, chunk)
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
    local okj, json = pcall(require, "phanes.json")
    if okj and json.decode then
      summarize(rec, require("phanes.engine.output").mask_deep(json.decode(st.report_text), ctx.mask))
    end
  end
  if not ok then
    if tostring(res):match "interrupted" then return 130, "interrupted", "interrupted locally; disconnected" end
    error(res, 0)
  end
  if not res then
    return 3, "lost", e .. "\n  the run on " .. t.name .. " may have been cut short; its state file is written atomically:"
      .. " check it with `phanes --remote " .. t.name .. " status`", kind
  end
  if not st.pid then
    local code, status, reason = before_start(t, rec, res, table.concat(st.held, "\n"))
    if res.code == 95 or res.code == 96 or res.code == 98 then reason = M.refusal(t, rec, ctx, res.code) end
    return code, status, reason
  end
  if res.signal then return 1, "failed", "the remote phanes was killed (SIG" .. (res.signal_name or res.signal) .. ")" end
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

local function prepare(rec, files)
  local sys, file = require "phanes.sys", require "phanes.file"
  local exe = sys.exe()
  local sha, serr = file.sha256_file(exe)
  if not sha then return nil, 70, "cannot hash the phanes binary " .. tostring(exe) .. ": " .. tostring(serr) end
  local st = file.stat(exe)
  local payload, terr = nil, nil
  if #files > 0 then
    payload, terr = util.tar(files)
    if not payload then return nil, 2, terr end
  end
  rec.upload = { binary = false, files = #files }
  return { mode = "nopasswd", exe = exe, sha = sha, size = st and st.size, arch = local_arch(), payload = payload }
end

-- run.run(target, opts, args, files[, overrides]) -> exit code
-- overrides: remote.overrides' answer (what the record shows of --set and
-- the PHANES_* settings, and the secret values its log masks).
function M.run(t, o, args, files, ov)
  local record = require "phanes.remote.record"
  ov = ov or { shown = {}, env_names = {}, secrets = {} }
  local mask = require("phanes.engine.output").masker(ov.secrets)
  local t0 = util.now()
  local via = require("phanes.remote.connector").name(t)
  local rec = { host = t.name, address = t.host, port = via == "ssh" and (t.port or o.port or 22) or nil,
    user = t.user or o.user or os.getenv "USER" or "root", started_at = util.iso(), command = {} }
  for _, a in ipairs(args) do rec.command[#rec.command + 1] = type(a) == "table" and a.run_file or a end
  for _, a in ipairs(ov.shown) do rec.command[#rec.command + 1] = a end
  if #ov.env_names > 0 then rec.env = ov.env_names end
  local log = {}
  local function finish(code, status, reason)
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
  if s then phase(t, "connecting to " .. t.host .. ":" .. rec.port, util.now() - t0) end
  if not s then
    if kind == "interrupted" then return finish(130, "interrupted", "interrupted while connecting") end
    return finish(3, kind == "auth" and "auth" or kind == "hostkey_changed" and "hostkey changed" or "unreachable", msg)
  end
  rec.user = s:info().user
  local ctx, code, perr = prepare(rec, files)
  if not ctx then
    s:close()
    return finish(code, code == 3 and "error" or "refused", perr)
  end
  ctx.args, ctx.files, ctx.log, ctx.mask, ctx.apply = args, files, log, mask, is_apply(args)
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
  local okS, sys = pcall(require, "phanes.sys")
  if okS and sys.interrupted and sys.interrupted() > 0 then
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
