-- A remote run's cost on the wire, counted by the SSH session itself
-- (session:stats(), kept in the run's record): a cached no-op is one exec
-- channel after authentication and no SFTP; so is a first contact (no record
-- of this binary there: it goes gzip-compressed ahead of the run's stdin);
-- a binary gone from the cache unknown to us costs one more exchange.
-- The host is looked at afterwards.
local th = require "spec.support.testhost"

local BIN = th.bin()
local q = th.quote

local read = th.read

local runcli = require "spec.support.runcli"
local phanes, record = runcli.at_home, runcli.record

describe("remote run on the wire", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local key, home
  setup(function()
    th.up(1)
    key = th.key()
    home = require("spec.support.fakeexec").tmpdir()
    local f = assert(io.open(home .. "/config.yaml", "wb"))
    f:write "timezone: UTC\nlocale: C.UTF-8\n"
    f:close()
  end)
  teardown(function()
    th.down()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  for _, user in ipairs { "root", "deploy" } do
    it("as " .. user .. ": first contact and a cached no-op are 1 exec channel each, no SFTP", function()
      local target = user .. "@" .. th.ip(1)
      local home_dir = user == "root" and "/root" or "/home/" .. user
      local ok, out = th.exec(1, "rm -rf " .. home_dir .. "/.cache/phanes /var/lib/phanes/bin")
      assert.is_true(ok, out)
      local args = { "--remote", target, "--key", key, "--modules", "baseline", "--config", home .. "/config.yaml" }
      local code
      code, out = phanes(home, args)
      assert.equal(0, code, out)
      local rec = assert(record(home, target))
      assert.is_true(rec.upload.binary, out)
      assert.same({ channels = 1, execs = 1, sftp = 0 }, rec.ssh)
      -- compressed on the wire, whole on the target: the same sha256 as here
      assert.is_true(rec.upload.compressed < rec.upload.bytes * 0.7, out)
      local sha = require("phanes.file").sha256_file(BIN)
      local _, listing = th.exec(1, "cd " .. home_dir .. "/.cache/phanes && ls -A && stat -c '%a %U' phanes-" .. sha
        .. " && sha256sum < phanes-" .. sha)
      assert.matches("^phanes%-" .. sha .. "\n700 " .. user .. "\n" .. sha, listing)
      assert.equal(user, rec.user)
      assert.equal(user == "root" and 0 or nil, user == "root" and rec.remote.uid or nil)
      assert.is_string(rec.remote.arch)
      -- the binary cached: one exchange does the probe, the run and the report
      code, out = phanes(home, args)
      assert.equal(0, code, out)
      rec = assert(record(home, target))
      assert.is_false(rec.upload.binary)
      assert.same({ channels = 1, execs = 1, sftp = 0 }, rec.ssh)
      assert.equal(0, rec.changed, out)
      assert.equal("ok", rec.status)
      assert.equal(user == "root" and "root" or "nopasswd", rec.remote.sudo)
      local _, state = th.exec(1, "cat /var/lib/phanes/state.json")
      assert.equal("installed", require("phanes.json").decode(state).modules.baseline.status)
      -- root keeps its own checked copy (/var/lib/phanes/bin): the login
      -- user's cache emptied behind our back costs nothing
      ok, out = th.exec(1, "rm -rf " .. home_dir .. "/.cache/phanes && stat -c '%a %U' /var/lib/phanes/bin"
        .. " && ls /var/lib/phanes/bin")
      assert.is_true(ok, out)
      assert.equal("700 root\nphanes-" .. sha .. "\n", out)
      code, out = phanes(home, args)
      assert.equal(0, code, out)
      rec = assert(record(home, target))
      assert.is_false(rec.upload.binary)
      assert.same({ channels = 1, execs = 1, sftp = 0 }, rec.ssh)
      -- both gone: the prologue says so, and the run starts again with the
      -- binary (2 exchanges), silently
      ok, out = th.exec(1, "rm -rf " .. home_dir .. "/.cache/phanes /var/lib/phanes/bin")
      assert.is_true(ok, out)
      code, out = phanes(home, args)
      assert.equal(0, code, out)
      rec = assert(record(home, target))
      assert.is_true(rec.upload.binary)
      assert.same({ channels = 2, execs = 2, sftp = 0 }, rec.ssh)
      assert.is_nil(out:find("root refused it", 1, true), out)
    end)
  end

  it("compresses the binary once: the copy kept here is used, and a damaged one is made again", function()
    local sha = require("phanes.file").sha256_file(BIN)
    local gz = home .. "/.cache/phanes/phanes-" .. sha .. ".gz"
    local st = assert(require("phanes.file").stat(gz))
    assert.equal(tonumber("0600", 8), st.mode & tonumber("0777", 8))
    -- damaged here, gone there: gunzip there refuses it, it is made again
    local f = assert(io.open(gz, "wb"))
    f:write("\31\139 not really gzip")
    f:close()
    local ok, out = th.exec(1, "rm -rf /root/.cache/phanes /var/lib/phanes/bin")
    assert.is_true(ok, out)
    local target = "root@" .. th.ip(1)
    local code
    code, out = phanes(home, { "--remote", target, "--key", key, "--modules", "baseline", "--config", home .. "/config.yaml" })
    assert.equal(0, code, out)
    local rec = assert(record(home, target))
    assert.is_true(rec.upload.binary)
    assert.same({ channels = 3, execs = 3, sftp = 0 }, rec.ssh)
    local _, listing = th.exec(1, "sha256sum < /root/.cache/phanes/phanes-" .. sha)
    assert.matches("^" .. sha, listing)
    assert.equal("\31\139", read(gz):sub(1, 2))
    assert.is_true(#read(gz) > 100000)
  end)
end)
