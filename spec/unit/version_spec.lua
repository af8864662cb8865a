-- phanes version -v: what the binary is made of. Each library's version is
-- the one it reports itself, and it must be the one of the Debian -dev
-- package whose static archive was linked in (vendor/manifest).
local runcli = require "spec.support.runcli"

local DPKG_ARCH = { x86_64 = "amd64", aarch64 = "arm64" }

-- The upstream part of a Debian version: no epoch, no revision, no +dfsg.
local function upstream(v)
  return (v:gsub("^%d+:", ""):gsub("%-[^-]*$", ""):gsub("[.+~]dfsg.*$", ""))
end

local function dpkg_version(pkg)
  local f = io.popen("dpkg-query -W -f='${Version}' " .. pkg .. " 2>/dev/null")
  local v = f:read "a"
  f:close()
  return v ~= "" and v or nil
end

describe("phanes version -v", function()
  local info = require("phanes.build").info()
  local r = runcli.run { "version", "-v" }
  local got = {}
  for k, v in r.stdout:gmatch "([%w]+) +([^\n]+)\n" do got[k] = v end

  it("prints every component, as the binary's own calls report them", function()
    assert.equal(0, r.code, r.stderr)
    for _, k in ipairs { "phanes", "commit", "arch", "lua", "libyaml", "libssh2", "openssl", "zlib", "lfs" } do
      assert.is_string(got[k], k .. " missing from:\n" .. r.stdout)
    end
    assert.equal(info.lua, got.lua)
    assert.equal(info.openssl, got.openssl)
    assert.equal(require("lfs")._VERSION, got.lfs)
    assert.matches("^Lua 5%.4%.%d+$", got.lua)
    assert.matches("^OpenSSL %d+%.%d+%.%d+", got.openssl)
    assert.matches("^LuaFileSystem %d+%.%d+", got.lfs)
  end)

  it("names the build's architecture and commit", function()
    assert.equal(require("phanes.sys").uname().machine, got.arch)
    assert.truthy(got.commit == "unknown" or got.commit:match "^%x%x%x%x%x%x%x+$"
      or got.commit:match "^%x%x%x%x%x%x%x+%-dirty$", got.commit)
  end)

  it("matches the installed Debian -dev packages", function()
    local darch = assert(DPKG_ARCH[info.arch], info.arch)
    local want = {
      lua = { "liblua5.4-dev", "Lua " }, libyaml = { "libyaml-dev", "" }, libssh2 = { "libssh2-1-dev", "" },
      openssl = { "libssl-dev", "OpenSSL " }, zlib = { "zlib1g-dev", "" }, lfs = { "lua-filesystem-dev", "LuaFileSystem " },
    }
    local checked = 0
    for k, w in pairs(want) do
      local v = dpkg_version(w[1] .. ":" .. darch)
      if v then
        checked = checked + 1
        local prefix = w[2] .. upstream(v)
        assert.equal(prefix, got[k]:sub(1, #prefix), k .. ": " .. got[k] .. " vs " .. w[1] .. " " .. v)
      end
    end
    assert.equal(6, checked, "the six -dev packages are installed for " .. darch)
  end)

  it("--json gives the same as JSON", function()
    local j = runcli.run { "version", "--json" }
    assert.equal(0, j.code, j.stderr)
    local t = require("phanes.json").decode(j.stdout)
    for k, v in pairs(got) do assert.equal(v, t[k], k) end
  end)

  it("without -v stays one line", function()
    local s = runcli.run { "version" }
    assert.equal("phanes " .. info.version .. "\n", s.stdout)
  end)
end)
