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

-- The known_hosts parser the host key check uses, against files written by
-- OpenSSH's own ssh-keygen (hashed names, [host]:port).
describe("phanes.ssh.known_hosts", function()
  local KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOdcvqzmkhyld949QYd8lbYgS38A1fbWCMwi+UiMGDbl"

  local function sh(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read "a"
    assert(p:close())
    return out
  end

  it("reads markers, patterns and comments, skipping what OpenSSH skips", function()
    local text = table.concat({
      "# a comment",
      "",
      "web1,10.0.0.5 ssh-ed25519 " .. KEY .. " me@laptop",
      "@revoked * ssh-ed25519 " .. KEY,
      "@cert-authority *.example ssh-ed25519 " .. KEY,
      "@unknown-marker web1 ssh-ed25519 " .. KEY,
      "web1 ssh-ed25519",
      "web1 1024 35 12345",
      "\t [h]:2222\tecdsa-sha2-nistp256  AAAA\r",
    }, "\n")
    local lines = ssh.known_hosts(text, "web1")
    assert.equal(4, #lines)
    assert.same({ line = 3, hosts = "web1,10.0.0.5", type = "ssh-ed25519", key = KEY, match = 1 }, lines[1])
    assert.same({ "revoked", 4, 1 }, { lines[2].marker, lines[2].line, lines[2].match })
    assert.same({ "cert-authority", 5, 0 }, { lines[3].marker, lines[3].line, lines[3].match })
    assert.same({ line = 9, hosts = "[h]:2222", type = "ecdsa-sha2-nistp256", key = "AAAA", match = 0 }, lines[4])
  end)

  it("matches wildcards, negations and [host]:port as OpenSSH does", function()
    local function m(hosts, name) return ssh.known_hosts(hosts .. " ssh-ed25519 " .. KEY, name)[1].match end
    assert.equal(1, m("*.lan,db?", "a.lan"))
    assert.equal(1, m("*.lan,db?", "db1"))
    assert.equal(0, m("*.lan,db?", "db10"))
    assert.equal(-1, m("*.lan,!bad.lan", "bad.lan"))
    assert.equal(1, m("WEB1", "web1"))
    assert.equal(1, m("web1", "WEB1"))
    assert.equal(1, m("[web1]:2222", "[web1]:2222"))
    assert.equal(0, m("web1", "[web1]:2222"))
    assert.equal(0, m("[web1]:2222", "web1"))
    assert.equal(1, m("[10.0.0.*]:22?2", "[10.0.0.5]:2202"))
    assert.equal(0, m(string.rep("*a", 5000), string.rep("a", 280) .. "b"))
  end)

  it("matches names hashed by ssh-keygen -H (HMAC-SHA1), and nothing else", function()
    local dir = sh("mktemp -d"):gsub("%s+$", "")
    local f = assert(io.open(dir .. "/kh", "w"))
    f:write("web1 ssh-ed25519 ", KEY, "\n[web1]:2222 ssh-ed25519 ", KEY, "\n")
    f:close()
    sh("ssh-keygen -H -f " .. dir .. "/kh 2>/dev/null")
    local text = sh("cat " .. dir .. "/kh")
    sh("rm -rf " .. dir)
    assert.matches("^|1|", text)
    local function matches(name)
      local out = {}
      for _, l in ipairs(ssh.known_hosts(text, name)) do out[#out + 1] = l.match end
      return out
    end
    assert.same({ 1, 0 }, matches("web1"))
    assert.same({ 0, 1 }, matches("[web1]:2222"))
    assert.same({ 0, 0 }, matches("web2"))
    -- a corrupt hash or salt matches nothing and does not fail
    assert.equal(0, ssh.known_hosts("|1|abc|def ssh-ed25519 " .. KEY, "web1")[1].match)
    assert.equal(0, ssh.known_hosts("|1| ssh-ed25519 " .. KEY, "web1")[1].match)
  end)

  it("refuses misuse of the connect options", function()
    assert.has_error(function() ssh.connect { host = "h", strict = "sometimes" } end)
    assert.has_error(function() ssh.connect { host = "h", known_hosts = { {} } } end)
    assert.has_error(function() ssh.connect { host = "h", known_hosts = { 12 } } end)
    assert.has_error(function() ssh.connect { host = "h", global_known_hosts = 12 } end)
    assert.has_error(function() ssh.connect { host = "h", known_hosts = { "1", "2", "3", "4", "5", "6", "7", "8", "9" } } end)
  end)
end)
