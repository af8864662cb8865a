-- res/file.lua: files, directories, lines and links.
--
--   ctx.file.content { path = "/etc/motd", content = "hello\n", mode = "0644",
--     owner = "root", group = "root", validate = { "sshd", "-t", "-f", "%s" },
--     secret = false, backup = false }
--   ctx.file.template { path = "/etc/redis/redis.conf", src = "redis/redis.conf",
--     vars = cfg, mode = "0640", owner = "redis" }     -- same options as content
--   ctx.file.line { path = "/etc/sysctl.conf", line = "vm.swappiness=10",
--     match = "^vm%.swappiness" }                       -- or absent = true
--   ctx.file.directory { path = "/srv/app", mode = "0755", owner = "deploy" }
--   ctx.file.absent { path = "/etc/nginx/sites-enabled/default" }  -- recursive = true for a dir
--   ctx.file.symlink { path = "/usr/local/bin/app", target = "/opt/app/bin/app" }  -- force = true
--   ctx.file.read "/etc/ufw/ufw.conf"      -- reader: text | nil, err (no event)
--   ctx.file.exists "/usr/bin/docker"      -- reader: true | false
--
-- Modes are octal strings ("0644"); owner/group are names or numeric ids.
-- Unset mode/owner/group keep what the file has (a new file gets 0644, or
-- 0600 when secret). A file is checked first (content, mode, owner, group)
-- and written only when something differs, atomically (phanes.file.write).
-- With validate, the new content goes to a temp file next to the target,
-- the command runs on it (%s = the temp path), and the target is replaced
-- only when it exits 0; otherwise the old file stays and the failure shows
-- the validator's output. backup = true keeps the old file as
-- <path>.<UTC time>.bak. In a dry run nothing is written: the result is
-- "would change" with a unified diff ("(secret content changed)" instead
-- when secret).
-- replace_link = { target, ... } (content, template): path is never written
-- through a symlink. A symlink there pointing exactly at one of these
-- targets (one phanes made before, e.g. a link turned into a wrapper) is
-- removed and the file written in its place; any other symlink refuses.
-- As root, a link, a file of a third user or a hard-linked file in a
-- directory another user can write (a home, a service's conf.d, /tmp) is
-- refused: the resource fails naming the path and the owner, in a dry run
-- too, and nothing is written (phanes.file; doc/internals.md "Paths as root").
local context = require "phanes.engine.context"
local F = require "phanes.file"

local M = {}
local ENOENT, ENOTDIR = 2, 20

local fail = context.fail

-- parse_mode("0644") -> 420; nil stays nil
function M.parse_mode(mode, kind, path)
  if mode == nil then return nil end
  if type(mode) ~= "string" or not mode:match "^[0-7][0-7][0-7][0-7]?$" then
    fail(kind, path, "mode must be an octal string like \"0644\", got " .. tostring(mode)
      .. (type(mode) == "number" and " (a Lua number 0644 is the decimal 644)" or ""))
  end
  return tonumber(mode, 8)
end

local function octal(n) return string.format("%04o", n) end

-- stat that treats "not there" (also: parent missing) as nil and anything
-- else (permission denied, I/O error) as a failure.
function M.stat(path, kind, follow)
  local st, err, errno = F.stat(path, follow)
  if st then return st end
  if errno == ENOENT or errno == ENOTDIR then return nil end
  fail(kind, path, tostring(err))
end

local function is_id(v) return type(v) == "number" or (type(v) == "string" and v:match "^%d+$") end

local function differs(want, name, id)
  if want == nil then return false end
  if is_id(want) then return tonumber(want) ~= id end
  return want ~= name
end

-- The ownership and mode differences of an existing path, as messages.
local function attr_changes(st, mode, o)
  local changes = {}
  if mode and st.mode ~= mode then changes[#changes + 1] = "mode " .. octal(st.mode) .. " -> " .. octal(mode) end
  if differs(o.owner, st.owner, st.uid) then
    changes[#changes + 1] = "owner " .. tostring(st.owner or st.uid) .. " -> " .. tostring(o.owner)
  end
  if differs(o.group, st.group, st.gid) then
    changes[#changes + 1] = "group " .. tostring(st.group or st.gid) .. " -> " .. tostring(o.group)
  end
  return changes
end

local function fix_attrs(kind, path, st, mode, o)
  if mode and st.mode ~= mode then
    local ok, err = F.chmod(path, mode)
    if not ok then fail(kind, path, tostring(err)) end
  end
  if differs(o.owner, st.owner, st.uid) or differs(o.group, st.group, st.gid) then
    local ok, err = F.chown(path, o.owner, o.group)
    if not ok then fail(kind, path, tostring(err)) end
  end
end

local function substitute(argv, tmp)
  local out = {}
  for i, a in ipairs(argv) do out[i] = (a:gsub("%%s", function() return tmp end)) end
  return out
end

-- Runs the validator on a temp copy next to the target (so relative
-- includes resolve as they will), or in a private directory of its own when
-- another user can write the target's (who could swap the copy for a link
-- and have root's validator print another file); raises on failure.
local function validate(ctx, kind, path, content, argv)
  local dir, base = path:match "^(.*)/([^/]+)$"
  if not dir then dir, base = ".", path end
  if dir == "" then dir = "/" end
  local _, trusted = F.check(path)
  local private = not trusted and F.mkdtemp() or nil
  local tmp = private and (private .. "/" .. base)
    or string.format("%s/.%s.phanes-check-%d%05d", dir, base, os.time(), math.random(0, 99999))
  local ok, err = F.write(tmp, content, { mode = tonumber("0600", 8) })
  if not ok then
    if private then F.remove(private, true) end
    fail(kind, path, "cannot write the file to validate: " .. tostring(err))
  end
  local cmd = substitute(argv, tmp)
  local res, xerr = ctx.run.exec{ argv = cmd }
  F.remove(private or tmp, private ~= nil)
  local shown = table.concat(substitute(argv, path), " ")
  if not res then fail(kind, path, "validation (" .. shown .. ") could not run: " .. tostring(xerr)) end
  if res.code ~= 0 then
    local out = (res.stderr or "") .. (res.stderr ~= "" and res.stdout ~= "" and "\n" or "") .. (res.stdout or "")
    out = out:gsub(tmp:gsub("%p", "%%%0"), function() return path end)
    fail(kind, path, "the new content failed validation (" .. shown .. "); " .. path .. " was left unchanged",
      context.tail(out, 20))
  end
end

-- ensure_content(ctx, o, kind) -> { status, message, diff }: the check and
-- the write of file.content, for other resources to build on.
function M.ensure_content(ctx, o, kind)
  local path = o.path
  if type(path) ~= "string" or path == "" then fail(kind, tostring(path), "path is required") end
  if type(o.content) ~= "string" then fail(kind, path, "content must be a string") end
  local st
  if o.replace_link ~= nil then -- one lstat: what is not a link is what stat would say
    local link
    link, st = M.old_link(o.replace_link, kind, path)
    if link then return M.replace_link(ctx, o, kind, link) end
  else
    st = M.stat(path, kind, true)
  end
  if st and st.type ~= "file" then fail(kind, path, "exists and is a " .. st.type .. ", not a regular file") end
  local old
  if st then
    local err
    old, err = F.read(path)
    if not old then fail(kind, path, tostring(err)) end
  end
  local mode = M.parse_mode(o.mode, kind, path) or (st and st.mode) or tonumber(o.secret and "0600" or "0644", 8)
  local content_changed = old ~= o.content
  local changes = st and attr_changes(st, mode, o) or {}
  if st and content_changed then table.insert(changes, 1, "content") end
  if not st then changes = { "created" } end
  if #changes == 0 then return { status = "ok" } end
  local diff
  if content_changed then
    if o.secret then
      changes[#changes + 1] = "(secret content changed)"
    else
      diff = F.diff(old or "", o.content, { from = path, to = path })
    end
  end
  local message = table.concat(changes, ", ")
  if ctx.dry_run then return { status = "would change", message = message, diff = diff } end
  if content_changed then
    if o.validate then validate(ctx, kind, path, o.content, o.validate) end
    if o.backup and old then
      local bak = path .. "." .. os.date("!%Y%m%dT%H%M%SZ") .. ".bak"
      local ok, err = F.write(bak, old, { mode = st.mode, owner = st.uid, group = st.gid })
      if not ok then fail(kind, path, "cannot write the backup: " .. tostring(err)) end
    end
    local ok, err = F.write(path, o.content, { mode = mode, owner = o.owner, group = o.group })
    if not ok then fail(kind, path, tostring(err)) end
  else
    fix_attrs(kind, path, st, mode, o)
  end
  return { status = "changed", message = message, diff = diff }
end

-- old_link(targets, kind, path) -> the target of a symlink at path that is
-- one of targets | nil, the lstat of path (nil: nothing there); raises for
-- another symlink: with targets, the file is never written through one.
function M.old_link(targets, kind, path)
  if type(targets) ~= "table" then fail(kind, path, "replace_link must be a list of link targets") end
  local st = M.stat(path, kind, false)
  if not st or st.type ~= "link" then return nil, st end
  for _, t in ipairs(targets) do
    if st.target == t then return t end
  end
  fail(kind, path, "is a symlink to " .. tostring(st.target) .. ", not a file; phanes replaces only a link to "
    .. table.concat(targets, " or ") .. ": remove it (rm " .. path .. ") and run again")
end

-- replace_link(ctx, o, kind, target): the symlink at o.path (to target)
-- removed and the file written in its place (validated first, when asked).
function M.replace_link(ctx, o, kind, target)
  local path = o.path
  local message = "symlink -> " .. target .. " replaced by a file"
  local diff = not o.secret and F.diff("", o.content, { from = path, to = path }) or nil
  if ctx.dry_run then return { status = "would change", message = message, diff = diff } end
  if o.validate then validate(ctx, kind, path, o.content, o.validate) end
  local mode = M.parse_mode(o.mode, kind, path) or tonumber(o.secret and "0600" or "0644", 8)
  local ok, err = F.remove(path)
  if not ok then fail(kind, path, "cannot remove the symlink: " .. tostring(err)) end
  ok, err = F.write(path, o.content, { mode = mode, owner = o.owner, group = o.group })
  if not ok then fail(kind, path, tostring(err)) end
  return { status = "changed", message = message, diff = diff }
end

-- ensure_directory(ctx, o, kind) -> { status, message }
function M.ensure_directory(ctx, o, kind)
  local path = o.path
  local st = M.stat(path, kind, true)
  if st and st.type ~= "directory" then fail(kind, path, "exists and is a " .. st.type .. ", not a directory") end
  local mode = M.parse_mode(o.mode, kind, path)
  if not st then
    if ctx.dry_run then return { status = "would change", message = "created" } end
    local ok, err = F.mkdir(path, { mode = mode or tonumber("0755", 8), owner = o.owner,
      group = o.group, parents = true })
    if not ok then fail(kind, path, tostring(err)) end
    return { status = "changed", message = "created" }
  end
  local changes = attr_changes(st, mode, o)
  if #changes == 0 then return { status = "ok" } end
  if not ctx.dry_run then fix_attrs(kind, path, st, mode, o) end
  return { status = ctx.dry_run and "would change" or "changed", message = table.concat(changes, ", ") }
end

-- combine(r1, r2, ...) -> one result: the strongest status, messages and
-- diffs joined (for resources made of several steps).
function M.combine(...)
  local rank = { ok = 0, skipped = 0, ["would change"] = 1, changed = 2 }
  local out, messages, diffs = { status = "ok" }, {}, {}
  for _, r in ipairs{ ... } do
    if rank[r.status] > rank[out.status] then out.status = r.status end
    if r.message and r.message ~= "" then messages[#messages + 1] = r.message end
    if r.diff and r.diff ~= "" then diffs[#diffs + 1] = r.diff end
  end
  if #messages > 0 then out.message = table.concat(messages, "; ") end
  if #diffs > 0 then out.diff = table.concat(diffs) end
  return out
end

local function split_lines(text)
  local lines = {}
  for line in text:gmatch "([^\n]*)\n" do lines[#lines + 1] = line end
  local last = text:match "[^\n]+$"
  if last then lines[#lines + 1] = last end
  return lines
end

-- line_edit(old, o) -> new text (== old when nothing to do)
function M.line_edit(old, o)
  local lines, modified = split_lines(old), false
  local function matches(l)
    if o.match then return l:find(o.match) ~= nil end
    return l == o.line
  end
  if o.absent then
    local kept = {}
    for _, l in ipairs(lines) do
      if matches(l) then modified = true else kept[#kept + 1] = l end
    end
    lines = kept
  else
    local last, present
    for i, l in ipairs(lines) do
      if o.match and l:find(o.match) then last = i end
      if l == o.line then present = true end
    end
    if last then
      if lines[last] ~= o.line then lines[last] = o.line modified = true end
    elseif not present then
      lines[#lines + 1] = o.line
      modified = true
    end
  end
  if not modified then return old end
  return #lines > 0 and table.concat(lines, "\n") .. "\n" or ""
end

local N = {}
M.namespaces = { file = N }
-- Arguments a call must give (checked by the context before the resource
-- runs: a missing one is named, with the caller's line).
M.required = { ["file.content"] = { "path", "content" }, ["file.template"] = { "path", "src" },
  ["file.line"] = { "path" }, ["file.directory"] = { "path" }, ["file.absent"] = { "path" },
  ["file.symlink"] = { "path", "target" } }

local function target(o) return type(o) == "table" and tostring(o.path) or "?" end

-- Readers: what a module knows of the host's files comes through ctx, so a
-- plan against a fake host (spec/support/plan.lua) answers them itself.
function N.read(_, path) return F.read(path) end
function N.exists(_, path) return F.exists(path) end

function N.content(ctx, o)
  return ctx.run:resource(ctx, "file.content", target(o), function()
    return M.ensure_content(ctx, o, "file.content")
  end)
end

function N.template(ctx, o)
  return ctx.run:resource(ctx, "file.template", target(o), function()
    if type(o.src) ~= "string" then fail("file.template", o.path, "src (the template under templates/) is required") end
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    c.content = ctx.template(o.src, o.vars)
    return M.ensure_content(ctx, c, "file.template")
  end)
end

function N.line(ctx, o)
  return ctx.run:resource(ctx, "file.line", target(o), function()
    if type(o.line) ~= "string" and not (o.absent and o.match) then
      fail("file.line", o.path, "line is required (or absent = true with match)")
    end
    local st = M.stat(o.path, "file.line", true)
    local old = ""
    if st then old = F.read(o.path) or fail("file.line", o.path, "cannot read") end
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    c.content = M.line_edit(old, o)
    if not st and o.absent then return { status = "ok" } end
    return M.ensure_content(ctx, c, "file.line")
  end)
end

function N.directory(ctx, o)
  return ctx.run:resource(ctx, "file.directory", target(o), function()
    return M.ensure_directory(ctx, o, "file.directory")
  end)
end

function N.absent(ctx, o)
  return ctx.run:resource(ctx, "file.absent", target(o), function()
    local st = M.stat(o.path, "file.absent", false)
    if not st then return { status = "ok" } end
    if st.type == "directory" and not o.recursive then
      fail("file.absent", o.path, "is a directory: pass recursive = true to remove it and its contents")
    end
    if ctx.dry_run then return { status = "would change", message = "removed " .. st.type } end
    local ok, err = F.remove(o.path, st.type == "directory")
    if not ok then fail("file.absent", o.path, tostring(err)) end
    return { status = "changed", message = "removed " .. st.type }
  end)
end

function N.symlink(ctx, o)
  return ctx.run:resource(ctx, "file.symlink", target(o), function()
    if type(o.target) ~= "string" then fail("file.symlink", o.path, "target is required") end
    local st = M.stat(o.path, "file.symlink", false)
    local message
    if st and st.type == "link" then
      if st.target == o.target then return { status = "ok" } end
      message = "-> " .. tostring(st.target) .. " replaced by -> " .. o.target
    elseif st and (st.type ~= "file" or not o.force) then
      fail("file.symlink", o.path, "exists and is a " .. st.type .. ", not a symlink"
        .. (st.type == "file" and ": pass force = true to replace it" or ""))
    else
      message = (st and "file replaced by " or "created ") .. "-> " .. o.target
    end
    if ctx.dry_run then return { status = "would change", message = message } end
    local ok, err = F.symlink(o.target, o.path)
    if not ok then fail("file.symlink", o.path, tostring(err)) end
    return { status = "changed", message = message }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
local PATH = { "path", "string", true, "absolute path" }
local MODE = { "mode", "string", false, "octal mode like \"0644\" (unset: kept; a new file 0644, 0600 when secret)" }
local OWNER = { "owner", "string", false, "user name or id (unset: kept)" }
local GROUP = { "group", "string", false, "group name or id (unset: kept)" }
local VALIDATE = { "validate", "list", false, "a command run on the new content first (%s = its temp path); non-zero keeps the old file" }
local SECRET = { "secret", "boolean", false, "never show the content or its diff" }
local BACKUP = { "backup", "boolean", false, "keep the old file as <path>.<UTC time>.bak" }
local REPLACE_LINK = { "replace_link", "list", false,
  "never write through a symlink at path; one pointing exactly at one of these targets is replaced by the file" }
M.api = {
  ["file.content"] = { "A file with this content, mode and owner, written atomically when anything differs", {
    PATH, { "content", "string", true, "the whole content" }, MODE, OWNER, GROUP, VALIDATE, SECRET, BACKUP,
    REPLACE_LINK,
  } },
  ["file.template"] = { "file.content with the content rendered from templates/<src>", {
    PATH, { "src", "string", true, "the template under templates/" },
    { "vars", "map", false, "the template's variables" }, MODE, OWNER, GROUP, VALIDATE, SECRET, BACKUP,
    REPLACE_LINK,
  } },
  ["file.line"] = { "A line present in a file (replacing the lines that match), or absent", {
    PATH, { "line", "string", false, "the line (required unless absent)" },
    { "match", "string", false, "Lua pattern of the lines it replaces" },
    { "absent", "boolean", false, "remove the lines that match instead" }, MODE, OWNER, GROUP,
  } },
  ["file.directory"] = { "A directory with this mode and owner", { PATH, MODE, OWNER, GROUP } },
  ["file.absent"] = { "Nothing at path", {
    PATH, { "recursive", "boolean", false, "also remove a directory and its contents" },
  } },
  ["file.symlink"] = { "A symbolic link to target", {
    PATH, { "target", "string", true, "what the link points to" },
    { "force", "boolean", false, "replace a regular file at path" },
  } },
  ["file.read"] = { "The content of a file on the host: text, or nil and the error", {
    { "path", "string", true, "(positional) the file" },
  }, reader = true },
  ["file.exists"] = { "Whether something exists at path on the host", {
    { "path", "string", true, "(positional) the path" },
  }, reader = true },
}

return M
