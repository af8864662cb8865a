-- docs.lua: reference text generated from the module tables and the CLI's
-- declarations, so it cannot drift from what phanes does.
--
--   phanes help MODULE / phanes show MODULE [--json]  -> docs.show(p)
--   make docs -> phanes __docs DIR -> docs.generate { DIR }: DIR/modules/NAME.md
--   (each built-in module), DIR/profiles.md, DIR/module-api.md (every ctx.*
--   resource and reader, from the M.api declarations of lua/phanes/res/*.lua),
--   DIR/cli.md (every command and option), DIR/phanes.1 (roff)
local json = require "phanes.json"
local schema = require "phanes.config.schema"
local EXIT = require "phanes.cli.exit"
local M = {}

-- A value as it is written in YAML/JSON, on one line.
local function inline(v)
  if type(v) == "table" then
    if next(v) == nil then return "[]" end
    if schema.is_list(v) then
      local t = {}
      for i, x in ipairs(v) do t[i] = inline(x) end
      return "[" .. table.concat(t, ", ") .. "]"
    end
    local t = {}
    for _, k in ipairs(schema.sorted_keys(v)) do t[#t + 1] = tostring(k) .. ": " .. inline(v[k]) end
    return "{" .. table.concat(t, ", ") .. "}"
  end
  if type(v) == "string" then return json.encode(v) end
  return tostring(v)
end

-- The type as a reader says it: "list of string", "enum".
local function type_name(d)
  if d.type == "list" and d.items then return "list of " .. type_name(d.items) end
  return d.type
end

-- The limits of a declaration, one phrase each.
local function limits(d)
  local t = {}
  if d.type == "enum" then
    local v = {}
    for i, x in ipairs(d.values or {}) do v[i] = inline(x) end
    t[#t + 1] = "one of " .. table.concat(v, ", ")
  end
  if d.min and d.max then t[#t + 1] = string.format("%s to %s", d.min, d.max)
  elseif d.min then t[#t + 1] = "at least " .. d.min
  elseif d.max then t[#t + 1] = "at most " .. d.max end
  if d.min_length then t[#t + 1] = "at least " .. d.min_length .. " characters" end
  if d.max_length then t[#t + 1] = "at most " .. d.max_length .. " characters" end
  if d.pattern then t[#t + 1] = "matches the Lua pattern `" .. d.pattern .. "`" end
  if d.format then
    local f = schema.FORMATS[d.format]
    t[#t + 1] = "format " .. d.format .. (f and (": " .. f.says) or "")
  end
  if d.hint then t[#t + 1] = d.hint end
  if d.multiline then t[#t + 1] = "may span lines" end
  if d.items then
    local inner = limits(d.items)
    if #inner > 0 then t[#t + 1] = "each item: " .. table.concat(inner, "; ") end
  end
  return t
end

-- The keys of a config schema, flattened ("a.b" for a map's fields), sorted.
local function keys(fields, prefix, out)
  out = out or {}
  for _, k in ipairs(schema.sorted_keys(fields or {})) do
    local d = fields[k]
    local name = prefix .. tostring(k)
    local default = d.default
    if d.secret and default ~= nil and default ~= "" then default = "(secret)" end -- never shown
    out[#out + 1] = { key = name, type = type_name(d), default = default, required = d.required == true,
      secret = d.secret == true, description = d.description, limits = limits(d) }
    if d.type == "map" and d.fields then keys(d.fields, name .. ".", out) end
  end
  return out
end

-- A value that passes for a required key without a default (an example).
local SAMPLE = { name = "admin", host = "example.com", address = "127.0.0.1", email = "admin@example.com",
  url = "https://example.com/", path = "/srv/app", size = "1g", duration = "10m", hhmm = "03:00",
  timezone = "UTC", locale = "en_US.UTF-8", cidr = "10.0.0.0/8", port_spec = "443/tcp", package = "htop" }
local function placeholder(d)
  if d.format and SAMPLE[d.format] then return SAMPLE[d.format] end
  if d.type == "enum" then return d.values[1] end
  if d.type == "integer" or d.type == "number" then return d.min or 0 end
  if d.type == "boolean" then return false end
  if d.type == "list" then return json.array {} end
  if d.type == "map" then return {} end
  return d.secret and "change-me-secret" or "CHANGE_ME"
end

-- The example values of a schema: the required keys, and every default.
local function sample(fields)
  local sec = {}
  for k, d in pairs(fields or {}) do
    local v = d.default
    if (v == nil and d.required) or (d.secret and v ~= nil and v ~= "") then v = placeholder(d) end
    if type(v) == "table" and next(v) == nil then v = d.type == "list" and json.array {} or {} end
    if v ~= nil then sec[k] = v end
  end
  return sec
end

-- The required top-level keys of the modules mod requires (get(name) ->
-- module or nil), transitively: an example must set them too.
local function required_globals(mod, get, doc, seen)
  for _, r in ipairs(mod.requires or {}) do
    local dep = not seen[r] and get(r)
    seen[r] = true
    if dep then
      for k, d in pairs(dep.globals or {}) do
        if d.required and d.default == nil and doc[k] == nil then doc[k] = placeholder(d) end
      end
      required_globals(dep, get, doc, seen)
    end
  end
  return doc
end

-- An example config: the module's section, and the top-level keys it reads
-- (or its requirements need).
local function example(mod, get)
  local doc = sample(mod.globals)
  if get then required_globals(mod, get, doc, { [mod.name] = true }) end
  local sec = sample(mod.config)
  if next(sec) ~= nil then doc[mod.name] = sec end
  if next(doc) == nil then return nil, doc end
  return require("phanes.yaml").encode(doc), doc
end

-- docs.module_info(mod, get) -> what `show --json` prints: the module's declared
-- facts, its keys flattened, its resources (when it declares them), an
-- example config section, and (phanes.engine.describe) the steps of a dry
-- plan against an empty host, its create-only config syncs, its detect probes.
function M.module_info(mod, get)
  local ks = keys(mod.config, "")
  for _, k in ipairs(ks) do k.limits = json.array(k.limits) end
  local gs = keys(mod.globals, "")
  for _, k in ipairs(gs) do k.limits = json.array(k.limits) end
  local text, doc = example(mod, get)
  local d = require("phanes.engine.describe").module(mod, doc) -- a dry plan against an empty host
  return { name = mod.name, description = mod.description, version = mod.version, origin = mod.origin,
    requires = json.array(mod.requires or {}), config = json.array(ks), globals = json.array(gs),
    resources = mod.resources and json.array(mod.resources), example = text,
    steps = json.array(d.steps), sync = json.array(d.sync), detect = d.detect, steps_error = d.steps_error,
    skipped = d.skipped }
end

local function default_text(k)
  if k.required then return "required" end
  if k.default == nil then return "none" end
  if k.secret then return "(secret)" end
  return inline(k.default)
end

-- docs.module_text(mod) -> the text of `phanes help MODULE`.
function M.module_text(mod, get)
  local i = M.module_info(mod, get)
  local t = { i.name .. (i.description and (": " .. i.description) or ""), "" }
  if #i.requires > 0 then t[#t + 1] = "requires: " .. table.concat(i.requires, ", ") end
  if i.version then t[#t + 1] = "version: " .. i.version end
  if i.origin then t[#t + 1] = "from: " .. i.origin end
  t[#t + 1] = ""
  local function list(ks)
    for _, k in ipairs(ks) do
      t[#t + 1] = string.format("  %s  %s, %s%s", k.key, k.type,
        k.required and "required" or "default " .. default_text(k), k.secret and ", secret" or "")
      if k.description then t[#t + 1] = "      " .. k.description end
      for _, l in ipairs(k.limits) do t[#t + 1] = "      " .. l end
    end
  end
  if #i.globals > 0 then
    t[#t + 1] = "top-level config keys (shared with other modules):"
    list(i.globals)
    t[#t + 1] = ""
  end
  if #i.config == 0 then
    t[#t + 1] = "config: none"
  else
    t[#t + 1] = "config (section `" .. i.name .. ":`):"
    list(i.config)
  end
  if i.resources then
    t[#t + 1] = ""
    t[#t + 1] = "manages:"
    for _, r in ipairs(i.resources) do t[#t + 1] = "  " .. r end
  end
  if i.example then
    t[#t + 1] = ""
    t[#t + 1] = "example (config.yaml):"
    for line in i.example:gmatch "[^\n]+" do t[#t + 1] = "  " .. line end
  end
  return table.concat(t, "\n") .. "\n"
end

local function md_cell(s)
  return (tostring(s):gsub("|", "\\|"):gsub("\n", " "))
end

-- docs.module_markdown(mod) -> doc/modules/NAME.md
function M.module_markdown(mod, get)
  local i = M.module_info(mod, get)
  local t = { "# " .. i.name, "", "<!-- generated by `make docs` from modules/" .. i.name .. ".lua; do not edit -->", "" }
  if i.description then t[#t + 1] = i.description .. "." t[#t + 1] = "" end
  if #i.requires > 0 then t[#t + 1] = "Requires: " .. table.concat(i.requires, ", ") .. "." t[#t + 1] = "" end
  local function table_of(ks)
    t[#t + 1] = "| key | type | default | secret | allowed | description |"
    t[#t + 1] = "|---|---|---|---|---|---|"
    for _, k in ipairs(ks) do
      t[#t + 1] = string.format("| `%s` | %s | %s | %s | %s | %s |", k.key, k.type,
        md_cell(k.default ~= nil and not k.required and not k.secret and ("`" .. default_text(k) .. "`")
          or default_text(k)), k.secret and "yes" or "", md_cell(table.concat(k.limits, "; ")),
        md_cell(k.description or ""))
    end
  end
  if #i.globals > 0 then
    t[#t + 1] = "## Top-level config keys (shared with other modules)"
    t[#t + 1] = ""
    table_of(i.globals)
    t[#t + 1] = ""
  end
  t[#t + 1] = "## Config (section `" .. i.name .. ":`)"
  t[#t + 1] = ""
  if #i.config == 0 then t[#t + 1] = "None." else table_of(i.config) end
  if i.resources then
    t[#t + 1] = ""
    t[#t + 1] = "## Manages"
    t[#t + 1] = ""
    for _, r in ipairs(i.resources) do t[#t + 1] = "- " .. r end
  end
  if i.example then
    t[#t + 1] = ""
    t[#t + 1] = "## Example"
    t[#t + 1] = ""
    t[#t + 1] = "```yaml"
    t[#t + 1] = (i.example:gsub("\n$", ""))
    t[#t + 1] = "```"
  end
  return table.concat(t, "\n") .. "\n"
end

-- docs.show(p): `phanes help MODULE`, `phanes show MODULE [--json]`.
function M.show(p)
  local name = p.args[1]
  if not name then
    io.stderr:write("phanes: show needs a module name; try: phanes list\n")
    return EXIT.usage
  end
  local resolve = require "phanes.engine.resolve"
  local mod, err = resolve.module(name)
  local function get(n) return (resolve.module(n)) end
  if not mod then
    io.stderr:write("phanes: ", err, "\n")
    return EXIT.usage
  end
  if p.opts.json then
    io.stdout:write(json.encode(M.module_info(mod, get), { pretty = true }), "\n")
  else
    io.stdout:write(M.module_text(mod, get))
  end
  return EXIT.ok
end

M.PROFILES = [[
# Profiles

<!-- generated by `make docs` from lua/phanes/cli/docs.lua; do not edit -->

A profile names the modules a server gets. `phanes apply NAME` looks for
`profiles/NAME.lua` on the search path (`--path DIR`, `PHANES_PATH`, then the
profiles embedded in the binary); `phanes apply ./file.lua` loads that file.
`phanes list` shows every profile and where it comes from.

The file is Lua and returns a table:

```lua
return {
  name = "web",                    -- optional; default: the file's base name
  description = "Nginx web server", -- optional; shown by `phanes list`
  modules = { "baseline", "security", "nginx" },  -- required: module names
  config = {                       -- optional: config defaults of this profile
    nginx = { server_name = "example.com" },
  },
}
```

- `modules` (required): a list of module names (strings). They run in this
  order, each module's `requires` first; a module named twice runs once.
  `--only m1,m2` runs just those modules of the profile.
- `config` (optional): a table of defaults, section per module, the same
  shape as `config.yaml`. They sit above the modules' own defaults and below
  `config.yaml` (and everything layered on it: group and host vars, the
  vault, `PHANES_*`, `--set`); `phanes config show --origin` tells which
  layer each value comes from. They are checked against the modules' schemas
  like `config.yaml`.
- `name` (optional): a string; `description` (optional): a string.

A field of the wrong type makes `phanes check` and `apply` fail with the
file and the reason (`modules[2] must be a module name`, `config (defaults)
must be a table`); a module name that does not exist is reported with the
known ones.

A file that returns a module (a table with an `apply` function) instead of a
profile runs that one module, as does `phanes apply MODULE` for a module name.

## Built-in profiles

]]

-- docs.profiles_markdown() -> doc/profiles.md
function M.profiles_markdown(profiles)
  local t = { M.PROFILES }
  t[#t + 1] = "| profile | modules | description |\n|---|---|---|\n"
  for _, prof in ipairs(profiles) do
    t[#t + 1] = string.format("| `%s` | %s | %s |\n", prof.name, table.concat(prof.modules, ", "),
      md_cell(prof.description or ""))
  end
  return table.concat(t)
end

-- roff: escape backslashes and leading dots/quotes; dashes stay minus signs.
local function roff(s)
  s = s:gsub("\\", "\\e"):gsub("%-", "\\-")
  return (s:gsub("^([.'])", "\\&%1"):gsub("\n([.'])", "\n\\&%1"))
end

-- The OPTIONS section: every option phanes.cli.options declares, with
-- its help and the commands that take it.
local function man_options(cli)
  local options = require "phanes.cli.options"
  local t = { ".SH OPTIONS" }
  for _, name in ipairs(options.ORDER) do
    local o = cli.OPTIONS[name]
    if not o.hidden then
      local head = (o.short and ("\\-" .. o.short .. ", ") or "") .. "\\-\\-" .. roff(name)
        .. (o.kind ~= "flag" and (" \\fI" .. roff(o.arg) .. "\\fR") or "")
      local cmds = {}
      if o.cmds == "*" then cmds = { "every command" } else cmds = schema.sorted_keys(o.cmds) end
      t[#t + 1] = ".TP"
      t[#t + 1] = ".B " .. head
      t[#t + 1] = roff(o.help) .. " ("
        .. (o.kind == "list" and "comma separated, repeatable; " or o.kind == "multi" and "repeatable; " or "")
        .. "for " .. table.concat(cmds, ", ") .. (o.remote and "; the controller's, for --remote runs" or "") .. ")"
    end
  end
  return t
end

local function man_section(t, title, text)
  t[#t + 1] = ".SS " .. title
  t[#t + 1] = ".nf"
  t[#t + 1] = roff((text:gsub("\n+$", "")))
  t[#t + 1] = ".fi"
end

-- docs.man(cli) -> doc/phanes.1, from the help screens (cli.help_text:
-- each command's text, its options generated from phanes.cli.options) and
-- the usage of the commands that read their own arguments.
function M.man(cli)
  local t = { '.TH PHANES 1 "" "phanes" "User Commands"',
    ".\\\" generated by `make docs` from lua/phanes/cli.lua and lua/phanes/cli/options.lua; do not edit",
    ".SH NAME", "phanes \\- provision a server from Lua modules and profiles", ".SH SYNOPSIS",
    ".B phanes", "COMMAND [OPTIONS]", ".SH DESCRIPTION", ".nf", roff((cli.help_text():gsub("\n+$", ""))), ".fi" }
  for _, line in ipairs(man_options(cli)) do t[#t + 1] = line end
  local help = { host = require("phanes.remote.host").USAGE, vault = require("phanes.cli.vault").USAGE,
    serve = require("phanes.serve.main").HELP, deploy = require("phanes.deploy").HELP }
  for name, c in pairs(cli.COMMANDS) do
    if not c.hidden and not help[name] then help[name] = cli.help_text(name) end
  end
  t[#t + 1] = ".SH COMMANDS"
  for _, name in ipairs(schema.sorted_keys(help)) do man_section(t, name, help[name]) end
  t[#t + 1] = ".SH SEE ALSO"
  t[#t + 1] = "phanes help MODULE (a module's config keys); doc/modules/*.md, doc/profiles.md"
  return table.concat(t, "\n") .. "\n"
end

-- docs.api() -> { { key = "file.content", family = "file", description, args, reader } },
-- in the order of context.families; raises naming the file when a bound
-- ctx function has no declaration, or a declaration no function.
function M.api()
  local list = {}
  for _, family in ipairs(require("phanes.engine.context").families) do
    local res = require("phanes.res." .. family)
    local where = "lua/phanes/res/" .. family .. ".lua"
    local api, seen = res.api or {}, {}
    for _, ns in ipairs(schema.sorted_keys(res.namespaces)) do
      for _, name in ipairs(schema.sorted_keys(res.namespaces[ns])) do
        local key = ns .. "." .. name
        local d = api[key]
        if not d then error(where .. ": ctx." .. key .. " has no declaration in M.api", 0) end
        seen[key] = true
        list[#list + 1] = { key = key, family = family, description = d[1], args = d[2], reader = d.reader }
      end
    end
    for key in pairs(api) do
      if not seen[key] then error(where .. ": M.api declares ctx." .. key .. ", which is not bound", 0) end
    end
  end
  return list
end

local function api_entry(t, e)
  t[#t + 1] = "### ctx." .. e.key
  t[#t + 1] = ""
  t[#t + 1] = e.description .. "."
  t[#t + 1] = ""
  if #e.args == 0 then
    t[#t + 1] = "No arguments."
  else
    t[#t + 1] = "| argument | type | required | description |"
    t[#t + 1] = "|---|---|---|---|"
    for _, a in ipairs(e.args) do
      t[#t + 1] = string.format("| `%s` | %s | %s | %s |", a[1], a[2], a[3] and "yes" or "no",
        (a[4]:gsub("|", "\\|")))
    end
  end
  t[#t + 1] = ""
end

-- docs.api_markdown(list) -> doc/module-api.md
function M.api_markdown(list)
  local t = { "# Module API", "",
    "<!-- generated by `make docs` from the M.api declarations in lua/phanes/res/*.lua; do not edit -->", "",
    "What a module's `apply(ctx, cfg)` calls to change the host (resources) and to read it (readers).",
    "A module reads the host only through these and `ctx.facts`, so a plan against a fake host",
    "(spec/support/plan.lua) answers them itself. The rest of ctx (`config`, `cfg`, `facts`, `platform`,",
    "`dry_run`, `log`, `warn`, `skip`, `fail`, `exec`, `template`) is described in doc/internals.md.", "",
    "Every resource checks first and acts only on a difference. It returns",
    "`{ changed, status = \"ok\"|\"changed\"|\"would change\"|\"skipped\", message, diff }`",
    "(`changed` is also true for `would change`, so `restart = conf.changed` is planned in a dry run)",
    "and raises a failure naming the resource and its target when it fails.", "",
    "## Resources", "" }
  for _, e in ipairs(list) do if not e.reader then api_entry(t, e) end end
  t[#t + 1] = "## Readers"
  t[#t + 1] = ""
  t[#t + 1] = "No event, nothing changes."
  t[#t + 1] = ""
  for _, e in ipairs(list) do if e.reader then api_entry(t, e) end end
  return (table.concat(t, "\n"):gsub("\n+$", "\n"))
end

-- docs.cli_markdown(cli) -> doc/cli.md: every command and option, from
-- phanes.cli.options (as --help and the man page).
function M.cli_markdown(cli)
  local options = require "phanes.cli.options"
  local t = { "# The phanes command line", "",
    "Generated by `make docs` from `lua/phanes/cli/options.lua`; do not edit. `phanes help COMMAND` says more.",
    "", "## Commands", "", "| command | does |", "|---|---|" }
  for _, name in ipairs(options.COMMAND_ORDER) do
    local c = cli.COMMANDS[name]
    if not c.hidden then
      t[#t + 1] = "| `phanes " .. md_cell(name .. (c.usage ~= "" and (" " .. c.usage) or "")) .. "` | " .. md_cell(c.summary) .. " |"
    end
  end
  t[#t + 1] = ""
  t[#t + 1] = "## Options"
  t[#t + 1] = ""
  t[#t + 1] = "Options go before or after the command. A remote run (`--remote`) sends the options marked"
  t[#t + 1] = "*sent* to the phanes on the target; the others are the controller's."
  t[#t + 1] = ""
  t[#t + 1] = "| option | commands | remote run | does |"
  t[#t + 1] = "|---|---|---|---|"
  for _, name in ipairs(options.ORDER) do
    local o = cli.OPTIONS[name]
    if not o.hidden then
      local head = (o.short and ("-" .. o.short .. ", ") or "") .. "--" .. name
        .. (o.kind == "flag" and "" or o.kind == "target" and (" [" .. o.arg .. "]") or (" " .. o.arg))
      local cmds = o.cmds == "*" and "all" or table.concat(schema.sorted_keys(o.cmds), ", ")
      t[#t + 1] = "| `" .. md_cell(head) .. "` | " .. cmds .. " | " .. (o.remote and "controller" or o.forward and "sent" or "-")
        .. " | " .. md_cell(o.help .. (o.kind == "list" and " (comma separated, repeatable)" or o.kind == "multi"
          and " (repeatable)" or "")) .. " |"
    end
  end
  t[#t + 1] = ""
  t[#t + 1] = "## Exit codes"
  t[#t + 1] = ""
  t[#t + 1] = options.wrap(cli.EXIT.SUMMARY .. ".", 0)
  return table.concat(t, "\n") .. "\n"
end

local function lua_files(embedded, prefix)
  local t = {}
  for _, name in ipairs(embedded.list(prefix)) do
    if name:sub(#prefix + 1):match "^[^/]+%.lua$" then t[#t + 1] = name end
  end
  table.sort(t)
  return t
end

-- docs.files() -> { [relative path] = text }: everything `make docs` writes,
-- for the built-in (embedded) modules and profiles only.
function M.files()
  local embedded = require "phanes.embedded"
  local out, mods = {}, {}
  for _, rel in ipairs(lua_files(embedded, "modules/")) do
    local text = assert(embedded.get(rel), rel)
    local mod = assert(load(text, "@" .. rel, "t"))()
    mods[mod.name] = mod
  end
  local function get(n) return mods[n] end
  for name, mod in pairs(mods) do out["modules/" .. name .. ".md"] = M.module_markdown(mod, get) end
  local profiles = {}
  for _, rel in ipairs(lua_files(embedded, "profiles/")) do
    local text = assert(embedded.get(rel), rel)
    local prof = assert(load(text, "@" .. rel, "t"))()
    profiles[#profiles + 1] = { name = prof.name or rel:match "([^/]+)%.lua$", modules = prof.modules,
      description = prof.description }
  end
  table.sort(profiles, function(a, b) return a.name < b.name end)
  out["profiles.md"] = M.profiles_markdown(profiles)
  out["module-api.md"] = M.api_markdown(M.api())
  out["phanes.1"] = M.man(require "phanes.cli")
  out["cli.md"] = M.cli_markdown(require "phanes.cli")
  return out
end

-- docs.generate(args) -> 0 | 2: writes docs.files() under args[1]
-- (`phanes __docs DIR`).
function M.generate(args)
  local dir = args[1]
  local file = require "phanes.file"
  if not dir then
    io.stderr:write("phanes: __docs needs an output directory\n")
    return EXIT.usage
  end
  local ok, err = file.mkdir(dir .. "/modules", { parents = true, mode = tonumber("0755", 8) })
  if not ok then io.stderr:write("phanes: ", err, "\n") return EXIT.usage end
  local files = M.files()
  for _, rel in ipairs(schema.sorted_keys(files)) do
    ok, err = file.write(dir .. "/" .. rel, files[rel], { mode = tonumber("0644", 8) })
    if not ok then io.stderr:write("phanes: ", err, "\n") return EXIT.usage end
  end
  return EXIT.ok
end

return M
