-- remote/connector/ssh.lua: the ssh connector: libssh2 (phanes.ssh), with
-- the inventory's and ssh_config's settings, the host key policy, the
-- terminal's password and host key questions. One session = one
-- authenticated connection; each exec is one channel, put/get are SFTP.
local util = require "phanes.remote.util"
local connector = require "phanes.remote.connector"
local M = {}

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

local HINTS = {
  resolve = "check the name, or add the host: `phanes host add NAME ADDRESS`",
  refused = "is sshd running there and listening on that port? (--port N)",
  unreachable = "check the address and the network route to it",
  timeout = "no answer: check the address and any firewall in between, or raise --timeout",
  auth = "give a key with --key PATH (or ssh-add it), or a password with --password-env VAR",
  protocol = "is that port an SSH server?",
}

local function expand(path)
  if path and path:sub(1, 2) == "~/" then return (os.getenv "HOME" or "") .. path:sub(2) end
  return path
end

-- StrictHostKeyChecking ask, on a terminal: OpenSSH's question; a yes
-- connects again recording only the key that was shown.
local function ask_hostkey(ssh, opts, info, msg, kind)
  local tty = io.open("/dev/tty", "r")
  if not tty then return nil, msg, kind end
  io.stderr:write(string.format("The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\n"
    .. "Are you sure you want to continue connecting (yes/no)? ", info.name, info.type, info.fingerprint))
  local answer = tty:read "l"
  tty:close()
  if answer ~= "yes" then return nil, msg .. "\n  (not accepted at the StrictHostKeyChecking ask question)", kind end
  opts.accept_fingerprint = info.fingerprint
  return ssh.connect(opts)
end

local function ssh_opts(t, o, interactive)
  local key = expand(o.key or t.key)
  if key then
    local f, ferr = io.open(key, "rb")
    if not f then return nil, "--key " .. key .. ": cannot read it (" .. tostring(ferr) .. ")" end
    f:close()
  end
  local identities = key and { key } or nil
  if not identities and t.identities then
    identities = {}
    for _, f in ipairs(t.identities) do identities[#identities + 1] = expand(f) end
  end
  return {
    host = t.host, port = math.tointeger(o.port or t.port or 22), user = t.user or o.user or os.getenv "USER" or "root",
    timeout = o.timeout or 10, known_hosts = o.known_hosts and expand(o.known_hosts) or t.known_hosts,
    global_known_hosts = t.global_known_hosts, strict = o.strict and "yes" or t.strict or "accept-new",
    hostkey_alias = t.hostkey_alias, hash_known_hosts = t.hash_known_hosts,
    identities = identities, password = o.password, passphrase = os.getenv "PHANES_KEY_PASSPHRASE",
    prompt = interactive and function(q) return require("phanes.sys").getpass(q) end or nil,
  }
end

local function explain(t, o, msg, kind)
  local hint = HINTS[kind]
  if hint and not kind:match "^hostkey" then msg = msg .. "\n  " .. hint end
  if kind == "hostkey_unknown" and o.strict then
    msg = msg .. "\n  (--strict-host-keys; without it a new key is recorded)"
  elseif kind == "hostkey_unknown" and t.strict_where then
    msg = msg .. "\n  (StrictHostKeyChecking " .. t.strict .. " at " .. t.strict_where .. ")"
  end
  return msg
end

local S = {}
S.__index = S

function S:exec(cmd, opts)
  if type(cmd) == "table" then cmd = connector.shell_words(cmd) end
  return self.s:exec(cmd, opts)
end

function S:put(path, data, mode) return self.s:upload(data, path, mode) end
function S:get(path) return self.s:download(path) end
function S:stats() return self.s:stats() end
function S:close() return self.s:close() end

function S:info()
  local i = self.s:info()
  i.connector = "ssh"
  i.arch = self.arch
  return i
end

-- wrap(raw phanes.ssh session) -> connector session (specs hand in a fake)
function M.wrap(s)
  return setmetatable({ s = s }, S)
end

-- ssh.open(target, opts) -> session | nil, message, kind
-- Prompts for a password on a terminal when keys fail and the server takes
-- passwords (not in fleet children). opts.password is set to the password
-- that worked (sudo may want it too).
function M.open(t, o)
  local ssh = require "phanes.ssh"
  local interactive = util.isatty(0) and not os.getenv "PHANES_NO_PROMPT"
  local opts, oerr = ssh_opts(t, o, interactive)
  if not opts then return nil, oerr, "auth" end
  local s, msg, kind, info = ssh.connect(opts)
  if not s and kind == "hostkey_unknown" and opts.strict == "ask" and interactive and info then
    s, msg, kind, info = ask_hostkey(ssh, opts, info, msg, kind)
  end
  if not s and kind == "auth" and interactive and not opts.password and info and info.methods:find "password" then
    opts.password = require("phanes.sys").getpass(string.format("%s@%s's password: ", opts.user, t.host))
    if opts.password and opts.password ~= "" then s, msg, kind = ssh.connect(opts) end
  end
  if not s then return nil, explain(t, o, msg, kind), kind end
  local i = s:info()
  if i.hostkey_added then
    err(string.format("recorded the host key of %s:%d (%s %s) in %s", t.host, opts.port,
      i.hostkey_type, i.hostkey_fingerprint, i.hostkey_added))
  end
  o.password = o.password or opts.password
  return M.wrap(s)
end

return M
