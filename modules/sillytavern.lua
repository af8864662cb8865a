-- sillytavern: the SillyTavern chat frontend from its git repository, run
-- by Node.js from Debian as a systemd service of its own user.
--
-- Node.js comes from Debian's nodejs and npm packages (node_packages), or
-- from an apt repository of your choice (node_apt_line, node_apt_key_url).
-- The repository (repo) is checked out at ref (the `release` branch, or a
-- pinned tag or commit) into dest, owned by the `sillytavern` user; a
-- checkout with local changes is never discarded. The dependencies are
-- installed by npm.installed (npm ci with the lockfile), only when
-- package.json or package-lock.json changed. config.yaml is seeded once
-- from config_template (the default, or a template of yours on the search
-- path) and never overwritten. Each extension (a git repository and a ref)
-- is checked out under public/scripts/extensions/third-party/<name>.
-- sillytavern.service runs `node server.js --port PORT --listen LISTEN`
-- (listen false: 127.0.0.1 only) and restarts when the code or the
-- dependencies changed. Health: GET http://127.0.0.1:PORT/ answers. A
-- re-run with a pinned ref costs no git fetch and no npm run. The sentinel
-- sillytavern.installed marks a finished install; detection looks for the
-- checkout, its installed dependencies and the answering server.
--
-- Section `sillytavern:`
--   repo: https://github.com/SillyTavern/SillyTavern
--   ref: release                 # a branch, a tag (1.12.11) or a commit
--   update: false                # true: follow the branch (one git fetch per run)
--   dest: /opt/sillytavern
--   port: 8000
--   listen: false                # true: listen on every address, not only 127.0.0.1
--   node_packages: [nodejs, npm]
--   node_apt_line: ""            # an apt source line for another Node.js (then node_apt_key_url)
--   node_apt_key_url: ""
--   node: /usr/bin/node
--   config_template: sillytavern/config.yaml
--   extensions: []               # [{ name: x, repo: https://github.com/..., ref: main }]
--
-- Example:
--   sillytavern:
--     ref: "1.12.11"
--     extensions:
--       - { name: Extension-Example, repo: "https://github.com/SillyTavern/Extension-Example", ref: main }

local URL = "[%a]+://[%w%-._~:/%[%]@%%+=?&]+"
local USER = "sillytavern"

local function probes(cfg)
  return {
    files = { cfg.dest .. "/server.js", cfg.dest .. "/package.json" },
    dirs = { cfg.dest .. "/node_modules" },
    url = "http://127.0.0.1:" .. tostring(cfg.port) .. "/",
  }
end

local function node(ctx, cfg)
  if cfg.node_apt_line ~= "" then
    if cfg.node_apt_key_url == "" then
      ctx.fail("sillytavern.node_apt_line is set without sillytavern.node_apt_key_url: give the repository's key URL")
    end
    ctx.apt.repo { name = "nodejs", line = cfg.node_apt_line, key_url = cfg.node_apt_key_url }
  end
  local pkgs = { "git", "ca-certificates", "curl" }
  for _, p in ipairs(cfg.node_packages) do pkgs[#pkgs + 1] = p end
  ctx.pkg.installed(pkgs)
end

local function extensions(ctx, cfg)
  if #cfg.extensions == 0 then return false end
  local dir = cfg.dest .. "/public/scripts/extensions/third-party"
  ctx.file.directory { path = dir, owner = USER, group = USER, mode = "0755" }
  local changed, seen = false, {}
  for i, e in ipairs(cfg.extensions) do
    if e.name:match "^%.+$" then ctx.fail("sillytavern.extensions[" .. i .. "]: the name " .. e.name .. " is not a directory name") end
    if seen[e.name] then ctx.fail("sillytavern.extensions[" .. i .. "]: the name " .. e.name .. " is used twice") end
    seen[e.name] = true
    local r = ctx.git.checkout { repo = e.repo, ref = e.ref, dest = dir .. "/" .. e.name, owner = USER,
      update = cfg.update }
    changed = changed or r.changed
  end
  return changed
end

return {
  name = "sillytavern",
  description = "SillyTavern chat frontend from git (release branch or a pinned tag), on Node.js, as a systemd service",
  version = "1",
  requires = { "baseline" },
  config = {
    repo = { type = "string", default = "https://github.com/SillyTavern/SillyTavern", pattern = URL,
      hint = "an http(s)://, git:// or file:/// URL", description = "The git repository (a mirror works too)" },
    ref = { type = "string", default = "release", pattern = "[%w._/%-]+", hint = "a branch, a tag or a commit",
      description = "What to check out: the release branch, or a pinned tag or commit" },
    update = { type = "boolean", default = false,
      description = "Follow a branch ref to its newest commit (one git fetch per run)" },
    dest = { type = "string", default = "/opt/sillytavern", format = "path", description = "Where the checkout goes" },
    port = { type = "integer", default = 8000, min = 1, max = 65535, description = "The port the server listens on" },
    listen = { type = "boolean", default = false,
      description = "Listen on every address; false: 127.0.0.1 only" },
    node_packages = { type = "list", items = { type = "string", format = "package" }, default = { "nodejs", "npm" },
      description = "The packages that bring node and npm" },
    node_apt_line = { type = "string", default = "", hint = "deb [signed-by=...] https://... nodistro main",
      description = "An apt source line for another Node.js than Debian's (empty: Debian's)" },
    node_apt_key_url = { type = "string", default = "", pattern = URL, description = "The key of node_apt_line's repository" },
    node = { type = "string", default = "/usr/bin/node", format = "path", description = "The node binary the service runs" },
    config_template = { type = "string", default = "sillytavern/config.yaml", pattern = "[%w._/%-]+",
      hint = "a template under templates/ on the search path",
      description = "What config.yaml is seeded from on the first install (never overwritten)" },
    extensions = { type = "list", default = {}, description = "Extensions checked out under public/scripts/extensions/third-party",
      items = { type = "map", fields = {
        name = { type = "string", required = true, pattern = "[%w_.%-]+", description = "Directory name" },
        repo = { type = "string", required = true, pattern = URL, description = "Its git repository" },
        ref = { type = "string", default = "main", pattern = "[%w._/%-]+", description = "Branch, tag or commit" },
      } } },
  },
  detect = probes,
  apply = function(ctx, cfg)
    node(ctx, cfg)
    ctx.group.present { name = USER, system = true }
    ctx.user.present { name = USER, system = true, group = USER, home = cfg.dest, shell = "/bin/false",
      create_home = false }
    ctx.file.directory { path = cfg.dest, owner = USER, group = USER, mode = "0755" }
    local code = ctx.git.checkout { repo = cfg.repo, ref = cfg.ref, dest = cfg.dest, owner = USER, update = cfg.update }
    local deps = ctx.npm.installed { dir = cfg.dest, owner = USER, group = USER }
    ctx.file.seed { path = cfg.dest .. "/config.yaml", owner = USER, group = USER, mode = "0640",
      content = ctx.template(cfg.config_template, { port = cfg.port, listen = cfg.listen }) }
    local ext = extensions(ctx, cfg)
    ctx.systemd.unit { name = "sillytavern.service", running = true, enabled = true,
      restart = code.changed or deps.changed or ext,
      content = ctx.template("sillytavern/sillytavern.service",
        { dest = cfg.dest, node = cfg.node, port = cfg.port, listen = cfg.listen, user = USER }) }
    ctx.fetch.check { url = probes(cfg).url, tries = 30 }
    ctx.sentinel.mark { "installed", stamp = cfg.ref }
  end,
}
