-- Secrets on a disposable test host: the config hash in the world-readable
-- state file is an HMAC under a root-only per-host key (not a plain sha256
-- a short password could be recovered from), and masking never touches
-- JSON keys or ordinary text, even when the secret is one letter.
-- The host is checked on its own terms (stat, od, cat), then the report.
--
--   PHANES_TEST_ID=ff spec/run build/phanes integration spec/integration/trust_secrets_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"
local config = require "phanes.config"
local crypto = require "phanes.crypto"
local file = require "phanes.file"

local FIX = "spec/fixtures/trust"
local MOD = dofile(FIX .. "/modules/trust_secret.lua")
local APPLY = "apply trust/modules/trust_secret.lua --path trust --config config.yaml"

local on = require "spec.support.onhost"
local sh, trim, phanes = on.sh, on.trim, on.phanes

local function put_config(password)
  on.put("/root/config.yaml", "trust_secret:\n  password: \"" .. password .. "\"\n")
end

-- every key of a decoded JSON value, at any depth
local function keys_of(v, out)
  out = out or {}
  if type(v) == "table" then
    for k, x in pairs(v) do
      if type(k) == "string" then out[#out + 1] = k end
      keys_of(x, out)
    end
  end
  return out
end

local function from_hex(h) return (h:gsub("%s", ""):gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)) end

describe("secrets on a test host", function()
  if not on.use() then return end -- a fresh host 1
  setup(function()
    sh "rm -rf /root/trust /srv/trust /var/lib/phanes"
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, FIX, "/root/trust"))
  end)

  it("a one-letter secret leaves the --json report valid, its keys and ordinary text intact", function()
    put_config "e"
    local out, code, err = phanes(APPLY .. " --json")
    local r, jerr = json.decode(out)
    assert(r, "not JSON (" .. tostring(jerr) .. "):\n" .. out .. err)
    for _, k in ipairs(keys_of(r)) do assert.is_nil(k:find("*", 1, true), "masked key " .. k) end
    assert.is_not_nil(r.exit_code)
    assert.is_nil(out:find("******", 1, true) and out:find('"[^"]*%*%*%*%*%*%*[^"]*":'), "a key was masked")
    if code == 2 then
      -- a schema that sets a minimum length for secrets refuses "e" up front
      assert.matches("trust_secret.password", err, 1, true)
      return
    end
    assert.equal(0, code, out .. err)
    -- the host has what the module wrote, secret included
    assert.equal("user=deploy\npassword=e\n", sh "cat /srv/trust/app.conf")
    assert.equal("600", trim(sh "stat -c '%a' /srv/trust/app.conf"))
    -- ordinary words are not cut up where they contain the secret
    local m = r.modules[1]
    assert.equal("trust_secret", m.name)
    assert.equal("changed", m.status)
    local targets = {}
    for _, ev in ipairs(m.resources) do targets[ev.target] = ev end
    assert.is_not_nil(targets["/srv/trust/readme"], out)
    assert.matches("+exit_code and deploy notes, see the secret file", targets["/srv/trust/readme"].diff, 1, true)
    assert.matches("user deploy has the password", json.encode(m.log), 1, true)
    for _, k in ipairs { "exit_code", "resources", "modules", "status", "duration" } do
      assert.matches('"' .. k .. '":', out, 1, true)
    end
  end)

  it("a secret of 8 or more letters is scrubbed from free text, keys untouched", function()
    put_config "deploy123"
    local out, code, err = phanes(APPLY .. " --json")
    assert.equal(0, code, out .. err)
    local r = assert(json.decode(out))
    assert.is_nil(out:find("deploy123", 1, true))
    assert.is_nil(err:find("deploy123", 1, true))
    assert.matches("has the password ******", json.encode(r.modules[1].log), 1, true)
    for _, k in ipairs(keys_of(r)) do assert.is_nil(k:find("*", 1, true), "masked key " .. k) end
    assert.equal("user=deploy\npassword=deploy123\n", sh "cat /srv/trust/app.conf")
  end)

  it("keys the config hash with a root-only per-host key: no plain sha256 of the section in the state", function()
    assert.equal("644 root:root", trim(sh "stat -c '%a %U:%G' /var/lib/phanes/state.json"))
    assert.equal("600 root:root 32 regular file", trim(sh "stat -c '%a %U:%G %s %F' /var/lib/phanes/hash.key"))
    local text = sh "cat /var/lib/phanes/state.json"
    local state = assert(json.decode(text))
    local got = state.modules.trust_secret.config_hash
    local canonical = config.canonical({ user = "deploy", password = "deploy123" }, MOD.config)
    assert.matches("^%x+$", got)
    assert.is_nil(text:find(file.sha256(canonical), 1, true))
    for _, pw in ipairs { "e", "deploy123" } do
      assert.is_nil(text:find(file.sha256(config.canonical({ user = "deploy", password = pw }, MOD.config)), 1, true))
    end
    local key = from_hex(sh "od -An -tx1 -v /var/lib/phanes/hash.key")
    assert.equal(32, #key)
    assert.equal(crypto.hmac_sha256(key, canonical), got)
    assert.equal("hash.key\nstate.json\n", sh "ls /var/lib/phanes") -- the lock is the machine's (/run/phanes.lock)
  end)

  it("keeps the key across runs, so an unchanged config reads as unchanged", function()
    local before = sh "sha256sum /var/lib/phanes/hash.key"
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.equal(before, sh "sha256sum /var/lib/phanes/hash.key")
    out, code, err = phanes("status --path trust --config config.yaml --json")
    assert.equal(0, code, out .. err)
    local s = assert(json.decode(out))
    assert.is_false(s.modules.trust_secret.config_changed)
    put_config "another-secret"
    out, code, err = phanes("status --path trust --config config.yaml --json")
    assert.equal(0, code, out .. err)
    assert.is_true(assert(json.decode(out)).modules.trust_secret.config_changed)
  end)
end)
