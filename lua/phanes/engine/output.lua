-- output.lua: everything phanes prints goes through here, so that colour,
-- alignment and secret masking are decided in one place.
--
--   local output = require "phanes.engine.output"
--   local out = output.new { color = "auto", secrets = { "hunter2" } }
--   out:say("password is hunter2")        --> password is ******
--   out:table({ "module", "status" }, { { "redis", "ok" } })
--
-- Colour: `--color=always|never|auto`; auto means stdout is a terminal,
-- NO_COLOR is unset (https://no-color.org: any non-empty value) and TERM is
-- not "dumb".
local M = {}

M.MASK = "******"

local CODES = { red = "31", green = "32", yellow = "33", blue = "34",
  magenta = "35", cyan = "36", dim = "2", bold = "1" }

-- output.use_color(flag, env_no_color, isatty[, term]) -> bool
--   flag "always" forces colour (remote runs have no terminal), "never" turns
--   it off; "auto" (or nil) asks for a terminal, no NO_COLOR and a TERM
--   other than "dumb".
function M.use_color(flag, no_color, isatty, term)
  if flag == "always" then return true end
  if flag == "never" then return false end
  if no_color and no_color ~= "" then return false end
  if term == "dumb" then return false end
  return isatty and true or false
end

-- Masking: the one place that decides what a secret looks like in output.
-- A secret is known by its field (schema `secret = true`): values of secret
-- fields are replaced whole (output.mask_fields). Free text (messages,
-- command output, diffs) is scrubbed of secret values: those of MIN_SCRUB
-- bytes or more wherever they occur; shorter ones of MIN_WORD bytes or more
-- only where they stand as a word of their own (no letter, digit or _ on
-- either side), so a 6-byte password echoed by a command is masked, but
-- "pin" inside "spinning" is not. A secret under MIN_WORD bytes ("e")
-- occurs in ordinary words and is left alone. Keys of tables are never
-- touched.
M.MIN_SCRUB = 8
M.MIN_WORD = 4

local function at_word_edge(s, a, b)
  return not s:sub(a - 1, a - 1):find "[%w_]" and not s:sub(b + 1, b + 1):find "[%w_]"
end

-- s with every occurrence of secret (every whole-word one when word) masked
local function replace(s, secret, word)
  local parts, i, from = {}, 1, 1
  while true do
    local a, b = s:find(secret, from, true)
    if not a then break end
    if not word or at_word_edge(s, a, b) then
      parts[#parts + 1] = s:sub(i, a - 1)
      parts[#parts + 1] = M.MASK
      i = b + 1
    end
    from = b + 1
  end
  if #parts == 0 then return s end
  parts[#parts + 1] = s:sub(i)
  return table.concat(parts)
end

-- output.masker(secrets) -> function(str) -> str with every secret value
-- replaced by ****** (see above for short ones). `secrets` is a list of
-- strings or a map whose values are strings (what config.secrets returns);
-- longest values are replaced first, so a secret containing another is
-- masked whole.
function M.masker(secrets)
  local list, seen = {}, {}
  for _, v in pairs(secrets or {}) do
    if type(v) == "number" then v = tostring(v) end
    if type(v) == "string" and #v >= M.MIN_WORD and not seen[v] then
      seen[v] = true
      list[#list + 1] = v
    end
  end
  if #list == 0 then return function(s) return s end end
  table.sort(list, function(a, b) return #a > #b end)
  return function(s)
    if type(s) ~= "string" then return s end
    for _, secret in ipairs(list) do s = replace(s, secret, #secret < M.MIN_SCRUB) end
    return s
  end
end

-- output.mask_deep(value, mask) -> a copy of value with every string value
-- scrubbed by mask (a masker); keys stay as they are. Used on the --json
-- report before encoding.
function M.mask_deep(value, mask, seen)
  if type(value) == "string" then return mask(value) end
  if type(value) ~= "table" then return value end
  seen = seen or {}
  if seen[value] then return seen[value] end
  local copy = {}
  seen[value] = copy
  for k, v in pairs(value) do copy[k] = M.mask_deep(v, mask, seen) end
  return setmetatable(copy, getmetatable(value))
end

local function copy_plain(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy_plain(x) end
  return setmetatable(out, getmetatable(v))
end

-- output.mask_fields(value, decl) -> a copy of value where the value of
-- every field the schema decl (a map/list/field declaration) marks
-- `secret` is ******, whatever its length; the rest is copied as is.
-- Example: output.mask_fields(cfg, { type = "map", fields = world.fields })
function M.mask_fields(v, decl)
  if v == nil then return nil end
  if type(decl) == "table" and decl.secret then return M.MASK end
  if type(v) ~= "table" then return v end
  local out = {}
  if type(decl) == "table" and decl.type == "map" and type(decl.fields) == "table" then
    for k, x in pairs(v) do out[k] = M.mask_fields(x, decl.fields[k]) end
  elseif type(decl) == "table" and decl.type == "list" and decl.items then
    for k, x in pairs(v) do out[k] = M.mask_fields(x, decl.items) end
  else
    for k, x in pairs(v) do out[k] = copy_plain(x) end
  end
  return setmetatable(out, getmetatable(v))
end

-- The colour codes phanes paints itself (Out:paint): kept by sanitize.
local OWN_SGR = { ["0"] = true }
for _, c in pairs(CODES) do OWN_SGR[c] = true end

local function escaped(c) return string.format("\\x%02x", c:byte(#c)) end

-- output.sanitize(s) -> s safe for a terminal: every control character but
-- newline and tab (C0, DEL, and C1 as UTF-8) is shown as \xNN, so text from
-- a state file, a command's output or a config cannot move the cursor,
-- rewrite a line, retitle the terminal or hide what follows. Only the exact
-- colour codes phanes paints (ESC [ n m, n one of CODES or 0) stay. Every
-- Out method that prints passes its text through here.
function M.sanitize(s)
  if type(s) ~= "string" then s = tostring(s) end
  if not s:find("[%z\1-\8\11-\31\127\194]") then return s end
  local parts, i = {}, 1
  while true do
    local a = s:find("[%z\1-\8\11-\31\127\194]", i)
    if not a then break end
    parts[#parts + 1] = s:sub(i, a - 1)
    local c = s:sub(a, a)
    local sgr = c == "\27" and s:match("^\27%[(%d*)m", a)
    if sgr and OWN_SGR[sgr] then
      parts[#parts + 1] = "\27[" .. sgr .. "m"
      i = a + #sgr + 3
    elseif c == "\194" then
      local c1 = s:match("^\194[\128-\159]", a)
      parts[#parts + 1] = c1 and escaped(c1) or c
      i = a + (c1 and 2 or 1)
    else
      parts[#parts + 1] = escaped(c)
      i = a + 1
    end
  end
  parts[#parts + 1] = s:sub(i)
  return table.concat(parts)
end

-- Display width of a string: UTF-8 characters, escape sequences excluded.
local function width(s)
  s = s:gsub("\27%[[%d;]*m", "")
  return utf8.len(s) or #s
end
M.width = width

local Out = {}
Out.__index = Out

-- output.new{ color = "auto"|"always"|"never"|bool, secrets = {...},
--   verbose = bool, quiet = bool, out = file, err = file, tty = bool,
--   no_color = str, term = str }
-- tty, no_color and term default to the real terminal, NO_COLOR and TERM
-- (TERM=dumb: not a terminal that can rewrite a line, so tty is false).
-- quiet: only changes and errors are printed (out.quiet, read by the runner).
function M.new(opts)
  opts = opts or {}
  local term = opts.term
  if term == nil then term = os.getenv "TERM" end
  local tty = opts.tty
  if tty == nil then
    -- a dumb terminal cannot rewrite a line: no live line there, the
    -- piped output instead (each resource's line, "still running")
    tty = (term ~= "dumb" and require("phanes.sys").isatty(1)) or false
  end
  local color = opts.color
  if type(color) ~= "boolean" then
    local no_color = opts.no_color
    if no_color == nil then no_color = os.getenv "NO_COLOR" end
    color = M.use_color(color, no_color, tty, term)
  end
  return setmetatable({
    color = color, tty = tty, verbose = opts.verbose or false, quiet = opts.quiet or false,
    mask = M.masker(opts.secrets),
    out = opts.out or io.stdout, err = opts.err or io.stderr,
  }, Out)
end

-- out:add_secrets(list): more values to mask (after the config is loaded).
function Out:add_secrets(secrets)
  local prev, extra = self.mask, M.masker(secrets)
  self.mask = function(s) return extra(prev(s)) end
end

-- out:paint("red", text) -> text in colour when colour is on.
function Out:paint(name, text)
  if not self.color or not CODES[name] then return text end
  return "\27[" .. CODES[name] .. "m" .. text .. "\27[0m"
end

-- out:clean(text) -> masked and sanitized: what every method below prints.
function Out:clean(text)
  return M.sanitize(self.mask(text))
end

-- out:say(...) prints one masked line on stdout.
function Out:say(...)
  self.out:write(self:clean(table.concat({ ... })), "\n")
  self.out:flush()
end

-- out:write(...) prints masked text on stdout without a newline.
function Out:write(...)
  self.out:write(self:clean(table.concat({ ... })))
  self.out:flush()
end

-- out:error(msg[, hint]) prints "phanes: msg" (and the hint) on stderr.
function Out:error(msg, hint)
  self.errors = self.errors or {}
  self.errors[#self.errors + 1] = self.mask(tostring(msg))
  self.err:write(self:clean(self:paint("red", "phanes: ") .. tostring(msg)), "\n")
  if hint then self.err:write(self:clean(hint), "\n") end
  self.err:flush()
end

-- out:warn(msg) prints "phanes: warning: msg" on stderr.
function Out:warn(msg)
  self.err:write(self:clean(self:paint("yellow", "phanes: warning: ") .. tostring(msg)), "\n")
  self.err:flush()
end

local STATUS_COLOR = { ok = "green", noop = "green", changed = "yellow", ["would change"] = "cyan",
  failed = "red", skipped = "dim", interrupted = "red", installed = "green",
  ["not run"] = "dim" }

-- out:status(word) -> the status word in its colour.
function Out:status(word)
  return self:paint(STATUS_COLOR[word] or "bold", word)
end

-- output.format_table(headers, rows) -> lines (aligned columns, two spaces
-- apart; cells may carry colour codes). Numbers are right-aligned when
-- the column's header starts with "#" or ends in a digit-like field name
-- listed in `right` (a set of column indexes).
function M.format_table(headers, rows, right)
  right = right or {}
  local widths = {}
  for i = 1, #headers do widths[i] = 0 end
  local all = { headers }
  for _, r in ipairs(rows) do all[#all + 1] = r end
  for _, r in ipairs(all) do
    for i = 1, #headers do
      local w = width(tostring(r[i] or ""))
      if w > (widths[i] or 0) then widths[i] = w end
    end
  end
  local lines = {}
  for _, r in ipairs(all) do
    local cells = {}
    for i = 1, #headers do
      local cell = tostring(r[i] or "")
      local pad = string.rep(" ", widths[i] - width(cell))
      if right[i] then cells[i] = pad .. cell
      elseif i == #headers then cells[i] = cell
      else cells[i] = cell .. pad end
    end
    lines[#lines + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return lines
end

-- out:table(headers, rows[, right]) prints an aligned table, header in bold.
function Out:table(headers, rows, right)
  local lines = M.format_table(headers, rows, right)
  for i, line in ipairs(lines) do
    self:say(i == 1 and self:paint("bold", line) or line)
  end
end

-- output.duration(seconds) -> "0.4s", "12s", "3m05s"
function M.duration(s)
  s = s or 0
  if s < 10 then return string.format("%.1fs", s) end
  if s < 60 then return string.format("%ds", math.floor(s + 0.5)) end
  return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
end

-- output.tail(text[, n]) -> the last n (default 10) non-empty lines of
-- text ("" when none): what error messages quote of a command's output.
function M.tail(text, n)
  n = n or 10
  local lines = {}
  for line in (type(text) == "string" and text or ""):gmatch "[^\n]+" do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  return table.concat(lines, "\n")
end

local function plain_error(e)
  if e.kind == "interrupted" then return "interrupted" end
  if e.kind == "skip" then return "skipped: " .. tostring(e.reason) end
  if e.kind == "lua" or e.kind == "internal" then
    return tostring(e.message) .. (e.traceback and ("\n" .. e.traceback) or "")
  end
  local s = e.resource or ""
  if e.target and e.target ~= "" then s = s .. " " .. e.target end
  s = (s ~= "" and (s .. ": ") or "") .. tostring(e.message or "failed")
  if e.detail and e.detail ~= "" then s = s .. "\n" .. e.detail end
  return s
end

-- output.format_error(e[, module]) -> text: the one formatting of an error
-- object (phanes.engine.errors). Without module, the plain form tostring(e)
-- gives ("cmd.run make: make failed (exit 2)\n<its stderr>"); with module,
-- what people read:
--   module 'web' failed: cmd.run make: make failed (exit 2)     (resource, refusal)
--       <last 10 lines of its stderr>
--   module 'web' failed: file.content: missing required argument 'path' (modules/web.lua:12)
--   module 'web' failed with a Lua error: modules/web.lua:7: attempt to ...
--   stack traceback: (the user's frames only)
--   module 'web' failed with an internal error (a bug in phanes, please report it): ...
function M.format_error(e, module)
  if type(e) ~= "table" then return (module and ("module '" .. module .. "' failed: ") or "") .. tostring(e) end
  if not module then return plain_error(e) end
  local head = string.format("module '%s' failed", module)
  if e.kind == "lua" or e.kind == "internal" then
    local msg = head .. (e.kind == "lua" and " with a Lua error: "
      or " with an internal error (a bug in phanes, please report it): ") .. tostring(e.message)
    if e.kind == "internal" and e.where then msg = msg .. "\n    called from " .. e.where end
    return msg .. (e.traceback and ("\n" .. e.traceback) or "")
  end
  if e.kind == "skip" then return "skipped: " .. tostring(e.reason) end
  if e.kind == "interrupted" then return "interrupted" end
  local what = table.concat({ e.resource or "", e.target or "" }, " "):gsub("^%s+", ""):gsub("%s+$", "")
  local msg = string.format("%s: %s%s", head, what ~= "" and what .. ": " or "", tostring(e.message or "failed"))
  if e.kind == "config" and e.where then msg = msg .. " (" .. e.where .. ")" end
  local t = M.tail(e.detail)
  if t ~= "" then msg = msg .. "\n" .. t:gsub("[^\n]+", "    %0") end
  return msg
end

-- output.blame(errors, config_path, defaults_name) -> what a list of config
-- errors asks to fix: "the defaults in profiles/web.lua" when they all name
-- the profile, "the config in config.yaml" when none does, or both.
function M.blame(errs, config_path, defaults_name)
  local config = "the config" .. (config_path and (" in " .. config_path) or "")
  if not defaults_name or defaults_name == "--modules" then return config end
  local inprofile, other = false, false
  for _, e in ipairs(type(errs) == "table" and errs or { errs }) do
    local text = type(e) == "table" and tostring(e.message or e) or tostring(e)
    if text:sub(1, #defaults_name + 1) == defaults_name .. ":" then inprofile = true else other = true end
  end
  local defaults = "the defaults in " .. defaults_name
  if inprofile and other then return defaults .. " and " .. config end
  return inprofile and defaults or config
end

-- out:progress(text) shows a transient line on a terminal (rewritten in
-- place with \r); out:progress_done(text) ends it with a newline. Off a
-- terminal only the final text is printed.
function Out:progress(text)
  if not self.tty then return end
  self.out:write("\r\27[K", self:clean(text))
  self.out:flush()
  self.live = true
end

function Out:progress_done(text)
  if self.live then self.out:write("\r\27[K") end
  self.live = false
  self:say(text)
end

-- out:clear_progress() wipes a transient line before other output.
function Out:clear_progress()
  if self.live then
    self.out:write("\r\27[K")
    self.out:flush()
    self.live = false
  end
end

return M
