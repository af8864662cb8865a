-- deploy.lua: `phanes deploy DIR`: ship a directory to a host as a new
-- release of a site, switch `current` to it atomically, keep the newest
-- --keep releases; --list and --rollback. The local side (checks, sha256
-- manifest, diff, tar) is deploy/tree.lua, the host's side (as root, then
-- as the deploy user) deploy/script.lua. One SSH session, two execs: the
-- current release's manifest, then the release itself (a tar of the
-- changed files on stdin; unchanged files hard-linked).
--
--   phanes deploy ./public --host web1 --site blog --keep 3
--   phanes deploy --list --site blog ; phanes deploy --rollback [--to ID]
--
-- Exit codes: 0 ok, 1 the host refused a step, 2 usage (nothing sent),
-- 3 connection/auth/sudo, 4 nothing to list or roll back to, 75 another
-- deploy of the site holds its lock.
local tree = require "phanes.deploy.tree"
local script = require "phanes.deploy.script"
local util = require "phanes.remote.util"
local EXIT = require "phanes.cli.exit"
local M = {}

M.HELP = [[
usage: phanes deploy DIR [--host NAME | --remote TARGET] [--site NAME] [--keep N] [--json]
       phanes deploy --list [--site NAME] [--host NAME | --remote TARGET]
       phanes deploy --rollback [--to ID] [--site NAME] [--host NAME | --remote TARGET]

Upload DIR to a host (the inventory's default host when none is given) as a
new release /srv/phanes/sites/SITE/releases/<UTC time>-<hash>, owned by the
user phanes-deploy, and switch /srv/phanes/sites/SITE/current to it
atomically. Only files whose sha256 changed since the current release are
sent; the others are hard-linked from it. The newest --keep releases
(default 5) are kept. A deploy never restarts the web server: set
`nginx.deploy_site: SITE` or `caddy.deploy_site: SITE` and apply once, and it
serves /srv/phanes/sites/SITE/current.

options:
      --site NAME          a plain word: letters, digits, - and _ (default: default)
      --keep N             releases to keep (default 5)
      --host NAME          an inventory host; --remote [user@]host[:port] any target
      --list               the site's releases, the current one marked
      --rollback [--to ID] switch current back (default: the release before it)
      --json               print the release document
  and the connection options of --remote: --port, --user, --key, --password-env,
  --strict-host-keys, --known-hosts, --timeout

exit codes: 0 ok, 1 the host refused a step, 2 usage (nothing changed on
the host), 3 connection failure, 4 nothing to list or roll back to,
75 another deploy of this site is running
]]

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

-- deploy.parse(rest) -> { dir, site, keep, list, rollback, to, json, host } | nil, err
-- rest: what remote.parse_args left (the word "deploy" and our options).
function M.parse(rest)
  local p, i = { site = "default", keep = 5 }, 1
  local VAL = { ["--site"] = "site", ["--keep"] = "keep", ["--to"] = "to", ["--host"] = "host" }
  local FLAG = { ["--list"] = "list", ["--rollback"] = "rollback", ["--json"] = "json", ["--help"] = "help", ["-h"] = "help" }
  local seen_word = false
  while rest[i] ~= nil do
    local a = rest[i]
    local k, v = a:match "^(%-%-[%w%-]+)=(.*)$"
    k = k or a
    if VAL[k] then
      if not v then i = i + 1; v = rest[i] end
      if v == nil then return nil, k .. " needs a value" end
      p[VAL[k]] = v
    elseif FLAG[a] then
      p[FLAG[a]] = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "deploy: unknown option " .. a .. " (phanes deploy --help)"
    elseif not seen_word and a == "deploy" then
      seen_word = true
    elseif p.dir then
      return nil, "deploy: one directory at a time (got " .. p.dir .. " and " .. a .. ")"
    else
      p.dir = a
    end
    i = i + 1
  end
  if p.help then return p end
  if not tree.valid_site(p.site) then
    return nil, "--site '" .. p.site .. "': a site name is a plain word (letters, digits, - and _, at most 64), e.g. --site blog"
  end
  local keep = math.tointeger(tonumber(p.keep))
  if not keep or keep < 1 then return nil, "--keep: expected a whole number of releases, 1 or more, got '" .. tostring(p.keep) .. "'" end
  p.keep = keep
  if p.to and not tree.valid_id(p.to) then
    return nil, "--to '" .. p.to .. "': not a release id (like 20260102T030405Z-1a2b3c4d; see phanes deploy --list)"
  end
  if p.to and not p.rollback then return nil, "--to goes with --rollback" end
  if p.list and p.rollback then return nil, "--list or --rollback, not both" end
  if (p.list or p.rollback) and p.dir then return nil, "--list and --rollback take no directory (got " .. p.dir .. ")" end
  if not (p.list or p.rollback) and not p.dir then return nil, "deploy: which directory? e.g. phanes deploy ./public --site blog" end
  return p
end

local function connect(o, p)
  local inventory = require "phanes.remote.inventory"
  local inv, ierr = inventory.load()
  if not inv then return nil, EXIT.usage, ierr end
  if p.host then
    if o.target then return nil, EXIT.usage, "--host or --remote, not both" end
    if not inv.hosts[p.host] then
      return nil, EXIT.usage, "--host " .. p.host .. ": no such host in " .. tostring(inv.path or inventory.path()) .. " (phanes host list)"
    end
    o.target = p.host
  end
  local sshcfg, serr = require("phanes.remote.sshconfig").load()
  if not sshcfg then return nil, EXIT.usage, serr end
  local targets, terr = inventory.resolve(inv, o.target, sshcfg, { port = o.port })
  if not targets then return nil, EXIT.usage, terr end
  if #targets ~= 1 then return nil, EXIT.usage, "deploy goes to one host at a time (" .. tostring(o.target) .. " names " .. #targets .. ")" end
  local t = targets[1]
  local s, msg = require("phanes.remote.connector").open(t, o)
  if not s then return nil, EXIT.connect, msg end
  return s, t
end

-- Run one action on the host. -> res | nil, code, message
local function step(s, ctx, action, id, stdin)
  local cmd = script.command(ctx.mode, action, ctx.site, id, ctx.keep)
  local input = stdin
  if ctx.mode == "password" then input = ctx.password .. "\n" .. (stdin or "") end
  local res, e = s:exec(cmd, { stdin = input })
  if not res then return nil, EXIT.connect, "connection to " .. ctx.name .. " lost: " .. tostring(e) .. "\n  current is untouched unless the switch was done; check with phanes deploy --list" end
  local mine = res.stderr:match "PHANES%-ERR ([^\n]*)"
  if res.code == 0 or (res.code == EXIT.none and not mine) then return res end
  if res.stderr:find "a password is required" and ctx.mode == "nopasswd" and ctx.password then
    -- sudo -n ran nothing: the same step again, with the password
    ctx.mode = "password"
    return step(s, ctx, action, id, stdin)
  end
  if res.stderr:find "a password is required" then
    return nil, EXIT.connect, "sudo on " .. ctx.name .. " needs the password of " .. ctx.user .. ": give it with --password-env VAR"
  end
  if res.stderr:find "incorrect password" or res.stderr:find "Sorry, try again" then
    return nil, EXIT.connect, "sudo on " .. ctx.name .. " refused the password for " .. ctx.user
  end
  if mine then return nil, res.code == EXIT.locked and EXIT.locked or res.code == EXIT.none and EXIT.none or EXIT.failed, ctx.name .. ": " .. mine end
  return nil, EXIT.failed, ctx.name .. ": the " .. action .. " step failed (exit " .. tostring(res.code or res.signal) .. "): " .. res.stderr
end

-- Root, or sudo -n; the first step (read-only) runs again with sudo -S
-- and --password-env's password when sudo -n says it needs one.
local function mode_of(s, o, ctx)
  ctx.password = o.password
  return s:info().user == "root" and "root" or "nopasswd"
end

local function human(n)
  if n < 1024 then return n .. " B" end
  if n < 1024 * 1024 then return string.format("%.1f KB", n / 1024) end
  return string.format("%.1f MB", n / 1048576)
end

local function lines(text, tag)
  local out = {}
  for v in text:gmatch("\n" .. tag .. " ([^\n]*)") do out[#out + 1] = v end
  return out
end

local function do_deploy(s, ctx, p, t)
  local res, code, msg = step(s, ctx, "state")
  if not res then return code, msg end
  local out = "\n" .. res.stdout
  local current = out:match "\nCURRENT ([^\n]*)"
  current = current ~= "" and current or nil
  local ids = {}
  for _, id in ipairs(lines(out, "RELEASE")) do ids[id] = true end
  local old = tree.parse(res.stdout:match "\nMANIFEST\n(.*)$" or res.stdout:match "^.-MANIFEST\n(.*)$")
  local d = tree.diff(old, t.entries)
  local text = tree.text(t.entries)
  local hash = require("phanes.file").sha256(text)
  -- ids sort by time: never two releases in the same second
  local function taken(now)
    local prefix = tree.release_id(now, hash):sub(1, 16)
    if current and current:sub(1, 16) >= prefix then return true end
    for other in pairs(ids) do if other:sub(1, 16) >= prefix then return true end end
    return false
  end
  -- (a deploy within the same second as the last one is stamped a second on)
  local now = os.time()
  for _ = 1, 5 do
    if not taken(now) then break end
    now = now + 1
  end
  if taken(now) then return EXIT.failed, ctx.name .. ": site " .. ctx.site .. " has a release newer than this machine's clock ("
    .. tostring(current) .. "): check the clocks" end
  local id = tree.release_id(now, hash)
  local payload, terr = tree.tar(p.dir, t, d, {
    { name = ".phanes-links", data = #d.link > 0 and (table.concat(d.link, "\0") .. "\0") or "" },
    { name = ".phanes-manifest", data = text },
  })
  if not payload then return EXIT.usage, terr end
  ctx.rec.release, ctx.rec.previous = id, current
  ctx.rec.upload = { files = #d.upload, bytes = d.bytes, linked = #d.link, tar_bytes = #payload }
  if not p.json then
    if #d.upload == 0 then
      io.stdout:write(string.format("%s: nothing to upload: %d files unchanged since %s (hard-linked)\n",
        ctx.name, #d.link, tostring(current)))
    else
      io.stdout:write(string.format("%s: uploading %d changed file%s (%s), %d unchanged hard-linked\n", ctx.name,
        #d.upload, #d.upload == 1 and "" or "s", human(d.bytes), #d.link))
    end
    io.stdout:flush()
  end
  res, code, msg = step(s, ctx, "deploy", id, payload)
  if not res then return code, msg end
  ctx.rec.cleaned = lines("\n" .. res.stdout, "CLEANED")
  ctx.rec.pruned = lines("\n" .. res.stdout, "PRUNED")
  if not p.json then
    for _, c in ipairs(ctx.rec.cleaned) do io.stdout:write("removed the partial release ", c, "\n") end
    io.stdout:write(string.format("%s: site %s: current -> releases/%s%s\n", ctx.name, ctx.site, id,
      #ctx.rec.pruned > 0 and (" (pruned " .. table.concat(ctx.rec.pruned, ", ") .. ")") or ""))
  end
  return EXIT.ok
end

local function do_list(s, ctx, p)
  local res, code, msg = step(s, ctx, "list")
  if not res then return code, msg end
  local out = "\n" .. res.stdout
  local current = out:match "\nCURRENT ([^\n]*)" or ""
  local rels = {}
  for _, l in ipairs(lines(out, "REL")) do
    local id, state, kb, mtime, files = l:match "^(%S+) (%S+) (%d+) (%d+) (%d+)"
    if id then
      rels[#rels + 1] = { id = id, complete = state == "complete", current = id == current, size = tonumber(kb) * 1024,
        time = util.iso(tonumber(mtime)), files = tonumber(files) }
    end
  end
  ctx.rec.releases = rels
  if p.json then return EXIT.ok end
  if #rels == 0 then io.stdout:write(ctx.name, ": site ", ctx.site, ": no releases\n") return EXIT.ok end
  io.stdout:write(string.format("%s: site %s (/srv/phanes/sites/%s)\n", ctx.name, ctx.site, ctx.site))
  for i = #rels, 1, -1 do
    local r = rels[i]
    io.stdout:write(string.format("%s %-30s %10s %6d files  %s%s\n", r.current and "*" or " ", r.id, human(r.size), r.files,
      r.time, r.complete and "" or "  (partial: removed by the next deploy)"))
  end
  return EXIT.ok
end

local function do_rollback(s, ctx, p)
  local res, code, msg = step(s, ctx, "rollback", p.to)
  if not res then return code, msg end
  if res.code == EXIT.none then return EXIT.none, ctx.name .. ": site " .. ctx.site .. " has no releases" end
  local from, to = res.stdout:match "SWITCHED (%S*) (%S+)"
  ctx.rec.previous, ctx.rec.release = from, to
  if not p.json then io.stdout:write(string.format("%s: site %s: current -> releases/%s (was %s)\n", ctx.name, ctx.site, tostring(to), tostring(from))) end
  return EXIT.ok
end

function M.main(argv, parsed)
  local o, rest = require("phanes.remote").parse_args(argv, parsed)
  if not o then err(rest) return EXIT.usage end
  local p, perr = M.parse(rest)
  if not p then err(perr) return EXIT.usage end
  if p.help then io.stdout:write(M.HELP) return EXIT.ok end
  local t
  if p.dir then
    local terr
    t, terr = tree.scan(p.dir)
    if not t then err("deploy: " .. terr) return EXIT.usage end
  end
  local s, target, msg = connect(o, p)
  if not s then err(msg) return target end
  local ctx = { site = p.site, keep = p.keep, name = target.name, user = s:info().user,
    rec = { host = target.name, site = p.site, started_at = util.iso(), command = { "deploy" } } }
  ctx.rec.action = p.list and "list" or p.rollback and "rollback" or "deploy"
  local t0 = util.now()
  local mode, mcode, merr = mode_of(s, o, ctx)
  local code, reason
  if not mode then code, reason = mcode, merr
  else
    ctx.mode = mode
    if p.list then code, reason = do_list(s, ctx, p)
    elseif p.rollback then code, reason = do_rollback(s, ctx, p)
    else code, reason = do_deploy(s, ctx, p, t) end
  end
  s:close()
  local rec = ctx.rec
  rec.exit_code, rec.reason, rec.duration = code, reason, util.now() - t0
  rec.status = code == EXIT.ok and "ok" or code == EXIT.connect and "lost" or "failed"
  if reason then err(reason) end
  if p.json then io.stdout:write(require("phanes.json").encode(rec, { pretty = true }), "\n") end
  if not p.list then
    rec.remote = (util.read_record(target.name) or {}).remote -- what the last run learnt of the host stays
    local ok, werr = require("phanes.remote.record").write(target.name, rec, { reason or ("deploy " .. rec.action .. " ok") })
    if not ok then err("cannot record the deploy on " .. target.name .. ": " .. tostring(werr)) end
  end
  return code
end

return M
