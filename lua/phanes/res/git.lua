-- res/git.lua: a git checkout pinned at a ref.
--
--   ctx.git.checkout { repo = "https://github.com/comfyanonymous/ComfyUI", ref = "v0.3.10",
--     dest = "/opt/comfyui", owner = "comfyui", depth = nil, update = false }
--
-- A missing dest is cloned (into an empty directory; the parent must
-- exist) and checked out at ref, detached. An existing checkout is moved to
-- ref when HEAD is elsewhere: ref is looked up locally as a tag, a branch of
-- origin or a commit, and fetched only when it is not known there (a pinned
-- tag or commit costs no network on a re-run; a branch follows origin only
-- with update = true, one fetch per run). A checkout with changes to
-- tracked files is never discarded: the resource fails listing them. A
-- checkout whose origin is another repository fails too. With owner, git
-- runs as that user (runuser), never as root in a directory the user owns
-- (a user's .git/config or hooks would run as root). A dry run shows the
-- current and the wanted commit (a clone: the ref).
local context = require "phanes.engine.context"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { git = N }
M.required = { ["git.checkout"] = { "repo", "ref", "dest" } } -- checked by the context

local KIND = "git.checkout"
local fail = context.fail

local function git(ctx, o, args, allow_fail)
  local argv = {}
  if o.owner then
    for _, a in ipairs { "runuser", "-u", tostring(o.owner), "--" } do argv[#argv + 1] = a end
  end
  for _, a in ipairs { "git", "-C", o.dest } do argv[#argv + 1] = a end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local opts = { argv = argv, env = { GIT_TERMINAL_PROMPT = "0", LC_ALL = "C" }, timeout = o.timeout or 1800 }
  if allow_fail then return ctx.run.exec(opts) end
  return ctx.run:check(opts, KIND, o.dest, "git " .. args[1])
end

-- the origin URL from .git/config, read without a process
local function origin_of(dest)
  local text = F.read(dest .. "/.git/config") or ""
  local section = text:match '%[remote "origin"%]\n(.-)\n%[' or text:match '%[remote "origin"%]\n(.*)$' or ""
  return section:match "\n?%s*url%s*=%s*([^\n]-)%s*\n" or section:match "url%s*=%s*([^\n]-)%s*$"
end

-- Read without a process, when the files say it for sure (else nil: ask
-- git): HEAD when detached, and the commit of a ref from packed-refs
-- written "fully-peeled" (an annotated tag has its ^commit line), or a
-- loose remote branch. Only 40 hex digits are taken.
local function hex(s) return s and s:match "^(%x+)%s*$" and #s:match "^(%x+)" == 40 and s:match "^(%x+)" or nil end

local function head_file(dest) return hex(F.read(dest .. "/.git/HEAD")) end

-- packed(dest, name) -> id | false (surely absent) | nil (ask git)
local function packed(dest, name)
  local text = F.read(dest .. "/.git/packed-refs")
  if not text or not text:match "^# pack%-refs with:[^\n]* fully%-peeled" then return nil end
  local id, rest = nil, nil
  for line in text:gmatch "[^\n]+" do
    if id then
      return line:match "^%^(%x+)$" or id -- the next line peels an annotated tag
    end
    local oid, ref = line:match "^(%x+) (%S+)$"
    if ref == name then id, rest = oid, true end
  end
  if rest then return id end
  return false -- surely not a ref of this repository
end

local function ref_file(dest, name)
  if F.exists(dest .. "/.git/" .. name) then
    -- a loose ref: a branch of origin is a commit; a tag may be a tag object
    return name:match "^refs/remotes/" and hex(F.read(dest .. "/.git/" .. name)) or nil
  end
  local id = packed(dest, name)
  if id == false then return false end
  return hex(id)
end

-- resolve(ctx, o) -> full commit id of ref known locally, or nil
local function resolve(ctx, o)
  for _, cand in ipairs { "refs/tags/" .. o.ref, "refs/remotes/origin/" .. o.ref, o.ref } do
    local known
    if cand ~= o.ref then
      if not o.ref:find "%.%." then known = ref_file(o.dest, cand) end
    elseif hex(o.ref) and head_file(o.dest) == o.ref:lower() then known = o.ref:lower() end
    if known then return known end
    if known == false then goto next end
    local res = git(ctx, o, { "rev-parse", "--verify", "--quiet", cand .. "^{commit}" }, true)
    if res and res.code == 0 then return (res.stdout:match "^(%x+)") end
    ::next::
  end
  return nil
end

local function fetch(ctx, o)
  git(ctx, o, { "fetch", "--quiet", "--tags", "--force", "origin" })
end

local function want_commit(ctx, o)
  if o.update then fetch(ctx, o) end
  local want = resolve(ctx, o)
  if not want and not o.update then
    fetch(ctx, o)
    want = resolve(ctx, o)
  end
  if not want then fail(KIND, o.dest, "ref " .. o.ref .. " is not in " .. o.repo .. " (a tag, a branch or a commit)") end
  return want
end

local function short(id) return id and id:sub(1, 12) or "?" end

local function clone(ctx, o)
  local st = F.stat(o.dest)
  if st and st.type ~= "directory" then fail(KIND, o.dest, "exists and is a " .. st.type .. ", not a git checkout") end
  if st then
    local entries = F.list(o.dest) or {}
    if #entries > 0 then fail(KIND, o.dest, "exists, is not empty and is not a git checkout: move it away or empty it") end
  end
  if ctx.dry_run then return { status = "would change", message = "clone " .. o.repo .. " at " .. o.ref } end
  if not st then
    local ok, err = F.mkdir(o.dest, { mode = tonumber("0755", 8), owner = o.owner, group = o.group })
    if not ok then fail(KIND, o.dest, "cannot create it: " .. tostring(err)) end
  end
  local args = { "clone", "--quiet" }
  if o.depth then
    for _, a in ipairs { "--depth", tostring(o.depth), "--branch", o.ref } do args[#args + 1] = a end
  end
  args[#args + 1], args[#args + 2], args[#args + 3] = "--", o.repo, "."
  git(ctx, o, args)
  local want = want_commit(ctx, o)
  git(ctx, o, { "checkout", "--quiet", "--detach", want })
  return { status = "changed", message = "cloned " .. o.repo .. " at " .. o.ref .. " (" .. short(want) .. ")" }
end

function N.checkout(ctx, o)
  local target = type(o) == "table" and tostring(o.dest) or "?"
  return ctx.run:resource(ctx, KIND, target, function()
    if type(o) ~= "table" or type(o.repo) ~= "string" or o.repo == "" or type(o.ref) ~= "string"
      or o.ref == "" or o.ref:match "^%-" or type(o.dest) ~= "string" or not o.dest:match "^/" then
      fail(KIND, target, "repo, ref and dest (absolute) are required")
    end
    if not F.exists(o.dest .. "/.git") then return clone(ctx, o) end
    local origin = origin_of(o.dest)
    if origin ~= o.repo then
      fail(KIND, o.dest, "is a checkout of " .. tostring(origin) .. ", not " .. o.repo
        .. ": move it away, or point its origin there (git remote set-url origin " .. o.repo .. ")")
    end
    local head = head_file(o.dest) or git(ctx, o, { "rev-parse", "--verify", "HEAD" }).stdout:match "^(%x+)"
    local want = want_commit(ctx, o)
    if head == want then return { status = "ok", message = "at " .. o.ref .. " (" .. short(want) .. ")" } end
    local dirty = git(ctx, o, { "status", "--porcelain", "--untracked-files=no" }).stdout
    if dirty:match "%S" then
      fail(KIND, o.dest, "has changes to tracked files, not discarded: commit, stash or revert them first",
        context.tail(dirty, 20))
    end
    local message = short(head) .. " -> " .. short(want) .. " (" .. o.ref .. ")"
    if ctx.dry_run then return { status = "would change", message = message } end
    git(ctx, o, { "checkout", "--quiet", "--detach", want })
    return { status = "changed", message = message }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["git.checkout"] = { "A git checkout pinned at a ref (cloned when missing; never discards local changes)", {
    { "repo", "string", true, "the repository URL" },
    { "ref", "string", true, "a tag, branch or commit" },
    { "dest", "string", true, "the checkout directory" },
    { "owner", "string", false, "git runs as this user (runuser)" },
    { "depth", "integer", false, "shallow clone depth" },
    { "update", "boolean", false, "a branch follows origin (one fetch per run)" },
  } },
}

return M
