-- A fleet of three test hosts, each with its own config: a group var for
-- all three, a plain postgres password from config.yaml (th1), from its
-- host vars (th2), and a `!vault` secret in its host vars (th3). Each host
-- is checked with psql: its own password works, another host's does not;
-- the vault secret is in none of the fleet's output; the summary and --json
-- name each host's config layers.
--
--   PHANES_TEST_ID=xx spec/run build/phanes integration spec/integration/fleet_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"

local BIN = th.bin()
local q = th.quote
local stamp = string.format("%x", os.time())
local PW = { "Cfg-Pass-" .. stamp, "Host-Pass-" .. stamp, "Vlt-" .. stamp .. "-Qz7w" }
local VAULT_PASSWORD = "fleet vault password"

local function write(path, text)
  assert(os.execute("mkdir -p " .. q(path:match "^(.*)/")))
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- phanes ARGS with HOME=home -> exit code, stdout, stderr
local function phanes(home, args)
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local p = assert(io.popen("cd " .. q(home) .. " && HOME=" .. q(home) .. " SSH_AUTH_SOCK= " .. q(BIN) .. " "
    .. table.concat(words, " ") .. " </dev/null 2>" .. q(home .. "/stderr")))
  local out = p:read "a"
  local _, _, code = p:close()
  return code, out, th.read(home .. "/stderr") or ""
end

local function psql(i, password, sql)
  return th.exec(i, "LC_ALL=C PGPASSWORD=" .. q(password) .. " psql -h 127.0.0.1 -U app -d app -Atc " .. q(sql))
end

describe("a fleet of three hosts with their own config", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local home
  setup(function()
    th.up(3)
    home = runcli.tmpdir()
    local key = th.key()
    local lines = { "hosts:" }
    for i = 1, 3 do
      lines[#lines + 1] = string.format("  th%d: { address: %s, user: root, key: %s, groups: [db] }", i, th.ip(i), key)
    end
    write(home .. "/.config/phanes/inventory.yaml", table.concat(lines, "\n") .. "\n")
    write(home .. "/conf/config.yaml", "postgres:\n  password: " .. PW[1] .. "\n")
    write(home .. "/conf/group_vars/db.yaml", "postgres:\n  max_connections: 42\n")
    write(home .. "/conf/host_vars/th2.yaml", "postgres:\n  password: " .. PW[2] .. "\n")
    write(home .. "/conf/host_vars/th3.yaml", "postgres:\n  password: !vault pg.th3\n")
    write(home .. "/conf/secrets.vault.yaml",
      require("phanes.vault").seal("defaults:\n  pg:\n    th3: " .. PW[3] .. "\n", VAULT_PASSWORD))
    write(home .. "/vault.pw", VAULT_PASSWORD .. "\n")
    assert(os.execute("chmod 600 " .. q(home .. "/vault.pw")))
  end)
  teardown(function()
    th.down()
    if home then runcli.rmdir(home) end
  end)

  it("applies each host's own postgres password, the vault's on th3, and shows where each host's config came from", function()
    local args = { "--remote", "@db", "--parallel", "3", "--modules", "postgres", "--config", home .. "/conf/config.yaml",
      "--vault-password-file", home .. "/vault.pw", "--color=never" }
    local code, out, err = phanes(home, args)
    assert.equal(0, code, out .. err)
    assert.matches("\nhost%s+result%s+changed%s+failed%s+time%s+config\n", out)
    assert.matches("\nth1%s+changed%s+%d+%s+0%s+%S+%s+group_vars/db%.yaml\n", out)
    assert.matches("\nth2%s+changed%s+%d+%s+0%s+%S+%s+group_vars/db%.yaml, host_vars/th2%.yaml\n", out)
    assert.matches("\nth3%s+changed%s+%d+%s+0%s+%S+%s+group_vars/db%.yaml, host_vars/th3%.yaml\n", out)
    assert.is_nil((out .. err):find(PW[3], 1, true), "the vault secret is in the output")
    -- on the hosts: each one's own password, and not another's
    for i = 1, 3 do
      local ok, got = psql(i, PW[i], "show max_connections")
      assert.is_true(ok, got)
      assert.equal("42\n", got)
      local other = PW[i % 3 + 1]
      local bad, msg = psql(i, other, "select 1")
      assert.is_false(bad, msg)
      assert.matches("password authentication failed", msg)
    end
    -- a no-op again, as one --json document: every host, its layers, no secret
    args[#args + 1] = "--json"
    code, out, err = phanes(home, args)
    assert.equal(0, code, out .. err)
    local doc = assert(require("phanes.json").decode(out), out .. err)
    assert.equal(0, doc.exit_code)
    for i = 1, 3 do
      local h = doc.hosts["th" .. i]
      assert.equal("ok", h.status, out)
      assert.equal("group_vars/db.yaml", h.config_layers[1])
    end
    assert.same({ "group_vars/db.yaml", "host_vars/th3.yaml" }, doc.hosts.th3.config_layers)
    assert.is_nil((out .. err):find(PW[3], 1, true), "the vault secret is in the --json output")
  end)
end)
