-- The ollama module's plan on a recording ctx (spec/support/plan.lua): the
-- archive URL and checksum, the unit and drop-in, models pulled only when
-- `ollama list` lacks them, and its refusals.
local plan = require "support.plan"

local SHA = string.rep("ab", 32)

local function run(section, opts)
  opts = opts or {}
  local list = opts.list or "NAME\tID\tSIZE\tMODIFIED\n"
  opts.exec = opts.exec or function(o)
    if o.argv[2] == "list" then return { code = 0, stdout = list, stderr = "" } end
    return { code = 0, stdout = "", stderr = "" }
  end
  local s = { sha256 = SHA }
  for k, v in pairs(section or {}) do s[k] = v end
  return plan.run(plan.module "ollama", { ollama = s }, opts)
end

describe("ollama module", function()
  it("fetches the pinned archive for the host's arch and extracts it into the prefix", function()
    local calls = run { version = "0.9.1" }
    local f = plan.find(calls, "fetch.file")[1].args
    assert.equal("https://github.com/ollama/ollama/releases/download/v0.9.1/ollama-linux-amd64.tgz", f.url)
    assert.equal(SHA, f.sha256)
    assert.equal("/var/cache/phanes/ollama/ollama-linux-amd64-0.9.1.tgz", f.dest)
    local a = plan.find(calls, "archive.extracted")[1].args
    assert.equal(f.dest, a.src)
    assert.equal("/usr/local", a.dest)
    assert.equal("/var/lib/phanes/sentinels/ollama.archive", a.sentinel)
    assert.equal("0.9.1 amd64 " .. SHA, a.stamp)
    local last = calls[#calls]
    assert.equal("sentinel.mark", last.kind)
    assert.same({ "installed", stamp = "0.9.1 amd64 " .. SHA }, last.args)
    calls = run({ archive_url = "file:///srv/mirror/{version}/ollama-{arch}.tgz" }, { facts = { arch = "aarch64" } })
    assert.equal("file:///srv/mirror/0.5.7/ollama-arm64.tgz", plan.find(calls, "fetch.file")[1].args.url)
  end)

  it("runs the service as ollama with its environment in a drop-in, checked by /api/version", function()
    local calls = run { host = "0.0.0.0:11500", keep_alive = "1h", env = { OLLAMA_DEBUG = "1" } }
    assert.same({ name = "ollama", system = true, group = "ollama", home = "/usr/share/ollama", shell = "/bin/false" },
      plan.find(calls, "user.present")[1].args)
    local unit = plan.find(calls, "systemd.unit")[1].args
    assert.equal("ollama.service", unit.name)
    assert.matches("ExecStart=/usr/local/bin/ollama serve\nUser=ollama\n", unit.content, 1, true)
    local d = plan.find(calls, "systemd.dropin")[1].args
    assert.equal("phanes", d.name)
    assert.matches('Environment="OLLAMA_HOST=0.0.0.0:11500"\n', d.content, 1, true)
    assert.matches('Environment="OLLAMA_KEEP_ALIVE=1h"\nEnvironment="OLLAMA_DEBUG=1"\n', d.content, 1, true)
    assert.is_true(plan.find(calls, "service.running")[1].args.restart)
    assert.equal("http://127.0.0.1:11500/api/version", plan.find(calls, "fetch.check")[1].args.url)
  end)

  it("pulls only the models ollama list lacks", function()
    local calls = run({ models = { "tiny:1b", "other", "new:7b" } },
      { list = "NAME\tID\tSIZE\tMODIFIED\ntiny:1b\tabc\t1 GB\tnow\nother:latest\tdef\t2 GB\tnow\n" })
    local pulls = plan.find(calls, "cmd.run")
    assert.equal(1, #pulls)
    assert.same({ "/usr/local/bin/ollama", "pull", "new:7b" }, pulls[1].args.argv)
    assert.same({ OLLAMA_HOST = "127.0.0.1:11434" }, pulls[1].args.env)
    assert.equal(0, #plan.find(run({}), "cmd.run"))
  end)

  it("fails when ollama list fails in a real run, plans every pull in a dry run", function()
    local failing = function() return { code = 1, stdout = "", stderr = "Error: could not connect" } end
    local ok, err = pcall(run, { models = { "a" } }, { exec = failing })
    assert.is_false(ok)
    assert.matches("ollama list failed: exit 1", tostring(err), 1, true)
    local calls = run({ models = { "a" } }, { exec = failing, dry_run = true })
    assert.equal(1, #plan.find(calls, "cmd.run"))
  end)

  it("refuses a missing sha256 and environment it cannot quote", function()
    local ok, err = pcall(run, { sha256 = "" })
    assert.is_false(ok)
    assert.matches("ollama.sha256 is not set", tostring(err), 1, true)
    ok, err = pcall(run, { env = { ["BAD-NAME"] = "1" } })
    assert.is_false(ok)
    assert.matches("not an environment variable name", tostring(err), 1, true)
    ok, err = pcall(run, { host = "127.0.0.1:70000" })
    assert.is_false(ok)
    assert.matches("ollama.host: the port of 127.0.0.1:70000 is not between 1 and 65535", tostring(err), 1, true)
    ok, err = pcall(run, { env = { X = 'a"\nExecStart=/bin/sh' } })
    assert.is_false(ok)
    assert.matches("quotes, backslashes", tostring(err), 1, true)
  end)

  it("runs the checked install script once instead of the archive with method: script", function()
    local SSHA = string.rep("cd", 32)
    local calls = run { method = "script", sha256 = "", script_sha256 = SSHA, version = "0.9.1" }
    assert.equal(0, #plan.find(calls, "archive.extracted"))
    local f = plan.find(calls, "fetch.file")
    assert.equal(1, #f)
    assert.same({ url = "https://ollama.com/install.sh", dest = "/var/cache/phanes/ollama/install-cdcdcdcdcdcdcdcd.sh",
      sha256 = SSHA, mode = "0644" }, f[1].args)
    local sh = plan.find(calls, "cmd.run")[1].args
    assert.same({ "sh", f[1].args.dest }, sh.argv)
    assert.same({ OLLAMA_VERSION = "0.9.1" }, sh.env)
    local marks = plan.find(calls, "sentinel.mark")
    assert.same({ "script", stamp = "0.9.1 amd64 script " .. SSHA }, marks[1].args)
    assert.same({ "installed", stamp = "0.9.1 amd64 script " .. SSHA }, marks[2].args)
    -- the unit and drop-in still phanes' own, restarted after the script ran
    assert.equal("ollama.service", plan.find(calls, "systemd.unit")[1].args.name)
    assert.is_true(plan.find(calls, "service.running")[1].args.restart)
    local d = plan.module("ollama").detect { prefix = "/usr/local", host = "0.0.0.0:11434" }
    assert.same({ "/usr/local/bin/ollama", "/etc/systemd/system/ollama.service" }, d.files)
    assert.equal("http://127.0.0.1:11434/api/version", d.url)
    local ok, err = pcall(run, { method = "script" })
    assert.is_false(ok)
    assert.matches("ollama.script_sha256 is not set", tostring(err), 1, true)
  end)
end)
