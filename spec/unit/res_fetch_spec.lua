-- fetch.file and fetch.check: the command plan on a fake transport, the
-- checksum checked before anything lands at dest.
local fakeexec = require "support.fakeexec"
local F = require "phanes.file"

local function arg_after(argv, flag)
  for i, a in ipairs(argv) do if a == flag then return argv[i + 1] end end
end

-- a world whose curl copies file:// URLs (what the real one does), or
-- answers with `code`
local function world(o)
  local w = fakeexec.world(o)
  fakeexec.write(w.path "/bin/curl", "")
  w.fake:on(w.path "/bin/curl", function(opts)
    local url = opts.argv[#opts.argv]
    local src = url:match "^file://(.*)$"
    local text = src and fakeexec.read(src)
    if not text then return { code = 22, stderr = "curl: (22) The requested URL returned error: 404" } end
    fakeexec.write(arg_after(opts.argv, "-o"), text)
    return { code = 0 }
  end)
  w.fake:on("mv -f --", function(opts)
    assert(os.rename(opts.argv[4], opts.argv[5]))
    return { code = 0 }
  end)
  return w
end

local PAYLOAD = "payload of x 1.2\n"

describe("fetch.file", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("downloads to a part, checks the sha256, then moves it into place", function()
    w = world()
    fakeexec.write(w.path "/src.tgz", PAYLOAD)
    local dest = w.path "/cache/x/x.tgz"
    local r = w.ctx.fetch.file { url = "file://" .. w.path "/src.tgz", dest = dest, sha256 = F.sha256(PAYLOAD),
      mode = "0640" }
    assert.equal("changed", r.status)
    assert.equal(PAYLOAD, fakeexec.read(dest))
    assert.equal(tonumber("0640", 8), F.stat(dest).mode)
    assert.is_nil(fakeexec.read(dest .. ".part"))
    assert.same({ w.path "/bin/curl" .. " -fsSL --retry 2 --connect-timeout 20 -o " .. dest .. ".part file://"
      .. w.path "/src.tgz", "mv -f -- " .. dest .. ".part " .. dest }, w.fake:lines())
    -- the right checksum at dest: no download
    w.fake:reset()
    assert.equal("ok", w.ctx.fetch.file { url = "file://" .. w.path "/src.tgz", dest = dest,
      sha256 = F.sha256(PAYLOAD), mode = "0640" }.status)
    assert.equal(0, w.fake:count())
  end)

  it("fixes the mode of a dest with the right checksum without downloading it", function()
    w = world()
    local dest = w.path "/x.tgz"
    fakeexec.write(dest, PAYLOAD)
    assert(F.chmod(dest, tonumber("0600", 8)))
    local r = w.ctx.fetch.file { url = "https://example.com/x.tgz", dest = dest, sha256 = F.sha256(PAYLOAD), mode = "0644" }
    assert.equal("changed", r.status)
    assert.equal("mode 0600 -> 0644", r.message)
    assert.equal(tonumber("0644", 8), F.stat(dest).mode)
    assert.equal(0, w.fake:count())
  end)

  it("fails on a sha256 mismatch naming both, and leaves nothing at dest", function()
    w = world()
    fakeexec.write(w.path "/src.tgz", PAYLOAD)
    local dest = w.path "/cache/x.tgz"
    local want = string.rep("ab", 32)
    local ok, err = pcall(w.ctx.fetch.file, { url = "file://" .. w.path "/src.tgz", dest = dest, sha256 = want })
    assert.is_false(ok)
    local msg = tostring(err)
    assert.matches("sha256 mismatch", msg, 1, true)
    assert.matches("expected " .. want, msg, 1, true)
    assert.matches("got " .. F.sha256(PAYLOAD), msg, 1, true)
    assert.is_false(F.exists(dest))
    assert.is_false(F.exists(dest .. ".part"))
    assert.equal(0, w.fake:count "mv")
    assert.equal("failed", w.last().status)
  end)

  it("keeps an existing dest when the new download does not match", function()
    w = world()
    fakeexec.write(w.path "/src.tgz", PAYLOAD)
    local dest = w.path "/x.tgz"
    fakeexec.write(dest, "old\n")
    assert.is_false(pcall(w.ctx.fetch.file, { url = "file://" .. w.path "/src.tgz", dest = dest,
      sha256 = string.rep("0", 64) }))
    assert.equal("old\n", fakeexec.read(dest))
  end)

  it("resumes a part, and starts again when the server cannot", function()
    w = world()
    fakeexec.write(w.path "/src.tgz", PAYLOAD)
    local dest = w.path "/x.tgz"
    fakeexec.write(dest .. ".part", "pay")
    w.fake:on(w.path "/bin/curl -fsSL --retry 2 --connect-timeout 20 -o " .. dest .. ".part -C -",
      { code = 33, stderr = "curl: (33) HTTP server doesn't seem to support byte ranges" })
    assert.equal("changed", w.ctx.fetch.file { url = "file://" .. w.path "/src.tgz", dest = dest,
      sha256 = F.sha256(PAYLOAD) }.status)
    assert.equal(PAYLOAD, fakeexec.read(dest))
    assert.equal(1, w.fake:count(w.path "/bin/curl -fsSL --retry 2 --connect-timeout 20 -o " .. dest .. ".part -C -"))
  end)

  it("a failed download names the URL and installs nothing", function()
    w = world()
    local dest = w.path "/x.tgz"
    local ok, err = pcall(w.ctx.fetch.file, { url = "file://" .. w.path "/nope.tgz", dest = dest,
      sha256 = string.rep("0", 64) })
    assert.is_false(ok)
    assert.matches("download of file://" .. w.path "/nope.tgz" .. " failed (exit 22)", tostring(err), 1, true)
    assert.matches("404", tostring(err), 1, true)
    assert.is_false(F.exists(dest))
  end)

  it("plans without downloading in a dry run", function()
    w = world { dry_run = true }
    local r = w.ctx.fetch.file { url = "https://example.com/x.tgz", dest = w.path "/x.tgz", sha256 = string.rep("0", 64) }
    assert.equal("would change", r.status)
    assert.equal("download https://example.com/x.tgz", r.message)
    assert.equal(0, w.fake:count())
  end)

  it("refuses bad arguments", function()
    w = world()
    for _, o in ipairs {
      { url = "ftp://x/y", dest = "/x", sha256 = string.rep("0", 64) },
      { url = "https://x/y", dest = "rel", sha256 = string.rep("0", 64) },
      { url = "https://x/y", dest = "/x", sha256 = "abc" },
    } do
      assert.is_false(pcall(w.ctx.fetch.file, o))
    end
    assert.equal(0, w.fake:count())
  end)

  it("says to install curl when there is none", function()
    w = world()
    os.remove(w.path "/bin/curl")
    local ok, err = pcall(w.ctx.fetch.file, { url = "https://x/y", dest = w.path "/y", sha256 = string.rep("0", 64) })
    assert.is_false(ok)
    assert.matches('ctx.pkg.installed { "curl" }', tostring(err), 1, true)
  end)
end)

describe("fetch.check", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("asks with retries and is ok on an answer, fails otherwise", function()
    w = world()
    w.fake:on(w.path "/bin/curl -fsS", { { code = 0, stdout = '{"version":"0.5.7"}' }, { code = 7, stderr = "refused" } })
    local r = w.ctx.fetch.check { url = "http://127.0.0.1:11434/api/version", tries = 5 }
    assert.equal("ok", r.status)
    assert.equal('{"version":"0.5.7"}', r.message)
    assert.same({ w.path "/bin/curl" .. " -fsS --max-time 5 --retry 4 --retry-connrefused --retry-delay 1 "
      .. "http://127.0.0.1:11434/api/version" }, w.fake:lines())
    local ok, err = pcall(w.ctx.fetch.check, { url = "http://127.0.0.1:11434/api/version" })
    assert.is_false(ok)
    assert.matches("GET http://127.0.0.1:11434/api/version failed (exit 7)", tostring(err), 1, true)
  end)

  it("does not ask in a dry run", function()
    w = world { dry_run = true }
    assert.equal("skipped", w.ctx.fetch.check({ url = "http://127.0.0.1:1/" }).status)
    assert.equal(0, w.fake:count())
  end)
end)
