-- The remote flow's pure parts: option parsing, the tar stream, the probe's
-- output, the command line the target runs.
local remote = require "phanes.remote"
local util = require "phanes.remote.util"
local run = require "phanes.remote.run"

describe("remote.parse_args", function()
  it("takes the remote options out and passes the rest", function()
    local o, rest = remote.parse_args { "--remote", "deploy@web1", "apply", "dev", "--config", "c.yaml",
      "--port=2222", "--key", "~/.ssh/k", "--parallel", "3", "--strict-host-keys", "--dry-run" }
    assert.equal("deploy@web1", o.target)
    assert.same({ 2222, "~/.ssh/k", 3, true }, { o.port, o.key, o.parallel, o.strict })
    assert.same({ "apply", "dev", "--config", "c.yaml", "--dry-run" }, rest)
  end)

  it("reads --remote without a target as the default host", function()
    local o, rest = remote.parse_args { "--remote", "apply", "dev" }
    assert.is_true(o.remote)
    assert.is_nil(o.target)
    assert.same({ "apply", "dev" }, rest)
    o = remote.parse_args { "apply", "dev", "--remote" }
    assert.is_nil(o.target)
    o = remote.parse_args { "--remote=@web", "status" }
    assert.equal("@web", o.target)
    assert.equal(10, o.parallel)
  end)

  it("refuses bad values and unset password variables", function()
    assert.is_nil((remote.parse_args { "--remote", "h", "--parallel", "0" }))
    assert.is_nil((remote.parse_args { "--remote", "h", "--port" }))
    local o, err = remote.parse_args { "--remote", "h", "facts", "--password-env", "PHANES_SURELY_UNSET_VAR" }
    assert.is_nil(o)
    assert.equal("--password-env PHANES_SURELY_UNSET_VAR: that variable is not set", err)
  end)
end)

describe("remote util", function()
  it("quotes for the shell", function()
    assert.equal("plain/path-1.2", util.shquote "plain/path-1.2")
    assert.equal("'it'\\''s here'", util.shquote "it's here")
    assert.equal("'$(x)'", util.shquote "$(x)")
  end)

  it("writes a tar stream that tar reads back", function()
    local data = string.rep("x", 700)
    local long = "path/" .. string.rep("d", 60) .. "/" .. string.rep("f", 60) .. ".lua"
    local bytes = assert(util.tar { { name = "config/c.yaml", data = "a: 1\n" }, { name = long, data = data } })
    assert.equal(0, #bytes % 512)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local p = assert(io.popen("tar -x -C " .. dir .. " -f -", "w"))
    p:write(bytes)
    assert(p:close())
    local f = assert(io.open(dir .. "/" .. long, "rb"))
    assert.equal(data, f:read "a")
    f:close()
    f = assert(io.open(dir .. "/config/c.yaml", "rb"))
    assert.equal("a: 1\n", f:read "a")
    f:close()
    os.execute("rm -rf " .. dir)
  end)

  it("splits streamed output into lines", function()
    local got = {}
    local l = util.liner(function(line) got[#got + 1] = line end)
    l.feed "one\ntw"
    l.feed "o\n\nthr"
    assert.same({ "one", "two", "" }, got)
    l.flush()
    assert.same({ "one", "two", "", "thr" }, got)
  end)

  it("parses the probe's answer", function()
    local p = run.parse_probe "cache=/home/d/.cache/phanes\narch=x86_64\nuid=1000\nsudo=password\nos=Debian GNU/Linux 12 (bookworm)\ndir=/home/d/.cache/phanes/run.x1\n"
    assert.same({ cache = "/home/d/.cache/phanes", arch = "x86_64", uid = "1000", sudo = "password",
      os = "Debian GNU/Linux 12 (bookworm)", dir = "/home/d/.cache/phanes/run.x1" }, p)
  end)

  it("probes with a script sh accepts", function()
    for _, lean in ipairs { true, false } do
      local script = run.probe_script(string.rep("a", 64), lean)
      local p = assert(io.popen("sh -n 2>&1 <<'EOF'\n" .. script .. "\nEOF\n"))
      local out = p:read "a"
      p:close()
      assert.equal("", out)
    end
  end)
end)

describe("remote probe", function()
  it("answers here (HOME in a temporary directory) and clears old run directories from the cache", function()
    local file = require "phanes.file"
    local p = assert(io.popen "mktemp -d /tmp/phanes-probe.XXXXXX")
    local home = p:read "l"
    p:close()
    assert(file.mkdir(home .. "/.cache/phanes/run.old", { parents = true }))
    local sha = string.rep("b", 64)
    assert(file.write(home .. "/.cache/phanes/phanes-" .. sha, "x", { mode = tonumber("0700", 8) }))
    p = assert(io.popen("HOME=" .. home .. " sh -c " .. util.shquote(run.probe_script(sha, true))))
    local probe = run.parse_probe(p:read "a")
    p:close()
    assert.equal(home .. "/.cache/phanes", probe.cache)
    assert.equal(require("phanes.sys").uname().machine, probe.arch)
    assert.equal(sha, probe.cached)
    local root = require("phanes.sys").getuid() == 0
    assert.equal(root and "root" or nil, root and probe.sudo or nil)
    assert.same({ "phanes-" .. sha }, file.list(home .. "/.cache/phanes"))
    file.remove(home, true)
  end)
end)

describe("remote.command_word", function()
  it("finds the command after global options", function()
    assert.equal("status", remote.command_word { "--color", "never", "status", "--json" })
    assert.equal("apply", remote.command_word { "--path", "dir", "--dry-run", "apply", "dev" })
    assert.is_nil(remote.command_word { "--json" })
  end)
end)
