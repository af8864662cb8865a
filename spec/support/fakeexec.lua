-- spec/support/fakeexec.lua: a fake exec transport for resource specs.
--
-- It records every command (argv or shell) and answers from canned results
-- keyed by the command line; a command nobody answered is an error, so a
-- spec notices any process it did not expect.
--
--   local fakeexec = require "support.fakeexec"
--   local fake = fakeexec.new()
--   fake:on("dpkg-query -W", { stdout = fixture "dpkg-query.txt" })  -- prefix, word-wise
--   fake:on("apt-get", function(opts) return { code = 0 } end)
--   fake:on("systemctl start nginx", { { code = 1, stderr = "boom" }, { code = 0 } }) -- in turn
--   local run = context.new_run{ exec = fake.exec, ... }
--   assert.same({ "apt-get ... install ... b" }, fake:lines "apt-get")
--
-- fakeexec.world{ ... } builds a temp root with the system files the
-- resources read (passwd, group, apt lists, sudoers.d, ...) and a run on it.
local M = {}

local function key_of(opts)
  if opts.argv then return table.concat(opts.argv, " ") end
  return "sh -c " .. tostring(opts.shell)
end

local function prefix_of(key, prefix)
  if key == prefix then return true end
  return key:sub(1, #prefix) == prefix and key:sub(#prefix + 1, #prefix + 1) == " "
end

local function normalize(r)
  return { code = r.code or 0, signal = r.signal, stdout = r.stdout or "", stderr = r.stderr or "",
    timed_out = r.timed_out or false, duration = r.duration or 0.001 }
end

function M.new()
  local fake = { calls = {}, answers = {} }
  function fake:on(prefix, answer)
    table.insert(self.answers, { prefix = prefix, answer = answer, used = 0 })
    return self
  end
  fake.exec = function(opts)
    assert(type(opts) == "table" and (opts.argv or opts.shell), "exec: argv or shell is required")
    local key = key_of(opts)
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.line = key
    table.insert(fake.calls, copy)
    for i = #fake.answers, 1, -1 do -- the latest answer wins
      local a = fake.answers[i]
      if prefix_of(key, a.prefix) then
        local r = a.answer
        if type(r) == "function" then r = r(opts, key) end
        if r == nil then return nil, "exec: " .. (opts.argv and opts.argv[1] or "sh") .. ": No such file or directory" end
        if r[1] then -- a list: answers in turn, the last one repeats
          a.used = a.used + 1
          r = r[math.min(a.used, #r)]
        end
        return normalize(r)
      end
    end
    error("fakeexec: no answer for: " .. key, 0)
  end
  -- fake:lines([prefix]) -> the command lines run (those starting with prefix)
  function fake:lines(prefix)
    local out = {}
    for _, c in ipairs(self.calls) do
      if not prefix or prefix_of(c.line, prefix) then out[#out + 1] = c.line end
    end
    return out
  end
  function fake:count(prefix) return #self:lines(prefix) end
  function fake:reset() self.calls = {} end
  return fake
end

-- fixture("facts/dpkg-query.txt") -> text of spec/fixtures/<name>
function M.fixture(name)
  local f = assert(io.open("spec/fixtures/" .. name, "rb"))
  local text = f:read "a"
  f:close()
  return text
end

function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read "a"
  f:close()
  return text
end

-- tmpdir() -> a new empty directory; rmtree(dir) removes it. Not under
-- /tmp: phanes run as root refuses Lua under a directory others can write
-- (the sticky /tmp too), and specs run scripts from here with `phanes lua`.
-- They live in build/spec_tmp of the working directory (the checkout).
local function spec_tmp()
  local lfs = require "lfs"
  local file = require "phanes.file"
  local base = lfs.currentdir() .. "/build/spec_tmp"
  assert(file.mkdir(base, { mode = tonumber("0755", 8), parents = true }))
  return base
end

function M.tmpdir()
  local file = require "phanes.file"
  local dir = assert(file.mkdtemp(spec_tmp() .. "/lua_"))
  assert(file.chmod(dir, tonumber("0755", 8)))
  return dir
end

function M.rmtree(dir)
  assert(dir:match "/build/spec_tmp/lua_[%w_]+$", "refusing to remove " .. dir)
  os.execute("rm -rf '" .. dir .. "'")
end

-- tree(dir) -> sorted list of every path under dir (relative), to prove
-- that a dry run wrote nothing
function M.tree(dir)
  local lfs = require "lfs"
  local out = {}
  local function walk(rel)
    for name in lfs.dir(dir .. rel) do
      if name ~= "." and name ~= ".." then
        local r = rel .. "/" .. name
        local attr = lfs.symlinkattributes(dir .. r)
        out[#out + 1] = r .. " " .. attr.mode .. " " .. attr.permissions .. " " .. attr.size
          .. " " .. attr.modification
        if attr.mode == "directory" then walk(r) end
      end
    end
  end
  walk ""
  table.sort(out)
  return out
end

-- world{ dry_run, secrets, config, facts, packages = dpkg text, services =
-- systemctl show text, hints = run hints } -> w = { root, fake, run, ctx, events, path(rel),
-- unit_file(name) }; every unit of the systemctl text has a unit file.
-- The root holds etc/passwd, etc/group, etc/sudoers.d, etc/apt/...,
-- var/lib/apt/lists (fresh), and the run's paths point there.
function M.world(o)
  o = o or {}
  local lfs = require "lfs"
  local context = require "phanes.engine.context"
  local root = M.tmpdir()
  for _, d in ipairs{ "/etc", "/etc/sudoers.d", "/etc/apt", "/etc/apt/sources.list.d",
    "/etc/apt/keyrings", "/var", "/var/lib", "/var/lib/apt", "/var/lib/apt/lists",
    "/var/cache", "/var/cache/apt", "/home", "/bin", "/lib", "/lib/systemd", "/lib/systemd/system" } do
    assert(lfs.mkdir(root .. d))
  end
  M.write(root .. "/etc/passwd", o.passwd or M.fixture "facts/passwd")
  M.write(root .. "/etc/group", o.group or M.fixture "facts/group")
  M.write(root .. "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages", "")
  M.write(root .. "/var/cache/apt/pkgcache.bin", "")
  local fake = M.new()
  fake:on("dpkg-query -W", { stdout = o.packages or M.fixture "facts/dpkg-query.txt" })
  local services = o.services or M.fixture "facts/systemctl-show.txt"
  -- like systemctl: the block of each unit asked (by Id or alias), one
  -- blank line between blocks
  local function block_of(unit)
    for block in (services .. "\n\n"):gmatch "(.-)\n\n+" do
      local id, names = block:match "Id=([^\n]*)", block:match "Names=([^\n]*)" or ""
      if id == unit or (" " .. names .. " "):find(" " .. unit .. " ", 1, true) then
        return block .. "\n"
      end
    end
    return "Id=" .. unit .. "\nNames=" .. unit .. "\nLoadState=not-found\n"
      .. "ActiveState=inactive\nSubState=dead\nUnitFileState=\n"
  end
  fake:on("systemctl show", function(opts)
    local blocks, i = {}, 3
    while i <= #opts.argv do
      local a = opts.argv[i]
      if a == "-p" then i = i + 1
      elseif a:sub(1, 1) ~= "-" then blocks[#blocks + 1] = block_of(a) end
      i = i + 1
    end
    return { code = 0, stdout = table.concat(blocks, "\n") }
  end)
  -- a unit file for every unit the canned systemctl output knows
  local function unit_file(name) M.write(root .. "/lib/systemd/system/" .. name, "") end
  for n, u in pairs(require("phanes.engine.facts").parse_systemctl_show(services)) do
    if u.load ~= "not-found" and n:find "%." then unit_file(n) end
  end
  local events = {}
  local w = { root = root, fake = fake, events = events }
  function w.path(rel) return root .. rel end
  -- w.unit_file("redis.service"): a unit a package would bring
  w.unit_file = unit_file
  w.run = context.new_run{
    exec = fake.exec,
    dry_run = o.dry_run,
    config = o.config or {},
    secrets = o.secrets,
    facts = o.facts or { init = "systemd", container = false },
    on_event = function(ev) if ev.type == "result" then events[#events + 1] = ev end end,
    on_log = function() end,
    interrupted = o.interrupted,
    hints = o.hints,
    paths = {
      passwd = root .. "/etc/passwd",
      group = root .. "/etc/group",
      sudoers_dir = root .. "/etc/sudoers.d",
      sources_dir = root .. "/etc/apt/sources.list.d",
      keyrings_dir = root .. "/etc/apt/keyrings",
      apt_lists = root .. "/var/lib/apt/lists",
      apt_pkgcache = root .. "/var/cache/apt/pkgcache.bin",
      -- absent unless a spec writes it: dpkg-query answers then
      dpkg_status = root .. "/var/lib/dpkg/status",
      dpkg_updates = root .. "/var/lib/dpkg/updates",
      curl = root .. "/bin/curl",
      wget = root .. "/bin/wget",
      unit_dirs = { root .. "/lib/systemd/system" },
    },
  }
  w.ctx = w.run:module({ name = o.module or "test" }, o.cfg or {})
  function w.close() M.rmtree(root) end
  -- w.last() -> the latest event
  function w.last() return events[#events] end
  return w
end

return M
