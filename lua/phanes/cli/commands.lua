-- commands.lua: the CLI's commands (apply, check, list, status, facts).
-- Each takes the parsed command line { cmd, args, opts } (see cli.parse)
-- and returns the exit code. Kept apart from cli.lua so that `phanes
-- version` and `--help` load none of this.
local loader = require "phanes.loader"
local output = require "phanes.engine.output"
local resolve = require "phanes.engine.resolve"
local statefile = require "phanes.engine.statefile"
local EXIT = require("phanes.cli").EXIT

local M = {}

local function new_out(p, extra)
  local o = { color = p.opts.color or "auto", verbose = p.opts.verbose, quiet = p.opts.quiet }
  for k, v in pairs(extra or {}) do o[k] = v end
  return output.new(o)
end

local function environ() return require("phanes.sys").environ() end

-- What the user asked to run: { profile, only } | nil, err
local function wanted(p)
  local spec = p.args[1]
  if #p.args > 1 then return nil, "one profile at a time (got " .. table.concat(p.args, ", ") .. ")" end
  if spec and p.opts.profile then return nil, "give the profile once: '" .. spec .. "' or --profile " .. p.opts.profile end
  spec = spec or p.opts.profile
  if p.opts.modules then
    if spec then return nil, "--modules runs modules without a profile; drop '" .. spec .. "' or use --only" end
    return { name = "modules", modules = p.opts.modules, config = {}, origin = "--modules" }
  end
  if not spec then return nil, "which profile? e.g. phanes " .. p.cmd .. " dev (profiles: "
    .. table.concat(resolve.known_profiles(), ", ") .. ")" end
  return resolve.profile(spec)
end

-- Load the config for `mods`, validated against every known module.
-- -> cfg, secrets, all | nil (errors printed)
local function load_config(p, out, mods, defaults, defaults_name)
  local all, load_errs = resolve.all()
  local inrun = {}
  for _, m in ipairs(mods) do inrun[m.name] = true end
  for _, e in ipairs(load_errs) do
    -- A broken module that is not part of this run: say so, carry on.
    if not p.opts.json then out:warn(e) end
  end
  local config = require "phanes.config"
  local text
  if p.opts.config then
    local f, ferr = io.open(p.opts.config, "r")
    if not f then
      out:error("cannot read the config: " .. tostring(ferr),
        "give an existing YAML file with --config (see config.yaml.example)")
      return nil
    end
    text = f:read "a"
    f:close()
  end
  require("phanes.vault").password_file = p.opts["vault-password-file"] -- for !vault values
  local sets, env = p.opts.set or {}, environ()
  if p.opts.overrides then -- a remote run's --set and PHANES_* values, from its payload
    sets, env = require("phanes.remote.util").read_overrides(p.opts.overrides, sets, env)
    if not sets then out:error(env) return nil end
  end
  local cfg, errs = config.load { path = p.opts.config, text = text, modules = mods, known = all,
    defaults = defaults or {}, defaults_name = defaults_name, sets = sets, env = env,
    target = { exists = require("phanes.file").exists } }
  if not cfg then
    for _, e in ipairs(type(errs) == "table" and errs or { errs }) do
      out:error(type(e) == "table" and (e.message or tostring(e)) or tostring(e))
    end
    local paths = {}
    for _, d in ipairs(p.opts.path or {}) do paths[#paths + 1] = " --path " .. d end
    out.err:write("fix " .. output.blame(errs, p.opts.config, defaults_name)
      .. ", then try: phanes check" .. (p.args[1] and (" " .. p.args[1]) or "")
      .. table.concat(paths) .. (p.opts.config and (" --config " .. p.opts.config) or "") .. "\n")
    return nil
  end
  local secrets = config.secrets and config.secrets(cfg, all) or {}
  for _, v in ipairs(require("phanes.vault").resolved_values()) do secrets[#secrets + 1] = v end
  out:add_secrets(secrets)
  if not p.opts.json then
    for _, w in ipairs(type(errs) == "table" and errs.warnings or {}) do out:warn(w) end
  end
  return cfg, secrets, all
end

local function plan(p, out)
  local prof, err = wanted(p)
  if not prof then out:error(err) return nil end
  local mods, warnings = resolve.plan(prof.modules, p.opts.only)
  if not mods then out:error(warnings) return nil end
  if not p.opts.json then for _, w in ipairs(warnings) do out:warn(w) end end
  return prof, mods
end

-- config_hasher(cfg, state_path, create) -> hash(mod): the keyed config
-- hash, or nil when the host's key cannot be had (never an unkeyed hash).
local function config_hasher(cfg, state_path, create)
  local config = require "phanes.config"
  local key = state_path and config.hash_key(state_path, create)
  return function(mod)
    if not key then return nil end
    return config.hash(cfg and cfg[mod.name], mod.config or {}, key)
  end
end

-- Print/write the JSON report (--json, --report FILE).
local function emit_report(p, out, report)
  local o = p.opts
  if not (o.json or o.report) then return end
  local text = require("phanes.json").encode(report, { pretty = true }) .. "\n"
  if o.json then io.stdout:write(text) end
  if o.report then
    local ok, err = require("phanes.file").write(o.report, text, { mode = tonumber("0644", 8) })
    if not ok then out:error("cannot write the report: " .. tostring(err)) end
  end
end

-- --report FILE must be writable safely before anything runs: a link or a
-- foreign file planted in a directory another user can write is refused
-- (phanes.file, see doc/internals.md "Paths as root"), and nothing is applied.
local function report_path_ok(out, path)
  local F = require "phanes.file"
  local ok, err = F.check(path)
  local st = ok and F.stat(path, true)
  if st and st.type ~= "file" then err = path .. ": exists and is a " .. st.type .. ", not a file"
  elseif ok then return true end
  out:error("cannot write the report: " .. tostring(err), "choose another --report path")
  return false
end

-- Before any module ran (usage, config, lock): a short report too, so that
-- whoever reads --json or --report learns why.
local function early_exit(p, out, code)
  emit_report(p, out, output.mask_deep({ format = 1, command = "apply", exit_code = code,
    status = "error", errors = out.errors or {}, phanes_version = loader.version,
    dry_run = p.opts["dry-run"] or false }, out.mask))
  return code
end

-- M.from_disk(mods) -> paths of what the run uses from disk rather than
-- the binary: its modules, their templates (templates/NAME/) and engine
-- files (lua/, only from --path/PHANES_PATH).
function M.from_disk(mods)
  local paths = {}
  for _, m in ipairs(mods) do
    if m.origin and m.origin ~= "embedded" then paths[#paths + 1] = m.origin end
  end
  for _, f in ipairs(loader.disk_files "lua/") do paths[#paths + 1] = f.path end
  for _, m in ipairs(mods) do
    for _, f in ipairs(loader.disk_files("templates/" .. m.name .. "/")) do paths[#paths + 1] = f.path end
  end
  return paths
end

-- phanes apply PROFILE|FILE.lua [...]
function M.apply(p)
  local o = p.opts
  local out = new_out(p)
  if o.report and not report_path_ok(out, o.report) then return EXIT.usage end
  local prof, mods = plan(p, out)
  if not prof then return early_exit(p, out, EXIT.usage) end
  local cfg, secrets = load_config(p, out, mods, prof.config, prof.origin)
  if not cfg then return early_exit(p, out, EXIT.usage) end
  local sys = require "phanes.sys"
  local sf, previous
  local path = statefile.path { flag = o.state, config = cfg.state_path }
  if o["dry-run"] then
    -- no lock, no write: only what the last run asked (one systemctl for all)
    previous = statefile.read(path)
  else
    local err, code
    sf, err, code = statefile.open(path, { wait = 5, version = loader.version,
      hostname = sys.hostname and sys.hostname() })
    if not sf then
      out:error(err, code == "io" and "run as root, or give a writable --state PATH" or nil)
      return early_exit(p, out, code == "locked" and EXIT.locked or EXIT.usage)
    end
    if sf.warning then out:warn(sf.warning) end
  end
  if not (o.json or o.quiet) then
    out:say(out:paint("bold", (o["dry-run"] and "dry run: " or "") .. "applying " .. prof.name),
      out:paint("dim", string.format(" (%d module%s%s%s)", #mods, #mods == 1 and "" or "s",
        prof.origin and prof.origin ~= "--modules" and (", " .. prof.origin) or "",
        o.config and (", config " .. o.config) or "")))
    local disk = M.from_disk(mods)
    if #disk > 0 then out:say(out:paint("yellow", "  not from the binary: " .. table.concat(disk, ", "))) end
  end
  local ok, code, report = xpcall(require("phanes.engine.runner").run, debug.traceback, {
    mods = mods, config = cfg, secrets = secrets, dry_run = o["dry-run"], keep_going = o["keep-going"], diff = o.diff,
    verbose = o.verbose, json = o.json, out = out, state = sf, previous = previous, hash = config_hasher(cfg, path, sf ~= nil),
    profile = prof.name, version = loader.version,
  })
  if sf then sf:close() end
  if not ok then error(code, 0) end
  local counts = report.counts or {}
  if code == 0 and o["detailed-exitcode"] and ((counts.changed or 0) + (counts["would change"] or 0)) > 0 then
    code = EXIT.drift -- --detailed-exitcode: something changed (or would)
    report.exit_code = code
  end
  emit_report(p, out, report)
  return code
end

-- The modules a config file configures (its sections that name a module),
-- with what they require: what `phanes check` without a profile checks.
local function configured(path)
  local text = path and require("phanes.file").read(path)
  local data = text and require("phanes.yaml").decode(text, path)
  local names = {}
  for k in pairs(type(data) == "table" and data or {}) do
    if type(k) == "string" and resolve.module(k) then names[#names + 1] = k end
  end
  table.sort(names)
  local mods = #names > 0 and resolve.plan(names) or nil
  return mods or {}
end

-- phanes check [PROFILE] [--config F] [--json]. Without a profile: the
-- modules the config configures, as a run of them would load it.
function M.check(p)
  local out = new_out(p)
  local cc = require "phanes.cli.config" -- check HOST|@GROUP: each host's merged config
  if cc.is_target(p.args[1]) then return cc.check(p, out, plan) end
  local prof, mods = nil, {}
  if p.args[1] or p.opts.profile or p.opts.modules then
    prof, mods = plan(p, out)
    if not prof then return M.check_report(p, out, EXIT.usage) end
  else
    mods = configured(p.opts.config)
  end
  local cfg = load_config(p, out, mods, prof and prof.config, prof and prof.origin)
  local names = {}
  for i, m in ipairs(mods) do names[i] = m.name end
  if not cfg then return M.check_report(p, out, EXIT.usage, prof, names) end
  if p.opts.json then return M.check_report(p, out, EXIT.ok, prof, names) end
  local what = p.opts.config or "no config file (module defaults)"
  if prof then
    out:say(out:paint("green", "ok: "), what, " is valid", string.format(" for %s (%s)", prof.name, table.concat(names, ", ")))
  else
    out:say(out:paint("green", "ok: "), what, " is valid",
      #names > 0 and (" for the modules it configures (" .. table.concat(names, ", ") .. ")") or "")
  end
  return EXIT.ok
end

-- check --json: { valid, config, config_from, profile, modules, errors, exit_code }
function M.check_report(p, out, code, prof, names)
  if not p.opts.json then return code end
  local json = require "phanes.json"
  io.stdout:write(json.encode({ valid = code == EXIT.ok, config = p.opts.config or json.null,
    config_from = p.config_from or json.null, profile = prof and prof.name or json.null,
    modules = json.array(names or {}), errors = json.array(out.errors or {}), exit_code = code }, { pretty = true }), "\n")
  return code
end

local function field_summary(mod)
  local keys = {}
  for k, s in pairs(mod.config or {}) do
    keys[#keys + 1] = k .. ":" .. tostring(s.type) .. (s.secret and " (secret)" or "")
      .. (s.required and " (required)" or "")
  end
  table.sort(keys)
  return table.concat(keys, ", ")
end

-- text cut into lines of at most w columns, at spaces (a longer word alone on its line, cut)
local function wrap(text, w)
  local lines, cur = {}, ""
  for word in text:gmatch "%S+" do
    while #word > w do
      if cur ~= "" then lines[#lines + 1] = cur; cur = "" end
      lines[#lines + 1] = word:sub(1, w)
      word = word:sub(w + 1)
    end
    if cur == "" then cur = word
    elseif #cur + 1 + #word <= w then cur = cur .. " " .. word
    else lines[#lines + 1] = cur; cur = word end
  end
  if cur ~= "" or #lines == 0 then lines[#lines + 1] = cur end
  return lines
end

-- the plain list: name | text | origin, fitting the terminal's columns
-- ($COLUMNS, else 100): a longer text is cut (...), or with fold wrapped
-- onto indented lines; list -v shows every text whole.
-- entries: { name, text, origin, paint (of the text) }
local function short_rows(entries, out, fold)
  local namew, originw = 0, 0
  for _, e in ipairs(entries) do
    namew, originw = math.max(namew, #e.name), math.max(originw, #(e.origin or ""))
  end
  local w = math.max(30, (tonumber(os.getenv "COLUMNS") or 100) - (2 + namew) - 2 - 2 - originw)
  local rows = {}
  local function paint(e, t) return e.paint and out:paint(e.paint, t) or t end
  for _, e in ipairs(entries) do
    local lines = fold and wrap(e.text, w - 2) or { e.text }
    if not fold and #e.text > w then lines[1] = e.text:sub(1, w - 3):gsub("%s+$", "") .. "..." end
    rows[#rows + 1] = { "  " .. e.name, paint(e, lines[1]), out:paint("dim", e.origin or "") }
    for i = 2, #lines do rows[#rows + 1] = { "", paint(e, "  " .. lines[i]), "" } end
  end
  return rows
end

-- list -v: name | its lines of text ({ text, paint }), wrapped to fit 100 columns
local function fit_rows(items, out)
  local namew = 0
  for _, it in ipairs(items) do namew = math.max(namew, #it.name) end
  local w = math.max(30, 100 - (2 + namew) - 2)
  local rows = {}
  for _, it in ipairs(items) do
    local first = true
    for _, t in ipairs(it) do
      for i, line in ipairs(wrap(t[1], w - 2)) do
        line = i == 1 and line or "  " .. line
        rows[#rows + 1] = { first and ("  " .. it.name) or "", t[2] and out:paint(t[2], line) or line }
        first = false
      end
    end
  end
  return rows
end

local function verbose_rows(mods, out)
  local items = {}
  for _, m in ipairs(mods) do
    local it = { name = m.name, { m.description or "" }, { m.origin or "", "dim" } }
    if m.requires and #m.requires > 0 then it[#it + 1] = { "requires: " .. table.concat(m.requires, ", ") } end
    local f = field_summary(m)
    if f ~= "" then it[#it + 1] = { "config: " .. f } end
    items[#items + 1] = it
  end
  return fit_rows(items, out)
end

-- phanes list [-v] [--json]
function M.list(p)
  local out = new_out(p)
  local mods, errs = resolve.all()
  table.sort(mods, function(a, b) return a.name < b.name end)
  local profiles = {}
  for _, name in ipairs(resolve.known_profiles()) do
    local prof, err = resolve.profile(name)
    profiles[#profiles + 1] = prof and { name = name, description = prof.description,
      modules = prof.modules, origin = prof.origin } or { name = name, error = err }
  end
  -- engine files and templates on disk (modules and profiles say it above)
  local disk = loader.disk_files "lua/"
  for _, f in ipairs(loader.disk_files "templates/") do disk[#disk + 1] = f end
  if p.opts.json then
    local json = require "phanes.json"
    local ms, docs = {}, require "phanes.cli.docs"
    local function get(n) return (resolve.module(n)) end
    for i, m in ipairs(mods) do
      -- as `show NAME --json`: schema, dry-plan steps, config syncs, detect probes
      ms[i] = docs.module_info(m, get)
    end
    local files = {}
    for i, f in ipairs(disk) do files[i] = { name = f.name, origin = f.path } end
    io.stdout:write(json.encode({ modules = json.array(ms), profiles = json.array(profiles),
      files = json.array(files), errors = json.array(errs) }, { pretty = true }), "\n")
    return #errs > 0 and EXIT.usage or EXIT.ok
  end
  out:say(out:paint("bold", "modules"))
  local rows = {}
  for i, m in ipairs(mods) do rows[i] = { name = m.name, text = m.description or "", origin = m.origin } end
  rows = p.opts.verbose and verbose_rows(mods, out) or short_rows(rows, out) -- fit the columns
  for _, line in ipairs(output.format_table({ "", "", "" }, rows)) do
    if line ~= "" then out:say(line) end
  end
  out:say ""
  out:say(out:paint("bold", "profiles"))
  rows = {}
  local items = {} -- list -v: fits 100 columns
  for _, prof in ipairs(profiles) do
    local names = prof.modules and table.concat(prof.modules, ", ")
    rows[#rows + 1] = { name = prof.name, text = names or "error", paint = not names and "red" or nil, origin = prof.origin }
    items[#items + 1] = { name = prof.name, { names or "error", not names and "red" or nil }, { prof.origin or "", "dim" } }
  end
  rows = p.opts.verbose and fit_rows(items, out) or short_rows(rows, out, true)
  for _, line in ipairs(output.format_table({ "", "", "" }, rows)) do
    if line ~= "" then out:say(line) end
  end
  if #disk > 0 then
    out:say ""
    out:say(out:paint("bold", "engine and templates from disk"), out:paint("dim", " (not the binary's)"))
    rows = {}
    for _, f in ipairs(disk) do rows[#rows + 1] = { "  " .. f.name, out:paint("dim", f.path) } end
    for _, line in ipairs(output.format_table({ "", "" }, rows)) do
      if line ~= "" then out:say(line) end
    end
  end
  for _, e in ipairs(errs) do out:error(e) end
  for _, prof in ipairs(profiles) do if prof.error then out:error(prof.error) end end
  return #errs > 0 and EXIT.usage or EXIT.ok
end

local detection, show_detected

-- For status --config: module name -> "same"|"changed" (nil when unknown).
-- prof (status PROFILE --config F) gives the defaults the run was applied with.
local function config_changes(p, out, state, prof, path)
  local mods = {}
  for name in pairs(state.modules) do
    local mod = resolve.module(name)
    if mod then mods[#mods + 1] = mod end
  end
  local cfg = load_config(p, out, mods, prof and prof.config or {}, prof and prof.origin)
  if not cfg then return nil end
  local hash, res = config_hasher(cfg, path), {}
  for _, mod in ipairs(mods) do
    local old, now = state.modules[mod.name].config_hash, hash(mod)
    if old and now then res[mod.name] = (now == old) and "same" or "changed" end
  end
  return res
end

-- What the detect probes of each module that declares them find on this
-- host: name -> { installed, checks }. The probes are those of --config;
-- without it, those the state recorded when the module was installed (the
-- config it was applied with: its port, its paths), else the defaults'.
-- A module the state does not know can still be installed.
detection = function(p, out, prof, state)
  local describe, detect = require "phanes.engine.describe", require "phanes.engine.detect"
  local mods = {}
  for _, m in ipairs((resolve.all())) do if m.detect then mods[#mods + 1] = m end end
  local cfg = p.opts.config and load_config(p, out, mods, prof and prof.config or {}, prof and prof.origin) or {}
  local known = not p.opts.config and state and state.modules or {}
  local found = {}
  for _, m in ipairs(mods) do
    local probes = known[m.name] and known[m.name].probes or describe.probes(m, cfg[m.name])
    found[m.name] = probes and detect.check(probes) or nil
  end
  return found
end

show_detected = function(out, detected, state)
  local names = {}
  for name in pairs(detected or {}) do names[#names + 1] = name end
  if #names == 0 then return end
  table.sort(names)
  local rows = {}
  for _, name in ipairs(names) do
    local d, known = detected[name], state.modules and state.modules[name]
    local failed
    for _, c in ipairs(d.checks) do if not c.ok and not failed then failed = c.probe .. " " .. c.target .. ": " .. tostring(c.why) end end
    rows[#rows + 1] = { name, d.installed and out:status "installed" or "not found",
      known and "" or (d.installed and out:paint("yellow", "not in the state") or ""), failed or "" }
  end
  out:say ""
  out:say(out:paint("bold", "detected on this host"), out:paint("dim", " (the modules' detect probes)"))
  out:table({ "module", "detected", "state", "first failed probe" }, rows)
end

-- phanes status [PROFILE] [--json] [--state PATH] [--config F]
function M.status(p)
  local out = new_out(p)
  local cfg_path, prof
  if #p.args > 1 then
    out:error("one profile at a time (got " .. table.concat(p.args, ", ") .. ")")
    return EXIT.usage
  end
  if p.args[1] then
    local err
    prof, err = resolve.profile(p.args[1])
    if not prof then out:error(err) return EXIT.usage end
  end
  if p.opts.config then
    local cfg = load_config(p, out, {}, prof and prof.config or {}, prof and prof.origin)
    if not cfg then return EXIT.usage end
    cfg_path = cfg.state_path
  end
  local path = statefile.path { flag = p.opts.state, config = cfg_path }
  local state, err, code = statefile.read(path)
  if not state then
    -- A mistyped field is "corrupt" too: the message names the file and field.
    out:error(err, code == "corrupt" and "the next phanes apply moves it aside and starts a new state"
      or code == "unsafe" and "give a --state PATH in a directory only root can write" or nil)
    return EXIT.usage
  end
  local changes = p.opts.config and config_changes(p, out, state, prof, path)
  if p.opts.config and not changes then return EXIT.usage end
  local detected = detection(p, out, prof, state)
  if p.opts.json then
    local json = require "phanes.json"
    state.path = path
    state.detected = detected
    if changes then
      for name, c in pairs(changes) do state.modules[name].config_changed = (c == "changed") end
    end
    io.stdout:write(json.encode(state, { pretty = true }), "\n")
    return EXIT.ok
  end
  if state.missing or next(state.modules) == nil then
    out:say("nothing applied on this machine yet (no state in ", path, "); try: phanes apply PROFILE --config config.yaml")
    show_detected(out, detected, state)
    return EXIT.ok
  end
  local names = {}
  for name in pairs(state.modules) do names[#names + 1] = name end
  table.sort(names)
  local rows = {}
  for _, name in ipairs(names) do
    local m = state.modules[name]
    -- changing: a run stopped (killed) while the module changed the machine
    local st = m.changing and "interrupted" or m.status == "installed" and "installed" or "failed"
    rows[#rows + 1] = { name, out:status(st), m.installed_at or "", m.updated_at or "", m.version or "",
      changes and (changes[name] == "changed" and out:paint("yellow", "changed") or changes[name] or "?") or nil }
  end
  local headers = { "module", "status", "installed at", "updated at", "version" }
  if changes then headers[#headers + 1] = "config since" end
  out:say(path, out:paint("dim", string.format("  (updated %s by phanes %s on %s)",
    state.updated_at or "?", state.phanes_version or "?", state.hostname or "?")))
  out:table(headers, rows)
  for _, name in ipairs(names) do
    local m = state.modules[name]
    if m.status == "failed" and m.last_error then out:say(out:paint("red", name .. ": "), m.last_error) end
  end
  show_detected(out, detected, state)
  return EXIT.ok
end

local function flatten(t, prefix, into)
  for k, v in pairs(t) do
    local key = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
    if type(v) == "table" then flatten(v, key, into)
    else into[#into + 1] = { key, tostring(v) } end
  end
  return into
end

-- phanes config show [HOST|@GROUP] [--origin] [--json]
function M.config(p) return require("phanes.cli.config").main(p) end

-- phanes facts [--json]
function M.facts(p)
  local out = new_out(p)
  local facts = require("phanes.engine.facts").gather(require("phanes.exec").run)
  if p.opts.json then
    io.stdout:write(require("phanes.json").encode(facts, { pretty = true }), "\n")
    return EXIT.ok
  end
  local rows = flatten(facts, nil, {})
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  out:table({ "fact", "value" }, rows)
  return EXIT.ok
end

-- phanes version -v: what the binary is made of, each version as the
-- library itself reports it, and the commit and architecture of the build.
function M.version(p)
  local b = require("phanes.build").info()
  local rows = {
    { "phanes", b.version }, { "commit", b.commit }, { "arch", b.arch },
    { "lua", b.lua }, { "libyaml", b.libyaml }, { "libssh2", b.libssh2 },
    { "openssl", b.openssl }, { "zlib", b.zlib }, { "lfs", require("lfs")._VERSION },
  }
  if p.opts.json then
    local t = {}
    for _, r in ipairs(rows) do t[r[1]] = r[2] end
    io.stdout:write(require("phanes.json").encode(t, { pretty = true }), "\n")
    return EXIT.ok
  end
  for _, r in ipairs(rows) do io.stdout:write(string.format("%-8s %s\n", r[1], r[2])) end
  return EXIT.ok
end

return M
