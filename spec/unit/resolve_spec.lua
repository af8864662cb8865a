-- resolve.lua: profiles to ordered modules, and the errors on the way.
local resolve = require "phanes.engine.resolve"
local loader = require "phanes.loader"

local GOOD, BAD = "spec/fixtures/runner", "spec/fixtures/runner/bad"

local function with_path(dirs, fn)
  for i, d in ipairs(dirs) do table.insert(loader.dirs, i, d) end
  resolve.reset()
  local ok, err = pcall(fn)
  for _ in ipairs(dirs) do table.remove(loader.dirs, 1) end
  resolve.reset()
  if not ok then error(err, 0) end
end

local function names(mods)
  local t = {}
  for i, m in ipairs(mods) do t[i] = m.name end
  return t
end

describe("resolve", function()
  describe("order", function()
    local graph = {
      a = {}, b = { requires = { "a" } }, c = { requires = { "b", "a" } },
      d = { requires = { "c" } }, x = { requires = { "y" } }, y = { requires = { "z" } },
      z = { requires = { "x" } },
    }
    local function get(n)
      if graph[n] then return graph[n] end
      return nil, "unknown module '" .. n .. "'"
    end
    it("puts requirements first, keeping the given order otherwise", function()
      assert.same({ "a", "b", "c", "d" }, resolve.order({ "d" }, get))
      assert.same({ "a", "b", "c" }, resolve.order({ "a", "c", "b" }, get))
    end)
    it("drops duplicates", function()
      assert.same({ "a", "b", "c" }, resolve.order({ "b", "a", "c", "b", "a" }, get))
    end)
    it("reports a cycle with its path", function()
      local r, err = resolve.order({ "a", "x" }, get)
      assert.is_nil(r)
      assert.equal("module requirements form a cycle: x -> y -> z -> x", err)
    end)
    it("names who required an unknown module", function()
      graph.e = { requires = { "nope" } }
      local _, err = resolve.order({ "e" }, get)
      assert.equal("unknown module 'nope' (required by 'e')", err)
    end)
  end)

  it("suggests the closest name", function()
    assert.equal("postgres", resolve.suggest("postgre", { "nginx", "postgres", "redis" }))
    assert.is_nil(resolve.suggest("kubernetes", { "nginx", "redis" }))
  end)

  it("resolves a named profile from the search path, requirements first", function()
    with_path({ GOOD }, function()
      local prof = assert(resolve.profile "chain")
      assert.equal(GOOD .. "/profiles/chain.lua", prof.origin)
      local mods = assert(resolve.plan(prof.modules))
      assert.same({ "alpha", "beta", "gamma", "skipper" }, names(mods))
      assert.equal(GOOD .. "/modules/alpha.lua", mods[1].origin)
    end)
  end)

  it("resolves a profile given as a path, and a single module file", function()
    with_path({ GOOD }, function()
      local prof = assert(resolve.profile(GOOD .. "/profiles/fail.lua"))
      assert.same({ "alpha", "failing", "beta" }, prof.modules)
      prof = assert(resolve.profile(GOOD .. "/modules/beta.lua"))
      assert.is_true(prof.single)
      assert.same({ "alpha", "beta" }, names(assert(resolve.plan(prof.modules))))
    end)
  end)

  it("rejects an unknown profile or module with the known ones and a guess", function()
    with_path({ GOOD }, function()
      local p, err = resolve.profile "chian"
      assert.is_nil(p)
      assert.match("unknown profile or module 'chian' %(did you mean 'chain'%?%); profiles: .*chain, .*fail.*; modules: .*alpha", err)
      local _, gerr = resolve.profile "gamm"
      assert.match("did you mean 'gamma'%?", gerr)
      local m, merr = resolve.plan { "alpah" }
      assert.is_nil(m)
      assert.match("unknown module 'alpah' %(did you mean 'alpha'%?%); known modules: .*alpha, .*beta", merr)
      local _, ferr = resolve.profile "./nope/x.lua"
      assert.match("^%./nope/x%.lua: no such file", ferr)
    end)
  end)

  it("takes a module name where a profile is expected: that module alone", function()
    with_path({ GOOD }, function()
      local p = assert(resolve.profile "beta")
      assert.same({ "beta" }, p.modules)
      assert.is_true(p.single)
    end)
  end)

  it("reports a cycle between module files", function()
    with_path({ BAD, GOOD }, function()
      local _, err = resolve.plan { "cyc_b" }
      assert.equal("module requirements form a cycle: cyc_b -> cyc_c -> cyc_a -> cyc_b", err)
      _, err = resolve.plan { "needs_unknown" }
      assert.match("unknown module 'alpah' %(did you mean 'alpha'%?%).*%(required by 'needs_unknown'%)", err)
    end)
  end)

  it("names the file and line of a module that does not load", function()
    with_path({ BAD }, function()
      local _, err = resolve.module "syntax"
      assert.match("^" .. BAD:gsub("%p", "%%%0") .. "/modules/syntax%.lua:4: unexpected symbol", err)
      _, err = resolve.module "loaderr"
      assert.match("error while loading .*loaderr%.lua:\n.*loaderr%.lua:2: attempt to index", err)
      assert.match("stack traceback", err)
    end)
  end)

  it("validates the module table", function()
    with_path({ BAD }, function()
      local _, err = resolve.module "misnamed"
      assert.match("misnamed%.lua: module is named 'othername' but its file says 'misnamed'", err)
      _, err = resolve.module "noapply"
      assert.match("noapply%.lua: module 'noapply' has no apply function", err)
      _, err = resolve.module "badschema"
      assert.match("badschema%.lua: module 'badschema': config%.port has type int; use one of", err)
    end)
    assert.match("must return a table", select(2, resolve.validate_module(42, "x.lua")))
    assert.match("requires must be a list",
      select(2, resolve.validate_module({ name = "m", apply = print, requires = "a" }, "x.lua")))
  end)

  describe("--only", function()
    it("keeps exactly the listed modules, in plan order, and warns about requirements", function()
      with_path({ GOOD }, function()
        local mods, warnings = resolve.plan({ "gamma" }, { "gamma", "alpha" })
        assert.same({ "alpha", "gamma" }, names(mods))
        assert.same({ "--only: 'gamma' requires 'beta', which this run skips (assumed already applied)" },
          warnings)
      end)
    end)
    it("refuses a module that is not in the run", function()
      with_path({ GOOD }, function()
        local mods, err = resolve.plan({ "alpha" }, { "gamma" })
        assert.is_nil(mods)
        assert.match("'gamma' is not part of this run %(modules: alpha%)", err)
      end)
    end)
  end)

  it("loads every known module, collecting errors for broken ones", function()
    with_path({ BAD }, function()
      local mods, errs = resolve.all()
      local got = {}
      for _, m in ipairs(mods) do got[m.name] = true end
      assert.is_true(got.cyc_a and got.badschema == nil)
      assert.truthy(#errs >= 5)
    end)
  end)
end)
