-- user: the admin user phanes sets up for you to log in with.
--
-- Creates the user, installs its SSH authorized_keys from `ssh_public_key`
-- (or the list `ssh_public_keys`), and grants sudo through a drop-in in
-- /etc/sudoers.d that is checked with `visudo -cf` before it is installed.
--
-- Top-level keys (shared with other modules):
--   username: deploy                       # required
--   ssh_public_key: "ssh-ed25519 AAAA... me@laptop"
--   ssh_public_keys: ["ssh-ed25519 ...", "ssh-rsa ..."]
--
-- Section `user:`
--   shell: /bin/bash
--   groups: [adm]              # supplementary groups
--   sudo: true                 # grant sudo
--   sudo_nopasswd: true        # the user has no password: keep true unless you set one
--
-- Example:
--   username: deploy
--   ssh_public_key: "ssh-ed25519 AAAAC3Nza... me@laptop"
--   user:
--     groups: [adm]

local shared = {
  username = { type = "string", required = true, format = "name",
    description = "The admin user created on the server (you log in as this user)" },
  ssh_public_key = { type = "string", format = "ssh_public_key",
    description = "An SSH public key allowed to log in as the admin user" },
  ssh_public_keys = { type = "list", items = { type = "string", format = "ssh_public_key" }, default = {},
    description = "More SSH public keys allowed to log in as the admin user" },
}

-- The keys from the config: ssh_public_key then ssh_public_keys, no blanks.
local function keys_of(config)
  local keys = {}
  if config.ssh_public_key and config.ssh_public_key:match "%S" then
    keys[#keys + 1] = config.ssh_public_key:match "^%s*(.-)%s*$"
  end
  for _, k in ipairs(config.ssh_public_keys or {}) do
    if k:match "%S" then keys[#keys + 1] = k:match "^%s*(.-)%s*$" end
  end
  return keys
end

return {
  name = "user",
  description = "Admin user with SSH keys and sudo",
  version = "1",
  requires = { "baseline" },
  globals = shared,
  config = {
    shell = { type = "string", default = "/bin/bash", format = "path", description = "Login shell" },
    groups = { type = "list", items = { type = "string", format = "name" }, default = {},
      description = "Supplementary groups of the admin user" },
    sudo = { type = "boolean", default = true, description = "Grant sudo to the admin user" },
    sudo_nopasswd = { type = "boolean", default = true,
      description = "sudo without a password (the user logs in with a key and has none)" },
  },
  validate = function(_, v)
    if v.config.username == "root" then v.error("username", "must not be root: phanes creates an admin user") end
  end,
  apply = function(ctx, cfg)
    local name = ctx.config.username
    if not name:match "^[a-z_][a-z0-9_%-]*$" or #name > 32 then
      ctx.fail("username '" .. name .. "' is not a valid user name (lower case letters, digits, _ and -)")
    end
    if name == "root" then ctx.fail("username must not be root: phanes creates an admin user") end
    local keys = keys_of(ctx.config)
    for i, k in ipairs(keys) do
      local ok, why = require("phanes.remote.sshkey").parse(k)
      if not ok then
        ctx.fail(("ssh public key %d is not a public key: %s (\"ssh-ed25519 AAAA... comment\")"):format(i, why))
      end
    end

    ctx.user.present { name = name, shell = cfg.shell, groups = cfg.groups }
    if #keys > 0 then
      ctx.user.authorized_keys { user = name, keys = keys }
    else
      ctx.warn("no ssh_public_key in the config: " .. name .. "'s authorized_keys left as they are")
    end
    if cfg.sudo then
      ctx.user.sudoers { name = name, content = ctx.template("user/sudoers",
        { username = name, nopasswd = cfg.sudo_nopasswd }) }
    else
      ctx.file.absent { path = "/etc/sudoers.d/" .. name }
    end
  end,
}
