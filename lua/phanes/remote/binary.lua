-- remote/binary.lua: which phanes binary a target gets, and whether the
-- target can run it at all.
--
--   local path, err = binary.select_binary("aarch64", { binary = opts.binary })
--   local ok, err_or_warning = binary.check_target(probe, command)
--
-- A target of another architecture than this phanes gets, in this order:
-- --binary PATH (when it is built for that architecture), phanes-ARCH beside
-- the running binary (`make dist` leaves build/phanes-aarch64), then
-- ~/.cache/phanes/dist/phanes-ARCH. The binary needs glibc >= 2.34 (Debian
-- 12+, Ubuntu 22.04+, RHEL/Rocky 9+), its modules need apt.
local M = {}

M.MIN_GLIBC = "2.34"
M.SUPPORTED = "Debian 12+, Ubuntu 22.04+, RHEL/Rocky 9+"

-- ELF e_machine of each architecture phanes is built for.
local MACHINE = { [0x3E] = "x86_64", [0xB7] = "aarch64" }

-- Shell lines for the remote probe: the C library and the package managers.
M.PROBE = table.concat({
  'echo "libc=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)"',
  'echo "pkg=$(for c in apt-get dpkg dnf yum apk zypper pacman; do command -v $c >/dev/null 2>&1 && printf "%s " $c; done)"',
}, "\n")

-- binary.elf_arch(path) -> "x86_64" | "aarch64" | nil, why
function M.elf_arch(path)
  local data, err = require("phanes.file").read(path)
  if not data then return nil, err end
  if data:sub(1, 4) ~= "\127ELF" or #data < 20 then return nil, path .. ": not an ELF binary" end
  local machine = string.unpack("<I2", data, 19)
  return MACHINE[machine] or nil, path .. ": built for another architecture (ELF machine " .. machine .. ")"
end

local function dirname(path) return path:match "^(.*)/[^/]*$" or "." end

local function default_arch() return require("phanes.sys").uname().machine end

-- binary.select_binary(arch, opts) -> path | nil, err
-- opts: binary (--binary PATH), exe (the running binary; sys.exe()),
-- arch (this machine's; uname -m), home ($HOME).
function M.select_binary(arch, opts)
  opts = opts or {}
  local exe = opts.exe or require("phanes.sys").exe()
  local here = opts.arch or default_arch()
  local home = opts.home or os.getenv "HOME" or ""
  if arch ~= "x86_64" and arch ~= "aarch64" then
    return nil, string.format("the target is %s and this phanes is %s: phanes is built for x86_64 and aarch64 only",
      tostring(arch), tostring(here))
  end
  local looked, notes = {}, {}
  local function try(path)
    looked[#looked + 1] = path
    local got, why = M.elf_arch(path)
    if got == arch then return true end
    if got then notes[#notes + 1] = path .. " is built for " .. got
    elseif not tostring(why):match "No such file" then notes[#notes + 1] = tostring(why) end
    return false
  end
  if opts.binary and try(opts.binary) then return opts.binary end
  if arch == here and exe then return exe end
  for _, path in ipairs { dirname(exe or "./phanes") .. "/phanes-" .. arch, home .. "/.cache/phanes/dist/phanes-" .. arch } do
    if try(path) then return path end
  end
  return nil, string.format("the target is %s and this phanes is %s: no phanes binary for %s (looked at %s)%s\n"
    .. "  build it with `make dist` (build/phanes-%s beside build/phanes), copy it to %s/.cache/phanes/dist/phanes-%s,"
    .. " or give --binary PATH", arch, tostring(here), arch, table.concat(looked, ", "),
    #notes > 0 and ("; " .. table.concat(notes, "; ")) or "", arch, home == "" and "~" or home, arch)
end

-- "2.36" < "2.4"? compares numerically, part by part
local function older(a, b)
  local x, y = {}, {}
  for n in a:gmatch "%d+" do x[#x + 1] = tonumber(n) end
  for n in b:gmatch "%d+" do y[#y + 1] = tonumber(n) end
  for i = 1, math.max(#x, #y) do
    if (x[i] or 0) ~= (y[i] or 0) then return (x[i] or 0) < (y[i] or 0) end
  end
  return false
end

-- The C library the probe found: "glibc", "2.36" | "musl" | nil (unknown).
function M.libc(line)
  if not line or line == "" then return nil end
  if line:lower():find "musl" then return "musl" end
  local v = line:match "^glibc (%d+%.%d+)" or line:match "GLIBC[^)]*%)%s*(%d+%.%d+)"
    or line:match "GNU libc[^%d]*(%d+%.%d+)" or line:match "(%d+%.%d+)%s*$"
  if v then return "glibc", v end
  return nil
end

local function is_apply(command)
  for _, a in ipairs(command or {}) do
    if a == "--profile" or a == "--modules" or a:match "^%-%-profile=" or a:match "^%-%-modules=" then return true end
  end
  return require("phanes.remote").command_word(command or {}) == "apply"
end

-- binary.check_target(probe, command) -> true[, warning] | nil, err
-- probe: the parsed probe (libc=, pkg=, os=); command: the remote argv.
-- A glibc older than 2.34 or another C library cannot run the binary; a
-- target without apt runs facts/list/check but not the modules.
function M.check_target(p, command)
  local os_name = p.os and p.os ~= "" and p.os or "the target"
  local libc, version = M.libc(p.libc)
  if libc == "musl" then
    return nil, string.format("%s uses musl libc: phanes needs glibc %s or newer (%s)", os_name, M.MIN_GLIBC, M.SUPPORTED)
  elseif libc == "glibc" and older(version, M.MIN_GLIBC) then
    return nil, string.format("%s has glibc %s: phanes needs glibc %s or newer (%s); upgrade the target",
      os_name, version, M.MIN_GLIBC, M.SUPPORTED)
  end
  if p.pkg == nil then return true end
  local have = {}
  for c in p.pkg:gmatch "%S+" do have[c] = true end
  if have["apt-get"] and have.dpkg then return true end
  local other = have.dnf and "dnf" or have.yum and "yum" or have.apk and "apk" or have.zypper and "zypper"
    or have.pacman and "pacman" or "no apt-get"
  local msg = string.format("%s has %s, not apt: phanes' modules need apt (Debian 12+, Ubuntu 22.04+)", os_name, other)
  if is_apply(command) then return nil, msg .. "; only facts, list, check and version run there" end
  return true, msg
end

-- binary.for_target(s, p, o, command, exe, sha, arch) -> exe, sha | nil, err
-- The remote run's step: check the target, pick its binary (one more round
-- trip when it is not this one, to see whether it is cached there).
function M.for_target(s, p, o, command, exe, sha, arch)
  local ok, msg = M.check_target(p, command)
  if not ok then return nil, msg end
  if msg then io.stderr:write("phanes: warning: ", msg, "\n") end
  local path, err = M.select_binary(p.arch, { binary = o.binary, exe = exe, arch = arch })
  if not path then return nil, err end
  if path == exe then return exe, sha end
  local sum, serr = require("phanes.file").sha256_file(path)
  if not sum then return nil, "cannot hash " .. path .. ": " .. tostring(serr) end
  local res = s:exec("[ -x " .. require("phanes.remote.util").shquote(p.cache .. "/phanes-" .. sum) .. " ] && echo cached")
  p.cached = res and res.stdout:match "cached" and sum or nil
  return path, sum
end

return M
