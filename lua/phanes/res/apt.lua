-- res/apt.lua: third-party apt repositories.
--
--   ctx.apt.repo {
--     name = "docker",                               -- /etc/apt/sources.list.d/docker.list
--     line = "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable",
--     key_url = "https://download.docker.com/linux/debian/gpg",
--     key_path = "/etc/apt/keyrings/docker.asc",     -- default /etc/apt/keyrings/<name>.asc (.gpg for a .gpg URL)
--   }
--   -- or key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n..." instead of key_url
--
-- The list file holds `line` (a string or a list of lines). The key is
-- fetched (curl, else wget) only when the key file is missing; key text is
-- compared and written like any file. When the list changes the apt cache
-- is marked stale, so the next pkg.installed / pkg.refresh runs apt-get
-- update.
local context = require "phanes.engine.context"
local file = require "phanes.res.file"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { apt = N }
M.required = { ["apt.repo"] = { "name", "line" } } -- checked by the context

local KIND = "apt.repo"

local function fail(target, message, detail) context.fail(KIND, target, message, detail) end

local function fetch(ctx, url, target)
  local run, p = ctx.run, ctx.run.paths
  local argv
  if F.exists(p.curl) then
    argv = { p.curl, "-fsSL", "--retry", "2", "--max-time", "60", url }
  elseif F.exists(p.wget) then
    argv = { p.wget, "-q", "-T", "60", "-O", "-", url }
  else
    fail(target, "fetching " .. url .. " needs curl or wget, and neither is installed: "
      .. "add ctx.pkg.installed { \"curl\" } before this repository, or give the key text as key =")
  end
  local res = run:check({ argv = argv, timeout = 120 }, KIND, target, "fetching the key from " .. url)
  if res.stdout == "" then fail(target, "the key from " .. url .. " is empty") end
  return res.stdout
end

local function key_result(ctx, o, key_path)
  if o.key then
    return file.ensure_content(ctx, { path = key_path, content = o.key, mode = "0644" }, KIND)
  end
  if file.stat(key_path, KIND, true) then return { status = "ok" } end
  if ctx.dry_run then return { status = "would change", message = "fetch key " .. o.key_url .. " to " .. key_path } end
  local dir = key_path:match "^(.*)/[^/]+$"
  if dir and dir ~= "" then file.ensure_directory(ctx, { path = dir, mode = "0755" }, KIND) end
  local data = fetch(ctx, o.key_url, key_path)
  local ok, err = F.write(key_path, data, { mode = tonumber("0644", 8) })
  if not ok then fail(key_path, tostring(err)) end
  return { status = "changed", message = "fetched key " .. o.key_url .. " to " .. key_path }
end

function N.repo(ctx, o)
  local p = ctx.run.paths
  if type(o) ~= "table" or type(o.name) ~= "string" or not o.name:match "^[%w][%w._-]*$" then
    fail("?", "name is required (letters, digits, . _ -): it names /etc/apt/sources.list.d/<name>.list")
  end
  local list_path = p.sources_dir .. "/" .. o.name .. ".list"
  return ctx.run:resource(ctx, KIND, list_path, function()
    local lines = type(o.line) == "table" and o.line or { o.line }
    if #lines == 0 or type(lines[1]) ~= "string" then fail(list_path, "line is required") end
    local results = {}
    if o.key or o.key_url then
      local key_path = o.key_path or (p.keyrings_dir .. "/" .. o.name
        .. ((o.key_url or ""):match "%.gpg$" and ".gpg" or ".asc"))
      results[#results + 1] = key_result(ctx, o, key_path)
    end
    local list = file.ensure_content(ctx, { path = list_path, content = table.concat(lines, "\n") .. "\n",
      mode = "0644" }, KIND)
    results[#results + 1] = list
    local out = file.combine(table.unpack(results))
    if out.status ~= "ok" then ctx.run:invalidate("apt_lists") end
    return out
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["apt.repo"] = { "A third-party apt repository: its list file and signing key (the apt cache is marked stale when the list changes)", {
    { "name", "string", true, "the list file /etc/apt/sources.list.d/<name>.list" },
    { "line", "string or list", true, "the deb line(s) of the list file" },
    { "key_url", "string", false, "where the signing key is fetched from when the key file is missing" },
    { "key", "string", false, "the armored key text, instead of key_url" },
    { "key_path", "string", false, "the key file (default /etc/apt/keyrings/<name>.asc, .gpg for a .gpg URL)" },
  } },
}

return M
