-- docs.lua: the committed reference (doc/modules/*.md, doc/profiles.md,
-- doc/phanes.1) is what the binary generates now, and `phanes help MODULE`
-- / `phanes show MODULE` describe any module, the user's too, from its table.
local fakeexec = require "spec.support.fakeexec"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read "a"
  local _, _, code = p:close()
  return out, code
end

local function ls(dir)
  local out = sh("cd " .. runcli.quote(dir) .. " && find . -type f | sort")
  return out
end

describe("make docs", function()
  local dir
  before_each(function() dir = fakeexec.tmpdir() end)
  after_each(function() fakeexec.rmtree(dir) end)

  it("matches the committed docs (else: run make docs)", function()
    local r = runcli.run({ "__docs", dir })
    assert.equal(0, r.code, r.stderr)
    local generated = ls(dir)
    assert.match("./modules/redis.md\n", generated)
    assert.match("./phanes.1\n", generated)
    assert.match("./cli.md\n", generated)
    assert.match("./profiles.md\n", generated)
    assert.match("./module%-api.md\n", generated)
    local committed = {}
    for rel in sh("cd doc && find modules -type f && ls profiles.md phanes.1 module-api.md cli.md"):gmatch "[^\n]+" do
      committed[#committed + 1] = "./" .. rel
    end
    table.sort(committed)
    assert(generated == table.concat(committed, "\n") .. "\n",
      "doc/ holds other files than `make docs` generates; run `make docs` (and git rm the old ones)\n"
      .. "generated:\n" .. generated .. "committed:\n" .. table.concat(committed, "\n"))
    for rel in generated:gmatch "%./([^\n]+)" do
      assert(runcli.read(dir .. "/" .. rel) == runcli.read("doc/" .. rel),
        "doc/" .. rel .. " is stale: run `make docs` and commit the result")
    end
  end)

  it("the module API page declares every ctx resource and reader, and nothing else", function()
    local docs = require "phanes.cli.docs"
    local list = docs.api()
    local keys = {}
    for _, e in ipairs(list) do
      keys[e.key] = e
      assert.is_string(e.description, e.key)
      for _, a in ipairs(e.args) do
        assert(type(a[1]) == "string" and type(a[2]) == "string" and type(a[3]) == "boolean"
          and type(a[4]) == "string", e.key .. ": an argument is { name, type, required, description }")
      end
    end
    -- what a module's ctx really has
    local context = require "phanes.engine.context"
    local ctx = context.new_run({ exec = function() return { code = 0, stdout = "", stderr = "" } end })
      :module({ name = "m" }, {})
    for _, family in ipairs(context.families) do
      for ns, fns in pairs(require("phanes.res." .. family).namespaces) do
        for name in pairs(fns) do
          assert.is_function(ctx[ns][name])
          assert.truthy(keys[ns .. "." .. name], ns .. "." .. name)
        end
      end
    end
    assert.truthy(keys["ufw.allow"] and keys["file.read"].reader and not keys["file.content"].reader)
    local md = docs.api_markdown(list)
    assert.matches("\n### ctx%.file%.content\n", md)
    assert.matches("| `path` | string | yes | absolute path |", md, 1, true)
    -- a bound function without a declaration stops make docs, naming the file
    local file = require "phanes.res.file"
    file.namespaces.file.undeclared = function() end
    local ok, err = pcall(docs.api)
    file.namespaces.file.undeclared = nil
    assert.is_false(ok)
    assert.matches("lua/phanes/res/file.lua: ctx.file.undeclared has no declaration", err, 1, true)
    file.api["file.gone"] = file.api["file.read"]
    ok, err = pcall(docs.api)
    file.api["file.gone"] = nil
    assert.is_false(ok)
    assert.matches("M.api declares ctx.file.gone, which is not bound", err, 1, true)
  end)

  it("the man page renders without warnings and lists every command and option", function()
    local out, code = sh("MANWIDTH=100 man --warnings -l doc/phanes.1 2>&1 >/dev/null")
    assert.equal(0, code)
    assert.equal("", out)
    local text = sh("MANWIDTH=100 man -l doc/phanes.1")
    for _, s in ipairs { "phanes - provision", "--detailed-exitcode", "-n, --dry-run", "phanes show MODULE",
      "phanes host add NAME", "phanes vault", "phanes serve" } do
      assert(text:find(s, 1, true), "man page without " .. s)
    end
    assert.not_match("overrides", text) -- hidden option
  end)

  it("the profile in doc/profiles.md passes phanes check", function()
    local lua = runcli.read("doc/profiles.md"):match "```lua\n(.-)```"
    assert.truthy(lua)
    fakeexec.write(dir .. "/web.lua", lua)
    fakeexec.write(dir .. "/config.yaml", "username: admin\n")
    local r = runcli.run({ "check", dir .. "/web.lua", "--config", dir .. "/config.yaml" })
    assert.equal(0, r.code, r.stderr)
  end)

  it("doc/profiles.md lists the built-in profiles with their modules", function()
    local md = runcli.read "doc/profiles.md"
    assert.match("| `dev` | baseline, user, security, swap, updates, docker, monitoring, devtools |", md, 1, true)
    assert.match("modules = {", md, 1, true)
  end)
end)

describe("phanes help MODULE / show MODULE", function()
  local dir
  before_each(function() dir = fakeexec.tmpdir() end)
  after_each(function() fakeexec.rmtree(dir) end)

  it("describes a built-in module: keys with type, default, limits, secret; an example", function()
    local r = runcli.run({ "help", "redis" })
    assert.equal(0, r.code, r.stderr)
    assert.match("^redis: Redis bound to localhost", r.stdout)
    assert.match("\n  port  integer, default 6379\n      Port redis listens on\n      1 to 65535\n", r.stdout, 1, true)
    assert.match("\n  password  string, required, secret\n", r.stdout, 1, true)
    assert.match("one of \"noeviction\", \"allkeys-lru\"", r.stdout, 1, true)
    assert.match("example (config.yaml):\n  redis:\n", r.stdout, 1, true)
    local s = runcli.run({ "show", "redis" })
    assert.equal(0, s.code)
    assert.equal(r.stdout, s.stdout)
  end)

  it("show --json gives the same facts as data", function()
    local r = runcli.run({ "show", "redis", "--json" })
    assert.equal(0, r.code, r.stderr)
    local d = json.decode(r.stdout)
    assert.equal("redis", d.name)
    assert.same({ "baseline" }, d.requires)
    local by = {}
    for _, k in ipairs(d.config) do by[k.key] = k end
    assert.same({ key = "port", type = "integer", default = 6379, required = false, secret = false,
      description = "Port redis listens on", limits = { "1 to 65535" } }, by.port)
    assert.is_true(by.password.secret)
    assert.is_true(by.password.required)
    -- the example is a config section that passes the module's own schema
    assert.match("^redis:\n", d.example)
  end)

  it("each built-in module's example passes `phanes check` for that module", function()
    for name in sh("ls modules"):gmatch "([%w_-]+)%.lua" do
      local r = runcli.run({ "show", name, "--json" })
      assert.equal(0, r.code, r.stderr)
      fakeexec.write(dir .. "/config.yaml", json.decode(r.stdout).example or "{}\n")
      local c = runcli.run({ "check", name, "--config", dir .. "/config.yaml" })
      assert(c.code == 0, name .. ": the example fails phanes check:\n" .. c.stderr .. c.stdout)
    end
  end)

  it("describes a user's module the same way, nested map keys and declared resources included", function()
    assert(require("phanes.file").mkdir(dir .. "/modules", { mode = tonumber("0755", 8) }))
    fakeexec.write(dir .. "/modules/myapp.lua", [[
return {
  name = "myapp",
  description = "My app",
  resources = { "file /etc/myapp.conf", "service myapp" },
  config = {
    token = { type = "string", secret = true, default = "s3cr3t-default", description = "API token" },
    mode = { type = "enum", values = { "a", "b" }, default = "a" },
    limits = { type = "map", fields = { cpu = { type = "number", min = 0.5, max = 4, default = 1 } }, default = {} },
    hosts = { type = "list", items = { type = "string", format = "host" }, default = {} },
  },
  apply = function() end,
}
]])
    local r = runcli.run({ "help", "myapp", "--path", dir })
    assert.equal(0, r.code, r.stderr)
    assert.match("^myapp: My app\n", r.stdout)
    assert.match("from: " .. dir .. "/modules/myapp.lua", r.stdout, 1, true)
    assert.match("\n  limits.cpu  number, default 1\n      0.5 to 4\n", r.stdout, 1, true)
    assert.match("\n  hosts  list of string, default []\n      each item: format host: a host name", r.stdout, 1, true)
    assert.match("\n  token  string, default (secret), secret\n", r.stdout, 1, true)
    assert.not_match("s3cr3t", r.stdout)
    assert.match("manages:\n  file /etc/myapp.conf\n  service myapp\n", r.stdout, 1, true)
    local j = runcli.run({ "show", "myapp", "--json", "--path", dir })
    assert.equal(0, j.code, j.stderr)
    assert.not_match("s3cr3t", j.stdout)
    assert.same({ "file /etc/myapp.conf", "service myapp" }, json.decode(j.stdout).resources)
  end)

  it("help host works; an unknown topic or module is a usage error", function()
    local r = runcli.run({ "help", "host" })
    assert.equal(0, r.code)
    assert.match("^usage: phanes host add", r.stdout)
    r = runcli.run({ "help", "serve" })
    assert.equal(0, r.code)
    assert.match("^usage: phanes serve", r.stdout)
    r = runcli.run({ "help", "rediss" })
    assert.equal(2, r.code)
    assert.match("no help on 'rediss'", r.stderr)
    r = runcli.run({ "show", "rediss" })
    assert.equal(2, r.code)
    assert.match("unknown module 'rediss' %(did you mean 'redis'%?%)", r.stderr)
    r = runcli.run({ "show" })
    assert.equal(2, r.code)
    r = runcli.run({ "show", "redis", "swap" })
    assert.equal(2, r.code)
  end)
end)
