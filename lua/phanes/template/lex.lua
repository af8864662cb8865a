-- template/lex.lua: the template engine's lexers (phanes.template is the
-- entry). lex.template(text) cuts a template into text and tag tokens
-- ({ kind = "text"|"expr"|"block"|"comment", v, line, lstrip, rstrip }),
-- standalone tag lines and {%- -%} whitespace already applied;
-- lex.expr(src, line) cuts the inside of a tag into expression tokens.
-- A compile error is raised by lex.fail(line, fmt, ...) as { line, msg }.
local M = {}

M.KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local
  nil not or repeat return then true until while]]):gmatch "%a+" do M.KEYWORDS[w] = true end

-- A compile error: raised as a table so it is told apart from a bug.
function M.fail(line, fmt, ...)
  error({ line = line, msg = string.format(fmt, ...) }, 0)
end
local fail = M.fail

-- tokens: { kind = "name"|"num"|"str"|"op", v = text }
local OPS = { "==", "~=", "!=", "<=", ">=", "//", "..", "<", ">", "+", "-", "*",
  "/", "%", "^", "#", "(", ")", "[", "]", ",", "|", ".", "~" }

local OP1, OP2 = {}, {}
for _, o in ipairs(OPS) do if #o == 2 then OP2[o] = true else OP1[o] = true end end

-- lex.expr(src, line) -> tokens
function M.expr(src, line)
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

-- lex.template(text) -> tokens (see the top of this file)
function M.template(text) return trim_standalone(tokenize(text)) end

return M
