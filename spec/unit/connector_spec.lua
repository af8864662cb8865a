-- The connector contract (lua/phanes/remote/connector.lua): every
-- connector's session answers exec (argv or shell), put, get, info, stats
-- and close the same way, and exec results have one shape (src/result.c).
-- local runs for real on this machine (in a private directory); ssh is
-- checked against a fake transport (its real runs are the remote specs');
-- docker runs against a stand-in `docker` CLI script (a unit stand-in:
-- spec/integration/connector_spec.lua applies through the real docker).
local connector = require "phanes.remote.connector"
local inventory = require "phanes.remote.inventory"
local fakeexec = require "spec.support.fakeexec"
local file = require "phanes.file"
local exec = require "phanes.exec"

local function contract(res)
  assert.is_table(res)
  assert.is_string(res.stdout)
  assert.is_string(res.stderr)
  assert.is_boolean(res.timed_out)
  assert.is_number(res.duration)
  assert.is_true((res.code ~= nil) ~= (res.signal ~= nil), "exactly one of code and signal")
end

describe("connector.open", function()
  it("picks the implementation by the target's connector (ssh when none)", function()
    assert.equal("ssh", connector.name { host = "h" })
    assert.equal("docker", connector.name { connector = "docker" })
    local s = assert(connector.open({ connector = "local", host = "localhost" }, {}))
    assert.equal("local", s:info().connector)
    assert.has_error(function() connector.open({ connector = "telnet" }, {}) end, "unknown connector 'telnet'")
  end)

  it("quotes argv for a shell transport", function()
    assert.equal("ls -l 'a b' 'it'\\''s'", connector.shell_words { "ls", "-l", "a b", "it's" })
  end)
end)

describe("inventory targets of other connectors", function()
  local inv = { hosts = {}, path = "/nonexistent/inventory.yaml" }
  it("reads docker:NAME, user@docker:NAME and local:", function()
    local t = assert(inventory.resolve(inv, "docker:web-1"))
    assert.same({ name = "docker:web-1", connector = "docker", host = "web-1" }, t[1])
    t = assert(inventory.resolve(inv, "app@docker:db,local:"))
    assert.same({ name = "app@docker:db", connector = "docker", host = "db", user = "app" }, t[1])
    assert.same({ name = "local:", connector = "local", host = "localhost" }, t[2])
  end)

  it("reads an inventory host whose address is docker:NAME", function()
    local i2 = { hosts = {}, path = "/nonexistent/inventory.yaml" }
    assert(inventory.add(i2, "box", { address = "docker:box1", groups = { "ct" } }))
    local t = assert(inventory.resolve(i2, "@ct"))
    assert.same({ name = "box", connector = "docker", host = "box1", groups = { "ct" } }, t[1])
  end)

  it("refuses a container name that cannot be one", function()
    local t, err = inventory.resolve(inv, "docker:a b")
    assert.is_nil(t)
    assert.matches("expected docker:CONTAINER", err)
  end)
end)

describe("the local connector", function()
  local dir, s
  before_each(function()
    dir = fakeexec.tmpdir()
    s = assert(connector.open({ connector = "local" }, {}))
  end)
  after_each(function() fakeexec.rmtree(dir) end)

  it("runs argv and shell strings, with stdin, into one result shape", function()
    local r = assert(s:exec({ "sh", "-c", "cat; echo err >&2; exit 3" }, { stdin = "in" }))
    contract(r)
    assert.same({ 3, "in", "err\n", false }, { r.code, r.stdout, r.stderr, r.timed_out })
    r = assert(s:exec("printf '%s' \"$((6 * 7))\""))
    assert.same({ 0, "42" }, { r.code, r.stdout })
  end)

  it("reports a signal as a number and its name", function()
    local r = assert(s:exec("kill -TERM $$"))
    contract(r)
    assert.same({ 15, "TERM" }, { r.signal, r.signal_name })
  end)

  it("streams output and times out", function()
    local seen = {}
    local r = assert(s:exec({ "sh", "-c", "echo a; sleep 5" }, { timeout = 0.3,
      stream = function(kind, chunk) seen[#seen + 1] = kind .. ":" .. chunk end }))
    contract(r)
    assert.is_true(r.timed_out)
    assert.same({ "stdout:a\n" }, seen)
  end)

  it("calls tick as output arrives; a tick that raises stops the command", function()
    local ticks = 0
    local r = assert(s:exec("echo a; echo b >&2", { tick = function() ticks = ticks + 1 end }))
    assert.same({ "a\n", "b\n" }, { r.stdout, r.stderr })
    assert.is_true(ticks >= 2)
    local t0 = require("phanes.sys").now()
    assert.has_error(function()
      s:exec("echo go; sleep 5", { tick = function() error("interrupted", 0) end })
    end, "interrupted")
    assert.truthy(require("phanes.sys").now() - t0 < 4)
  end)

  it("puts and gets files, data or a local file, with their mode", function()
    assert.is_true(s:put(dir .. "/a", "alpha\n", tonumber("0640", 8)))
    assert.equal("alpha\n", s:get(dir .. "/a"))
    assert.equal(tonumber("0640", 8), file.stat(dir .. "/a").mode & tonumber("0777", 8))
    assert.is_true(s:put(dir .. "/b", { path = dir .. "/a" }, tonumber("0600", 8)))
    assert.equal("alpha\n", s:get(dir .. "/b"))
    local data, err = s:get(dir .. "/none")
    assert.is_nil(data)
    assert.matches("none", err)
  end)

  it("tells who and where it is", function()
    local i = s:info()
    assert.equal("local", i.connector)
    assert.equal(require("phanes.sys").uname().machine, i.arch)
    assert.is_string(i.user)
    assert.is_string(i.host)
    s:exec "true"
    assert.equal(1, s:stats().execs)
    s:close()
  end)
end)

describe("the ssh connector (fake transport)", function()
  local calls, raw
  before_each(function()
    calls = {}
    raw = {
      exec = function(_, cmd, opts) calls[#calls + 1] = { "exec", cmd, opts }
        return { code = 0, stdout = "", stderr = "", timed_out = false, duration = 0 } end,
      upload = function(_, data, path, mode) calls[#calls + 1] = { "upload", data, path, mode } return true end,
      download = function(_, path) calls[#calls + 1] = { "download", path } return "bytes" end,
      info = function() return { user = "deploy", host = "h", port = 22 } end,
      stats = function() return { channels = 1, execs = 1, sftp = 0 } end,
      close = function() calls[#calls + 1] = { "close" } end,
    }
  end)

  it("maps the session methods onto the ssh session's", function()
    local s = require("phanes.remote.connector.ssh").wrap(raw)
    contract(assert(s:exec({ "cat", "/etc/my file" }, { stdin = "x" })))
    assert.same({ "exec", "cat '/etc/my file'", { stdin = "x" } }, calls[1])
    assert.is_true(s:put("/tmp/f", "data", 384))
    assert.same({ "upload", "data", "/tmp/f", 384 }, calls[2])
    assert.equal("bytes", s:get "/tmp/f")
    assert.same({ user = "deploy", host = "h", port = 22, connector = "ssh" }, s:info())
    assert.same({ channels = 1, execs = 1, sftp = 0 }, s:stats())
    s:close()
    assert.same({ "close" }, calls[4])
  end)
end)

-- A stand-in for the docker CLI (a unit stand-in only): `inspect` says the
-- container runs, `exec` runs the command in a directory that plays the
-- container's root, `cp` moves tar streams in and out of it with real tar.
local STANDIN = [=[#!/bin/sh
ROOT="$(dirname "$0")/root"
printf '%s\n' "$*" >> "$(dirname "$0")/argv.log"
case "$1" in
inspect) [ "$4" = box ] || { echo "Error: No such object: $4" >&2; exit 1; }; echo "true "; exit 0;;
exec) shift; while [ "${1#-}" != "$1" ]; do [ "$1" = -u ] && shift; shift; done
  [ "$1" = box ] || { echo "Error: No such container: $1" >&2; exit 125; }
  shift; cd "$ROOT" && exec "$@";;
cp) if [ "$2" = - ]; then d="${3#box:}"; exec tar -x -C "$ROOT$d" -f -
    else exec tar -c -C "$ROOT$(dirname "${2#box:}")" -f - "$(basename "$2")"; fi;;
esac
exit 2
]=]

describe("the docker connector (stand-in docker CLI)", function()
  local dir, s
  local function run(x)
    x.argv[1] = dir .. "/docker"
    return exec.run(x)
  end
  local function log() return (file.read(dir .. "/argv.log")) end
  before_each(function()
    dir = fakeexec.tmpdir()
    assert(file.write(dir .. "/docker", STANDIN, { mode = tonumber("0755", 8) }))
    assert(file.mkdir(dir .. "/root/etc", { parents = true }))
    s = assert(connector.open({ connector = "docker", host = "box" }, { exec = run }))
  end)
  after_each(function() fakeexec.rmtree(dir) end)

  it("opens only a running container, asking docker inspect", function()
    assert.equal("inspect -f {{.State.Running}} {{.Config.User}} box\n", log())
    local none, err, kind = connector.open({ connector = "docker", host = "nope" }, { exec = run })
    assert.is_nil(none)
    assert.matches("docker:nope: no such container %(Error: No such object: nope%)", err)
    assert.equal("missing", kind)
    assert.same({ connector = "docker", host = "box", user = "root" }, s:info())
  end)

  it("execs argv as argv and shell strings under sh -c, -i only with stdin", function()
    local r = assert(s:exec({ "printf", "%s|", "a b", "$HOME" }))
    contract(r)
    assert.same({ 0, "a b|$HOME|" }, { r.code, r.stdout })
    r = assert(s:exec("cat; exit 4", { stdin = "via stdin" }))
    assert.same({ 4, "via stdin" }, { r.code, r.stdout })
    assert.matches("\nexec box printf %%s| a b %$HOME\nexec %-i box sh %-c cat; exit 4\n$", log())
  end)

  it("puts through docker cp - (a tar stream) and gets through docker cp NAME:PATH -", function()
    assert.is_true(s:put("/etc/app.conf", "x=1\n", tonumber("0640", 8)))
    assert.equal("x=1\n", file.read(dir .. "/root/etc/app.conf"))
    assert.equal(tonumber("0640", 8), file.stat(dir .. "/root/etc/app.conf").mode & tonumber("0777", 8))
    assert.equal("x=1\n", s:get "/etc/app.conf")
    local data, err = s:get "/etc/none"
    assert.is_nil(data)
    assert.matches("^docker:box: get /etc/none: ", err)
    assert.matches("cp %- box:/etc\ncp box:/etc/app.conf %-\n", log())
  end)

  it("says when docker itself failed (the container went away)", function()
    local gone = require("phanes.remote.connector.docker").open({ host = "box" }, { exec = run })
    gone.name = "gone"
    local r, err, kind = gone:exec { "true" }
    assert.is_nil(r)
    assert.matches("docker:gone: exec: Error: No such container: gone", err)
    assert.equal("lost", kind)
  end)
end)
