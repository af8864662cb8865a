-- template.lua: the template engine modules use for config files.
--
-- Jinja-like syntax, familiar to Ansible users:
--
--   {{ expr }}                     output a value
--   {{ expr | filter(args) }}      filters: default, join, indent, upper,
--                                  lower, quote, trim, replace, length,
--                                  word, line, quoted (config file guards)
--   {% if expr %} {% elif expr %} {% else %} {% end %}   (or {% endif %})
--   {% for x in list %} ... {% else %} (when empty) ... {% end %}  (or {% endfor %})
--   {% for k, v in map %}          maps are walked in sorted key order
--   {# comment #}
--
-- Expressions: dotted names (`postgres.version`), indexing (`list[1]`),
-- literals (strings, numbers, true/false/nil, lists `["a", "b"]`), `==`,
-- `~=`/`!=`, `<`, `<=`, `>`, `>=`, `and`/`or`/`not` (Lua truthiness: only nil
-- and false are false), arithmetic, `..` (Lua concat) and `~` (concat of
-- rendered values), `x in list` / `x not in list`, `x is defined` / `x is not
-- defined`. Inside a for body, `loop.index` (1-based), `loop.index0`,
-- `loop.first`, `loop.last`, `loop.length`. Expressions see only the vars and
-- the filters: no globals, no function calls.
--
-- An undefined variable is an error naming the template and line, never an
-- empty string: `templates/redis/redis.conf:12: undefined variable 'maxmem'`.
-- Inside a `default` filter's operand (and under `is defined`), undefined is
-- nil instead: `{{ maxmem | default("256mb") }}`. Other filters pass nil on.
--
-- Whitespace: a line holding only `{% %}` / `{# #}` tags (and blanks) produces
-- no output line. `{%-`/`-%}` (and `{{-`, `-}}`, `{#-`, `-#}`) strip the
-- whitespace, newlines included, before/after the tag.
--
-- Values render as: strings as is, booleans as true/false, integral numbers
-- without ".0" (16, not 16.0), other numbers with up to 14 significant
-- digits. nil and tables are errors (use join or a loop for lists).
--
-- Example:
--   local template = require "phanes.template"
--   local out, err = template.render("port {{ port }}\n", { port = 6379 }, "redis.conf")
--   --> "port 6379\n"
local M = {}

-- Compiled templates, by name then text: rendering the same template twice
-- does not compile it again. `M.stats.compiled` counts real compilations.
local cache, counts = {}, {}
M.stats = { compiled = 0 }

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local
  nil not or repeat return then true until while]]):gmatch "%a+" do KEYWORDS[w] = true end

-- A compile error: raised as a table so it is told apart from a bug.
local function fail(line, fmt, ...)
  error({ line = line, msg = string.format(fmt, ...) }, 0)
end

local function type_name(v)
  local t = type(v)
  if t == "number" then return math.type(v) == "integer" and "an integer" or "a float" end
  if t == "table" then
    return (next(v) == nil or v[1] ~= nil) and "a list" or "a map"
  end
  if t == "nil" then return "nil" end
  if t == "boolean" then return "a boolean" end
  return "a " .. t
end

-- How a value renders in the output.
local function tostr(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return string.format("%d", math.tointeger(v)) end
    return string.format("%.14g", v)
  end
  if t == "boolean" then return tostring(v) end
  return nil, t == "nil" and "nil" or type_name(v)
end

------------------------------------------------------------------------
-- Filters. Each gets the value (never nil, except `default`) and the args.

local function check_str(name, v)
  if type(v) == "number" then return tostr(v) end
  if type(v) ~= "string" then error(name .. ": expected a string, got " .. type_name(v), 0) end
  return v
end

local is_list = require("phanes.config.schema").is_list

local filters = {}

function filters.default(v, d)
  if v == nil then return d end
  return v
end

function filters.join(v, sep)
  if not is_list(v) then error("join: expected a list, got " .. type_name(v), 0) end
  sep = sep == nil and "" or check_str("join", sep)
  local parts = {}
  for i, item in ipairs(v) do
    local s, bad = tostr(item)
    if not s then error(string.format("join: item %d is %s, not a string or number", i, bad), 0) end
    parts[i] = s
  end
  return table.concat(parts, sep)
end

-- indent(width[, first]): like Jinja, the first line is not indented unless
-- `first` is true; blank lines are left blank.
function filters.indent(v, width, first)
  v = check_str("indent", v)
  width = width == nil and 4 or width
  local pad = type(width) == "string" and width or string.rep(" ", math.tointeger(width) or 0)
  local out, n = {}, 0
  for line, nl in v:gmatch "([^\n]*)(\n?)" do
    n = n + 1
    if line ~= "" and (n > 1 or first) then line = pad .. line end
    out[n] = line .. nl
    if nl == "" then break end
  end
  return table.concat(out)
end

function filters.upper(v) return check_str("upper", v):upper() end
function filters.lower(v) return check_str("lower", v):lower() end

function filters.trim(v)
  return (check_str("trim", v):gsub("^%s+", ""):gsub("%s+$", ""))
end

function filters.replace(v, from, to)
  v, from, to = check_str("replace", v), check_str("replace", from), check_str("replace", to)
  if from == "" then return v end
  local out, pos = {}, 1
  while true do
    local s, e = v:find(from, pos, true)
    if not s then break end
    out[#out + 1] = v:sub(pos, s - 1) .. to
    pos = e + 1
  end
  out[#out + 1] = v:sub(pos)
  return table.concat(out)
end

function filters.length(v)
  if type(v) == "string" then return #v end
  if type(v) == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    return n
  end
  error("length: expected a string, list or map, got " .. type_name(v), 0)
end

-- quote: a shell-safe word (as Python's shlex.quote / Ansible's quote).
function filters.quote(v)
  local s = tostr(v)
  if not s then error("quote: expected a string, got " .. type_name(v), 0) end
  if s == "" then return "''" end
  if not s:find "[^%w@%%+=:,./_-]" then return s end
  return "'" .. s:gsub("'", "'\"'\"'") .. "'"
end

-- Guards for values written into config files, which have no escapes for
-- what would end a value there (a line break ends an nginx or INI line, ';'
-- an nginx directive, '{' opens a block, '"' ends an apt string). A value
-- that does not fit is an error naming the filter, never the value (it may
-- be a secret): the file is not written.
--   word    one token: no blanks, control characters or ; { } # " ' ` \
--   line    the same, spaces allowed: "127.0.0.1 -::1"
--   quoted  the inside of a "..." string: no control characters, " or \
local function guard(name, refused, what)
  return function(v)
    local s = tostr(v)
    if not s then error(name .. ": expected a string, got " .. type_name(v), 0) end
    if s:find(refused) then error(name .. ": the value has " .. what .. " and cannot be written into this file", 0) end
    return s
  end
end
filters.word = guard("word", "[%c%s;{}#\"'`\\]", "a blank, a control character or one of ; { } # \" ' ` \\")
filters.line = guard("line", "[%c;{}#\"'`\\\127]", "a line break, a control character or one of ; { } # \" ' ` \\")
filters.quoted = guard("quoted", "[%c\"\\\127]", "a line break, a control character, \" or \\")

-- Every filter but `default` passes nil on, so `x | upper | default("")`
-- works when x is undefined.
local filter_calls = {}
for name, f in pairs(filters) do
  if name == "default" then filter_calls[name] = f
  else
    filter_calls[name] = function(v, ...)
      if v == nil then return nil end
      return f(v, ...)
    end
  end
end
M.filters = filters

------------------------------------------------------------------------
-- Run-time helpers the generated code calls.

local H = {}

-- H.var(vars, name, lenient): a top-level variable.
function H.var(vars, name, lenient)
  local v = vars[name]
  if v == nil and not lenient then error("undefined variable '" .. name .. "'", 0) end
  return v
end

-- H.index(obj, key, path, lenient): obj.key / obj[key]; `path` is the text.
function H.index(obj, key, path, lenient)
  if type(obj) ~= "table" then
    if lenient then return nil end
    if obj == nil then error("undefined variable '" .. path .. "'", 0) end
    error(string.format("undefined variable '%s' (the value before it is %s, not a map)", path, type_name(obj)), 0)
  end
  local v = obj[key]
  if v == nil and not lenient then error("undefined variable '" .. path .. "'", 0) end
  return v
end

function H.mark(state, line)
  state.line = line
  return true
end

function H.str(v, src)
  local s, bad = tostr(v)
  if s then return s end
  if bad == "nil" then error("'" .. src .. "' is nil (undefined); use `| default(...)` to allow it", 0) end
  error("cannot output " .. bad .. " ('" .. src .. "'); use `| join(...)` or a for loop", 0)
end

function H.cat(a, b)
  local sa, bada = tostr(a)
  local sb, badb = tostr(b)
  if not sa then error("cannot concatenate " .. bada, 0) end
  if not sb then error("cannot concatenate " .. badb, 0) end
  return sa .. sb
end

function H.contains(x, coll)
  if type(coll) == "string" then
    local s = tostr(x)
    return s ~= nil and coll:find(s, 1, true) ~= nil
  end
  if type(coll) ~= "table" then error("'in' expects a list, map or string on its right, got " .. type_name(coll), 0) end
  if is_list(coll) then
    for _, v in ipairs(coll) do if v == x then return true end end
    return false
  end
  return coll[x] ~= nil
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- H.iter(value, nvars, src) -> keys, values: what a for loop walks.
function H.iter(v, nvars, src)
  if type(v) ~= "table" then
    error(string.format("cannot loop over %s ('%s')", type_name(v), src), 0)
  end
  local ks, vs = {}, {}
  if is_list(v) then
    for i, item in ipairs(v) do ks[i], vs[i] = i, item end
    if nvars == 1 then return vs end
    return ks, vs
  end
  for k in pairs(v) do ks[#ks + 1] = k end
  table.sort(ks, key_less)
  for i, k in ipairs(ks) do vs[i] = v[k] end
  return ks, vs
end

------------------------------------------------------------------------
-- Expression parser: text -> AST -> Lua code.

-- tokens: { kind = "name"|"num"|"str"|"op", v = text }
local OPS = { "==", "~=", "!=", "<=", ">=", "//", "..", "<", ">", "+", "-", "*",
  "/", "%", "^", "#", "(", ")", "[", "]", ",", "|", ".", "~" }

local OP1, OP2 = {}, {}
for _, o in ipairs(OPS) do if #o == 2 then OP2[o] = true else OP1[o] = true end end

local function lex(src, line)
  local toks, i, n = {}, 1, #src
  while i <= n do
    local c = src:sub(i, i)
    if c:match "%s" then
      i = i + 1
    elseif c:match "[%a_]" then
      local w = src:match("^[%w_]+", i)
      toks[#toks + 1] = { kind = "name", v = w }
      i = i + #w
    elseif c:match "%d" or (c == "." and src:sub(i + 1, i + 1):match "%d") then
      local w = src:match("^0[xX]%x+", i) or src:match("^%d*%.?%d+[eE][+-]?%d+", i)
        or src:match("^%d+%.%d*[eE][+-]?%d+", i) or src:match("^%d*%.?%d+", i) or src:match("^%d+%.?", i)
      -- "1..2" is 1 .. 2, not "1." followed by ".2"
      if w:sub(-1) == "." and src:sub(i + #w, i + #w) == "." then w = w:sub(1, -2) end
      toks[#toks + 1] = { kind = "num", v = w }
      i = i + #w
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n and src:sub(j, j) ~= c do
        if src:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      if j > n then fail(line, "unterminated string in '%s'", src) end
      local lit = src:sub(i, j)
      if not load("return " .. lit, "=x", "t", {}) then fail(line, "bad string %s in '%s'", lit, src) end
      toks[#toks + 1] = { kind = "str", v = lit }
      i = j + 1
    else
      local op = OP2[src:sub(i, i + 1)] and src:sub(i, i + 1) or OP1[c] and c
      if not op then fail(line, "unexpected '%s' in '%s'", c, src) end
      toks[#toks + 1] = { kind = "op", v = op }
      i = i + #op
    end
  end
  return toks
end

local Parser = {}
Parser.__index = Parser

local function new_parser(src, line)
  return setmetatable({ toks = lex(src, line), pos = 1, src = src, line = line }, Parser)
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
      if not filter_calls[name] then
        local known = {}
        for k in pairs(filter_calls) do known[#known + 1] = k end
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
local function parse_expr(src, line)
  local p = new_parser(src, line)
  if not p:peek() then fail(line, "empty expression") end
  local e = p:expr()
  local extra = p:peek()
  if extra then p:err("unexpected '%s'", extra.v) end
  return e
end

-- gen(node, scope, lenient) -> Lua code. scope maps loop variable names to
-- their Lua local names; other names are looked up in the vars.
local function gen(node, scope, lenient)
  local k = node.k
  if k == "lit" then return node.code end
  if k == "name" then
    local loc = scope.lookup(node.name)
    if loc then return loc end
    return string.format("__H.var(__V, %q, %s)", node.name, tostring(lenient or false))
  end
  if k == "index" then
    return string.format("__H.index(%s, %s, %q, %s)", gen(node.a, scope, lenient),
      gen(node.key, scope, false), node.path or "(...)", tostring(lenient or false))
  end
  if k == "filter" then
    local args = { gen(node.a, scope, lenient or node.name == "default") }
    for _, a in ipairs(node.args) do args[#args + 1] = gen(a, scope, false) end
    return string.format("__F.%s(%s)", node.name, table.concat(args, ", "))
  end
  if k == "defined" then
    return string.format("(%s(%s) ~= nil)", node.neg and "not " or "", gen(node.a, scope, true))
  end
  if k == "not" then return "(not " .. gen(node.a, scope, false) .. ")" end
  if k == "un" then return "(" .. node.op .. gen(node.a, scope, false) .. ")" end
  if k == "in" then
    return string.format("__H.contains(%s, %s)", gen(node.a, scope, false), gen(node.b, scope, false))
  end
  if k == "bin" then
    if node.op == "~" then
      return string.format("__H.cat(%s, %s)", gen(node.a, scope, false), gen(node.b, scope, false))
    end
    return string.format("(%s %s %s)", gen(node.a, scope, false), node.op, gen(node.b, scope, false))
  end
  if k == "list" then
    local items = {}
    for i, it in ipairs(node.items) do items[i] = gen(it, scope, false) end
    return "{" .. table.concat(items, ", ") .. "}"
  end
  error("template: unknown node " .. tostring(k))
end

------------------------------------------------------------------------
-- Tokenizer for the template text.

local CLOSE = { ["{"] = "}}", ["%"] = "%}", ["#"] = "#}" }
local KIND = { ["{"] = "expr", ["%"] = "block", ["#"] = "comment" }

-- Finds the end of a tag starting at `i` (just after its opener), skipping
-- quoted strings in expressions. Returns the index of the closer.
local function find_close(text, i, closer, kind)
  if kind == "comment" then return text:find(closer, i, true) end
  local n = #text
  local stops = "[\"'" .. closer:sub(1, 1):gsub("%p", "%%%0") .. "]"
  while i <= n do
    i = text:find(stops, i)
    if not i then return nil end
    local c = text:sub(i, i)
    if c == '"' or c == "'" then
      local j = i + 1
      while j <= n and text:sub(j, j) ~= c and text:sub(j, j) ~= "\n" do
        if text:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      i = j + 1
    elseif text:sub(i, i + 1) == closer then
      return i
    else
      i = i + 1
    end
  end
end

local function count_nl(s) return select(2, s:gsub("\n", "")) end

local function tokenize(text)
  local toks, pos, line = {}, 1, 1
  while true do
    local s = text:find("{[{%%#]", pos)
    local chunk = text:sub(pos, s and s - 1 or -1)
    if chunk ~= "" then toks[#toks + 1] = { kind = "text", v = chunk } end
    line = line + count_nl(chunk)
    if not s then break end
    local open = text:sub(s + 1, s + 1)
    local kind, closer = KIND[open], CLOSE[open]
    local e = find_close(text, s + 2, closer, kind)
    if not e then fail(line, "unclosed '{%s' (no '%s' after it)", open, closer) end
    local inner = text:sub(s + 2, e - 1)
    local tok = { kind = kind, line = line }
    if inner:sub(1, 1) == "-" then tok.lstrip, inner = true, inner:sub(2) end
    if inner:sub(-1) == "-" then tok.rstrip, inner = true, inner:sub(1, -2) end
    tok.v = inner:match "^%s*(.-)%s*$"
    toks[#toks + 1] = tok
    line = line + count_nl(text:sub(s, e + 1))
    pos = e + 2
  end
  return toks
end

-- A line holding only block/comment tags and blanks produces no output.
local function trim_standalone(toks)
  local pieces = {}
  for _, t in ipairs(toks) do
    if t.kind == "text" then
      for piece in t.v:gmatch "[^\n]*\n?" do
        if piece ~= "" then pieces[#pieces + 1] = { kind = "text", v = piece } end
      end
    else
      pieces[#pieces + 1] = t
    end
  end
  local out, first = {}, 1
  local function flush(last)
    local tags, standalone = 0, true
    for i = first, last do
      local p = pieces[i]
      if p.kind == "expr" or (p.kind == "text" and p.v:find "%S") then standalone = false
      elseif p.kind ~= "text" then tags = tags + 1 end
    end
    for i = first, last do
      if not (standalone and tags > 0 and pieces[i].kind == "text") then out[#out + 1] = pieces[i] end
    end
    first = last + 1
  end
  for i, p in ipairs(pieces) do
    if p.kind == "text" and p.v:sub(-1) == "\n" then flush(i) end
  end
  flush(#pieces)
  -- merge text pieces back, then apply the explicit {%- -%} controls
  local merged = {}
  for _, p in ipairs(out) do
    local last = merged[#merged]
    if p.kind == "text" and last and last.kind == "text" then last.v = last.v .. p.v
    else merged[#merged + 1] = p.kind == "text" and { kind = "text", v = p.v } or p end
  end
  for i, p in ipairs(merged) do
    if p.kind ~= "text" then
      local prev, nxt = merged[i - 1], merged[i + 1]
      if p.lstrip and prev and prev.kind == "text" then prev.v = prev.v:gsub("%s+$", "") end
      if p.rstrip and nxt and nxt.kind == "text" then nxt.v = nxt.v:gsub("^%s+", "") end
    end
  end
  return merged
end

------------------------------------------------------------------------
-- Code generation.

local function new_scope()
  local frames = {}
  local scope = {}
  function scope.lookup(name)
    for i = #frames, 1, -1 do
      local f = frames[i]
      if f.vars[name] then
        if name == "loop" then f.uses_loop = true end
        return f.vars[name]
      end
    end
  end
  function scope.push(f) frames[#frames + 1] = f end
  function scope.pop() frames[#frames] = nil end
  return scope
end

-- Checks an expression's generated code compiles (bad literals and such).
local function checked(code, line, src)
  if not load("return " .. code, "=expr", "t", {}) then fail(line, "bad expression '%s'", src) end
  return code
end

local function compile_source(text)
  local toks = trim_standalone(tokenize(text))
  local code = { "local __H, __F, __concat = ...\nreturn function(__V, __S)\nlocal __O, __N = {}, 0\n" }
  local function emit(s) code[#code + 1] = s end
  local scope = new_scope()
  local stack = {} -- open blocks: { tag = "if"|"for", line, frame, has_else }
  local nfor = 0

  local function cond(src, line)
    return checked(gen(parse_expr(src, line), scope, false), line, src)
  end

  -- ends a for's loop body; the loop table is made only when used
  local function end_loop(b)
    scope.pop()
    emit "end\n"
    if b.frame.uses_loop then
      code[b.loop_slot] = string.format("local %s = {index = %s, index0 = %s - 1, first = %s == 1, last = %s == #%s, length = #%s}\n",
        b.frame.vars.loop, b.i, b.i, b.i, b.i, b.ks, b.ks)
    end
  end

  local function close_block(kind, line, word)
    local b = stack[#stack]
    if not b then fail(line, "{%% %s %%} without an open block", word) end
    if kind and b.tag ~= kind then
      fail(line, "{%% %s %%} closes the '%s' opened at line %d", word, b.tag, b.line)
    end
    stack[#stack] = nil
    if b.tag == "for" then
      if b.in_else then emit "end\n" else end_loop(b) end
    end
    emit "end\n"
  end

  local function block(src, line)
    local word, rest = src:match "^(%a+)%s*(.-)$"
    if not word then fail(line, "empty or bad tag {%% %s %%}", src) end
        if word == "if" then
      emit(string.format("__S.line = %d\n", line))
      emit("if " .. cond(rest, line) .. " then\n")
      stack[#stack + 1] = { tag = "if", line = line }
    elseif word == "elif" or word == "elseif" then
      local b = stack[#stack]
      if not b or b.tag ~= "if" then fail(line, "{%% elif %%} outside an if") end
      if b.has_else then fail(line, "{%% elif %%} after {%% else %%} (if opened at line %d)", b.line) end
      emit(string.format("elseif (__H.mark(__S, %d) and %s) then\n", line, cond(rest, line)))
    elseif word == "else" then
      local b = stack[#stack]
      if not b then fail(line, "{%% else %%} outside an if or for") end
      if b.has_else then fail(line, "second {%% else %%} (block opened at line %d)", b.line) end
      b.has_else = true
      if b.tag == "if" then emit "else\n"
      else
        end_loop(b)
        b.in_else = true
        emit(string.format("if #%s == 0 then\n", b.ks))
      end
    elseif word == "end" or word == "endif" or word == "endfor" then
      if rest ~= "" then fail(line, "unexpected '%s' after {%% %s %%}", rest, word) end
      close_block(word ~= "end" and word:sub(4) or nil, line, word)
    elseif word == "for" then
      local names, seq = rest:match "^(.-)%s+in%s+(.+)$"
      if not names then fail(line, "expected {%% for x in list %%} or {%% for k, v in map %%}") end
      local vars = {}
      for nm in (names .. ","):gmatch "%s*([^,]-)%s*," do vars[#vars + 1] = nm end
      if #vars < 1 or #vars > 2 then fail(line, "a for loop takes one or two names, got '%s'", names) end
      for _, nm in ipairs(vars) do
        if not nm:match "^[%a_][%w_]*$" or KEYWORDS[nm] or nm:sub(1, 2) == "__" or nm == "loop" then
          fail(line, "bad loop variable name '%s'", nm)
        end
      end
      local seq_code = cond(seq, line)
      emit(string.format("__S.line = %d\n", line))
      nfor = nfor + 1
      local ks, vs, i = "__k" .. nfor, "__v" .. nfor, "__i" .. nfor
      local frame = { vars = { loop = "__loop" .. nfor } }
      emit(string.format("do\nlocal %s, %s = __H.iter(%s, %d, %q)\nfor %s = 1, #%s do\n",
        ks, vs, seq_code, #vars, seq, i, ks))
      if #vars == 1 then
        emit(string.format("local %s = %s[%s]\n", vars[1], ks, i))
      else
        emit(string.format("local %s, %s = %s[%s], %s[%s]\n", vars[1], vars[2], ks, i, vs, i))
      end
      frame.vars[vars[1]] = vars[1]
      if vars[2] then frame.vars[vars[2]] = vars[2] end
      emit ""
      local b = { tag = "for", line = line, frame = frame, ks = ks, i = i, loop_slot = #code }
      scope.push(frame)
      stack[#stack + 1] = b
    else
      fail(line, "unknown tag '%s' (tags: if, elif, else, end, for)", word)
    end
  end

  for _, t in ipairs(toks) do
    if t.kind == "text" then
      emit(string.format("__N = __N + 1 __O[__N] = %q\n", t.v))
    elseif t.kind == "expr" then
      local c = cond(t.v, t.line)
      emit(string.format("__S.line = %d\n__N = __N + 1 __O[__N] = __H.str(%s, %q)\n", t.line, c, t.v))
    elseif t.kind == "block" then
      block(t.v, t.line)
    end
  end
  if #stack > 0 then
    local b = stack[#stack]
    fail(b.line, "'%s' opened here is never closed (add {%% end %%})", b.tag)
  end
  emit "return __concat(__O)\nend\n"
  return table.concat(code)
end

local function located(name, line, msg)
  if line and line > 0 then return string.format("%s:%d: %s", name, line, msg) end
  return name .. ": " .. msg
end

-- template.compile(text, name) -> fn | nil, err
-- fn(vars) -> out | nil, err. Cached by name and text.
-- Example: local fn = assert(template.compile(text, "templates/redis/redis.conf"))
--          local out, err = fn{ port = 6379 }
function M.compile(text, name)
  assert(type(text) == "string", "template.compile: text must be a string")
  name = name or "template"
  local by_text = cache[name]
  if not by_text then
    by_text = {}
    cache[name] = by_text
  end
  local hit = by_text[text]
  if hit then return hit end
  local ok, src = pcall(compile_source, text)
  if not ok then
    if type(src) == "table" then return nil, located(name, src.line, src.msg) end
    error(src, 0)
  end
  local chunk, err = load(src, "=" .. name, "t", {})
  if not chunk then error("template: generated code does not compile: " .. err) end
  local body = chunk(H, filter_calls, table.concat)
  local function render(vars)
    if vars ~= nil and type(vars) ~= "table" then
      error("template: vars must be a table, got " .. type(vars), 2)
    end
    local state = { line = 0 }
    local ok2, out = pcall(body, vars or {}, state)
    if ok2 then return out end
    if type(out) == "string" then
      out = out:gsub("^" .. name:gsub("%p", "%%%0") .. ":%d+: ", "")
    else
      out = tostring(out)
    end
    return nil, located(name, state.line, out)
  end
  M.stats.compiled = M.stats.compiled + 1
  -- a name holds few texts (one per template file, more for inline ones):
  -- start over past a bound, so a long run does not grow without end
  if (counts[name] or 0) >= 64 then
    by_text = {}
    cache[name] = by_text
    counts[name] = 0
  end
  by_text[text] = render
  counts[name] = (counts[name] or 0) + 1
  return render
end

-- template.render(text, vars, name) -> out | nil, err
-- Example: template.render("{% for u in users %}{{ u }}\n{% end %}", { users = {"a", "b"} }, "t")
--          --> "a\nb\n"
function M.render(text, vars, name)
  local fn, err = M.compile(text, name)
  if not fn then return nil, err end
  return fn(vars)
end

return M
