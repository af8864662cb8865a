-- phanes.ssh from Lua, without a server: argument checks raise, failures of
-- the world come back as nil, message, kind. (Sessions against real sshd
-- are in spec/integration/remote_spec.lua.)
local ssh = require "phanes.ssh"

describe("phanes.ssh.connect", function()
  it("is linked against libssh2", function()
    assert.matches("^1%.%d+", ssh.libssh2_version)
  end)

  it("raises on misuse", function()
    assert.has_error(function() ssh.connect() end)
    assert.has_error(function() ssh.connect {} end)
    assert.has_error(function() ssh.connect { host = "h", port = 0 } end)
    assert.has_error(function() ssh.connect { host = "h", port = "x" } end)
    assert.has_error(function() ssh.connect { host = "h", user = {} } end)
  end)

  it("says a closed port is refused", function()
    local s, err, kind = ssh.connect { host = "127.0.0.1", port = 1, timeout = 2 }
    assert.is_nil(s)
    assert.equal("refused", kind)
    assert.equal("127.0.0.1:1: connect: Connection refused", err)
  end)

  it("says a name that does not resolve", function()
    local s, err, kind = ssh.connect { host = "no-such-host.invalid", timeout = 2 }
    assert.is_nil(s)
    assert.equal("resolve", kind)
    assert.matches("^no%-such%-host%.invalid:22: cannot resolve no%-such%-host%.invalid: ", err)
  end)
end)
