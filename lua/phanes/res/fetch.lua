-- res/fetch.lua: downloads checked by sha256, and a health check by URL.
--
--   ctx.fetch.file { url = "https://example.com/x-1.2.tgz", dest = "/var/cache/phanes/x-1.2.tgz",
--     sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
--     mode = "0644", owner = "root", group = "root" }
--   ctx.fetch.check { url = "http://127.0.0.1:11434/api/version", tries = 15 }
--
-- fetch.file: url is http(s):// or file://; sha256 (64 hex digits) is
-- required. A dest that already has that checksum is not downloaded again
-- (only mode/owner are fixed). Otherwise the download goes to <dest>.part
-- on the target with curl (wget when there is no curl), resumed when a
-- part is there; its checksum is checked BEFORE it is moved into place. A
-- mismatch fails naming the expected and the actual checksum, removes the
-- part and leaves dest as it was (nothing at dest when there was nothing).
-- The parent directory of dest is created (0755) when missing. A dry run
-- downloads nothing: "would change" with the URL.
-- fetch.check: GET url (curl) until it answers 2xx, tries times a second
-- apart (default 10); ok with the start of the answer, else a failure. A
-- dry run does not ask (the service may not be installed yet): skipped.
local context = require "phanes.engine.context"
local file = require "phanes.res.file"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { fetch = N }
M.required = { ["fetch.file"] = { "url", "dest", "sha256" } } -- checked by the context

local fail = context.fail

local function dirname(p) return p:match "^(.*)/[^/]*$" or "." end

local function check_args(kind, o)
  local dest = type(o.dest) == "string" and o.dest or "?"
  if type(o.url) ~= "string" or not (o.url:match "^https?://%S+$" or o.url:match "^file:///%S*$") then
    fail(kind, dest, "url must be an http(s):// or file:/// URL, got " .. tostring(o.url))
  end
  if not tostring(o.dest):match "^/" then fail(kind, dest, "dest must be an absolute path") end
  if type(o.sha256) ~= "string" or not o.sha256:match "^%x+$" or #o.sha256 ~= 64 then
    fail(kind, dest, "sha256 must be 64 hex digits (the checksum the download must have), got "
      .. tostring(o.sha256))
  end
end

-- the download command: curl (resuming a part), else wget
local function download_argv(ctx, kind, url, part, resume)
  local p = ctx.paths
  if F.exists(p.curl) then
    local argv = { p.curl, "-fsSL", "--retry", "2", "--connect-timeout", "20", "-o", part }
    if resume then argv[#argv + 1], argv[#argv + 2] = "-C", "-" end
    argv[#argv + 1] = url
    return argv
  elseif F.exists(p.wget) and not url:match "^file:" then
    return { p.wget, "-q", "-T", "60", "-c", "-O", part, url }
  end
  fail(kind, url, "downloading needs curl (or wget for http), and it is not installed: "
    .. "add ctx.pkg.installed { \"curl\" } before this download")
end

local function fetch_part(ctx, kind, o, part)
  local resume = F.exists(part)
  local res, err = ctx.run.exec{ argv = download_argv(ctx, kind, o.url, part, resume), timeout = o.timeout or 3600 }
  if res and res.code ~= 0 and resume then -- a part the server cannot resume: start again
    F.remove(part)
    res, err = ctx.run.exec{ argv = download_argv(ctx, kind, o.url, part, false), timeout = o.timeout or 3600 }
  end
  if not res or res.code ~= 0 then
    F.remove(part)
    fail(kind, o.dest, "download of " .. o.url .. " failed ("
      .. (res and ("exit " .. tostring(res.code)) or tostring(err)) .. "); nothing was installed at " .. o.dest,
      res and context.tail(res.stderr ~= "" and res.stderr or res.stdout, 5) or nil)
  end
end

-- ensure(ctx, o, kind) -> result: the body of fetch.file
function M.ensure(ctx, o, kind)
  check_args(kind, o)
  local dest, want = o.dest, o.sha256:lower()
  local st = file.stat(dest, kind, false)
  if st and st.type ~= "file" then fail(kind, dest, "exists and is a " .. st.type .. ", not a regular file") end
  if st and F.sha256_file(dest) == want then return M.fix_attrs(ctx, o, kind, st) end
  local message = (st and "sha256 differs: " or "") .. "download " .. o.url
  if ctx.dry_run then return { status = "would change", message = message } end
  local dir = dirname(dest)
  if not F.exists(dir) then
    local ok, err = F.mkdir(dir, { mode = tonumber("0755", 8), parents = true })
    if not ok then fail(kind, dest, "cannot create " .. dir .. ": " .. tostring(err)) end
  end
  local part = dest .. ".part"
  fetch_part(ctx, kind, o, part)
  local got = F.sha256_file(part)
  if got ~= want then
    F.remove(part)
    fail(kind, dest, "sha256 mismatch for " .. o.url .. ": expected " .. want .. ", got " .. tostring(got)
      .. "; nothing was installed at " .. dest .. " (fix the sha256 or the URL)")
  end
  local mode = file.parse_mode(o.mode, kind, dest) or tonumber("0644", 8)
  local ok, err = F.chmod(part, mode)
  if ok and (o.owner or o.group) then ok, err = F.chown(part, o.owner, o.group) end
  if not ok then F.remove(part) fail(kind, dest, tostring(err)) end
  ctx.run:check({ argv = { "mv", "-f", "--", part, dest } }, kind, dest, "moving the download into place")
  return { status = "changed", message = message }
end

-- mode/owner/group of a dest that has the right checksum
function M.fix_attrs(ctx, o, kind, st)
  local c = { path = o.dest, mode = o.mode, owner = o.owner, group = o.group }
  local mode = file.parse_mode(c.mode, kind, c.path)
  local changes = {}
  if mode and st.mode ~= mode then changes[#changes + 1] = string.format("mode %04o -> %04o", st.mode, mode) end
  local function differs(want, name, id)
    if want == nil then return false end
    if tostring(want):match "^%d+$" then return tonumber(want) ~= id end
    return want ~= name
  end
  local own = differs(c.owner, st.owner, st.uid) or differs(c.group, st.group, st.gid)
  if own then changes[#changes + 1] = "owner/group" end
  if #changes == 0 then return { status = "ok" } end
  local message = table.concat(changes, ", ")
  if ctx.dry_run then return { status = "would change", message = message } end
  local ok, err = true, nil
  if mode and st.mode ~= mode then ok, err = F.chmod(c.path, mode) end
  if ok and own then ok, err = F.chown(c.path, c.owner, c.group) end
  if not ok then fail(kind, c.path, tostring(err)) end
  return { status = "changed", message = message }
end

function N.file(ctx, o)
  local target = type(o) == "table" and tostring(o.dest) or "?"
  return ctx.run:resource(ctx, "fetch.file", target, function()
    if type(o) ~= "table" then fail("fetch.file", target, "options { url, dest, sha256 } are required") end
    return M.ensure(ctx, o, "fetch.file")
  end)
end

function N.check(ctx, o)
  local kind = "fetch.check"
  local url = type(o) == "table" and o.url or o
  return ctx.run:resource(ctx, kind, tostring(url), function()
    if type(url) ~= "string" or not url:match "^https?://%S+$" then fail(kind, tostring(url), "url must be an http(s) URL") end
    if ctx.dry_run then return { status = "skipped", message = "not asked in a dry run" } end
    local tries = type(o) == "table" and tonumber(o.tries) or 10
    if not F.exists(ctx.paths.curl) then
      fail(kind, url, "the check needs curl: add ctx.pkg.installed { \"curl\" } before it")
    end
    local res = ctx.run:check({ argv = { ctx.paths.curl, "-fsS", "--max-time", "5", "--retry", tostring(tries - 1),
      "--retry-connrefused", "--retry-delay", "1", url }, timeout = tries * 7 + 5 }, kind, url,
      "GET " .. url)
    return { status = "ok", message = (res.stdout or ""):sub(1, 80):match "^[^\n]*" }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["fetch.file"] = { "A download checked by sha256 before it is moved into place (resumed, never re-fetched when dest has the checksum)", {
    { "url", "string", true, "http(s):// or file:// URL" },
    { "dest", "string", true, "where the file goes (its directory is created 0755)" },
    { "sha256", "string", true, "64 hex digits the download must have" },
    { "mode", "string", false, "octal mode like \"0644\"" },
    { "owner", "string", false, "user name or id" },
    { "group", "string", false, "group name or id" },
  } },
  ["fetch.check"] = { "A URL answers 2xx (a health check after an install; skipped in a dry run)", {
    { "url", "string", true, "the URL to GET" },
    { "tries", "integer", false, "attempts a second apart (default 10)" },
  } },
}

return M
