-- The secrets vault: phanes.cipher, the file format (every tampered byte,
-- every truncation, a wrong password, an unknown version), the commands as
-- a user runs them (set/get/rm/rekey/edit), a kill during rekey, the audit
-- log, argv, and `!vault KEY` in the config.
local cipher = require "phanes.cipher"
local crypto = require "phanes.crypto"
local vault = require "phanes.vault"
local file = require "phanes.file"
local sys = require "phanes.sys"
local json = require "phanes.json"
local runcli = require "spec.support.runcli"

local FAST = { n = 1024, r = 8, p = 1 } -- the same code path, cheaper: for loops over every byte
local q = runcli.quote

local function write(path, text, mode)
  assert(file.write(path, text, { mode = tonumber(mode or "600", 8) }))
end

describe("phanes.cipher", function()
  it("seals and opens with AES-256-GCM under a scrypt key; any other AAD or key fails", function()
    local salt, nonce = cipher.random(16), cipher.random(12)
    local k <close> = assert(cipher.kdf("pw", salt, FAST))
    local ct, tag = cipher.seal(k, nonce, "head", "secret text")
    assert.equal(#"secret text", #ct)
    assert.equal(16, #tag)
    assert.not_equal("secret text", ct)
    assert.equal("secret text", cipher.open(k, nonce, "head", ct, tag))
    local pt, err = cipher.open(k, nonce, "heaD", ct, tag)
    assert.is_nil(pt)
    assert.equal("authentication failed", err)
    local k2 <close> = assert(cipher.kdf("pw2", salt, FAST))
    assert.is_nil((cipher.open(k2, nonce, "head", ct, tag)))
    assert.is_false(k2:matches(k:check()))
    assert.is_true(k:matches(k:check()))
    k2:close()
    k2:close() -- twice is fine
    assert.has_error(function() k2:check() end)
  end)

  it("gives fresh random bytes and strict base64", function()
    assert.equal(32, #cipher.random(32))
    assert.not_equal(cipher.random(16), cipher.random(16))
    for n = 0, 20 do
      local s = cipher.random(n + 1)
      assert.equal(s, crypto.base64_decode(crypto.base64_encode(s)))
    end
    assert.is_nil((crypto.base64_decode "QUJD\n"))
    assert.is_nil((crypto.base64_decode "QU=D"))
    assert.is_nil((crypto.base64_decode "QUJ"))
  end)

  it("refuses bad scrypt parameters (misuse raises)", function()
    assert.has_error(function() cipher.kdf("pw", "12345678", { n = 1000, r = 8, p = 1 }) end)
    assert.has_error(function() cipher.kdf("pw", "short", FAST) end)
    assert.has_error(function() cipher.kdf("pw", "12345678", { n = 1024, r = 0, p = 1 }) end)
  end)

  it("derives the default key in under 150 ms of CPU (printed, with the wall time)", function()
    local t0, c0 = sys.now(), os.clock()
    local k <close> = assert(cipher.kdf("pw", cipher.random(16), vault.PARAMS))
    local ms, cpu = (sys.now() - t0) * 1000, (os.clock() - c0) * 1000
    print(string.format("\n  vault KDF (scrypt N=%d r=%d p=%d): %.0f ms CPU, %.0f ms wall", vault.PARAMS.n,
      vault.PARAMS.r, vault.PARAMS.p, cpu, ms))
    assert.is_true(cpu < 150, "scrypt took " .. cpu .. " ms of CPU")
  end)
end)

describe("the vault format", function()
  local plain = "defaults:\n  a: 1\nhosts: {}\n"

  it("round-trips, with the header first and 76-column base64 lines", function()
    local t0 = sys.now()
    local text = vault.seal(plain, "pw-1234")
    local pt, params = vault.unseal(text, "pw-1234", "v")
    print(string.format("\n  seal + open with the default parameters: %.0f ms", (sys.now() - t0) * 1000))
    assert.equal(plain, pt)
    assert.same(vault.PARAMS, params)
    assert.matches("^%$PHANES_VAULT;1;scrypt;N=16384,r=8,p=1;len=%d+\n", text)
    for line in text:gmatch "\n([^\n]*)" do assert.is_true(#line <= 76) end
    assert.not_equal(vault.seal(plain, "pw-1234"), text) -- fresh salt and nonce
  end)

  it("says 'wrong password' for a wrong password", function()
    local pt, err, kind = vault.unseal(vault.seal(plain, "right", FAST), "wrong", "v.yaml")
    assert.is_nil(pt)
    assert.equal("password", kind)
    assert.matches("v.yaml: wrong vault password", err)
  end)

  it("rejects a changed byte at every position of the file", function()
    local text = vault.seal(plain, "pw", FAST)
    local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    local kinds = {}
    for i = 1, #text do
      local c = text:sub(i, i)
      local at = b64:find(c, 1, true)
      -- another base64 letter where there is one (so it reaches the cipher), else another byte
      local r = at and b64:sub(at % 64 + 1, at % 64 + 1) or string.char((c:byte() ~ 1))
      local bad = text:sub(1, i - 1) .. r .. text:sub(i + 1)
      local pt, err, kind = vault.unseal(bad, "pw", "v")
      assert(pt == nil, "byte " .. i .. " changed was accepted")
      assert.is_string(err)
      kinds[kind] = (kinds[kind] or 0) + 1
    end
    assert.is_true((kinds.tampered or 0) > 50) -- the GCM tag caught them
    assert.is_true((kinds.password or 0) > 0)  -- salt and check bytes
    assert.is_true((kinds.version or 0) > 0)
  end)

  it("rejects the file cut at every length", function()
    local text = vault.seal(plain, "pw", FAST)
    local truncated = 0
    for n = 0, #text - 2 do -- the last byte is the final newline
      local pt, _, kind = vault.unseal(text:sub(1, n), "pw", "v")
      assert(pt == nil, "cut at " .. n .. " was accepted")
      if kind == "truncated" then truncated = truncated + 1 end
    end
    assert.equal(plain, (vault.unseal(text:sub(1, -2), "pw", "v")))
    assert.equal(#text - 1, truncated) -- every cut says so
  end)

  it("names an unknown format version", function()
    local text = vault.seal(plain, "pw", FAST):gsub("^(%$PHANES_VAULT);1;", "%1;2;")
    local pt, err, kind = vault.unseal(text, "pw", "v.yaml")
    assert.is_nil(pt)
    assert.equal("version", kind)
    assert.matches("unknown vault format version '2'", err)
  end)

  it("looks keys up in defaults merged with the host's block, with a did-you-mean", function()
    local doc = assert(vault.parse("defaults:\n  pg: {password: a, user: u}\nhosts:\n  web1:\n    pg: {password: b}\n"))
    assert.equal("a", vault.lookup(doc, "pg.password"))
    assert.equal("b", vault.lookup(doc, "pg.password", "web1"))
    assert.equal("u", vault.lookup(doc, "pg.user", "web1"))
    local v, hint = vault.lookup(doc, "pg.pasword")
    assert.is_nil(v)
    assert.equal("did you mean 'pg.password'?", hint)
    assert.is_nil((vault.parse "other: 1\n"))
  end)
end)

describe("phanes vault (the commands)", function()
  local dir, env

  local function run(args, extra, stdin)
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra or {}) do e[k] = v end
    local cmd = runcli.command(args, e)
    local errf = dir .. "/stderr"
    local p = io.popen(cmd .. " <" .. q(stdin or "/dev/null") .. " 2>" .. q(errf))
    local out = p:read "a"
    local _, _, code = p:close()
    return { code = code, stdout = out, stderr = runcli.read(errf) or "" }
  end

  local function value_file(text)
    write(dir .. "/value", text)
    return dir .. "/value"
  end

  before_each(function()
    dir = runcli.tmpdir()
    write(dir .. "/pw", "first password\n")
    write(dir .. "/pw2", "second password\n")
    env = { HOME = dir .. "/home", XDG_STATE_HOME = "", XDG_CONFIG_HOME = "",
      PHANES_VAULT_PASSWORD_FILE = dir .. "/pw", XDG_RUNTIME_DIR = dir .. "/run" }
    env.XDG_STATE_HOME, env.XDG_CONFIG_HOME = nil, nil
    assert(file.mkdir(dir .. "/home", { mode = tonumber("700", 8) }))
    assert(file.mkdir(dir .. "/run", { mode = tonumber("700", 8) }))
    assert.equal(0, run({ "vault", "init", "--file", dir .. "/v.yaml" }).code)
  end)
  after_each(function() runcli.rmdir(dir) end)

  local function V(...)
    local t = { "vault", ... }
    t[#t + 1] = "--file"
    t[#t + 1] = dir .. "/v.yaml"
    return t
  end

  it("sets from stdin, masks on get, reveals with --reveal, removes", function()
    local r = run(V("set", "pg.password"), nil, value_file "Sup3r-S3cret\n")
    assert.equal(0, r.code, r.stderr)
    r = run(V("get", "pg.password"))
    assert.equal(0, r.code)
    assert.equal("pg.password: ******  (--reveal shows it)\n", r.stdout)
    r = run(V("get", "pg.password", "--reveal"))
    assert.equal("Sup3r-S3cret\n", r.stdout)
    r = run(V("get", "pg.pasword"))
    assert.equal(2, r.code)
    assert.matches("did you mean 'pg.password'", r.stderr)
    assert.equal(0, run(V("rm", "pg.password")).code)
    assert.equal(2, run(V("get", "pg.password")).code)
    assert.not_matches("Sup3r", runcli.read(dir .. "/v.yaml"))
  end)

  it("encrypt-string stores stdin under --name and prints the config line that reads it", function()
    local r = run(V("encrypt-string", "--name", "redis.password"), nil, value_file "Str1ng-S3cret\n")
    assert.equal(0, r.code, r.stderr)
    assert.equal("password: !vault redis.password\n", r.stdout)
    assert.equal("Str1ng-S3cret\n", run(V("get", "redis.password", "--reveal")).stdout)
    assert.is_nil(runcli.read(dir .. "/v.yaml"):find("Str1ng", 1, true))
    r = run(V("encrypt-string"), nil, value_file "x")
    assert.equal(2, r.code)
    assert.matches("give %-%-name KEY", r.stderr)
  end)

  it("set prompts on a terminal for the value (not echoed), then the password", function()
    local cmd = runcli.command(V("set", "tty.value"), { HOME = env.HOME, XDG_RUNTIME_DIR = env.XDG_RUNTIME_DIR })
    local p = io.popen("(sleep 1; printf 'Typed-Value-9\\n'; sleep 1; printf 'first password\\n'; sleep 1) | "
      .. "timeout 20 script -qec " .. q(cmd) .. " /dev/null")
    local shown = p:read "a"
    local _, _, code = p:close()
    assert.equal(0, code, shown)
    assert.matches("Value for tty.value: .*Vault password: .*set tty.value in", shown)
    assert.is_nil(shown:find("Typed-Value-9", 1, true), "the value was echoed")
    assert.equal("Typed-Value-9\n", run(V("get", "tty.value", "--reveal")).stdout)
  end)

  it("never takes a value from argv", function()
    local r = run(V("set", "pg.password", "Sup3r-S3cret"))
    assert.equal(2, r.code)
    assert.matches("expected one KEY", r.stderr)
  end)

  it("rekey keeps the content and changes the password", function()
    run(V("set", "a.b"), nil, value_file "xyz")
    local before = run(V("view")).stdout
    local r = run(V("rekey", "--new-vault-password-file", dir .. "/pw2"))
    assert.equal(0, r.code, r.stderr)
    assert.equal(2, run(V("view")).code)
    r = run(V("view", "--vault-password-file", dir .. "/pw2"))
    assert.equal(0, r.code)
    assert.equal(before, r.stdout)
  end)

  it("errors exit 2 and say which: wrong password, altered, cut, unknown version", function()
    local text = runcli.read(dir .. "/v.yaml")
    local r = run(V("view", "--vault-password-file", dir .. "/pw2"))
    assert.equal(2, r.code)
    assert.matches("wrong vault password", r.stderr)
    local i = #text - 10
    write(dir .. "/v.yaml", text:sub(1, i - 1) .. (text:sub(i, i) == "A" and "B" or "A") .. text:sub(i + 1))
    r = run(V("view"))
    assert.equal(2, r.code)
    assert.matches("was altered", r.stderr)
    write(dir .. "/v.yaml", text:sub(1, 70))
    r = run(V("view"))
    assert.equal(2, r.code)
    assert.matches("truncated", r.stderr)
    write(dir .. "/v.yaml", (text:gsub(";1;", ";9;", 1)))
    r = run(V("view"))
    assert.equal(2, r.code)
    assert.matches("unknown vault format version '9'", r.stderr)
    assert.equal("", r.stdout)
  end)

  it("a kill at any point of rekey leaves a vault that opens with the old or the new password", function()
    run(V("set", "k"), nil, value_file "the-content")
    local pws, cur = { dir .. "/pw", dir .. "/pw2" }, 1
    local opened = { 0, 0 }
    math.randomseed(os.time())
    for round = 1, 16 do
      local other = 3 - cur
      local cmd = runcli.command(V("rekey", "--vault-password-file", pws[cur], "--new-vault-password-file", pws[other]), env, true)
      local delay = (round % 8) * 0.06 + math.random() * 0.06 -- 0 .. 0.48 s: before, during, after the write
      local sh = "(" .. cmd .. " >/dev/null 2>&1 </dev/null & pid=$!; sleep " .. string.format("%.3f", delay)
        .. "; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; true)"
      assert.is_true(os.execute(sh))
      local ok1 = run(V("get", "k", "--reveal", "--vault-password-file", pws[cur]))
      local ok2 = run(V("get", "k", "--reveal", "--vault-password-file", pws[other]))
      assert(ok1.code == 0 or ok2.code == 0, "round " .. round .. ": the vault opens with neither password: "
        .. ok1.stderr .. ok2.stderr)
      assert.equal("the-content\n", ok1.code == 0 and ok1.stdout or ok2.stdout)
      if ok2.code == 0 then cur = other end
      opened[cur] = opened[cur] + 1
    end
    print(string.format("\n  16 rekeys killed at random points: the vault opened %d times with the first "
      .. "password, %d with the second", opened[1], opened[2]))
  end)

  it("logs every read, write and rekey to security.log (0600) without values", function()
    run(V("set", "db.password"), nil, value_file "Log-Me-Not-42")
    run(V("get", "db.password", "--reveal"))
    run(V("rekey", "--new-vault-password-file", dir .. "/pw2"))
    local path = dir .. "/home/.local/state/phanes/security.log"
    local st = assert(file.stat(path))
    assert.equal(tonumber("600", 8), st.mode)
    local text = runcli.read(path)
    assert.not_matches("Log%-Me%-Not", text)
    assert.not_matches("password\"", text:gsub('"key":"db%.password"', ""))
    local actions = {}
    for line in text:gmatch "[^\n]+" do
      local e = json.decode(line)
      for _, f in ipairs { "time", "uid", "user", "action", "host", "run_id", "outcome" } do
        assert.is_not_nil(e[f], f .. " missing in " .. line)
      end
      local id = io.popen "id -un"
      local me = id:read "l"
      id:close()
      assert.equal(me, e.user) -- the uid's name, from /etc/passwd
      actions[e.action] = true
    end
    assert.is_true(actions.init and actions.read and actions.set and actions.get and actions.rekey and true)
  end)

  it("takes an empty XDG_STATE_HOME as unset (the log goes under HOME)", function()
    local r = run(V("get", "nothing.here"), { XDG_STATE_HOME = "" })
    assert.equal(2, r.code)
    assert.truthy(runcli.read(dir .. "/home/.local/state/phanes/security.log"))
  end)

  it("calls on_secret_read and on_key_rotated from a safe hooks.lua, ignores a writable one", function()
    assert(file.mkdir(dir .. "/home/.config/phanes", { parents = true, mode = tonumber("700", 8) }))
    local hooks = dir .. "/home/.config/phanes/hooks.lua"
    write(hooks, ([[
      local function log(name, e) local f = io.open(%q, "a") f:write(name, " ", e.action, " ", tostring(e.key), "\n") f:close() end
      return { on_secret_read = function(e) log("read", e) end, on_key_rotated = function(e) log("rotated", e) end }
    ]]):format(dir .. "/hooked"), "644")
    run(V("set", "x.y"), nil, value_file "hook-value")
    run(V("get", "x.y"))
    run(V("rekey", "--new-vault-password-file", dir .. "/pw2"))
    local got = runcli.read(dir .. "/hooked") or ""
    assert.matches("read get x.y", got)
    assert.matches("rotated rekey", got)
    assert.not_matches("hook%-value", got)
    assert(file.chmod(hooks, tonumber("666", 8)))
    local r = run(V("get", "x.y", "--vault-password-file", dir .. "/pw2"))
    assert.matches("ignoring .*hooks.lua", r.stderr)
  end)

  it("keeps the value out of every process's argv while setting and reading", function()
    local secret = "Argv-Watch-" .. os.time()
    local vf = value_file(secret)
    local cmd = runcli.command(V("set", "w.v"), env) .. " <" .. q(vf) .. " >/dev/null 2>&1; "
      .. runcli.command(V("get", "w.v", "--reveal"), env) .. " >/dev/null 2>&1"
    local done = dir .. "/done"
    os.execute("(" .. cmd .. "; touch " .. q(done) .. ") &")
    local polls, seen = 0, false
    while not file.exists(done) and polls < 2000 do
      for _, pid in ipairs(file.list "/proc" or {}) do
        if pid:match "^%d+$" then
          local c = file.read("/proc/" .. pid .. "/cmdline")
          if c and c:find(secret, 1, true) then seen = true end
        end
      end
      polls = polls + 1
    end
    assert.is_true(file.exists(done))
    assert.is_false(seen)
    assert.is_true(polls > 1)
    assert.equal(secret .. "\n", run(V("get", "w.v", "--reveal")).stdout)
  end)

  describe("edit", function()
    local function editor(body)
      write(dir .. "/ed.sh", "#!/bin/sh\n" .. body .. "\n", "755")
      return dir .. "/ed.sh"
    end
    local function leftovers() return file.list(dir .. "/run") end

    it("re-encrypts what the editor saved and leaves no plaintext", function()
      local ed = editor([[sed -i 's/^defaults: {}/defaults: {edited: yes-it-was}/' "$1"; ls -ld "$(dirname "$1")" "$1" > ]] .. q(dir .. "/modes"))
      local r = run(V("edit"), { EDITOR = ed })
      assert.equal(0, r.code, r.stderr)
      assert.equal("yes-it-was\n", run(V("get", "edited", "--reveal")).stdout)
      assert.same({}, leftovers())
      local modes = runcli.read(dir .. "/modes")
      assert.matches("^drwx%-%-%-%-%-%- ", modes)
      assert.matches("\n%-rw%-%-%-%-%-%-%- ", modes)
    end)

    it("keeps the vault when the editor fails or writes broken YAML, and wipes", function()
      local before = runcli.read(dir .. "/v.yaml")
      local r = run(V("edit"), { EDITOR = editor [[echo 'defaults: {a: 1}' > "$1"; exit 3]] })
      assert.equal(2, r.code)
      assert.matches("exited with 3", r.stderr)
      assert.same({}, leftovers())
      r = run(V("edit"), { EDITOR = editor [[printf 'defaults: [oops\n' > "$1"]] })
      assert.equal(2, r.code)
      assert.matches("not changed", r.stderr)
      assert.same({}, leftovers())
      assert.equal(before, runcli.read(dir .. "/v.yaml"))
    end)

    for _, sig in ipairs { "INT", "TERM" } do
      it("wipes the plaintext on SIG" .. sig .. " while the editor runs", function()
        local before = runcli.read(dir .. "/v.yaml")
        local ed = editor([[echo 'defaults: {a: 2}' > "$1"; touch ]] .. q(dir .. "/started") .. "; exec sleep 30")
        local e = {}
        for k, v in pairs(env) do e[k] = v end
        e.EDITOR = ed
        local cmd = runcli.command(V("edit"), e, true)
        local sh = "(" .. cmd .. " >/dev/null 2>&1 </dev/null & pid=$!; i=0; while [ ! -e " .. q(dir .. "/started")
          .. " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; kill -" .. sig
          .. " $pid; wait $pid; echo $? > " .. q(dir .. "/rc") .. ")"
        os.execute(sh)
        assert.equal("130", (runcli.read(dir .. "/rc") or ""):match "%d+")
        assert.same({}, leftovers())
        assert.equal(before, runcli.read(dir .. "/v.yaml"))
      end)
    end
  end)
end)

describe("!vault values in the config", function()
  local config = require "phanes.config"
  local mods = { { name = "app", config = {
    password = { type = "string", required = true },
    user = { type = "string", default = "app" },
  } } }
  local dir

  before_each(function()
    dir = runcli.tmpdir()
    write(dir .. "/pw", "cfg password\n")
    vault.LOG = dir .. "/security.log"
  end)
  after_each(function()
    vault.LOG = nil
    runcli.rmdir(dir)
  end)

  local function seal(name, plain)
    write(dir .. "/" .. name, vault.seal(plain, "cfg password", FAST))
  end

  it("resolves from defaults and the host's block; marks the value secret", function()
    seal("secrets.vault.yaml", "defaults:\n  app: {password: dflt-pass}\nhosts:\n  "
      .. sys.hostname() .. ":\n    app: {password: Host-Pass-77}\n")
    local cfg, info = config.load { path = dir .. "/config.yaml", modules = mods,
      text = "app:\n  password: !vault app.password\n",
      env = { PHANES_VAULT_PASSWORD_FILE = dir .. "/pw" } }
    assert.is_table(cfg, info and table.concat(info, "\n"))
    assert.equal("Host-Pass-77", cfg.app.password)
    local found = false
    for _, v in ipairs(vault.resolved_values()) do found = found or v == "Host-Pass-77" end
    assert.is_true(found)
    print(string.format("\n  opening the vault for a run: %.0f ms (fast test parameters)", (vault.open_seconds or 0) * 1000))
  end)

  it("takes PHANES_SECRET_<KEY> over the vault, without opening it", function()
    local cfg = config.load { path = dir .. "/nothere/config.yaml", modules = mods,
      text = "vault: {file: missing.vault.yaml}\napp:\n  password: !vault app.password\n",
      env = { PHANES_SECRET_APP_PASSWORD = "from-env" } }
    assert.equal("from-env", cfg.app.password)
  end)

  it("never shows a vault value in a config error, even in a field that is not secret", function()
    local fmods = { { name = "app", config = {
      password = { type = "string", required = true },
      size = { type = "string", format = "size", default = "1mb" },
      mode = { type = "enum", values = { "a", "b" }, default = "a" },
      port = { type = "integer", default = 80 },
    } } }
    seal("secrets.vault.yaml", "defaults:\n  app: {password: Pass-Word-1, size: Wrong-Size-42, mode: Mode-Leak-43, "
      .. "port: Port-Leak-44}\n")
    local cfg, errs = config.load { path = dir .. "/config.yaml", modules = fmods,
      text = "app:\n  password: !vault app.password\n  size: !vault app.size\n  mode: !vault app.mode\n"
        .. "  port: !vault app.port\n",
      env = { PHANES_VAULT_PASSWORD_FILE = dir .. "/pw" } }
    assert.is_nil(cfg)
    local all = table.concat(errs, "\n")
    assert.matches("app.size: expected", all)
    assert.matches("app.mode: expected", all)
    assert.matches("app.port: expected", all)
    for _, leak in ipairs { "Wrong-Size-42", "Mode-Leak-43", "Port-Leak-44" } do
      assert.is_nil(all:find(leak, 1, true), all)
    end
  end)

  it("reads a number from the vault's text into an integer field, and says where it came from", function()
    local imods = { { name = "app", config = {
      password = { type = "string", required = true },
      port = { type = "integer", default = 80 },
    } } }
    seal("secrets.vault.yaml", "defaults:\n  app: {password: '12345678', port: '6390'}\n")
    local cfg, info = config.load { path = dir .. "/config.yaml", modules = imods,
      text = "app:\n  password: !vault app.password\n  port: !vault app.port\n",
      env = { PHANES_VAULT_PASSWORD_FILE = dir .. "/pw" } }
    assert.is_table(cfg, info and table.concat(info, "\n"))
    assert.equal(6390, cfg.app.port)
    assert.equal("12345678", cfg.app.password)
    local layers = require "phanes.config.layers"
    assert.equal("config.yaml:3 !vault app.port", layers.label(info.origin["app.port"]):match "[^/]*$")
  end)

  it("names a missing key with a did-you-mean, and a wrong password", function()
    seal("named.vault.yaml", "defaults:\n  app: {password: x}\n")
    write(dir .. "/bad", "nope\n")
    local cfg, errs = config.load { path = dir .. "/config.yaml", modules = mods,
      text = "vault: named.vault.yaml\napp:\n  password: !vault app.pasword\n",
      env = { PHANES_VAULT_PASSWORD_FILE = dir .. "/pw" } }
    assert.is_nil(cfg)
    assert.matches("app.password: !vault app.pasword: no key 'app.pasword' in the vault .*named.vault.yaml "
      .. "%(did you mean 'app.password'%?%)", table.concat(errs, "\n"))
    seal("other.vault.yaml", "defaults:\n  app: {password: x}\n")
    cfg, errs = config.load { path = dir .. "/config.yaml", modules = mods,
      text = "vault: other.vault.yaml\napp:\n  password: !vault app.password\n  user: !vault app.user\n",
      env = { PHANES_VAULT_PASSWORD_FILE = dir .. "/bad" } }
    assert.is_nil(cfg)
    local all = table.concat(errs, "\n")
    local _, n = all:gsub("wrong vault password", "")
    assert.equal(1, n, all) -- once, not once per value
  end)
end)

-- A fleet: the controller derives the vault's key once (vault.handover)
-- and each host's child gets it on stdin (PHANES_VAULT_KEY_FD=0): no KDF,
-- no password command in the child; a key that does not fit is refused.
describe("the vault key handed to a fleet's children", function()
  local exec = require "phanes.exec"
  local format = require "phanes.vault.format"
  local dir

  before_each(function()
    dir = runcli.tmpdir()
    vault.LOG = dir .. "/security.log"
    write(dir .. "/pwcmd.sh", "echo run >> " .. q(dir .. "/count") .. "\necho 'fleet pw'\n")
    write(dir .. "/config.yaml", "vault:\n  password_command: sh " .. dir .. "/pwcmd.sh\n")
    write(dir .. "/secrets.vault.yaml", vault.seal("defaults:\n  k: Handed-Value-9\n", "fleet pw", FAST))
    write(dir .. "/wrong.pw", "not the password\n")
    write(dir .. "/pw", "fleet pw\n")
    write(dir .. "/child.lua", table.concat({
      "local vault, format = require 'phanes.vault', require 'phanes.vault.format'",
      "vault.LOG = " .. string.format("%q", dir .. "/security.log"),
      "local doc, err = vault.open_once(" .. string.format("%q", dir .. "/secrets.vault.yaml")
        .. ", { settings = {}, env = { PHANES_VAULT_PASSWORD_FILE = " .. string.format("%q", dir .. "/wrong.pw") .. " } })",
      "io.write(doc and vault.lookup(doc, 'k', 'h') or ('ERR ' .. err), '\\n', format.kdf_count, '\\n')",
    }, "\n"))
  end)
  after_each(function()
    vault.LOG = nil
    runcli.rmdir(dir)
  end)

  -- the child phanes, given stdin (nil: none) -> its stdout
  local function child(stdin)
    local r = assert(exec.spawn { argv = { sys.exe(), "lua", dir .. "/child.lua" }, stdin = stdin,
      env = { PHANES_VAULT_KEY_FD = stdin and "0" or false } })
    local out = {}
    repeat
      local events = assert(exec.wait({ r }, 5))
      local done = false
      for _, ev in ipairs(events) do
        if ev.kind == "stdout" then out[#out + 1] = ev.data elseif ev.kind == "exit" then done = true end
      end
    until done
    r:close()
    return table.concat(out)
  end

  it("runs the password command and the KDF once in the controller; the child opens the vault without either", function()
    local before = format.kdf_count
    local text = assert(vault.handover { config = dir .. "/config.yaml", env = {} })
    assert.equal(before + 1, format.kdf_count)
    assert.equal("run\n", file.read(dir .. "/count"))
    assert.is_nil(text:find("fleet pw", 1, true))
    assert.equal("Handed-Value-9\n0\n", child(text)) -- no KDF in the child
    assert.equal("Handed-Value-9\n0\n", child(text))
    assert.equal("run\n", file.read(dir .. "/count")) -- the command ran once for all of them
    -- without a key the child derives its own (here with a wrong password)
    assert.matches("^ERR .*wrong vault password.*\n1\n$", child(nil))
  end)

  it("refuses a key that does not open the vault, naming it; a key for another vault is not used", function()
    local text = assert(vault.handover { config = dir .. "/config.yaml", env = {} })
    local magic, salt = text:match "^([^\n]*)\n([^\n]*)\n"
    local forged = magic .. "\n" .. salt .. "\n" .. crypto.base64_encode(cipher.random(48)) .. "\n"
    local out = child(forged)
    assert.matches("^ERR [^\n]*secrets%.vault%.yaml: the vault key handed over does not open this vault", out)
    assert.matches("\n0\n$", out)
    -- the vault changed (another salt) since the key was derived: the child asks for the password itself
    write(dir .. "/secrets.vault.yaml", vault.seal("defaults:\n  k: Other\n", "fleet pw", FAST))
    assert.matches("^ERR .*wrong vault password.*\n1\n$", child(text))
  end)

  it("a fleet's child refuses a key that does not open the vault: exit 2, naming the vault", function()
    assert(file.mkdir(dir .. "/.config/phanes", { parents = true }))
    write(dir .. "/.config/phanes/inventory.yaml", "hosts:\n  a: { address: 127.0.0.1, port: 1, user: root }\n")
    write(dir .. "/config.yaml", "redis:\n  password: !vault k\n")
    local text = assert(vault.handover { config = dir .. "/config.yaml", env = { PHANES_VAULT_PASSWORD_FILE = dir .. "/pw" } })
    local magic, salt = text:match "^([^\n]*)\n([^\n]*)\n"
    local r = assert(exec.spawn { argv = { sys.exe(), "--remote", "a", "--modules", "redis", "--config", dir .. "/config.yaml",
      "apply" }, stdin = magic .. "\n" .. salt .. "\n" .. crypto.base64_encode(cipher.random(48)) .. "\n",
      env = { HOME = dir, PHANES_NO_PROMPT = "1", PHANES_VAULT_KEY_FD = "0", XDG_CONFIG_HOME = false, XDG_STATE_HOME = false } })
    local errs, code = {}, nil
    repeat
      for _, ev in ipairs(assert(exec.wait({ r }, 5))) do
        if ev.kind == "exit" then code = ev.code else errs[#errs + 1] = ev.data end
      end
    until code
    r:close()
    local all = table.concat(errs)
    assert.equal(2, code, all)
    assert.matches(": " .. (dir .. "/secrets.vault.yaml"):gsub("%p", "%%%0") .. ": the vault key handed over does not open", all)
  end)

  it("hands nothing without a vault file, and fails before any host on a wrong password", function()
    assert.is_nil(vault.handover { config = dir .. "/none/config.yaml", env = {} })
    write(dir .. "/pwcmd.sh", "echo 'wrong'\n")
    local text, err = vault.handover { config = dir .. "/config.yaml", env = {} }
    assert.is_nil(text)
    assert.matches("secrets%.vault%.yaml: wrong vault password", err)
  end)
end)
