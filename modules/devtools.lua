-- devtools: git, build tools and language runtimes from Debian packages.
--
-- Section `devtools:`
--   runtimes: [python, node]     # python, node, go, ruby, rust, java, php
--   packages: [jq, tmux]         # more packages
--
-- Runtimes and the Debian packages they install:
--   python: python3 python3-pip python3-venv     node: nodejs npm
--   go: golang-go     ruby: ruby-full     rust: rustc cargo
--   java: default-jdk-headless     php: php-cli composer
--
-- Example:
--   devtools:
--     runtimes: [python, go]
--     packages: [jq, ripgrep]

local RUNTIMES = {
  python = { "python3", "python3-pip", "python3-venv" },
  node = { "nodejs", "npm" },
  go = { "golang-go" },
  ruby = { "ruby-full" },
  rust = { "rustc", "cargo" },
  java = { "default-jdk-headless" },
  php = { "php-cli", "composer" },
}

local BASE = { "git", "build-essential", "make", "pkg-config", "jq", "tmux", "unzip" }

return {
  name = "devtools",
  description = "git, build-essential and language runtimes (Debian packages)",
  version = "1",
  requires = { "baseline" },
  config = {
    runtimes = { type = "list", default = { "python" },
      items = { type = "enum", values = { "python", "node", "go", "ruby", "rust", "java", "php" } },
      description = "Language runtimes: python, node, go, ruby, rust, java, php" },
    packages = { type = "list", items = { type = "string", format = "package" }, default = {},
      description = "More packages to install" },
  },
  apply = function(ctx, cfg)
    local pkgs, seen = {}, {}
    local function add(list)
      for _, p in ipairs(list) do
        if not seen[p] then seen[p] = true; pkgs[#pkgs + 1] = p end
      end
    end
    add(BASE)
    for _, r in ipairs(cfg.runtimes) do
      local list = RUNTIMES[r]
      if not list then ctx.fail("devtools.runtimes: unknown runtime '" .. tostring(r) .. "'") end
      add(list)
    end
    add(cfg.packages)
    ctx.pkg.installed(pkgs)
  end,
}
