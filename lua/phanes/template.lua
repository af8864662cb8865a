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
--
-- The compiler lives in template/: lex.lua (template and expression
-- tokens), parse.lua (expressions to an AST), gen.lua (Lua code). This file
-- holds the filters, the run-time helpers the generated code calls, and the
-- cache of compiled templates.
local gen = require "phanes.template.gen"

local M = {}

-- Compiled templates, by name then text: rendering the same template twice
-- does not compile it again. `M.stats.compiled` counts real compilations.
local cache, counts = {}, {}
M.stats = { compiled = 0 }

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
  local ok, src = pcall(gen.source, text, filter_calls)
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
