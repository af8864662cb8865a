-- phanes.crypto: HMAC-SHA256, kernel randomness, the per-host hash key.
local crypto = require "phanes.crypto"
local runcli = require "spec.support.runcli"
local sys = require "phanes.sys"

describe("crypto", function()
  it("computes HMAC-SHA256 (RFC 4231 case 2)", function()
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      crypto.hmac_sha256("Jefe", "what do ya want for nothing?"))
    assert.has_error(function() crypto.hmac_sha256("", "x") end)
  end)

  it("returns n random bytes, different each time", function()
    local a, b = crypto.random(32), crypto.random(32)
    assert.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.has_error(function() crypto.random(0) end)
    assert.has_error(function() crypto.random(4097) end)
  end)

  describe("key", function()
    local dir
    before_each(function() dir = runcli.tmpdir() end)
    after_each(function() runcli.rmdir(dir) end)

    local function mode(path)
      local p = io.popen("stat -c '%a %u' " .. runcli.quote(path))
      local s = p:read "l"
      p:close()
      return s
    end

    it("makes a private 32-byte key once, then reads the same key", function()
      local path = dir .. "/hash.key"
      local none, err = crypto.key(path)
      assert.is_nil(none)
      assert.matches("hash.key: No such file", err)
      local k = assert(crypto.key(path, true))
      assert.equal(32, #k)
      assert.equal("600 " .. sys.geteuid(), mode(path))
      assert.equal(k, crypto.key(path, true))
      assert.equal(k, crypto.key(path))
      local p = io.popen("ls " .. runcli.quote(dir))
      assert.equal("hash.key\n", p:read "a") -- no temporary left
      p:close()
    end)

    it("refuses a key others can read, of the wrong size, or behind a symlink", function()
      local path = dir .. "/hash.key"
      assert(crypto.key(path, true))
      os.execute("chmod 0644 " .. path)
      local k, err = crypto.key(path, true)
      assert.is_nil(k)
      assert.matches("mode 0644%): remove it and run again", err)
      runcli.write(dir .. "/short", "abc")
      os.execute("chmod 0600 " .. dir .. "/short")
      assert.matches("must be 32 bytes, not 3", select(2, crypto.key(dir .. "/short")))
      os.execute("ln -s " .. path .. " " .. dir .. "/link")
      k, err = crypto.key(dir .. "/link", true)
      assert.is_nil(k)
      assert.matches("link: Too many levels of symbolic links", err)
    end)
  end)
end)
