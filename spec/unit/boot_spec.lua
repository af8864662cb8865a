-- The boot chunk: search path, embedded tree, require of phanes modules.
describe("boot", function()
  local loader = require "phanes.loader"
  local embedded = require "phanes.embedded"

  it("embeds the Lua tree, sorted", function()
    local names = embedded.list "lua/phanes/"
    assert.truthy(#names > 0)
    for i = 2, #names do assert.truthy(names[i - 1] < names[i]) end
    assert.is_string(embedded.get "lua/phanes/boot.lua")
    assert.is_nil(embedded.get "lua/phanes/nope.lua")
  end)

  it("prefers a file on the search path over the embedded copy", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/lua/phanes"))
    local f = assert(io.open(dir .. "/lua/phanes/cli.lua", "w"))
    f:write "return 'from disk'\n"
    f:close()
    table.insert(loader.dirs, 1, dir)
    local text, origin = loader.find "lua/phanes/cli.lua"
    table.remove(loader.dirs, 1)
    os.execute("rm -rf " .. dir)
    assert.equal("return 'from disk'\n", text)
    assert.equal(dir .. "/lua/phanes/cli.lua", origin)
  end)

  it("falls back to the embedded tree", function()
    local _, origin = loader.find "lua/phanes/boot.lua"
    assert.truthy(origin == "embedded" or origin:match "boot%.lua$")
    assert.is_nil((loader.find "modules/does-not-exist.lua"))
  end)

  describe("search path", function()
    local file = require "phanes.file"
    local sys = require "phanes.sys"
    local exec = require "phanes.exec"
    local fakeexec = require "spec.support.fakeexec"
    local dir
    local function put(rel, text, mode)
      local path = dir .. "/" .. rel
      assert(file.mkdir(path:match "^(.*)/", { parents = true, mode = tonumber("0755", 8) }))
      assert(file.write(path, text, { mode = tonumber(mode or "0644", 8) }))
      return path
    end
    -- dir joins the search path as the working directory would
    local function as_user_dir()
      table.insert(loader.dirs, 1, dir)
      loader.kind[dir] = { from = "the working directory", engine = false }
    end
    before_each(function() dir = fakeexec.tmpdir() end)
    after_each(function()
      for i = #loader.dirs, 1, -1 do if loader.dirs[i] == dir then table.remove(loader.dirs, i) end end
      loader.kind[dir] = nil
      fakeexec.rmtree(dir)
    end)

    it("serves the engine from --path/PHANES_PATH only, never from ./ or ~/.config/phanes", function()
      assert.same({ from = "the working directory", engine = false }, loader.kind["."])
      local home = os.getenv "HOME"
      if home then assert.is_false(loader.kind[home .. "/.config/phanes"].engine) end
      -- the specs run in the checkout, whose ./lua is not on the path
      assert.equal("embedded", select(2, loader.find "lua/phanes/cli.lua"))
      put("lua/phanes/cli.lua", "return 'planted'\n")
      put("modules/mine.lua", "return {}\n")
      put("templates/mine/a.conf", "a\n")
      as_user_dir()
      assert.equal("embedded", select(2, loader.find "lua/phanes/cli.lua"))
      assert.equal(dir .. "/modules/mine.lua", select(2, loader.find "modules/mine.lua"))
      assert.same({}, loader.disk_files "lua/")
      assert.same({ { name = "templates/mine/a.conf", path = dir .. "/templates/mine/a.conf" } },
        loader.disk_files "templates/mine/")
      loader.kind[dir].engine = true -- as with --path
      assert.equal(dir .. "/lua/phanes/cli.lua", select(2, loader.find "lua/phanes/cli.lua"))
      assert.same({ { name = "lua/phanes/cli.lua", path = dir .. "/lua/phanes/cli.lua" } }, loader.disk_files "lua/")
    end)

    it("remote runs send the user's files from the search path only (no ./lua)", function()
      put("lua/phanes/cli.lua", "return 'planted'\n")
      put("modules/mine.lua", "return {}\n")
      as_user_dir()
      local names = {}
      for _, f in ipairs(require("phanes.remote").user_files()) do names[f.name] = f.local_path end
      assert.equal(dir .. "/modules/mine.lua", names["path/modules/mine.lua"])
      assert.is_nil(names["path/lua/phanes/cli.lua"])
    end)

    it("as root, refuses a file others can change when it finds it, and in the audit", function()
      put("modules/mine.lua", "return {}\n", "0664")
      as_user_dir()
      local strict = loader.strict
      loader.strict = true -- the rule itself also holds for the real uid
      local text, err = loader.find "modules/mine.lua"
      local ok, aerr = loader.audit()
      loader.strict = strict
      assert.is_nil(text)
      assert.matches("^refusing " .. dir:gsub("%p", "%%%0") .. "/modules/mine%.lua %(owner .*, on the search path from the "
        .. "working directory%) as root: .*/mine%.lua is group%-writable", err)
      assert.is_nil(ok)
      assert.equal(err, aerr)
    end)

    it("as root, the binary refuses a planted module and a script others can write (exit 2)", function()
      if sys.geteuid() ~= 0 then
        pending "needs root"
        return
      end
      put("modules/x.lua", "os.execute('touch " .. dir .. "/pwned') return {}\n", "0666")
      local r = assert(exec.run { argv = { sys.exe(), "list" }, cwd = dir })
      assert.equal(2, r.code)
      assert.matches("^phanes: refusing %./modules/x%.lua = .*/modules/x%.lua %(owner root %(uid 0%), on the search path "
        .. "from the working directory%) as root: .* is world%-writable %(mode 0666", r.stderr)
      assert.equal("", r.stdout)
      assert.is_false(file.exists(dir .. "/pwned"))
      local script = put("s.lua", "#!/usr/bin/env phanes\nio.write(select('#', ...), arg[1])\n", "0646")
      r = assert(exec.run { argv = { sys.exe(), "lua", script, "a" } })
      assert.equal(2, r.code)
      assert.matches("^phanes lua: refusing .*/s%.lua %(owner root %(uid 0%)%) as root: .*/s%.lua is world%-writable", r.stderr)
      assert(file.chmod(script, tonumber("0644", 8)))
      r = assert(exec.run { argv = { sys.exe(), "lua", script, "a" } })
      assert.equal(0, r.code, r.stderr)
      assert.equal("1a", r.stdout)
      -- "-" reads the script from stdin: no path, the invoker's own input
      r = assert(exec.run { argv = { sys.exe(), "lua", "-", "b" }, stdin = "io.write(arg[0], ...)" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("-b", r.stdout)
    end)
  end)
end)
