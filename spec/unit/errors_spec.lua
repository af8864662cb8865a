-- engine/errors.lua (the error object), output.format_error (its one
-- formatting), and the context's event stream and declared invalidation.
local errors = require "phanes.engine.errors"
local output = require "phanes.engine.output"
local context = require "phanes.engine.context"
local fakeexec = require "support.fakeexec"

describe("errors", function()
  it("classifies a Lua error by where it was raised: the user's code or phanes' own", function()
    local user = assert(load("local t = nil; return t.x", "@modules/web.lua"))
    local ok, e = xpcall(user, errors.catch)
    assert.is_false(ok)
    assert.equal("lua", e.kind)
    assert.match("^modules/web%.lua:1: attempt to index", e.message)
    assert.match("^stack traceback:\n\tmodules/web%.lua:1: in ", e.traceback)
    assert.not_match("lua/phanes/", e.traceback)
    local own = assert(load("local t = nil; return t.x", "@lua/phanes/res/x.lua"))
    ok, e = xpcall(own, errors.catch)
    assert.equal("internal", e.kind)
    -- an error object passes through every handler unchanged
    local f = errors.new { kind = "resource", resource = "cmd.run", message = "exit 1" }
    local _, again = xpcall(function() error(f, 0) end, errors.catch)
    assert.equal(f, again)
  end)

  it("keeps only the user's frames of a traceback", function()
    local tb = table.concat({ "stack traceback:", "\t[C]: in function 'error'",
      "\tmodules/web.lua:3: in function 'helper'", "\tlua/phanes/engine/context.lua:20: in function <x>",
      "\t(...tail calls...)", "\tmodules/web.lua:9: in main chunk", "\t[C]: in function 'xpcall'",
      "\tlua/phanes/engine/resolve.lua:71: in upvalue 'run_chunk'" }, "\n")
    assert.equal("stack traceback:\n\tmodules/web.lua:3: in function 'helper'\n\tmodules/web.lua:9: in main chunk",
      errors.user_frames(tb))
    assert.is_nil(errors.user_frames "stack traceback:\n\t[C]: in ?")
  end)

  it("is formatted once, by output.format_error", function()
    local detail = {}
    for i = 1, 12 do detail[i] = "line " .. i end
    assert.equal("module 'web' failed: cmd.run make: make failed (exit 2)\n    line 3\n    line 12",
      output.format_error(errors.new { kind = "resource", resource = "cmd.run", target = "make",
        message = "make failed (exit 2)", detail = "line 3\n\nline 12" }, "web"))
    assert.equal("module 'web' failed: file.content: missing required argument 'path' (modules/web.lua:4)",
      output.format_error(errors.new { kind = "config", resource = "file.content",
        message = "missing required argument 'path'", where = "modules/web.lua:4" }, "web"))
    assert.equal("module 'web' failed: refusing: no key",
      output.format_error(errors.new { kind = "refusal", message = "refusing: no key", where = "x:1" }, "web"))
    assert.equal("module 'web' failed with a Lua error: modules/web.lua:1: boom\nstack traceback:\n\tmodules/web.lua:1: in x",
      output.format_error(errors.new { kind = "lua", message = "modules/web.lua:1: boom",
        traceback = "stack traceback:\n\tmodules/web.lua:1: in x" }, "web"))
    assert.match("^module 'web' failed with an internal error %(a bug in phanes, please report it%): "
      .. "lua/phanes/res/x%.lua:1: boom\n    called from modules/web%.lua:2",
      output.format_error(errors.new { kind = "internal", message = "lua/phanes/res/x.lua:1: boom",
        where = "modules/web.lua:2" }, "web"))
    assert.equal("", output.tail(nil))
  end)

  it("a config error names the profile's defaults or the config file, whichever is at fault", function()
    assert.equal("the defaults in profiles/web.lua",
      output.blame({ "profiles/web.lua: unknown key 'x.y'" }, "config.yaml", "profiles/web.lua"))
    assert.equal("the config in config.yaml",
      output.blame({ "config.yaml:2:3: x.y: expected a string" }, "config.yaml", "profiles/web.lua"))
    assert.equal("the defaults in profiles/web.lua and the config",
      output.blame({ "profiles/web.lua: a", "b" }, nil, "profiles/web.lua"))
    assert.equal("the config", output.blame({ "--modules: x" }, nil, "--modules"))
  end)
end)

describe("the context's event stream", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("says start, command, output and result, in that order, to one subscriber", function()
    w = fakeexec.world()
    local seen = {}
    w.run.on_event = function(ev) seen[#seen + 1] = ev end
    w.fake:on("echo", { stdout = "hi\n" })
    w.ctx.cmd.run { argv = { "echo", "hi" } }
    local types = {}
    for i, ev in ipairs(seen) do types[i] = ev.type end
    assert.equal("start", types[1])
    assert.equal("command", types[2])
    assert.equal("result", types[#types])
    assert.same({ "echo", "hi" }, seen[2].argv)
    assert.equal("cmd.run", seen[2].resource)
    assert.equal(w.ctx.module, seen[2].module)
  end)

  it("invalidation is declared: a package install marks services and accounts to be read again", function()
    w = fakeexec.world()
    w.run.cache.services, w.run.cache.accounts = { x = 1 }, { users = {} }
    w.run:invalidate("services", "accounts")
    assert.is_nil(w.run.cache.services)
    assert.is_nil(w.run.cache.accounts)
    assert.is_true(w.run:was_invalidated "accounts")
    assert.is_false(w.run:was_invalidated "pkg")
    -- no resource clears another's cache by hand any more
    for _, family in ipairs(context.families) do
      local text = assert(require("phanes.loader").find("lua/phanes/res/" .. family .. ".lua"))
      assert.is_nil(text:find("cache%.%w+ = nil"), family)
    end
  end)
end)
