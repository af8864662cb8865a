-- phanes.yaml: decode with marks (libyaml), core schema, encode round trip.
local yaml = require "phanes.yaml"
local json = require "phanes.json"

local function fixture(name)
  local f = assert(io.open("spec/fixtures/yaml/" .. name))
  local text = f:read "a"
  f:close()
  return text
end

-- Deep equality that also tells integers from floats.
local function same(a, b, path)
  path = path or "value"
  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then
    return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  if type(a) ~= "table" then
    if a ~= a and b ~= b then return true end -- NaN
    return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. " missing" end
  end
  return true
end

local function at(marks, t, key)
  local m = key == nil and marks[t] or marks[t].keys[key]
  return m.line .. ":" .. m.col
end

describe("yaml.decode", function()
  describe("core schema", function()
    local cases = {
      { "16", 16, "integer" }, { '"16"', "16" }, { "'16'", "16" },
      { "16.0", 16.0, "float" }, { "-12", -12, "integer" }, { "+12", 12, "integer" },
      { "0755", 755, "integer" }, { "0o17", 15, "integer" }, { "0x1F", 31, "integer" },
      { "0xff", 255, "integer" }, { "0o8", "0o8" }, { "0x", "0x" }, { "0b101", "0b101" },
      { "9223372036854775807", math.maxinteger, "integer" },
      { "-9223372036854775808", math.mininteger, "integer" },
      { "1e3", 1000.0, "float" }, { "1.5E-2", 0.015, "float" }, { ".5", 0.5, "float" },
      { "5.", 5.0, "float" }, { "-.5", -0.5, "float" }, { ".inf", math.huge, "float" },
      { "-.Inf", -math.huge, "float" }, { "+.INF", math.huge, "float" },
      { "true", true }, { "True", true }, { "TRUE", true }, { "false", false },
      { "False", false }, { "FALSE", false }, { "tRUE", "tRUE" },
      { "yes", "yes" }, { "no", "no" }, { "on", "on" }, { "off", "off" }, { "y", "y" },
      { "~", nil }, { "null", nil }, { "Null", nil }, { "NULL", nil }, { "", nil },
      { "nULL", "nULL" }, { "'~'", "~" }, { "'null'", "null" }, { "'true'", "true" },
      { "1_000", "1_000" }, { "1.2.3", "1.2.3" }, { "12:30", "12:30" },
      { "2024-01-01", "2024-01-01" }, { "0.1.2", "0.1.2" }, { ". 5", ". 5" },
      { "!!str 16", "16" }, { "!!str true", "true" }, { "!!int '16'", 16, "integer" },
      { "!!float 1", 1.0, "float" }, { "!!float '2.5'", 2.5, "float" },
      { "!!bool 'true'", true }, { "!!null ''", nil }, { "! 12", "12" },
      { "|\n  line one\n  line two\n", "line one\nline two\n" },
      { ">\n  folded\n  text\n", "folded text\n" },
      { "'it''s'", "it's" }, { '"tab\\there"', "tab\there" },
    }
    for _, case in ipairs(cases) do
      local src, want, kind = case[1], case[2], case[3]
      it(("reads %q as %s"):format(src, tostring(want)), function()
        local v = assert(yaml.decode("v: " .. src))
        assert.equal(want, v.v)
        assert.equal(kind, math.type(v.v))
      end)
    end

    it("reads .nan as NaN", function()
      local v = assert(yaml.decode "v: .nan")
      assert.is_true(v.v ~= v.v)
    end)

    it("refuses an integer past 64 bits, naming where", function()
      local v, err = yaml.decode("a:\n  b: 99999999999999999999\n", "big.yaml")
      assert.is_nil(v)
      assert.equal("big.yaml:2:6: integer 99999999999999999999 out of range (quote it to keep it as text)", err)
      assert.equal("99999999999999999999", yaml.decode('a: "99999999999999999999"').a)
    end)

    it("refuses a tagged value that does not fit its tag", function()
      assert.equal('<string>:1:4: "x" is not a valid int', select(2, yaml.decode "a: !!int x"))
      assert.equal('<string>:1:4: "maybe" is not a valid bool', select(2, yaml.decode "a: !!bool maybe"))
      assert.equal("<string>:1:4: unsupported tag !secret", select(2, yaml.decode "a: !secret x"))
      assert.equal("<string>:1:4: unsupported tag tag:yaml.org,2002:seq", select(2, yaml.decode "a: !!seq {}"))
    end)

    it("keeps keys as text", function()
      local v = assert(yaml.decode "1: a\ntrue: b\n1.5: c\nnull: d\n'x': e\n")
      assert.same({ ["1"] = "a", ["true"] = "b", ["1.5"] = "c", ["null"] = "d", x = "e" }, v)
    end)
  end)

  describe("a config file", function()
    local cfg, marks = yaml.decode(fixture "config.yaml", "config.yaml")

    it("decodes the values", function()
      assert.same({
        username = "deploy", timezone = "Europe/Paris",
        defaults = { maxmemory = "256mb", bind = "127.0.0.1" },
        redis = { maxmemory = "256mb", bind = "127.0.0.1", password = "s3cret", port = 6379 },
        postgres = { version = "16", databases = { { name = "app", owner = "app" }, { name = "metrics" } } },
        ssh = { port = 22, permit_root_login = "no", allow_users = { "deploy", "admin" } },
      }, cfg)
    end)

    it("records where each mapping and key stands", function()
      assert.equal("2:1", at(marks, cfg))
      assert.equal("2:1", at(marks, cfg, "username"))
      assert.equal("9:1", at(marks, cfg, "redis"))
      assert.equal("10:3", at(marks, cfg.redis))
      assert.equal("11:3", at(marks, cfg.redis, "password"))
      assert.equal("15:3", at(marks, cfg.postgres, "version"))
      assert.equal("24:3", at(marks, cfg.ssh, "permit_root_login"))
    end)

    it("records list items", function()
      local dbs = cfg.postgres.databases
      assert.equal("17:5", at(marks, dbs))
      assert.equal(2, marks[dbs].n)
      assert.equal("17:7", at(marks, dbs, 1))
      assert.equal("19:7", at(marks, dbs, 2))
      assert.equal("19:7", at(marks, dbs[2], "name"))
      assert.equal("18:7", at(marks, dbs[1], "owner"))
      local users = cfg.ssh.allow_users
      assert.equal("25:16", at(marks, users))
      assert.equal("25:25", at(marks, users, 2))
    end)

    it("keeps the mark of a key whose value is null, without the key", function()
      assert.is_nil(cfg.postgres.listen)
      assert.equal("20:3", at(marks, cfg.postgres, "listen"))
    end)

    it("gives merged keys the marks where they were written", function()
      assert.equal("6:3", at(marks, cfg.redis, "maxmemory"))
      assert.equal("12:3", at(marks, cfg.redis, "port"))
    end)

    it("holds the marks with weak keys", function()
      assert.equal("k", getmetatable(marks).__mode)
      local n = 0
      for _ in pairs(marks) do n = n + 1 end
      assert.equal(9, n) -- root, defaults, redis, postgres, databases, 2 items, ssh, allow_users
    end)
  end)

  describe("anchors and aliases", function()
    it("shares the anchored table", function()
      local v, marks = yaml.decode "base: &b {x: 1}\nuse: *b\nlist: &l [1, 2]\nagain: *l\n"
      assert.equal(v.base, v.use)
      assert.equal(v.list, v.again)
      assert.equal("1:7", at(marks, v.use))
      assert.equal("1:11", at(marks, v.use, "x"))
    end)

    it("resolves scalar and null anchors", function()
      local v = assert(yaml.decode "a: &n 5\nb: *n\nc: &z ~\nd: *z\n&k key: 1\ne: *k\n")
      assert.same({ a = 5, b = 5, key = 1, e = "key" }, v)
    end)

    it("refuses an unknown alias", function()
      assert.equal("x.yaml:2:4: unknown alias *nope (no &nope before it)",
        select(2, yaml.decode("a: 1\nb: *nope\n", "x.yaml")))
    end)

    it("merges a list of mappings, explicit keys and earlier maps winning", function()
      local v, marks = yaml.decode [[
one: &one {a: 1, b: 1, c: 1}
two: &two {b: 2, d: 2}
both:
  c: 3
  <<: [*one, *two]
  e: ~
]]
      assert.same({ a = 1, b = 1, c = 3, d = 2 }, v.both)
      assert.equal("4:3", at(marks, v.both, "c"))
      assert.equal("2:18", at(marks, v.both, "d"))
      assert.equal("6:3", at(marks, v.both, "e"))
    end)

    it("refuses a merge that is not a mapping", function()
      assert.equal("<string>:1:1: the merge key << needs a mapping or a list of mappings",
        select(2, yaml.decode "<<: 1\n"))
      assert.equal("<string>:3:5: a merge list item must be a mapping",
        select(2, yaml.decode "<<:\n  - {}\n  - [1]\n"))
      assert.equal("<string>:2:1: duplicate merge key <<",
        select(2, yaml.decode "<<: {}\n<<: {}\n"))
    end)

    it("keeps a quoted << as a key", function()
      assert.same({ ["<<"] = 1 }, yaml.decode "'<<': 1\n")
    end)

    it("refuses an alias bomb, naming the alias that crosses the limit", function()
      local v, err = yaml.decode(fixture "alias_bomb.yaml", "bomb.yaml")
      assert.is_nil(v)
      assert.equal("bomb.yaml:9:12: alias *e expands the document to more than 100000 nodes "
        .. "(aliases nested in aliases: an alias bomb?)", err)
    end)

    it("counts each alias as the nodes it stands for, nested ones included", function()
      local lines = { "a0: &a0 {k: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}" }
      for i = 1, 6 do
        local refs = {}
        for j = 1, 10 do refs[j] = "k" .. j .. ": *a" .. (i - 1) end
        lines[#lines + 1] = ("a%d: &a%d {%s}"):format(i, i, table.concat(refs, ", "))
      end
      local v, err = yaml.decode(table.concat(lines, "\n") .. "\n")
      assert.is_nil(v)
      assert.matches("^<string>:5:77: alias %*a3 expands the document to more than 100000 nodes", err)
    end)

    it("accepts aliases well under the limit", function()
      local v = assert(yaml.decode "a: &a [1, 2, 3]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n")
      assert.equal(v.a, v.c[1][1])
    end)

    it("refuses an alias inside the node it names", function()
      assert.equal("<string>:1:11: alias *a stands inside the node &a it names (a cycle)",
        select(2, yaml.decode "a: &a {b: *a}\n"))
      assert.equal("<string>:1:10: alias *l stands inside the node &l it names (a cycle)",
        select(2, yaml.decode "- &l [1, *l]\n"))
    end)

    it("makes `phanes check` fail on the bomb in well under a second and 64 MB", function()
      local runcli = require "spec.support.runcli"
      local dir = runcli.tmpdir()
      local cmd = "/usr/bin/time -f '%e %M' -o " .. dir .. "/time " .. runcli.command {
        "check", "--config", "spec/fixtures/yaml/alias_bomb.yaml" } .. " 2>" .. dir .. "/err"
      local _, _, code = os.execute(cmd)
      local secs, kb = runcli.read(dir .. "/time"):match "([%d.]+) (%d+)"
      local err = runcli.read(dir .. "/err")
      runcli.rmdir(dir)
      assert.equal(2, code)
      assert.matches("alias_bomb.yaml:9:12: alias *e expands the document", err, 1, true)
      assert.is_true(tonumber(secs) < 0.5, secs .. " s")
      -- ASan's shadow memory and quarantine are not phanes' own
      local limit = runcli.binary():find("asan", 1, true) and 256 or 64
      assert.is_true(tonumber(kb) < limit * 1024, kb .. " KB")
    end)

    it("refuses a text longer than 8 MiB before parsing it", function()
      local v, err = yaml.decode(("#" .. ("x"):rep(1023) .. "\n"):rep(8 * 1024 + 1), "big.yaml")
      assert.is_nil(v)
      assert.equal("big.yaml: 8397825 bytes of YAML, more than the limit of 8 MiB", err)
    end)
  end)

  describe("errors", function()
    local function err_of(name)
      local v, err = yaml.decode(fixture(name), name)
      assert.is_nil(v)
      return err
    end

    it("names a bad indentation", function()
      assert.equal('bad_indent.yaml:3:9: mapping values are not allowed in this context ' ..
        '(check this line\'s indentation, or quote a value holding ": ")', err_of "bad_indent.yaml")
    end)

    it("names an unclosed quote and where it started", function()
      assert.equal("unclosed_quote.yaml:4:1: found unexpected end of stream " ..
        "(while scanning a quoted scalar at 2:13)", err_of "unclosed_quote.yaml")
    end)

    it("names a tab used for indentation", function()
      assert.equal("tab_indent.yaml:2:1: found character that cannot start any token " ..
        "(while scanning for the next token at 2:1): a tab, YAML indents with spaces only",
        err_of "tab_indent.yaml")
    end)

    it("names a duplicate key and its first place", function()
      assert.equal('duplicate_key.yaml:4:3: duplicate key "port" (first at 2:3)', err_of "duplicate_key.yaml")
    end)

    it("refuses keys that are not scalars, and empty keys", function()
      assert.equal("<string>:1:3: a mapping key must be a scalar, not a sequence",
        select(2, yaml.decode "? [a]\n: b\n"))
      assert.equal("<string>:1:3: a mapping key must be a scalar, not a mapping",
        select(2, yaml.decode "? {a: 1}\n: b\n"))
      assert.equal("<string>:1:2: empty mapping key", select(2, yaml.decode "? \n: b\n"))
      assert.same({ [""] = "b" }, yaml.decode "? ''\n: b\n")
      assert.equal("<string>:2:1: a mapping key must be text, not a table",
        select(2, yaml.decode "a: &t [1]\n*t : 2\n"))
    end)

    it("refuses text that is not UTF-8, naming where", function()
      assert.equal("<string>:2:5: invalid trailing UTF-8 octet (the text must be UTF-8)",
        select(2, yaml.decode "a: 1\nb: \xc3\x28\n"))
    end)

    it("raises on misuse", function()
      assert.has_error(function() yaml.decode(nil) end)
      assert.has_error(function() yaml.decode("a: 1", {}) end)
    end)

    it("refuses nesting deeper than 512 levels, and takes 500", function()
      local v, err = yaml.decode(string.rep("[", 600) .. string.rep("]", 600))
      assert.is_nil(v)
      assert.equal("<string>:1:513: nesting deeper than 512 levels", err)
      local deep = assert(yaml.decode(string.rep("- ", 500) .. "x\n"))
      for _ = 1, 500 do deep = deep[1] end
      assert.equal("x", deep)
    end)

    it("answers a value or a located error for mutated configs", function()
      local base = fixture "config.yaml"
      local alphabet = "{}[]:,-&*!|>'\"\\#%@ \t\n\r?<~0123456789.eExo\0\xff\xc3\xa9\xe2\x80\xa8"
      math.randomseed(1984)
      for _ = 1, 1500 do
        local text = base
        for _ = 1, math.random(1, 8) do
          local i, j = math.random(#text), math.random(#alphabet)
          text = text:sub(1, i - 1) .. alphabet:sub(j, j + math.random(0, 2)) .. text:sub(i + math.random(0, 3))
        end
        local v, marks = yaml.decode(text, "m.yaml")
        if type(marks) ~= "table" then
          assert.is_nil(v)
          assert.matches("^m%.yaml:%d+:%d+: ", marks)
        end
      end
    end)

    it("frees the parser on every path", function()
      -- run under ASan with leak detection, this fails on any leak
      local inputs = { "a: [1, 2", "a: 1\na: 2", "a: *x", "a: !!int x", "- 99999999999999999999",
        "a: 1\n\tb: 2", string.rep("{a: ", 1000), "a: \xff" }
      for _ = 1, 20 do
        for _, text in ipairs(inputs) do assert.is_nil((yaml.decode(text))) end
      end
      collectgarbage()
    end)
  end)

  describe("documents", function()
    it("gives nil and empty marks for an empty document", function()
      for _, text in ipairs { "", "# only a comment\n", "---\n", "--- ~\n", "---\n...\n" } do
        local v, marks = yaml.decode(text)
        assert.is_nil(v)
        assert.is_table(marks)
        assert.is_nil(next(marks))
      end
    end)

    it("reads a scalar document", function()
      local v, marks = yaml.decode "42\n"
      assert.equal(42, v)
      assert.is_nil(next(marks))
    end)

    it("reads the first document only", function()
      assert.same({ first = 1 }, yaml.decode(fixture "multi_document.yaml"))
    end)

    it("counts columns in characters", function()
      local v, marks = yaml.decode "ünï: [a, é, b]\nb: \"✓\"\n"
      assert.equal("1:6", at(marks, v["ünï"]))
      assert.equal("1:13", at(marks, v["ünï"], 3))
      assert.equal("✓", v.b)
      assert.equal("2:1", at(marks, v, "b"))
    end)

    it("keeps a hole for a null list item, with n counting it", function()
      local v, marks = yaml.decode "- a\n-\n- c\n"
      assert.equal("a", v[1])
      assert.is_nil(v[2])
      assert.equal("c", v[3])
      assert.equal(3, marks[v].n)
      assert.equal("2:2", at(marks, v, 2))
    end)
  end)
end)

describe("yaml.encode", function()
  it("writes block style with sorted keys", function()
    assert.equal([[
list:
  - 1
  - two
  - a: 1
    b:
      - x
  - - 1
    - 2
  - {}
  - []
name: web
nested:
  deeper:
    flag: true
    ratio: 0.5
    whole: 2.0
]], yaml.encode {
      name = "web",
      list = { 1, "two", { b = { "x" }, a = 1 }, { 1, 2 }, {}, json.array() },
      nested = { deeper = { flag = true, ratio = 0.5, whole = 2.0 } },
    })
  end)

  it("writes scalars and empty tables at the top", function()
    assert.equal("{}\n", yaml.encode {})
    assert.equal("[]\n", yaml.encode(json.array()))
    assert.equal("12\n", yaml.encode(12))
    assert.equal("null\n", yaml.encode(nil))
    assert.equal(".inf\n", yaml.encode(math.huge))
    assert.equal("-.inf\n", yaml.encode(-math.huge))
    assert.equal(".nan\n", yaml.encode(0 / 0))
  end)

  it("quotes strings that would read back as something else", function()
    local quoted = { "16", "1.5", "0x1F", "true", "False", "yes", "no", "on", "Off", "y",
      "null", "~", "", " lead", "trail ", "a: b", "a #b", "#c", "-x", "- x", "[a]", "{a}",
      "*x", "&x", "!x", "|", ">", "'q'", '"q"', "%x", "@x", "`x", "a,b", "...", "---",
      ".inf", "<<", "line\nbreak", "tab\there", "\0nul", "del\127", "\194\133nel", "ends:" }
    for _, s in ipairs(quoted) do
      local text = yaml.encode { k = s }
      assert.equal('"', text:sub(4, 4), text)
      assert.equal(s, yaml.decode(text).k)
    end
    for _, s in ipairs { "web", "127.0.0.1", "256mb", "Europe/Paris", "a b", "http://x:80/y",
      "héllo", "日本", "user@host", "a-b_c", "1.2.3" } do
      assert.equal("k: " .. s .. "\n", yaml.encode { k = s })
    end
  end)

  it("escapes control characters", function()
    assert.equal('k: "a\\nb\\t\\\\\\"\\0\\u0001\\u007F\\u0085"\n', yaml.encode { k = 'a\nb\t\\"\0\1\127\194\133' })
  end)

  it("writes integers and floats so they read back as such", function()
    local v = { math.maxinteger, math.mininteger, 0, -1, 1.0, -0.5, 0.1, 1 / 3, 1e300, 5e-324, 2 ^ 53 }
    local back = yaml.decode(yaml.encode(v))
    assert.is_true(same(v, back))
  end)

  it("refuses what YAML cannot hold, naming where", function()
    local function err(v)
      local ok, e = pcall(yaml.encode, v)
      assert.is_false(ok)
      return e
    end
    assert.equal("yaml.encode: cannot encode a function at modules.redis.x",
      err { modules = { redis = { x = print } } })
    assert.equal("yaml.encode: cannot encode a userdata at [2]", err { 1, io.stdout })
    local c = { a = {} }
    c.a.b = c
    assert.equal("yaml.encode: a table contains itself (a cycle) at a.b", err(c))
    assert.equal("yaml.encode: a string is not valid UTF-8 at k", err { k = "\xff" })
    assert.equal("yaml.encode: a table mixes string keys with other keys at t", err { t = { 1, a = 2 } })
    assert.equal("yaml.encode: a table's keys are neither strings nor exactly 1..n at t",
      err { t = { [1] = 1, [3] = 3 } })
  end)

  it("writes a long key explicitly", function()
    local key = string.rep("k", 1500)
    assert.equal(2, yaml.decode(yaml.encode { [key] = 2 })[key])
  end)

  describe("round trip", function()
    local chars = { "a", "b", "Z", "0", "9", " ", ":", "#", "-", "'", '"', "\\", "\n", "\t",
      ".", "é", "✓", "日", "\1", "[", "{", "&", "*", "!", "|", ">", "%", "@", "~", ",", "?" }
    local words = { "yes", "no", "true", "null", "~", "16", "0x10", "1e3", ".inf", "<<", "" }
    local function rstring(rand)
      if rand(5) == 1 then return words[rand(#words)] end
      local out = {}
      for i = 1, rand(0, 12) do out[i] = chars[rand(#chars)] end
      return table.concat(out)
    end
    local function rvalue(rand, depth)
      local kind = rand(depth > 3 and 5 or 7)
      if kind == 1 then return rand(-1000, 1000)
      elseif kind == 2 then return rand() * 10 ^ rand(-10, 10) * (rand(2) == 1 and -1 or 1)
      elseif kind == 3 then return rand(2) == 1
      elseif kind <= 5 then return rstring(rand)
      elseif kind == 6 then
        local t = {}
        for i = 1, rand(0, 4) do t[i] = rvalue(rand, depth + 1) end
        return #t == 0 and json.array() or t
      end
      local t = {}
      for _ = 1, rand(0, 4) do t[rstring(rand)] = rvalue(rand, depth + 1) end
      return t
    end

    it("decode(encode(v)) equals v for 500 generated values", function()
      math.randomseed(20240501)
      local rand = math.random
      for _ = 1, 500 do
        local v = rvalue(rand, 0)
        local text = yaml.encode(v)
        local back, err = yaml.decode(text)
        assert(err == nil or type(err) == "table", err)
        local ok, why = same(v, back)
        assert(ok, (why or "") .. "\n" .. text)
      end
    end)
  end)
end)
