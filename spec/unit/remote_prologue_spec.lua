-- The login user's side of a remote run (run.prologue), run here by sh with
-- HOME in a temporary directory and a stand-in for root's script: the framed
-- probe line, the binary taken gzip-compressed from the head of stdin (and
-- no more than it), the rest of stdin left for root, the arch check.
local run = require "phanes.remote.run"
local util = require "phanes.remote.util"
local file = require "phanes.file"
local ssh = require "phanes.ssh"

describe("remote prologue", function()
  local dir
  before_each(function()
    local p = assert(io.popen "mktemp -d /tmp/phanes-prologue.XXXXXX")
    dir = p:read "l"
    p:close()
  end)
  after_each(function() file.remove(dir, true) end)

  local function sh(script, stdin)
    assert(file.write(dir .. "/stdin", stdin))
    local p = assert(io.popen("HOME=" .. util.shquote(dir) .. " sh -c " .. util.shquote(script)
      .. " <" .. util.shquote(dir .. "/stdin") .. " 2>&1"))
    local out = p:read "a"
    local _, _, code = p:close()
    return code, out
  end
  local sha, arch = string.rep("c", 64), require("phanes.sys").uname().machine
  -- stands in for root_script: what it was given, and the rest of stdin
  local ROOT = 'echo "root: $1"; cat'

  it("probes in one framed line, stores the binary from stdin, and hands root the rest", function()
    local bin = "#!/bin/sh\necho fake phanes\n" .. string.rep("x", 100000)
    local gz = assert(ssh.gzip(bin))
    local code, out = sh(run.prologue { sha = sha, arch = arch, root = ROOT, nonce = "n1", gz = #gz }, gz .. "PAYLOAD\n")
    assert.equal(0, code, out)
    local line = out:match "^(PHANES%-PROBE n1 [^\n]*)\n"
    local p = assert(run.parse_probe_line(line, "n1"), out)
    assert.equal(arch, p.arch)
    assert.equal("no", p.cached)
    assert.is_nil(run.parse_probe_line(line, "n2"))
    local cached = dir .. "/.cache/phanes/phanes-" .. sha
    assert.matches("\nroot: " .. cached:gsub("%p", "%%%0") .. "\nPAYLOAD\n$", out)
    assert.equal(bin, file.read(cached))
    assert.equal(tonumber("0700", 8), file.stat(cached).mode & tonumber("0777", 8))
    -- cached now: nothing read ahead of root's stdin
    code, out = sh(run.prologue { sha = sha, arch = arch, root = ROOT, nonce = "n2" }, "PAYLOAD\n")
    assert.equal(0, code, out)
    assert.equal("yes", run.parse_probe_line(out:match "^[^\n]*", "n2").cached)
    assert.matches("\nPAYLOAD\n$", out)
  end)

  -- a PATH whose first directory logs each tool the prologue starts
  local TOOLS = { "id", "uname", "getconf", "ldd", "tr", "sort", "head", "find", "mkdir", "chmod", "ls", "grep", "xargs" }
  local function logged_path()
    local bin = dir .. "/bin"
    assert(file.mkdir(bin))
    for _, t in ipairs(TOOLS) do
      local real = assert(io.popen("command -v " .. t)):read "l"
      local body = "#!/bin/sh\necho " .. t .. " >>" .. util.shquote(dir .. "/spawned") .. "\n"
      if t == "getconf" then body = body .. 'if [ -n "$FAKE_LIBC" ]; then echo "$FAKE_LIBC"; exit 0; fi\n' end
      assert(file.write(bin .. "/" .. t, body .. "exec " .. real .. ' "$@"\n', { mode = tonumber("0755", 8) }))
    end
    return bin
  end
  local function run_in(shell, script, env)
    local p = assert(io.popen(env .. " HOME=" .. util.shquote(dir) .. " " .. shell .. " -c " .. util.shquote(script)
      .. " </dev/null 2>&1"))
    local out = p:read "a"
    local _, _, code = p:close()
    return code, out, file.read(dir .. "/spawned") or ""
  end

  it("starts no process of its own before root when the binary is cached (bash), at most uname (sh)", function()
    local path = logged_path() .. ":" .. os.getenv "PATH"
    local cache = dir .. "/.cache/phanes"
    assert(file.mkdir(dir .. "/.cache")) assert(file.mkdir(cache))
    assert(file.write(cache .. "/phanes-" .. sha, "x", { mode = tonumber("0700", 8) }))
    local script = run.prologue { sha = sha, arch = arch, root = ROOT, nonce = "n5", check = true, apply = true, min_glibc = "2.34" }
    for _, shell in ipairs { "bash", "sh" } do
      file.remove(dir .. "/spawned")
      local code, out, spawned = run_in(shell, script, "PATH=" .. util.shquote(path))
      assert.equal(0, code, out)
      local p = assert(run.parse_probe_line(out:match "^[^\n]*", "n5"), out)
      assert.same({ arch, tostring(require("phanes.sys").getuid()), "yes" },
        { p.arch, p.uid, p.cached })
      assert.matches("apt%-get", p.pkg)
      assert.equal(shell == "bash" and "" or "uname\n", spawned, shell)
    end
  end)

  it("asks the C library only for a binary not cached yet, and refuses an old glibc or musl (98)", function()
    local path = logged_path() .. ":" .. os.getenv "PATH"
    local script = run.prologue { sha = sha, arch = arch, root = ROOT, nonce = "n6", check = true, min_glibc = "2.34" }
    for libc, want in pairs { ["glibc 2.36"] = 0, ["glibc 2.33"] = 98, ["glibc 3.1"] = 0, ["musl libc (x86_64)"] = 98,
        ["ldd (Debian GLIBC 2.36-9+deb12u4) 2.36"] = 0, ["ldd (GNU libc) 2.17"] = 98 } do
      file.remove(dir .. "/spawned")
      local code, out, spawned = run_in("bash", script, "PATH=" .. util.shquote(path) .. " FAKE_LIBC=" .. util.shquote(libc))
      assert.equal(want, code, libc .. ": " .. out)
      assert.matches("getconf", spawned)
      assert.equal(libc, run.parse_probe_line(out:match "^[^\n]*", "n6").libc)
    end
  end)

  it("stops before root on another arch (96), and on a broken stream (97) leaves no binary", function()
    local code, out = sh(run.prologue { sha = sha, arch = "pdp11", root = ROOT, nonce = "n3" }, "")
    assert.equal(96, code, out)
    assert.is_nil(out:find("root:", 1, true))
    code, out = sh(run.prologue { sha = sha, arch = arch, root = ROOT, nonce = "n4", gz = 10 }, "not gzip..PAYLOAD")
    assert.equal(97, code, out)
    assert.matches("PHANES%-ERR cannot store the phanes binary", out)
    assert.same({}, file.list(dir .. "/.cache/phanes"))
  end)
end)
