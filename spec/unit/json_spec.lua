-- phanes.json: deterministic encoding, strict decoding, round trip.
local json = require "phanes.json"

-- Deep equality that also tells integers from floats.
local function same(a, b, path)
  path = path or "value"
  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then
    return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  if type(a) ~= "table" then return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. " missing" end
  end
  return true
end

local function encode_error(v)
  local ok, err = pcall(json.encode, v)
  assert.is_false(ok)
  return err
end

describe("json.encode", function()
  it("sorts keys and writes lists as arrays", function()
    assert.equal('{"a":[1,2,"x"],"b":{"c":true,"d":false},"e":null}',
      json.encode { b = { d = false, c = true }, a = { 1, 2, "x" }, e = json.null })
  end)

  it("writes empty tables as {} and json.array ones as []", function()
    assert.equal('{"a":{},"b":[]}', json.encode { a = {}, b = json.array() })
    assert.equal("[]", json.encode(json.array {}))
    local t = json.array { 1, 2 }
    assert.equal("[1,2]", json.encode(t))
  end)

  it("pretty-prints with two spaces and a final newline", function()
    assert.equal([[
{
  "list": [
    1,
    {
      "x": "y"
    }
  ],
  "name": "web",
  "none": {},
  "zero": []
}
]], json.encode({ name = "web", list = { 1, { x = "y" } }, none = {}, zero = json.array() }, { pretty = true }))
    assert.equal("1\n", json.encode(1, { pretty = true }))
  end)

  it("escapes what JSON needs escaped and passes UTF-8 through", function()
    assert.equal([["q\" b\\ n\n r\r t\t \b\f \u0001\u001f\u0000 / é ✓ 😀 ]] .. "\127\"",
      json.encode 'q" b\\ n\n r\r t\t \b\f \1\31\0 / é ✓ 😀 \127')
  end)

  it("writes integers as integers and floats so they read back", function()
    assert.equal("[1,-7,9223372036854775807,-9223372036854775808]",
      json.encode { 1, -7, math.maxinteger, math.mininteger })
    assert.equal("[1.0,0.1,-2.5,1e+300,0.3333333333333333,-0.0]", json.encode { 1.0, 0.1, -2.5, 1e300, 1 / 3, -0.0 })
    for _, x in ipairs { 0.1, 1 / 3, 2 ^ 60 + 0.0, 5e-324, 1.7976931348623157e308, 123456.789 } do
      assert.equal(x, json.decode(json.encode(x)))
      assert.equal("float", math.type(json.decode(json.encode(x))))
    end
  end)

  it("refuses what JSON cannot hold, naming where", function()
    assert.equal("json.encode: cannot encode a function at modules.redis.x",
      encode_error { modules = { redis = { x = print } } })
    assert.equal("json.encode: cannot encode a userdata at list[2]", encode_error { list = { 1, io.stdout } })
    assert.equal("json.encode: cannot encode NaN at a", encode_error { a = 0 / 0 })
    assert.equal("json.encode: cannot encode infinity at [1]", encode_error { -math.huge })
    assert.equal("json.encode: cannot encode a function at the top level", encode_error(print))
    assert.equal("json.encode: a string is not valid UTF-8 at k", encode_error { k = "\xc3\x28" })
    assert.equal("json.encode: a string is not valid UTF-8 at \xff", encode_error { ["\xff"] = 1 })
    assert.equal("json.encode: a table mixes string keys with other keys at t", encode_error { t = { 1, x = 2 } })
    assert.equal("json.encode: a table's keys are neither strings nor exactly 1..n at the top level",
      encode_error { 1, nil, 3 })
    assert.equal("json.encode: a table's keys are neither strings nor exactly 1..n at the top level",
      encode_error { [1.5] = 1 })
    assert.equal("json.encode: a table marked as an array has keys other than 1..n at a",
      encode_error { a = json.array { x = 1 } })
  end)

  it("refuses cycles and too deep nesting, but not shared tables", function()
    local c = { modules = { redis = {} } }
    c.modules.redis.x = c.modules
    assert.equal("json.encode: a table contains itself (a cycle) at modules.redis.x", encode_error(c))
    local shared = { 1 }
    assert.equal("[[1],[1]]", json.encode { shared, shared })
    local deep = {}
    for _ = 1, 600 do deep = { deep } end
    assert.matches("nesting deeper than 512 levels", encode_error(deep))
  end)

  it("checks its arguments", function()
    assert.has_error(function() json.encode({}, "pretty") end)
    assert.has_error(function() json.array(setmetatable({}, {})) end)
    assert.has_error(function() json.array(1) end)
  end)
end)

describe("json.decode", function()
  it("reads every kind of value", function()
    local v = assert(json.decode ' {"s": "x", "i": 12, "f": 1.5, "e": 1e2, "t": true, "n": null, "a": [], "o": {}} ')
    assert.equal("x", v.s)
    assert.equal("integer", math.type(v.i))
    assert.equal(1.5, v.f)
    assert.equal("float", math.type(v.e))
    assert.equal(100.0, v.e)
    assert.is_true(v.t)
    assert.equal(json.null, v.n)
    assert.same({}, v.a)
    assert.equal("[]", json.encode(v.a))
    assert.equal("{}", json.encode(v.o))
  end)

  it("reads scalars at the top level", function()
    assert.equal(3, json.decode "3")
    assert.equal("x", json.decode '"x"')
    assert.equal(false, json.decode "false")
    assert.equal(json.null, json.decode "null")
  end)

  it("reads numbers as integers only without fraction or exponent", function()
    local cases = { { "0", 0, "integer" }, { "-0", 0, "integer" }, { "-12", -12, "integer" },
      { "9223372036854775807", math.maxinteger, "integer" },
      { "-9223372036854775808", math.mininteger, "integer" },
      { "9223372036854775808", 9223372036854775808.0, "float" },
      { "1.0", 1.0, "float" }, { "1e3", 1000.0, "float" }, { "-2.5E-3", -0.0025, "float" },
      { "0.1", 0.1, "float" } }
    for _, c in ipairs(cases) do
      local v = json.decode(c[1])
      assert.equal(c[2], v)
      assert.equal(c[3], math.type(v), c[1])
    end
  end)

  it("joins \\u escapes and surrogate pairs into UTF-8", function()
    assert.equal("é ✓ 😀 \0 / \"\\\b\f\n\r\t",
      json.decode [["\u00e9 \u2713 \ud83d\ude00 \u0000 \/ \"\\\b\f\n\r\t"]])
    assert.equal("é✓", json.decode '"é✓"')
  end)

  it("skips a byte order mark", function()
    assert.same({ 1 }, json.decode "\xEF\xBB\xBF[1]")
  end)

  it("refuses bad text with line:col", function()
    local cases = {
      { "", "1:1: unexpected end of input (expected a value)" },
      { "[1,", "1:4: unexpected end of input (expected a value)" },
      { "[1,]", "1:4: unexpected ']' (expected a value)" },
      { "[1 2]", "1:4: unexpected '2' (expected ',' or ']')" },
      { '{"a" 1}', "1:6: unexpected '1' (expected ':')" },
      { '{"a":1,}', "1:8: unexpected '}' (expected a string key)" },
      { "{a:1}", "1:2: unexpected 'a' (expected a string key)" },
      { '{"a":1 "b":2}', "1:8: unexpected '\"' (expected ',' or '}')" },
      { '{\n  "a": 1,\n  "a": 2\n}', '3:3: duplicate key "a"' },
      { "[01]", "1:2: bad number" },
      { "[-]", "1:2: bad number" },
      { "[1.]", "1:2: bad number (digits needed after the point)" },
      { "[1e]", "1:2: bad number (digits needed in the exponent)" },
      { "[1e400]", "1:2: number out of range (beyond a double)" },
      { "[-1e400]", "1:2: number out of range (beyond a double)" },
      { "[.5]", "1:2: unexpected '.' (expected a value)" },
      { "[+1]", "1:2: unexpected '+' (expected a value)" },
      { "0x10", "1:2: unexpected 'x' (expected the end after the value)" },
      { "[NaN]", "1:2: unexpected 'N' (expected a value)" },
      { "[1] [2]", "1:5: unexpected '[' (expected the end after the value)" },
      { "\n\n   {\"x\": tru}", "3:10: unexpected 't' (expected a value)" },
      { '"abc', "1:1: unclosed string" },
      { '"a\tb"', "1:3: control character in a string (it must be escaped)" },
      { '"\\x"', "1:2: unknown escape \\x" },
      { '"\\u12"', "1:4: bad \\u escape (four hex digits needed)" },
      { '"\\u12g4"', "1:4: bad \\u escape (four hex digits needed)" },
      { '"\\ud83d"', "1:2: high surrogate without its low half" },
      { '"\\ud83d\\u0041"', "1:2: high surrogate without its low half" },
      { '"\\ude00"', "1:2: lone low surrogate (a pair starts with \\uD800-\\uDBFF)" },
      { '["é", "\xff"]', "1:8: invalid UTF-8" },
      { "[\1]", "1:2: unexpected byte 0x01 (expected a value)" },
    }
    for _, c in ipairs(cases) do
      local v, err = json.decode(c[1])
      assert.is_nil(v)
      assert.equal(c[2], err, c[1])
    end
  end)

  it("refuses nesting deeper than 512 levels, and takes 500", function()
    local v, err = json.decode(string.rep("[", 600) .. string.rep("]", 600))
    assert.is_nil(v)
    assert.equal("1:513: nesting deeper than 512 levels", err)
    local deep = assert(json.decode(string.rep('{"a":[', 250) .. "1" .. string.rep("]}", 250)))
    for _ = 1, 250 do deep = deep.a[1] end
    assert.equal(1, deep)
  end)

  it("answers a value or a located error for mutated text", function()
    local base = json.encode({ name = "web", list = { 1, 2.5, "x\n", json.null, true }, nested = { a = { b = {} } } },
      { pretty = true })
    local alphabet = '{}[]:,"\\/ \t\n0123456789.eE+-truefalsn\0\xff\xc3\xa9u'
    math.randomseed(1985)
    for _ = 1, 1500 do
      local text = base
      for _ = 1, math.random(1, 6) do
        local i, j = math.random(#text), math.random(#alphabet)
        text = text:sub(1, i - 1) .. alphabet:sub(j, j + math.random(0, 2)) .. text:sub(i + math.random(0, 3))
      end
      local v, err = json.decode(text)
      if err then
        assert.is_nil(v)
        assert.matches("^%d+:%d+: ", err)
      else
        assert.is_not_nil(json.decode(json.encode(v)))
      end
    end
  end)

  it("raises on misuse", function()
    assert.has_error(function() json.decode(nil) end)
    assert.has_error(function() json.decode {} end)
  end)
end)

describe("json round trip", function()
  local chars = { "a", "Z", "0", " ", '"', "\\", "/", "\n", "\t", "\0", "\1", "\31", "é", "✓", "😀", "\127" }
  local function rstring(rand)
    local out = {}
    for i = 1, rand(0, 10) do out[i] = chars[rand(#chars)] end
    return table.concat(out)
  end
  local function rvalue(rand, depth)
    local kind = rand(depth > 4 and 6 or 8)
    if kind == 1 then return rand(math.mininteger, math.maxinteger)
    elseif kind == 2 then return (rand() - 0.5) * 10 ^ rand(-300, 300)
    elseif kind == 3 then return rand(2) == 1
    elseif kind == 4 then return json.null
    elseif kind <= 6 then return rstring(rand)
    elseif kind == 7 then
      local t = json.array()
      for i = 1, rand(0, 5) do t[i] = rvalue(rand, depth + 1) end
      return t
    end
    local t = {}
    for _ = 1, rand(0, 5) do t[rstring(rand)] = rvalue(rand, depth + 1) end
    return t
  end

  it("decode(encode(v)) equals v for 1000 generated values, compact and pretty", function()
    math.randomseed(8259)
    local rand = math.random
    for i = 1, 1000 do
      local v = rvalue(rand, 0)
      local text = json.encode(v, { pretty = i % 2 == 0 })
      local back, err = json.decode(text)
      assert(err == nil, err)
      local ok, why = same(v, back)
      assert(ok, (why or "") .. "\n" .. text)
      assert.equal(text, json.encode(back, { pretty = i % 2 == 0 }))
    end
  end)
end)
