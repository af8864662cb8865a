-- Which host keys a run adds to known_hosts after it changed the host.
local hk = require "phanes.remote.hostkeys"

local ED = "AAAAC3NzaC1lZDI1NTE5AAAAIBvGp4wQ8oTUB5LUrbK4kdwqZ7qzWbcR5OrMvnRx3Tkq"
local EC = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJyCf6vNnfVTr6o0XcEHRpu5G0gZ9BKlN6dmXJh8pDlYjUQm3m2zIh3Gh2m2S4fN0XwQ6lWq2Nhdz0dwN0g2vE8="
local PUBS = "ssh-ed25519 " .. ED .. " root@h\necdsa-sha2-nistp256 " .. EC .. " root@h\n"

describe("remote host key update", function()
  it("adds the key types known_hosts lacks for that host, keeps what is there", function()
    local known = "10.0.0.5 ecdsa-sha2-nistp256 " .. EC .. "\nother ssh-ed25519 " .. ED .. "\n"
    assert.same({ "10.0.0.5 ssh-ed25519 " .. ED }, hk.missing(known, "10.0.0.5", PUBS))
  end)

  it("adds nothing when every type is known, and never a revoked key", function()
    local known = "10.0.0.5 ecdsa-sha2-nistp256 " .. EC .. "\n10.0.0.5 ssh-ed25519 " .. ED .. "\n"
    assert.same({}, hk.missing(known, "10.0.0.5", PUBS))
    known = "@revoked 10.0.0.5 ssh-ed25519 " .. ED .. "\n"
    assert.same({ "10.0.0.5 ecdsa-sha2-nistp256 " .. EC }, hk.missing(known, "10.0.0.5", PUBS))
  end)

  it("names a host on another port [host]:port, an alias as is", function()
    assert.equal("[h]:2222", hk.name({ host = "h" }, { port = 2222 }))
    assert.equal("h", hk.name({ host = "h", port = 22 }, {}))
    assert.equal("web1", hk.name({ host = "h", hostkey_alias = "web1" }, { port = 2222 }))
    assert.same({ "[h]:2222 ssh-ed25519 " .. ED }, hk.missing("", "[h]:2222", "ssh-ed25519 " .. ED .. "\n"))
  end)
end)
