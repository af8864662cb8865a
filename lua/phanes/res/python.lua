-- res/python.lua: a Python virtual environment with what it must hold.
--
--   ctx.python.venv { path = "/opt/comfyui/venv", requirements = "/opt/comfyui/requirements.txt",
--     packages = { "torch", "torchvision" }, index_url = "https://pypi.org/simple",
--     extra_index_url = "https://download.pytorch.org/whl/cpu", owner = "comfyui" }
--   ctx.python.venv { path = "/opt/app/venv", packages = { "requests==2.32.3" },
--     find_links = "/srv/wheels", no_index = true }
--
-- A missing venv is created (`python3 -m venv`; the directory is made
-- 0755 and owned by owner first, its parent must exist). packages are
-- installed only when missing: a name is there when the venv's
-- site-packages holds its .dist-info (read without a process), with the
-- same version when the spec pins one with ==; other specifiers are taken
-- as met by any version. requirements (a file on the target) is compared
-- by hash: its sha256, with the index options, is stored beside the venv
-- (<path>/.phanes-requirements, one line per requirements file) after a
-- successful `pip install -r`, so an unchanged file costs no pip run; a
-- changed one, or a new venv, runs pip again. packages are installed
-- before requirements (a torch from its own index first). pip runs as
-- owner (runuser) when given, with --no-input --no-cache-dir, and the
-- index options: index_url (--index-url), extra_index_url (a string or a
-- list, --extra-index-url), find_links (--find-links), no_index,
-- trusted_host (a string or a list: hosts pip may reach over plain http,
-- --trusted-host; pip refuses an http:// index elsewhere). A failed
-- pip run stores no hash (the next run tries again) and fails with pip's
-- last lines. A dry run says what would change (create, which packages,
-- requirements new or changed) and runs nothing.
local context = require "phanes.engine.context"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { python = N }

local KIND = "python.venv"
local fail = context.fail
local STAMP = ".phanes-requirements"

-- normalize("Foo_Bar.baz") -> "foo-bar-baz" (PEP 503)
function M.normalize(name) return (name:lower():gsub("[-_.]+", "-")) end

-- parse_spec("torch==2.1.0") -> "torch", "2.1.0"; ("numpy>=1") -> "numpy", nil
function M.parse_spec(spec)
  local name, rest = spec:match "^%s*([%w][%w._%-]*)%s*(.-)%s*$"
  if not name then return nil end
  rest = rest:gsub("^%[[^%]]*%]%s*", "") -- extras
  local pinned = rest:match "^==%s*([%w._+!%-]+)$"
  return M.normalize(name), pinned
end

-- installed(path) -> { [normalized name] = version } from site-packages
function M.installed(path)
  local have = {}
  for _, lib in ipairs { "lib", "lib64" } do
    for _, py in ipairs(F.list(path .. "/" .. lib) or {}) do
      if py:match "^python%d" then
        for _, e in ipairs(F.list(path .. "/" .. lib .. "/" .. py .. "/site-packages") or {}) do
          local name, version = e:match "^(.-)%-([^-]+)%.dist%-info$"
          if name then have[M.normalize(name)] = version end
        end
      end
    end
  end
  return have
end

-- the stored hashes: { [requirements path] = sha256 }
local function read_stamps(path)
  local t = {}
  for line in (F.read(path .. "/" .. STAMP) or ""):gmatch "[^\n]+" do
    local sum, file = line:match "^(%x+) (.+)$"
    if sum then t[file] = sum end
  end
  return t
end

local function write_stamps(ctx, o, t)
  local lines, keys = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do lines[#lines + 1] = t[k] .. " " .. k end
  local dest = o.path .. "/" .. STAMP
  local ok, err = F.write(dest, table.concat(lines, "\n") .. "\n", { mode = tonumber("0644", 8) })
  if ok and o.owner then ok, err = F.chown(dest, o.owner, o.group) end
  if not ok then fail(KIND, dest, "cannot store the requirements' hash: " .. tostring(err)) end
end

local function list_of(v)
  if v == nil or v == "" then return {} end
  if type(v) == "string" then return { v } end
  return v
end

-- the pip options for the indexes, also part of the requirements' hash
local function index_args(o)
  local args = {}
  if o.no_index then args[#args + 1] = "--no-index" end
  if o.index_url and o.index_url ~= "" then args[#args + 1] = "--index-url=" .. o.index_url end
  for _, u in ipairs(list_of(o.extra_index_url)) do args[#args + 1] = "--extra-index-url=" .. u end
  for _, u in ipairs(list_of(o.find_links)) do args[#args + 1] = "--find-links=" .. u end
  for _, h in ipairs(list_of(o.trusted_host)) do args[#args + 1] = "--trusted-host=" .. h end
  return args
end

local function as_owner(o, argv)
  if not o.owner then return argv end
  local out = { "runuser", "-u", tostring(o.owner), "--" }
  for _, a in ipairs(argv) do out[#out + 1] = a end
  return out
end

local function pip(ctx, o, what, args)
  local argv = { o.path .. "/bin/python", "-m", "pip", "install", "--no-input", "--no-cache-dir",
    "--disable-pip-version-check" }
  for _, a in ipairs(index_args(o)) do argv[#argv + 1] = a end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local res, err = ctx.run.exec { argv = as_owner(o, argv), env = { LC_ALL = "C.UTF-8", PIP_NO_INPUT = "1" },
    cwd = o.path, timeout = o.timeout or 7200 }
  if res and res.code == 0 then return end
  local from = {}
  for _, a in ipairs(index_args(o)) do
    local url = a:match "^%-%-[%w-]+=(.*)$"
    if url and not a:match "^%-%-trusted" then from[#from + 1] = url end
  end
  local why = not res and tostring(err) or res.timed_out and "timed out"
    or res.signal and ("killed by signal " .. res.signal) or ("exit " .. tostring(res.code))
  fail(KIND, o.path, what .. " failed (" .. why .. ") with the index "
    .. (#from > 0 and table.concat(from, ", ") or "pip's default (PyPI)")
    .. ": is it reachable, and does it have the package?",
    res and context.tail(res.stderr ~= "" and res.stderr or res.stdout, 6) or nil)
end

local function create(ctx, o)
  local st = F.stat(o.path)
  if st and st.type ~= "directory" then fail(KIND, o.path, "exists and is a " .. st.type .. ", not a venv") end
  if st and #(F.list(o.path) or {}) > 0 then
    fail(KIND, o.path, "exists, is not empty and is not a venv (no pyvenv.cfg): move it away or empty it")
  end
  if not st then
    local ok, err = F.mkdir(o.path, { mode = tonumber("0755", 8), owner = o.owner, group = o.group })
    if not ok then fail(KIND, o.path, "cannot create it: " .. tostring(err)) end
  end
  local res, err = ctx.run.exec { argv = as_owner(o, { o.python or "python3", "-m", "venv", o.path }),
    env = { LC_ALL = "C.UTF-8" }, timeout = 600 }
  if not res or res.code ~= 0 then
    local out = res and (res.stderr ~= "" and res.stderr or res.stdout) or tostring(err)
    fail(KIND, o.path, "python3 -m venv failed" .. (res and (" (exit " .. tostring(res.code) .. ")") or "")
      .. ": is python3-venv installed? (ctx.pkg.installed { \"python3-venv\" })", context.tail(out, 5))
  end
end

local function check_args(o, target)
  if type(o) ~= "table" or type(o.path) ~= "string" or not o.path:match "^/" then
    fail(KIND, target, "path (absolute) is required")
  end
  if o.requirements ~= nil and (type(o.requirements) ~= "string" or not o.requirements:match "^/") then
    fail(KIND, o.path, "requirements must be the absolute path of a requirements file on the host")
  end
  if o.packages ~= nil and type(o.packages) ~= "table" then fail(KIND, o.path, "packages must be a list") end
  for _, p in ipairs(o.packages or {}) do
    if type(p) ~= "string" or p:match "^%s*%-" or not M.parse_spec(p) then
      fail(KIND, o.path, "packages: " .. tostring(p) .. " is not a requirement like name or name==1.2")
    end
  end
end

-- the hash of a requirements file with the index options
local function req_hash(o)
  local text = F.read(o.requirements)
  if not text then return nil end
  return F.sha256(text .. "\0" .. table.concat(index_args(o), "\0"))
end

local function body(ctx, o)
  local fresh = not F.exists(o.path .. "/pyvenv.cfg")
  local have = fresh and {} or M.installed(o.path)
  local missing = {}
  for _, spec in ipairs(o.packages or {}) do
    local name, pinned = M.parse_spec(spec)
    if not have[name] or (pinned and have[name] ~= pinned) then missing[#missing + 1] = spec end
  end
  local stamps = fresh and {} or read_stamps(o.path)
  local want_hash = o.requirements and req_hash(o)
  local req_todo = o.requirements and (not want_hash or stamps[o.requirements] ~= want_hash)
  local msgs = {}
  if fresh then msgs[#msgs + 1] = "create venv" end
  if #missing > 0 then msgs[#msgs + 1] = "install " .. table.concat(missing, " ") end
  if req_todo then
    msgs[#msgs + 1] = "pip install -r " .. o.requirements
      .. (not want_hash and " (not there yet)" or stamps[o.requirements] and " (changed)" or "")
  end
  if #msgs == 0 then return { status = "ok" } end
  local message = table.concat(msgs, "; ")
  if ctx.dry_run then return { status = "would change", message = message } end
  if fresh then create(ctx, o) end
  if #missing > 0 then pip(ctx, o, "pip install " .. table.concat(missing, " "), missing) end
  if req_todo then
    if not want_hash then fail(KIND, o.path, "requirements file " .. o.requirements .. " cannot be read") end
    pip(ctx, o, "pip install -r " .. o.requirements, { "-r", o.requirements })
    stamps = read_stamps(o.path)
    stamps[o.requirements] = req_hash(o) or want_hash
    write_stamps(ctx, o, stamps)
  end
  return { status = "changed", message = message }
end

function N.venv(ctx, o)
  local target = type(o) == "table" and tostring(o.path) or "?"
  return ctx.run:resource(ctx, KIND, target, function()
    check_args(o, target)
    return body(ctx, o)
  end)
end

M.required = { ["python.venv"] = { "path" } } -- checked by the context

M.api = {
  ["python.venv"] = { "A Python virtual environment holding what it must (packages missing only; requirements by hash)", {
    { "path", "string", true, "the venv directory (created with python3 -m venv)" },
    { "requirements", "string", false, "a requirements file on the target: pip runs again only when its sha256 changed" },
    { "packages", "list", false, "pip specs installed when missing (name==version pins the version)" },
    { "index_url", "string", false, "pip --index-url" },
    { "extra_index_url", "string|list", false, "pip --extra-index-url" },
    { "find_links", "string|list", false, "pip --find-links" },
    { "no_index", "boolean", false, "pip --no-index" },
    { "trusted_host", "string|list", false, "hosts pip may reach over plain http" },
    { "owner", "string", false, "the venv's owner; pip runs as this user" },
    { "group", "string", false, "the venv's group" },
  } },
}

return M
