-- template/parse.lua: expression parser (phanes.template is the entry).
-- parse.expr(src, line, filters) -> AST (filters: name -> function, the
-- filters an expression may name): { k = "lit"|"name"|"index"|"filter"|
-- "defined"|"not"|"un"|"in"|"bin"|"list", ... }; template/gen.lua turns it
-- into Lua code.
local lex = require "phanes.template.lex"

local M = {}
local fail, KEYWORDS = lex.fail, lex.KEYWORDS

local Parser = {}
Parser.__index = Parser

local function new_parser(src, line, filters)
  return setmetatable({ toks = lex.expr(src, line), pos = 1, src = src, line = line, filters = filters }, Parser)
end

function Parser:peek(k) return self.toks[self.pos + (k or 0)] end

function Parser:is(v, k)
  local t = self:peek(k)
  return t ~= nil and (t.kind == "op" or t.kind == "name") and t.v == v
end

function Parser:next()
  local t = self.toks[self.pos]
  self.pos = self.pos + 1
  return t
end

function Parser:err(fmt, ...)
  fail(self.line, "%s in '%s'", string.format(fmt, ...), self.src)
end

function Parser:expect(v)
  if not self:is(v) then
    local t = self:peek()
    self:err("expected '%s' but found %s", v, t and "'" .. t.v .. "'" or "the end")
  end
  return self:next()
end

function Parser:name()
  local t = self:next()
  if not t or t.kind ~= "name" then
    self:err("expected a name but found %s", t and "'" .. t.v .. "'" or "the end")
  end
  return t.v
end

-- Binary levels, loosest first (Lua's precedence, plus `!=`, `~`, `in`).
local LEVELS = {
  { ops = { ["or"] = "or" } },
  { ops = { ["and"] = "and" } },
  { ops = { ["=="] = "==", ["~="] = "~=", ["!="] = "~=", ["<"] = "<", [">"] = ">",
    ["<="] = "<=", [">="] = ">=" }, cmp = true },
  { ops = { ["~"] = "~" } },
  { ops = { [".."] = ".." }, right = true },
  { ops = { ["+"] = "+", ["-"] = "-" } },
  { ops = { ["*"] = "*", ["/"] = "/", ["//"] = "//", ["%"] = "%" } },
}

function Parser:binary(level)
  if level > #LEVELS then return self:unary() end
  local L = LEVELS[level]
  local a = self:binary(level + 1)
  while true do
    local t = self:peek()
    if L.cmp and self:is "in" then
      self:next()
      a = { k = "in", a = a, b = self:binary(level + 1) }
    elseif L.cmp and self:is "not" and self:is("in", 1) then
      self.pos = self.pos + 2
      a = { k = "not", a = { k = "in", a = a, b = self:binary(level + 1) } }
    elseif t and (t.kind == "op" or t.kind == "name") and L.ops[t.v] then
      self:next()
      local b = L.right and self:binary(level) or self:binary(level + 1)
      a = { k = "bin", op = L.ops[t.v], a = a, b = b }
    else
      return a
    end
  end
end

function Parser:unary()
  if self:is "not" then self:next() return { k = "not", a = self:unary() } end
  if self:is "-" then self:next() return { k = "un", op = "-", a = self:unary() } end
  if self:is "#" then self:next() return { k = "un", op = "#", a = self:unary() } end
  local a = self:postfix()
  if self:is "^" then
    self:next()
    return { k = "bin", op = "^", a = a, b = self:unary() }
  end
  return a
end

function Parser:args()
  local args = {}
  if self:is "(" then
    self:next()
    if not self:is ")" then
      repeat
        args[#args + 1] = self:expr()
      until not (self:is "," and self:next())
    end
    self:expect ")"
  end
  return args
end

function Parser:postfix()
  local a = self:primary()
  while true do
    if self:is "." then
      self:next()
      local key = self:name()
      a = { k = "index", a = a, key = { k = "lit", code = string.format("%q", key) }, path = a.path and a.path .. "." .. key }
    elseif self:is "[" then
      local start = self.pos
      self:next()
      local key = self:expr()
      self:expect "]"
      local parts = {}
      for i = start, self.pos - 1 do parts[#parts + 1] = self.toks[i].v end
      a = { k = "index", a = a, key = key, path = a.path and a.path .. table.concat(parts) }
    elseif self:is "|" then
      self:next()
      local name = self:name()
      if not self.filters[name] then
        local known = {}
        for k in pairs(self.filters) do known[#known + 1] = k end
        table.sort(known)
        self:err("unknown filter '%s' (filters: %s)", name, table.concat(known, ", "))
      end
      a = { k = "filter", name = name, a = a, args = self:args() }
    elseif self:is "is" then
      self:next()
      local neg = self:is "not" and self:next() and true
      local test = self:name()
      if test ~= "defined" and test ~= "undefined" then self:err("unknown test 'is %s' (only 'is defined')", test) end
      if test == "undefined" then neg = not neg end
      a = { k = "defined", a = a, neg = neg }
    elseif self:is "(" then
      self:err("function calls are not allowed in templates; use a filter (x | name(args))")
    else
      return a
    end
  end
end

function Parser:primary()
  local t = self:next()
  if not t then self:err("expression ends too early") end
  if t.kind == "num" or t.kind == "str" then return { k = "lit", code = t.v } end
  if t.kind == "name" then
    if t.v == "true" or t.v == "false" or t.v == "nil" then return { k = "lit", code = t.v } end
    if t.v == "none" or t.v == "None" then return { k = "lit", code = "nil" } end
    if KEYWORDS[t.v] or t.v == "is" then self:err("unexpected '%s'", t.v) end
    return { k = "name", name = t.v, path = t.v }
  end
  if t.v == "(" then
    local e = self:expr()
    self:expect ")"
    return e
  end
  if t.v == "[" then
    local items = {}
    if not self:is "]" then
      repeat items[#items + 1] = self:expr() until not (self:is "," and self:next())
    end
    self:expect "]"
    return { k = "list", items = items }
  end
  self:err("unexpected '%s'", t.v)
end

function Parser:expr() return self:binary(1) end

-- Parse a whole expression (nothing may follow).
function M.expr(src, line, filters)
  local p = new_parser(src, line, filters)
  if not p:peek() then fail(line, "empty expression") end
  local e = p:expr()
  local extra = p:peek()
  if extra then p:err("unexpected '%s'", extra.v) end
  return e
end

return M
