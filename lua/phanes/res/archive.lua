-- res/archive.lua: an archive extracted into a directory, refusing entries
-- that would land outside it.
--
--   ctx.archive.extracted { src = "/var/cache/phanes/x-1.2.tgz", dest = "/usr/local",
--     sentinel = "/var/lib/phanes/sentinels/x.archive", stamp = "1.2 <sha256>" }
--   ctx.archive.extracted { src = "/var/cache/phanes/app.zip", dest = "/opt/app",
--     creates = "/opt/app/bin/app", strip = 1 }
--
-- tar (.tar, .tgz, .tar.gz, .tar.xz, .txz, .tar.bz2, .tar.zst) and zip. Done
-- already when creates exists, or when the sentinel file holds stamp (it is
-- written last, after a successful extraction, so an interrupted one runs
-- again). Before anything is extracted the archive is listed and every
-- entry checked (after strip leading components): an absolute name, a `..`
-- component, a device or fifo (or any type but file, directory and
-- link), a symlink whose target is absolute or climbs
-- out of dest, a hard link to such a name, or an entry below another
-- entry that is a symlink (a file written through a link) refuses the
-- whole archive, naming the entry; nothing is extracted. Symlinks in zip
-- archives are refused. dest is created (0755) when missing. What is
-- extracted is root's (as root) and never group- or world-writable, nor
-- setuid or setgid, whatever modes the archive holds (a 0777 bin/app
-- would otherwise land writable by anyone, maybe on root's PATH): tar runs
-- with --no-same-owner --no-same-permissions under umask 022, so each
-- file and directory is created with its final mode; unzip restores the
-- archive's modes itself, so after it every listed file and directory
-- loses those bits (g-w, o-w, u-s, g-s), and while it runs dest is 0700
-- (nobody else can open a file in the moment it is too open). A dry run lists and checks, and
-- extracts nothing.
local context = require "phanes.engine.context"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { archive = N }
M.required = { ["archive.extracted"] = { "src", "dest" } } -- checked by the context

local KIND = "archive.extracted"
local fail = context.fail

local UMASK = tonumber("022", 8)
local UNSAFE = tonumber("6022", 8) -- setuid, setgid, group- and world-writable

local TAR = { "%.tar$", "%.tgz$", "%.tar%.gz$", "%.tar%.xz$", "%.txz$", "%.tar%.bz2$", "%.tbz2$", "%.tar%.zst$" }

function M.format(src)
  local s = src:lower()
  if s:match "%.zip$" then return "zip" end
  for _, p in ipairs(TAR) do if s:match(p) then return "tar" end end
  return nil
end

local function split(path)
  local parts = {}
  for c in path:gmatch "[^/]+" do if c ~= "." then parts[#parts + 1] = c end end
  return parts
end

-- normalize(parts) -> parts with `..` applied, or nil when it climbs above the root
local function normalize(parts)
  local out = {}
  for _, c in ipairs(parts) do
    if c == ".." then
      if #out == 0 then return nil end
      out[#out] = nil
    else
      out[#out + 1] = c
    end
  end
  return out
end

-- parse_tar_list(text) -> entries { name, type = "-"|"d"|"l"|"h"|..., target }
-- from `tar -tv` output (GNU tar, LC_ALL=C, names escaped).
function M.parse_tar_list(text)
  local entries = {}
  for line in text:gmatch "[^\n]+" do
    local perm, rest = line:match "^(%S+)%s+%S+%s+[%d,]+%s+%d%d%d%d%-%d%d%-%d%d%s+%d%d:%d%d%s(.*)$"
    if not perm then return nil, "cannot read the listing line: " .. line end
    local e = { type = perm:sub(1, 1), name = rest }
    local sep = e.type == "l" and " -> " or e.type == "h" and " link to " or nil
    if sep then
      local a = rest:find(sep, 1, true)
      -- the separator twice: where the name ends cannot be told
      if not a or rest:find(sep, a + 1, true) then return nil, "ambiguous link entry: " .. rest end
      e.name, e.target = rest:sub(1, a - 1), rest:sub(a + #sep)
    end
    if not e.name then return nil, "cannot read the listing line: " .. line end
    entries[#entries + 1] = e
  end
  return entries
end

local KNOWN = { ["-"] = true, d = true, l = true, h = true }

-- check(entries, strip) -> nil, or the reason the archive is refused
function M.check(entries, strip)
  strip = strip or 0
  local links, names = {}, {}
  for _, e in ipairs(entries) do
    if e.name:match "^/" then return "entry " .. e.name .. " has an absolute path" end
    local parts = split(e.name)
    for _, c in ipairs(parts) do
      if c == ".." then return "entry " .. e.name .. " climbs out with .." end
    end
    for _ = 1, strip do table.remove(parts, 1) end
    if e.type == "c" or e.type == "b" or e.type == "p" then return "entry " .. e.name .. " is a device or fifo" end
    if not KNOWN[e.type] then return "entry " .. e.name .. " is of a type phanes does not extract (" .. e.type .. ")" end
    if #parts > 0 then
      e.parts = parts
      names[#names + 1] = e
      if e.type == "l" then
        local t = e.target or ""
        if t:match "^/" then return "symlink " .. e.name .. " points to the absolute path " .. t end
        local dir = { table.unpack(parts, 1, #parts - 1) }
        for _, c in ipairs(split(t)) do dir[#dir + 1] = c end
        if not normalize(dir) then return "symlink " .. e.name .. " -> " .. t .. " points out of the destination" end
        links[table.concat(parts, "/")] = true
      elseif e.type == "h" then
        local t = e.target or ""
        if t:match "^/" or not normalize(split(t)) then return "hard link " .. e.name .. " links to " .. t .. " outside" end
      end
    end
  end
  for _, e in ipairs(names) do -- nothing below a link: no write through it
    for i = 1, #e.parts - 1 do
      local prefix = table.concat(e.parts, "/", 1, i)
      if links[prefix] then return "entry " .. e.name .. " goes through the symlink " .. prefix end
    end
    if e.type == "l" then -- nor a link target through another link
      local cur = { table.unpack(e.parts, 1, #e.parts - 1) }
      for _, c in ipairs(split(e.target)) do
        local here = table.concat(cur, "/")
        if links[here] then
          return "symlink " .. e.name .. " -> " .. e.target .. " goes through the symlink " .. here
        end
        if c == ".." then cur[#cur] = nil else cur[#cur + 1] = c end
      end
    end
  end
  return nil
end

-- parse_zip_list(text) -> entries from `unzip -Z` (zipinfo) output
function M.parse_zip_list(text)
  local entries = {}
  for line in text:gmatch "[^\n]+" do
    local perm, name = line:match "^([%-dlrwxsStT?]+)%s+%S+%s+%S+%s+%d+%s+%S+%s+%S+%s+%S+%s+%d%d:%d%d%s(.*)$"
    if perm and #perm == 10 then
      local t = perm:sub(1, 1)
      entries[#entries + 1] = { type = t == "l" and "l" or t, name = name, target = t == "l" and "/?" or nil }
    end
  end
  return entries
end

local function list(ctx, fmt, src)
  local argv = fmt == "tar" and { "tar", "--list", "--verbose", "--file", src } or { "unzip", "-Z", src }
  local res = ctx.run:check({ argv = argv, env = { LC_ALL = "C" }, timeout = 600 }, KIND, src,
    "listing " .. src)
  if fmt == "zip" then
    local entries = M.parse_zip_list(res.stdout)
    for _, e in ipairs(entries) do
      if e.type == "l" then return nil, "symlink " .. e.name .. " in a zip archive (refused)" end
    end
    return entries
  end
  return M.parse_tar_list(res.stdout)
end

-- fix_modes(entries, dest): after unzip, which restores the archive's
-- modes, each listed file and directory loses the UNSAFE bits. A listed
-- entry that cannot be found fails: its mode could not be checked.
local function fix_modes(entries, dest, target)
  for _, e in ipairs(entries) do
    if e.type == "-" or e.type == "d" then
      local path = dest .. "/" .. table.concat(split(e.name), "/")
      local st, err = F.stat(path)
      if not st then
        fail(KIND, target, "extracted, but " .. path .. " cannot be looked at to check its mode: " .. tostring(err))
      end
      if st.type ~= "link" and st.mode & UNSAFE ~= 0 then
        local ok, cerr = F.chmod(path, st.mode & ~UNSAFE)
        if not ok then fail(KIND, target, "cannot take the group/world write and setuid bits off " .. path .. ": "
          .. tostring(cerr)) end
      end
    end
  end
end

-- shut(dest) -> dest's mode, after making it 0700 (root's alone) for now
local function shut(dest, target)
  local st, err = F.stat(dest)
  if not st or st.type ~= "directory" then
    fail(KIND, target, dest .. " is not a directory: " .. tostring(err or (st and st.type)))
  end
  local ok, cerr = F.chmod(dest, tonumber("0700", 8))
  if not ok then fail(KIND, target, "cannot close " .. dest .. " while extracting: " .. tostring(cerr)) end
  return st.mode & ~UNSAFE
end

local function stamp_of(o) return tostring(o.stamp or o.src) .. "\n" end

function N.extracted(ctx, o)
  local target = type(o) == "table" and tostring(o.dest) or "?"
  return ctx.run:resource(ctx, KIND, target, function()
    if type(o) ~= "table" or type(o.src) ~= "string" or type(o.dest) ~= "string" or not o.dest:match "^/" then
      fail(KIND, target, "src (the archive) and dest (an absolute directory) are required")
    end
    local fmt = M.format(o.src)
    if not fmt then fail(KIND, target, "cannot tell the format of " .. o.src .. " (.tar.gz, .tgz, .tar.xz, .zip, ...)") end
    local strip = tonumber(o.strip or 0)
    if fmt == "zip" and strip > 0 then
      fail(KIND, target, "strip works for tar archives only (unzip cannot drop leading components): "
        .. "extract " .. o.src .. " without strip, or use the tar archive of the release")
    end
    if o.creates and F.exists(o.creates) then return { status = "ok", message = "creates " .. o.creates .. " exists" } end
    if o.sentinel and F.read(o.sentinel) == stamp_of(o) then return { status = "ok", message = "sentinel " .. o.sentinel } end
    local message = "extract " .. o.src .. " into " .. o.dest
    if not F.exists(o.src) then
      if ctx.dry_run then return { status = "would change", message = message } end
      fail(KIND, target, "the archive " .. o.src .. " does not exist")
    end
    local entries, why = list(ctx, fmt, o.src)
    if entries then why = M.check(entries, strip) end
    if why then fail(KIND, target, "refused " .. o.src .. ": " .. why .. "; nothing was extracted") end
    if ctx.dry_run then return { status = "would change", message = message } end
    if not F.exists(o.dest) then
      local ok, err = F.mkdir(o.dest, { mode = tonumber("0755", 8), parents = true })
      if not ok then fail(KIND, target, "cannot create " .. o.dest .. ": " .. tostring(err)) end
    end
    local argv
    if fmt == "tar" then
      argv = { "tar", "--extract", "--no-same-owner", "--no-same-permissions", "--file", o.src, "--directory", o.dest }
      if strip > 0 then argv[#argv + 1] = "--strip-components=" .. strip end
    else
      argv = { "unzip", "-o", "-q", o.src, "-d", o.dest }
    end
    -- unzip sets the archive's modes as it goes: until they are fixed,
    -- only root may enter dest (a failed extraction leaves it so)
    local open_mode = fmt == "zip" and shut(o.dest, target)
    ctx.run:check({ argv = argv, umask = UMASK, timeout = 1800 }, KIND, target, "extracting " .. o.src)
    if fmt == "zip" then
      fix_modes(entries, o.dest, target)
      local ok, err = F.chmod(o.dest, open_mode)
      if not ok then fail(KIND, target, "cannot give " .. o.dest .. " its mode back: " .. tostring(err)) end
    end
    if o.sentinel then
      local dir = o.sentinel:match "^(.*)/[^/]+$"
      if dir and dir ~= "" and not F.exists(dir) then F.mkdir(dir, { mode = tonumber("0755", 8), parents = true }) end
      local ok, err = F.write(o.sentinel, stamp_of(o), { mode = tonumber("0644", 8) })
      if not ok then fail(KIND, target, "cannot write the sentinel " .. o.sentinel .. ": " .. tostring(err)) end
    end
    return { status = "changed", message = message }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["archive.extracted"] = { "An archive (tar or zip) extracted into a directory; every entry is checked first and one that would land outside refuses the whole archive; nothing extracted is group- or world-writable, setuid or setgid", {
    { "src", "string", true, "the archive on the target" },
    { "dest", "string", true, "the directory to extract into (created 0755)" },
    { "creates", "string", false, "a path that, when it exists, means it is extracted already" },
    { "sentinel", "string", false, "a file holding stamp once extracted (written last)" },
    { "stamp", "string", false, "what the sentinel holds (a version, a checksum; default src)" },
    { "strip", "integer", false, "leading path components removed from each entry (tar archives only)" },
  } },
}

return M
