-- res/user.lua: users, groups, SSH keys and sudo rights.
--
--   ctx.group.present { name = "deploy", system = false }
--   ctx.user.present { name = "deploy", shell = "/bin/bash", groups = { "sudo", "docker" },
--     home = "/home/deploy", system = false, create_home = true }
--   ctx.user.authorized_keys { user = "deploy", keys = { "ssh-ed25519 AAAA... me@laptop" },
--     exclusive = false }
--   ctx.user.sudoers { name = "deploy", content = "deploy ALL=(ALL) NOPASSWD:ALL\n" }
--   ctx.user.get "deploy"   -- reader: { name, uid, gid, gecos, home, shell } | nil
--   ctx.user.list()         -- reader: every account of /etc/passwd, by uid
--   ctx.group.get "docker"  -- reader: { name, gid, members = { [user] = true } } | nil
--
-- Users and groups are read from /etc/passwd and /etc/group (no process)
-- and read again after a change. user.present creates a missing user with
-- useradd, and for an existing one fixes the shell or home when given and
-- adds the missing supplementary groups (usermod -aG): it never removes a
-- group. authorized_keys makes ~/.ssh (0700) and ~/.ssh/authorized_keys
-- (0600), owned by the user, adds the missing keys and keeps the others
-- unless exclusive = true; a link the user planted for ~/.ssh or the file
-- fails the resource (see res/file.lua). sudoers writes /etc/sudoers.d/<name> (0440),
-- checked with `visudo -cf` on a temp copy before it is installed, so a
-- broken rule never locks sudo.
local context = require "phanes.engine.context"
local facts = require "phanes.engine.facts"
local file = require "phanes.res.file"
local F = require "phanes.file"

local M = {}
local U, G = {}, {}
M.namespaces = { user = U, group = G }
M.required = { ["user.present"] = { "name" }, ["user.authorized_keys"] = { "user", "keys" },
  ["user.sudoers"] = { "name", "content" }, ["group.present"] = { "name" } } -- checked by the context

local fail = context.fail

local function read(path) return F.read(path) or "" end

-- accounts(run) -> { users = {...}, groups = {...} } (facts.parse_passwd/group)
function M.accounts(run)
  local c = run.cache
  if not c.accounts then
    c.accounts = { users = facts.parse_passwd(read(run.paths.passwd)),
      groups = facts.parse_group(read(run.paths.group)) }
  end
  return c.accounts
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
  return c
end

-- Readers (no event): copies, so a module cannot change the cache.
function U.get(ctx, name)
  local u = M.accounts(ctx.run).users[name]
  return u and copy(u)
end

function U.list(ctx)
  local list = {}
  for _, u in pairs(M.accounts(ctx.run).users) do list[#list + 1] = copy(u) end
  table.sort(list, function(a, b) return a.uid < b.uid or (a.uid == b.uid and a.name < b.name) end)
  return list
end

function G.get(ctx, name)
  local g = M.accounts(ctx.run).groups[name]
  return g and copy(g)
end

local function valid_name(name)
  return type(name) == "string" and #name <= 32 and name:match "^[%a_][%w_.-]*%$?$" ~= nil
end

local function check_name(kind, name, what)
  if not valid_name(name) then
    fail(kind, tostring(name), "not a valid " .. what .. " name: " .. tostring(name)
      .. " (letters, digits, _ . -, starting with a letter or _)")
  end
end

local function in_group(acc, user, gname)
  local g = acc.groups[gname]
  if not g then return false end
  return g.members[user.name] or g.gid == user.gid
end

local function create_user(run, o, acc)
  local argv = { "useradd" }
  local function add(...) for _, a in ipairs{ ... } do argv[#argv + 1] = a end end
  if o.system then add "--system" end
  add(o.create_home == false and "--no-create-home" or "--create-home")
  add("--shell", o.shell or "/bin/bash")
  if o.home then add("--home-dir", o.home) end
  if o.uid then add("--uid", tostring(o.uid)) end
  if o.group then add("--gid", tostring(o.group)) end
  if o.groups and #o.groups > 0 then
    for _, g in ipairs(o.groups) do
      if not acc.groups[g] then
        fail("user.present", o.name, "group " .. g .. " does not exist: create it first "
          .. "(ctx.group.present) or install the package that brings it")
      end
    end
    add("--groups", table.concat(o.groups, ","))
  end
  add("--", o.name)
  run:check({ argv = argv }, "user.present", o.name, "useradd")
end

function U.present(ctx, o)
  local kind = "user.present"
  local run = ctx.run
  return run:resource(ctx, kind, tostring(o and o.name), function()
    check_name(kind, o.name, "user")
    local acc = M.accounts(run)
    local u = acc.users[o.name]
    if not u then
      local msg = "created" .. (o.groups and #o.groups > 0 and (" in " .. table.concat(o.groups, ", ")) or "")
      if ctx.dry_run then return { status = "would change", message = msg } end
      create_user(run, o, acc)
      run:invalidate("accounts")
      return { status = "changed", message = msg }
    end
    local argv, changes = { "usermod" }, {}
    if o.shell and u.shell ~= o.shell then
      argv[#argv + 1], argv[#argv + 2] = "--shell", o.shell
      changes[#changes + 1] = "shell " .. u.shell .. " -> " .. o.shell
    end
    if o.home and u.home ~= o.home then
      argv[#argv + 1], argv[#argv + 2] = "--home", o.home
      changes[#changes + 1] = "home " .. u.home .. " -> " .. o.home
    end
    local missing = {}
    for _, g in ipairs(o.groups or {}) do
      if not in_group(acc, u, g) then missing[#missing + 1] = g end
    end
    if #missing > 0 then
      for _, g in ipairs(missing) do
        if not acc.groups[g] and not ctx.dry_run then
          fail(kind, o.name, "group " .. g .. " does not exist: create it first (ctx.group.present) "
            .. "or install the package that brings it")
        end
      end
      for _, a in ipairs{ "--append", "--groups", table.concat(missing, ",") } do argv[#argv + 1] = a end
      changes[#changes + 1] = "added to " .. table.concat(missing, ", ")
    end
    if #changes == 0 then return { status = "ok" } end
    local msg = table.concat(changes, ", ")
    if ctx.dry_run then return { status = "would change", message = msg } end
    argv[#argv + 1], argv[#argv + 2] = "--", o.name
    run:check({ argv = argv }, kind, o.name, "usermod")
    run:invalidate("accounts")
    return { status = "changed", message = msg }
  end)
end

function G.present(ctx, o)
  local kind = "group.present"
  local run = ctx.run
  return run:resource(ctx, kind, tostring(o and o.name), function()
    check_name(kind, o.name, "group")
    local g = M.accounts(run).groups[o.name]
    if g then
      if o.gid and g.gid ~= tonumber(o.gid) then
        fail(kind, o.name, "exists with gid " .. g.gid .. ", not " .. tostring(o.gid)
          .. ": phanes does not renumber groups (files owned by the old gid would be orphaned)")
      end
      return { status = "ok" }
    end
    if ctx.dry_run then return { status = "would change", message = "created" } end
    local argv = { "groupadd" }
    if o.system then argv[#argv + 1] = "--system" end
    if o.gid then argv[#argv + 1], argv[#argv + 2] = "--gid", tostring(o.gid) end
    argv[#argv + 1], argv[#argv + 2] = "--", o.name
    run:check({ argv = argv }, kind, o.name, "groupadd")
    run:invalidate("accounts")
    return { status = "changed", message = "created" }
  end)
end

-- key_id("ssh-ed25519 AAAA... comment") -> "ssh-ed25519 AAAA..." (options
-- and comments ignored), nil for a blank or comment line
function M.key_id(line)
  if line:match "^%s*#" or line:match "^%s*$" then return nil end
  local words = {}
  for w in line:gmatch "%S+" do words[#words + 1] = w end
  for i = 1, #words - 1 do
    if words[i]:match "^ssh%-" or words[i]:match "^ecdsa%-" or words[i]:match "^sk%-" then
      return words[i] .. " " .. words[i + 1]
    end
  end
  return line
end

local function key_list(keys)
  if type(keys) == "string" then keys = { keys } end
  local out = {}
  for _, k in ipairs(keys or {}) do
    for line in k:gmatch "[^\n]+" do
      line = line:gsub("^%s+", ""):gsub("%s+$", "")
      if M.key_id(line) then out[#out + 1] = line end
    end
  end
  return out
end

-- keys_content(old, keys, exclusive) -> new authorized_keys text
function M.keys_content(old, keys, exclusive)
  if exclusive then return #keys > 0 and table.concat(keys, "\n") .. "\n" or "" end
  local have = {}
  for line in old:gmatch "[^\n]+" do
    local id = M.key_id(line)
    if id then have[id] = true end
  end
  local add = {}
  for _, k in ipairs(keys) do
    local id = M.key_id(k)
    if not have[id] then add[#add + 1] = k have[id] = true end
  end
  if #add == 0 then return old end
  local sep = (old == "" or old:sub(-1) == "\n") and "" or "\n"
  return old .. sep .. table.concat(add, "\n") .. "\n"
end

function U.authorized_keys(ctx, o)
  local kind = "user.authorized_keys"
  local run = ctx.run
  local who = type(o) == "table" and o.user
  return run:resource(ctx, kind, "~" .. tostring(who) .. "/.ssh/authorized_keys", function()
    check_name(kind, who, "user")
    local keys = key_list(o.keys)
    if #keys == 0 and not o.exclusive then fail(kind, who, "no keys given") end
    local u = M.accounts(run).users[who]
    if not u and not ctx.dry_run then
      fail(kind, who, "user " .. who .. " does not exist: add ctx.user.present { name = \"" .. who .. "\" } first")
    end
    local home = u and u.home or o.home or ("/home/" .. who)
    local uid, gid = u and u.uid or who, u and u.gid or nil
    local dir = file.ensure_directory(ctx, { path = home .. "/.ssh", mode = "0700", owner = uid, group = gid }, kind)
    if dir.message then dir.message = "~/.ssh " .. dir.message end
    local path = home .. "/.ssh/authorized_keys"
    local st = file.stat(path, kind, true)
    local old = ""
    if st and st.type == "file" then
      local err
      old, err = F.read(path)
      if not old then fail(kind, path, tostring(err)) end
    end
    local r = file.ensure_content(ctx, { path = path, content = M.keys_content(old, keys, o.exclusive),
      mode = "0600", owner = uid, group = gid }, kind)
    local out = file.combine(dir, r)
    out.target = path
    return out
  end)
end

function U.sudoers(ctx, o)
  local kind = "user.sudoers"
  local run = ctx.run
  local name = type(o) == "table" and o.name
  local path = run.paths.sudoers_dir .. "/" .. tostring(name)
  return run:resource(ctx, kind, path, function()
    -- sudo skips files in sudoers.d whose name has a dot or ends with ~
    if type(name) ~= "string" or not name:match "^[%w_-]+$" then
      fail(kind, path, "the drop-in name may hold only letters, digits, _ and - "
        .. "(sudo ignores files in sudoers.d with a dot or ending in ~)")
    end
    if type(o.content) ~= "string" or o.content == "" then fail(kind, path, "content is required") end
    local content = o.content:sub(-1) == "\n" and o.content or (o.content .. "\n")
    return file.ensure_content(ctx, { path = path, content = content, mode = "0440", owner = 0, group = 0,
      validate = o.validate or { "visudo", "-cf", "%s" } }, kind)
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["user.present"] = { "A user (created with useradd; shell, home and missing groups fixed, never a group removed)", {
    { "name", "string", true, "the user name" },
    { "shell", "string", false, "login shell (default /bin/bash for a new user)" },
    { "groups", "list", false, "supplementary groups (must exist)" },
    { "home", "string", false, "home directory" },
    { "system", "boolean", false, "a system account" },
    { "create_home", "boolean", false, "make the home (default true)" },
    { "uid", "integer", false, "user id of a new user" },
    { "group", "string", false, "primary group of a new user" },
  } },
  ["user.authorized_keys"] = { "SSH keys in ~/.ssh/authorized_keys (0600, owned by the user)", {
    { "user", "string", true, "whose keys" },
    { "keys", "list or string", true, "public key lines" },
    { "exclusive", "boolean", false, "remove the keys not listed" },
  } },
  ["user.sudoers"] = { "/etc/sudoers.d/<name> (0440), checked by visudo -cf before it is installed", {
    { "name", "string", true, "the file's name" },
    { "content", "string", true, "the rules" },
  } },
  ["group.present"] = { "A group (created with groupadd)", {
    { "name", "string", true, "the group name" },
    { "system", "boolean", false, "a system group" },
    { "gid", "integer", false, "group id of a new group (an existing one with another fails)" },
  } },
  ["user.get"] = { "An account of /etc/passwd: { name, uid, gid, gecos, home, shell } or nil", {
    { "name", "string", true, "(positional) the user name" },
  }, reader = true },
  ["user.list"] = { "Every account of /etc/passwd, by uid", {}, reader = true },
  ["group.get"] = { "A group of /etc/group: { name, gid, members = { [user] = true } } or nil", {
    { "name", "string", true, "(positional) the group name" },
  }, reader = true },
}

return M
