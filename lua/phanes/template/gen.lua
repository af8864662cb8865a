-- template/gen.lua: code generator (phanes.template is the entry).
-- gen.source(text, filters) -> the Lua source of a chunk that, called with the
-- run-time helpers, filters and table.concat, returns fn(vars, state) ->
-- output; a compile error is raised as { line, msg } (lex.fail).
local lex = require "phanes.template.lex"
local parse = require "phanes.template.parse"

local M = {}
local fail, KEYWORDS = lex.fail, lex.KEYWORDS

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

function M.source(text, filters)
  local toks = lex.template(text)
  local code = { "local __H, __F, __concat = ...\nreturn function(__V, __S)\nlocal __O, __N = {}, 0\n" }
  local function emit(s) code[#code + 1] = s end
  local scope = new_scope()
  local stack = {} -- open blocks: { tag = "if"|"for", line, frame, has_else }
  local nfor = 0

  local function cond(src, line)
    return checked(gen(parse.expr(src, line, filters), scope, false), line, src)
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

return M
