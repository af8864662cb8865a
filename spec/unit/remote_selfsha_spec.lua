-- The running binary's sha256 is remembered in the cache with the file's
-- identity (path, device, inode, size, mtime, ctime): a no-op does not hash
-- 6 MB again; a file changed since, or changed too recently to tell, is
-- hashed afresh.
local run = require "phanes.remote.run"
local file = require "phanes.file"

describe("remote run: the binary's own sha256", function()
  local dir
  before_each(function()
    local p = assert(io.popen "mktemp -d /tmp/phanes-selfsha.XXXXXX")
    dir = p:read "l"
    p:close()
  end)
  after_each(function() file.remove(dir, true) end)

  -- an old file (its ctime well in the past), as an installed binary is
  local old = "/bin/sh"
  local real = assert(file.sha256_file(old))

  it("hashes once, then answers from the cache while the file is the same", function()
    local sha, size = run.self_sha(old, dir)
    assert.equal(real, sha)
    assert.equal(file.stat(old, true).size, size)
    local memo = assert(file.read(dir .. "/self.sha256"))
    assert.matches("^" .. real .. " /bin/sh ", memo)
    assert.equal(tonumber("0600", 8), file.stat(dir .. "/self.sha256").mode & tonumber("0777", 8))
    -- the answer comes from the cache: a planted digest for the same identity is what it says
    local fake = string.rep("a", 64)
    assert(file.write(dir .. "/self.sha256", fake .. memo:sub(65)))
    assert.equal(fake, (run.self_sha(old, dir)))
    -- another file (another identity) is hashed, and replaces the entry
    local env = assert(io.popen "command -v env"):read "l"
    assert.equal(file.sha256_file(env), (run.self_sha(env, dir)))
    assert.matches(" " .. env:gsub("%p", "%%%0") .. " ", file.read(dir .. "/self.sha256"))
  end)

  it("does not remember a file changed in the last two seconds, and sees a change", function()
    local bin = dir .. "/phanes"
    assert(file.write(bin, "one"))
    assert.equal(file.sha256("one"), (run.self_sha(bin, dir)))
    assert.is_nil(file.read(dir .. "/self.sha256"))
    -- a planted entry for an identity the file no longer has is not used
    local id = table.concat({ bin, "0", "0", "3", "0", "0" }, " ")
    assert(file.write(dir .. "/self.sha256", string.rep("b", 64) .. " " .. id .. "\n"))
    assert(file.write(bin, "two"))
    assert.equal(file.sha256("two"), (run.self_sha(bin, dir)))
  end)
end)
