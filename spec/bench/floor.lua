-- spec/bench/floor.lua REPORT.json: the physical floor of a no-op re-run,
-- as one shell script (`ssh host sh -s < checks.sh`): the same checks the
-- run's resources made, each the cheapest way a shell can make them.
--   packages: ONE dpkg-query for all of them
--   services: ONE systemctl show for all units
--   files, templates, lines, symlinks, directories: read the file, stat it
--   users, groups, sudoers, authorized_keys: getent + read the file
--   cmd guards: test -e of what the resource names
-- Prints the script on stdout; on stderr, how many checks of each kind.
local json = require "phanes.json"

local path = assert(arg[1], "usage: floor.lua REPORT.json")
local f = assert(io.open(path))
local text = f:read "a"
f:close()
local rep = json.decode(text:match "%b{}" or "{}")
if type(rep) ~= "table" or type(rep.modules) ~= "table" then
  io.stderr:write("floor.lua: ", path, ": not a phanes --json report\n")
  os.exit(1)
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local pkgs, units, files, accounts, other = {}, {}, {}, {}, {}
local seen = {}
local function add(list, v)
  if v and v ~= "" and not seen[list] then seen[list] = {} end
  if v and v ~= "" and not seen[list][v] then
    seen[list][v] = true
    list[#list + 1] = v
  end
end

for _, m in ipairs(rep.modules) do
  for _, r in ipairs(m.resources or {}) do
    local kind, t = tostring(r.resource or ""), tostring(r.target or "")
    if kind == "pkg.installed" or kind == "pkg.absent" then
      for n in t:gmatch "%S+" do add(pkgs, n) end
    elseif kind:match "^service%." then
      add(units, t:find "%." and t or (t .. ".service"))
    elseif kind:match "^file%." or kind == "user.sudoers" or kind == "user.authorized_keys" then
      add(files, t)
    elseif kind == "user.present" or kind == "group.present" then
      add(accounts, t)
    elseif kind ~= "pkg.refresh" then
      add(other, kind .. " " .. t)
    end
  end
end

local out = { "exec >/dev/null 2>&1" }
if #pkgs > 0 then out[#out + 1] = "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n' " .. table.concat((function()
  local t = {}
  for i, p in ipairs(pkgs) do t[i] = q(p) end
  return t
end)(), " ") end
out[#out + 1] = "stat -c %Y /var/cache/apt/pkgcache.bin /var/lib/apt/lists"
if #units > 0 then
  local t = {}
  for i, u in ipairs(units) do t[i] = q(u) end
  out[#out + 1] = "systemctl show --no-pager -p Id,Names,LoadState,ActiveState,SubState,UnitFileState "
    .. table.concat(t, " ")
end
for _, p in ipairs(files) do
  if p:sub(1, 1) == "/" then out[#out + 1] = "cat " .. q(p) .. "; stat -c '%a %U %G %F' " .. q(p) end
end
if #accounts > 0 then out[#out + 1] = "cat /etc/passwd /etc/group" end
for _, o in ipairs(other) do
  local target = o:match "%s(/%S+)"
  if target then out[#out + 1] = "test -e " .. q(target) end
end
out[#out + 1] = "exit 0"
io.write(table.concat(out, "\n"), "\n")
io.stderr:write(string.format("%d packages, %d units, %d files, %d accounts, %d other\n",
  #pkgs, #units, #files, #accounts, #other))
