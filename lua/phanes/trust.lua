-- trust.lua: what phanes agrees to load when it runs as root, by OpenSSH's
-- StrictModes rule. A file (a module, profile, template, engine file, the
-- script of `phanes lua`) is loaded only when the file and every directory
-- above it, up to /, is owned by root or the invoking user (SUDO_UID) and
-- is neither group- nor world-writable. A sticky directory such as /tmp is
-- world-writable, so nothing under it is loaded as root (StrictModes refuses
-- it too). Symlinks are resolved first; the rule applies to the real path,
-- and the caller reads that path, so nobody else can swap it in between.
-- boot.lua always loads this file from the binary.
-- Copies of the primitives: specs may replace fields of phanes.file later.
-- lfs.symlinkattributes gives uid and mode without a passwd lookup (the
-- common case, a good file); phanes.file.stat names the owner on a refusal.
local file, sys = {}, {}
for k, v in pairs(require "phanes.file") do file[k] = v end
for k, v in pairs(require "phanes.sys") do sys[k] = v end
local lstat = require("lfs").symlinkattributes

local M = {}

local WRITABLE_BY_OTHERS = tonumber("022", 8)

-- trust.active() -> true when the rule applies (phanes runs as root)
function M.active()
  return sys.geteuid() == 0
end

-- trust.uids([env]) -> set of the uids that may own what root loads: root,
-- the real user and the user sudo was run by (env.SUDO_UID).
function M.uids(env)
  local uids = { [0] = true, [sys.getuid()] = true }
  local sudo = tonumber((env or sys.environ()).SUDO_UID or "")
  if sudo and math.type(sudo) == "integer" then uids[sudo] = true end
  return uids
end

local function owner(st)
  return string.format("%s (uid %d)", st.owner or "?", st.uid)
end

-- Why st (of path) may not be trusted, and what to do; nil when it may be.
local function fault(path, st, uids)
  if not uids[st.uid] then
    return string.format("%s is owned by %s, not by root or the invoking user", path, owner(st)),
      "if you trust it: chown root " .. path
  end
  if st.mode & WRITABLE_BY_OTHERS ~= 0 then
    local who = st.mode & tonumber("002", 8) ~= 0 and "world" or "group"
    local sticky = st.type == "directory" and st.mode & tonumber("1000", 8) ~= 0
    return string.format("%s is %s-writable (mode %04o, owner %s)", path, who, st.mode, owner(st)),
      sticky and "move it to a directory only root can write" or ("if you trust it: chmod go-w " .. path)
  end
end

local function parent(path)
  local up = path:match "^(.*)/[^/]*$"
  if up == nil or up == "" then return "/" end
  return up
end

M.RULE = "as root, phanes loads only what nobody but root and the invoking user can change, "
  .. "in directories likewise, like OpenSSH's StrictModes"

-- trust.check(path[, opts]) -> real path | nil, err
-- opts.uids: set from trust.uids() (default); opts.seen: a table remembering
-- the directories already found good (to check a tree without repeating);
-- opts.from: where path came from, for the message.
-- err names the file, its owner, what is wrong and where, and a fix.
function M.check(path, opts)
  opts = opts or {}
  local uids, seen = opts.uids or M.uids(), opts.seen or {}
  local real, rerr = sys.realpath(path)
  if not real then return nil, "cannot check " .. path .. ": " .. tostring(rerr) end
  local top, why, fix
  local p = real
  while not seen[p] do
    local attr, serr = lstat(p)
    if not attr then return nil, "cannot check " .. path .. ": " .. tostring(serr) end
    local perm = attr.permissions
    if not uids[attr.uid] or perm:sub(5, 5) == "w" or perm:sub(8, 8) == "w" then
      local st, ferr = file.stat(p)
      if not st then return nil, "cannot check " .. path .. ": " .. tostring(ferr) end
      why, fix = fault(p, st, uids)
      if why then
        top = p == real and st or file.stat(real) or st
        break
      end
    end
    if p ~= real then seen[p] = true end
    if p == "/" then break end
    p = parent(p)
  end
  if not why then return real end
  return nil, string.format("refusing %s%s (owner %s%s) as root: %s; %s (%s)",
    path, path == real and "" or (" = " .. real), owner(top),
    opts.from and (", on the search path from " .. opts.from) or "", why, fix, M.RULE)
end

-- trust.tree(dir[, opts]) -> true | nil, err: dir, everything under it
-- and every directory above it. Symlinks are checked where they lead (a
-- linked directory is not walked: its files are checked when loaded).
function M.tree(dir, opts)
  local real, err = M.check(dir, opts)
  if not real then return nil, err end
  if lstat(dir, "mode") ~= "directory" then return true end
  for _, name in ipairs(file.list(dir) or {}) do
    local ok, terr = M.tree(dir .. "/" .. name, opts)
    if not ok then return nil, terr end
  end
  return true
end

return M
