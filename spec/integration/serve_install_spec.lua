-- phanes serve: the install fields beyond modules and dry_run, against one
-- disposable test host. The inventory gives the host no key: its SSH key
-- is in the server's vault (secrets), the host's timezone comes from a
-- `!vault` value in its host_vars (the per-host layers), ssh.env settings
-- win over both; a probe runs the host test only and record_only writes
-- the host's record without connecting. What happened is checked on the
-- host itself and in the server's files.
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local serveproc = require "spec.support.serveproc"

local q = th.quote
local read = th.read
local write, sh = runcli.write, runcli.shell

describe("phanes serve installs", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local home, token, srv, keytext

  local function curl(...) return srv.curl(...) end
  local function post(body) return curl("POST", "/api/remote/install", { token = token, body = body }) end
  local function serve_log() return srv.log() end
  local function host_file(path)
    local ok, out = th.exec(1, "cat " .. path .. " 2>/dev/null")
    return ok and out or nil
  end
  local function P(args) return runcli.at_home_command(home, args) end
  local function sh_in(input, args) return "printf %s " .. q(input) .. " | (" .. P(args) .. ")" end

  -- no secret value anywhere the server writes or answers
  local function no_leak(...)
    local first = keytext:match "[^\n]+\n([^\n]+)" -- a line of the key's body
    for _, text in ipairs { serve_log(), ... } do assert.is_nil(text:find(first, 1, true)) end
    local runs = home .. "/.local/state/phanes/serve/runs"
    for name in (sh("ls " .. q(runs))):gmatch "%S+" do
      assert.is_nil((read(runs .. "/" .. name) or ""):find(first, 1, true), name)
    end
  end

  setup(function()
    th.up(1)
    keytext = assert(read(th.key()))
    home = require("spec.support.fakeexec").tmpdir()
    assert(os.execute("mkdir -p " .. q(home .. "/.config/phanes") .. " " .. q(home .. "/host_vars")))
    write(home .. "/.config/phanes/inventory.yaml", table.concat({
      "hosts:",
      string.format("  th1: { address: %s, user: root }", th.ip(1)),
      string.format("  spare: { address: %s, user: root }", (th.ip(1):gsub("%d+$", "250"))),
    }, "\n") .. "\n")
    write(home .. "/config.yaml", "timezone: UTC\nlocale: C.UTF-8\n")
    write(home .. "/host_vars/th1.yaml", "timezone: !vault tz\n")
    write(home .. "/vault.pw", "serve-spec-password\n")
    local vopts = " --file " .. q(home .. "/secrets.vault.yaml") .. " --vault-password-file " .. q(home .. "/vault.pw")
    local out, code = sh(P("vault init" .. vopts))
    assert.equal(0, code, out)
    out, code = sh(sh_in("Europe/Berlin", "vault set tz" .. vopts))
    assert.equal(0, code, out)
    out, code = sh("(" .. P("vault set ssh.th1.private_key" .. vopts) .. ") < " .. q(th.key()))
    assert.equal(0, code, out)
    out, code = sh(sh_in(th.password(), "vault set ssh.alice" .. vopts))
    assert.equal(0, code, out)
    srv = serveproc.start(home, "--parallel 2 --config " .. q(home .. "/config.yaml") .. " --vault-password-file "
      .. q(home .. "/vault.pw"))
    token = srv.token
  end)

  teardown(function()
    if srv then srv.stop() end
    th.down()
    if home then require("spec.support.fakeexec").rmtree(home) end
  end)

  it("record_only records the host without connecting to it", function()
    local code, doc, raw = post '{"host":"th1","modules":["baseline"],"ssh":{"record_only":true}}'
    assert.equal(200, code, raw)
    assert.equal("recorded", doc.status)
    assert.same({ "baseline" }, doc.skipped)
    local rec = runcli.record(home, "th1")
    assert.equal("recorded", rec.status)
    assert.equal("baseline", rec.modules[1].name)
    local _, status = curl("GET", "/api/remote/status")
    local seen
    for _, h in ipairs(status.hosts) do if h.name == "th1" then seen = h end end
    assert.equal("recorded", seen.last_status)
    -- the host: no login happened (no binary cached, no state, nothing in the journal from sshd)
    assert.is_nil(host_file "/var/lib/phanes/state.json")
    assert.is_nil(host_file "/root/.cache/phanes/phanes-*")
    -- an unreachable host is recorded as well, at once
    code, doc = post '{"host":"spare","modules":["baseline"],"ssh":{"record_only":true,"connect_timeout":30}}'
    assert.equal(200, code)
    assert.equal("recorded", doc.status)
  end)

  it("a probe runs the host test only: refused without the vault's key, ok with it", function()
    local code, doc, raw = post '{"host":"th1","ssh":{"probe":true,"connect_timeout":5}}'
    assert.equal(200, code, raw)
    assert.equal("failed", doc.status)
    assert.equal(3, doc.exit_code)
    code, doc, raw = post '{"host":"th1","ssh":{"probe":true},"secrets":{"provider":"vault","key":"ssh.th1"}}'
    assert.equal(200, code, raw)
    assert.equal("ok", doc.status, raw)
    local log = read(doc.log_path)
    assert.matches("th1: ok in [%d%.]+s: root@", log)
    assert.is_nil(host_file "/var/lib/phanes/state.json")
    no_leak(raw, log)
  end)

  it("installs with the key from the vault and the host's layers (a !vault value in host_vars)", function()
    local code, doc, raw = post '{"host":"th1","modules":["baseline"],"secrets":{"provider":"vault","key":"ssh.th1"}}'
    assert.equal(200, code, raw)
    assert.equal("changed", doc.status, raw .. "\n" .. (read(doc.log_path or "") or ""))
    assert.equal("Europe/Berlin\n", host_file "/etc/timezone")
    -- the key's file lived for the run only
    assert.equal("", (sh("ls " .. q(home .. "/.local/state/phanes/serve/keys"))))
    no_leak(raw, read(doc.log_path))
    -- the same again: nothing to do
    code, doc = post '{"host":"th1","modules":["baseline"],"secrets":{"provider":"vault","key":"ssh.th1"}}'
    assert.equal(200, code)
    assert.equal("noop", doc.status)
  end)

  it("ssh.env settings win over the host's layers", function()
    local code, doc, raw = post('{"host":"th1","modules":["baseline"],"secrets":{"provider":"vault","key":"ssh.th1"},'
      .. '"ssh":{"env":{"PHANES_TIMEZONE":"Asia/Tokyo"}}}')
    assert.equal(200, code, raw)
    assert.equal("changed", doc.status, raw)
    assert.equal("Asia/Tokyo\n", host_file "/etc/timezone")
  end)

  it("a password from the vault logs in and answers sudo (alice: password login, password sudo)", function()
    local target = "alice@" .. th.ip(1)
    local code, doc, raw = post('{"host":"' .. target .. '","modules":["baseline"],"dry_run":true,"ssh":{"connect_timeout":5}}')
    assert.equal(200, code, raw)
    assert.equal("failed", doc.status, raw)
    assert.equal(3, doc.exit_code)
    code, doc, raw = post('{"host":"' .. target .. '","modules":["baseline"],"dry_run":true,'
      .. '"secrets":{"provider":"vault","key":"ssh.alice"}}')
    assert.equal(200, code, raw)
    assert.equal(0, doc.exit_code, raw .. "\n" .. (read(doc.log_path or "") or ""))
    assert.is_truthy(doc.status == "noop" or doc.status == "planned", raw)
    local log = read(doc.log_path) or ""
    for _, text in ipairs { raw, log, serve_log() } do assert.is_nil(text:find(th.password(), 1, true)) end
  end)

  it("refuses a missing vault key (400 naming it) and a controller variable in ssh.env", function()
    local code, doc = post '{"host":"th1","modules":["baseline"],"secrets":{"provider":"vault","key":"ssh.th9"}}'
    assert.equal(400, code)
    assert.matches("^secrets%.key: no key 'ssh%.th9' in the vault", doc.error)
    code, doc = post '{"host":"th1","modules":["baseline"],"ssh":{"env":{"PHANES_KEY_PASSPHRASE":"x"}}}'
    assert.equal(400, code)
    assert.matches("^ssh%.env%.PHANES_KEY_PASSPHRASE: not a setting", doc.error)
  end)
end)
