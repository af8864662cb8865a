-- ssh.gzip: what a first contact streams to `gunzip` on a target; checked
-- here by the real gunzip.
local ssh = require "phanes.ssh"
local file = require "phanes.file"
local util = require "phanes.remote.util"

local function gunzip(gz, dir)
  assert(file.write(dir .. "/in.gz", gz))
  local p = assert(io.popen("gunzip -c < " .. util.shquote(dir .. "/in.gz")))
  local out = p:read "a"
  local ok = p:close()
  return ok, out
end

describe("ssh.gzip", function()
  local dir
  before_each(function()
    local p = assert(io.popen "mktemp -d /tmp/phanes-gzip.XXXXXX")
    dir = p:read "l"
    p:close()
  end)
  after_each(function() os.execute("rm -rf " .. util.shquote(dir)) end)

  it("compresses a string and a file that gunzip restores byte for byte", function()
    local t = {}
    for i = 1, 40000 do t[i] = string.format("%d line %x\n", i, (i * 2654435761) % 4294967296) end
    local data = table.concat(t) .. "\0\1\2\255"
    local gz = assert(ssh.gzip(data))
    assert.equal("\31\139", gz:sub(1, 2))
    assert.is_true(#gz < #data / 2)
    local ok, out = gunzip(gz, dir)
    assert.is_true(ok)
    assert.equal(data, out)
    -- a file larger than one read chunk, at another level
    assert(file.write(dir .. "/big", data .. data .. data))
    ok, out = gunzip(assert(ssh.gzip({ path = dir .. "/big" }, 1)), dir)
    assert.is_true(ok)
    assert.equal(data .. data .. data, out)
    ok, out = gunzip(assert(ssh.gzip("")), dir)
    assert.is_true(ok)
    assert.equal("", out)
  end)

  it("says which file it cannot read, and refuses a level out of range", function()
    local gz, err = ssh.gzip { path = dir .. "/missing" }
    assert.is_nil(gz)
    assert.matches("missing", err, 1, true)
    assert.has_error(function() ssh.gzip("x", 0) end)
  end)
end)
