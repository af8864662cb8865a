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

  local function hex(b) return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
  local function xor(a, b)
    local out = {}
    for i = 1, #a do out[i] = string.char(a:byte(i) ~ b:byte(i)) end
    return table.concat(out)
  end

  it("computes HMAC-SHA256 raw or hex (RFC 4231 cases 1, 2, 6)", function()
    local key1 = ("\x0b"):rep(20)
    assert.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
      hex(crypto.hmac_sha256(key1, "Hi There", true)))
    assert.equal(32, #crypto.hmac_sha256("Jefe", "what do ya want for nothing?", true))
    -- a key longer than the block is hashed first
    assert.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
      crypto.hmac_sha256(("\xaa"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First"))
  end)

  it("encodes and decodes base64 (RFC 4648 section 10), strictly", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(vectors) do
      assert.equal(enc, crypto.base64_encode(plain))
      assert.equal(plain, crypto.base64_decode(enc))
    end
    assert.equal("foob", crypto.base64_decode "Zm9vYg") -- padding is optional
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.equal(all, crypto.base64_decode(crypto.base64_encode(all)))
    for _, bad in ipairs { "Zm9vY", "Zm9vYh==", "Zm=v", "Zm9v\n", " Zm9v", "Zm9vYg===", "Zm9v-_", "Zg=\0" } do
      local v, why = crypto.base64_decode(bad)
      assert.is_nil(v, bad)
      assert.matches("^base64: ", why)
    end
  end)

  it("derives PBKDF2-HMAC-SHA256 (RFC 7914 section 11)", function()
    assert.equal("120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b",
      hex(crypto.pbkdf2_sha256("password", "salt", 1)))
    assert.has_error(function() crypto.pbkdf2_sha256("p", "s", 0) end)
  end)

  it("makes the SCRAM-SHA-256 verifier of the RFC 7677 example", function()
    -- RFC 7677 section 3: user "user", password "pencil", salt and 4096 iterations
    local salt = assert(crypto.base64_decode "W22ZaJ0SNY7soEsUEjb6gQ==")
    local v = crypto.scram_sha256("pencil", salt, 4096)
    local b64stored, b64server = v:match "^SCRAM%-SHA%-256%$4096:W22ZaJ0SNY7soEsUEjb6gQ==%$([^:]+):(.+)$"
    assert.truthy(b64stored, v)
    local stored, server = crypto.base64_decode(b64stored), crypto.base64_decode(b64server)
    -- the exchange of the example, checked with these keys
    local auth = "n=user,r=rOprNGfwEbeRWgbNEkqO," ..
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," ..
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    assert.equal("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
      crypto.base64_encode(crypto.hmac_sha256(server, auth, true)))
    local proof = crypto.base64_decode "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    local client_key = xor(proof, crypto.hmac_sha256(stored, auth, true))
    assert.equal(hex(stored), require("phanes.file").sha256(client_key))
    assert.has_error(function() crypto.scram_sha256("pencil", "", 4096) end)
    assert.has_error(function() crypto.scram_sha256("pencil", salt, 0) end)
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
