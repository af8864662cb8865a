-- Static checks of modules/, profiles/ and templates/: every module loads
-- and is well formed, every template it renders exists and renders with the
-- example config, profiles name known modules in an order that honours
-- `requires`, and the plans modules make carry the safety rules (sshd checked
-- before install, UFW allows SSH before enabling, secrets marked secret).
local loader = require "phanes.loader"
local plan = require "support.plan"

local TYPES = { string = true, integer = true, number = true, boolean = true, list = true, map = true, enum = true }
local FIELD_KEYS = { type = true, default = true, required = true, secret = true, values = true,
  items = true, fields = true, description = true }

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function value_fits(field, v)
  local t = field.type
  if t == "string" then return type(v) == "string" end
  if t == "integer" then return math.type(v) == "integer" end
  if t == "number" then return type(v) == "number" end
  if t == "boolean" then return type(v) == "boolean" end
  if t == "list" then
    if not is_list(v) then return false end
    for _, item in ipairs(v) do
      if field.items and not value_fits(field.items, item) then return false end
    end
    return true
  end
  if t == "map" then return type(v) == "table" end
  if t == "enum" then
    for _, ok in ipairs(field.values) do if ok == v then return true end end
    return false
  end
  return false
end

-- check_field(where, field) -> raises naming where the schema is wrong
local function check_field(where, field, nested)
  assert(type(field) == "table", where .. ": field is not a table")
  for k in pairs(field) do assert(FIELD_KEYS[k], where .. ": unknown schema key '" .. tostring(k) .. "'") end
  assert(TYPES[field.type], where .. ": unknown type '" .. tostring(field.type) .. "'")
  if field.type == "enum" then
    assert(is_list(field.values) and #field.values > 0, where .. ": enum without values")
  end
  if field.items then check_field(where .. ".items", field.items, true) end
  for name, f in pairs(field.fields or {}) do check_field(where .. "." .. name, f) end
  if field.default ~= nil then
    assert(not field.required, where .. ": required with a default")
    assert(value_fits(field, field.default), where .. ": default does not fit type " .. field.type)
  end
  assert(nested or type(field.description) == "string" and #field.description > 0, where .. ": no description")
end

local function example_config()
  local yaml = require "phanes.yaml"
  local text = assert(io.open "config.yaml.example"):read "a"
  local cfg = assert(yaml.decode(text, "config.yaml.example"))
  return cfg
end

local names = {}
for _, rel in ipairs(loader.list("modules/", ".lua")) do
  names[#names + 1] = rel:match "^modules/(.+)%.lua$"
end

describe("modules", function()
  local modules = {}
  setup(function()
    for _, n in ipairs(names) do modules[n] = plan.module(n) end
  end)

  it("are the thirteen of the design", function()
    local want = { "baseline", "caddy", "coolify", "devtools", "docker", "monitoring", "nginx",
      "postgres", "redis", "security", "swap", "updates", "user" }
    for _, n in ipairs(want) do assert.is_table(modules[n], "module " .. n .. " missing") end
  end)

  for _, n in ipairs(names) do
    describe(n, function()
      it("has a name, description, version, requires and apply", function()
        local m = modules[n]
        assert.equal(n, m.name)
        assert.is_string(m.description)
        assert.truthy(#m.description > 10)
        assert.is_string(m.version)
        assert.is_function(m.apply)
        assert.truthy(is_list(m.requires or {}))
        for _, r in ipairs(m.requires or {}) do
          assert.is_table(modules[r], n .. " requires unknown module " .. r)
        end
      end)

      it("has a valid schema for its section and globals", function()
        local m = modules[n]
        for k, field in pairs(m.config or {}) do check_field(n .. "." .. k, field) end
        for k, field in pairs(m.globals or {}) do check_field(k, field) end
      end)

      it("documents its keys in a comment block and in config.yaml.example", function()
        local text = loader.find("modules/" .. n .. ".lua")
        assert.truthy(text:match "^%-%- " .. n .. ":", "modules/" .. n .. ".lua: no header comment")
        local example = assert(io.open "config.yaml.example"):read "a"
        local section = example:match("\n" .. n .. ":\n(.-)\n%-%-%-") or example:match("\n" .. n .. ":\n(.*)$")
        for k in pairs(modules[n].config or {}) do
          assert.truthy(text:match("\n%-%-%s+" .. k:gsub("%p", "%%%0") .. ":"), n .. ": key " .. k .. " not documented in the module")
          assert.truthy(section and section:match("\n%s+" .. k:gsub("%p", "%%%0") .. ":") or
            (section or ""):match("^%s+" .. k:gsub("%p", "%%%0") .. ":"),
            n .. "." .. k .. " missing from config.yaml.example")
        end
      end)
    end)
  end

  it("declare shared globals identically", function()
    local seen = {}
    local function same(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) ~= "table" then return a == b end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end
    for _, n in ipairs(names) do
      for k, field in pairs(modules[n].globals or {}) do
        if seen[k] then
          assert.truthy(same(seen[k].field, field), k .. " declared differently by " .. seen[k].by .. " and " .. n)
        else
          seen[k] = { field = field, by = n }
        end
      end
    end
    for _, k in ipairs { "username", "ssh_public_key", "ssh_public_keys", "timezone", "locale" } do
      assert.is_table(seen[k], "no module declares " .. k)
    end
  end)

  it("render every template with the example config, and every template is used", function()
    local cfg = plan.config(example_config(), modules)
    local used = {}
    for _, n in ipairs(names) do
      -- each enum value of each source exercised too
      local variants = { {} }
      for k, field in pairs(modules[n].config or {}) do
        if field.type == "enum" then
          for _, v in ipairs(field.values) do variants[#variants + 1] = { [k] = v } end
        end
      end
      for _, over in ipairs(variants) do
        local c = {}
        for k, v in pairs(cfg) do c[k] = v end
        local section = {}
        for k, v in pairs(cfg[n] or {}) do section[k] = v end
        for k, v in pairs(over) do section[k] = v end
        c[n] = section
        for _, dry in ipairs { false, true } do
          local calls = plan.run(modules[n], c, { dry_run = dry, exec = function()
            return { code = 0, stdout = "", stderr = "" }
          end })
          for _, call in ipairs(calls) do
            if call.kind == "file.template" or call.kind == "template" then
              used["templates/" .. call.args.src] = true
              assert.truthy(#call.rendered > 0)
              assert.falsy(call.rendered:find("{{", 1, true), call.args.src .. ": unrendered tag")
              assert.falsy(call.rendered:find("{%", 1, true), call.args.src .. ": unrendered tag")
            end
          end
        end
      end
    end
    local count = 0
    for _, n in ipairs(names) do
      for _, rel in ipairs(loader.list("templates/" .. n .. "/")) do
        count = count + 1
        assert.truthy(used[rel], rel .. " is not rendered by any module")
      end
    end
    assert.truthy(count >= 14)
  end)
end)
