-- After a run that changed something, the server's host keys are read over
-- the connection whose key was just verified, and the key types the
-- controller's known_hosts lacks for that host are added, as OpenSSH's
-- UpdateHostKeys does. So a run that drops a key type (security.ssh_crypto:
-- modern drops ECDSA) does not leave a known_hosts the next run refuses.
-- Lines already there are kept; nothing is removed; a @revoked key is
-- never added. A hashed known_hosts
-- (HashKnownHosts yes) is left alone, with a note.
local M = {}

local PUBS = "/etc/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_rsa_key.pub /etc/ssh/ssh_host_ecdsa_key.pub"

local function home_path(p)
  if p:sub(1, 2) == "~/" then return (os.getenv "HOME" or "") .. p:sub(2) end
  return p
end

-- the known_hosts name of the target: "host" or "[host]:port"
function M.name(t, o)
  local host = t.hostkey_alias or t.host
  local port = math.tointeger(o.port or t.port or 22)
  if port ~= 22 and not t.hostkey_alias then return "[" .. host .. "]:" .. port end
  return host
end

-- missing(known_text, name, pubs_text) -> lines to add ("name type key")
function M.missing(known_text, name, pubs_text)
  local ssh = require "phanes.ssh"
  local have, revoked = {}, {}
  for _, l in ipairs(ssh.known_hosts(known_text or "", name)) do
    if l.marker == "revoked" then revoked[l.key] = true
    elseif l.match == 1 and not l.marker then have[l.type] = true end
  end
  local add = {}
  for line in (pubs_text or ""):gmatch "[^\n]+" do
    local ktype, key = line:match "^(%S+)%s+([%w+/=]+)"
    if ktype and not have[ktype] and not revoked[key] then
      have[ktype] = true
      add[#add + 1] = name .. " " .. ktype .. " " .. key
    end
  end
  return add
end

-- update(s, t, o, say): s is the open session, t the target, o the options
function M.update(s, t, o, say)
  if t.hash_known_hosts then
    return say("host keys of " .. t.host .. " not updated: your known_hosts is hashed (HashKnownHosts)")
  end
  local path = home_path(o.known_hosts or t.known_hosts or "~/.ssh/known_hosts")
  local res = s:exec("cat " .. PUBS .. " 2>/dev/null")
  if not res or res.stdout == "" then return end
  local pfile = require "phanes.file"
  local text = pfile.read(path)
  if not text then return end
  local name = M.name(t, o)
  local add = M.missing(text, name, res.stdout)
  if #add == 0 then return end
  local sep = (text == "" or text:sub(-1) == "\n") and "" or "\n"
  local ok, werr = pfile.write(path, text .. sep .. table.concat(add, "\n") .. "\n", { mode = tonumber("0600", 8) })
  if not ok then return say("cannot record the new host keys of " .. name .. " in " .. path .. ": " .. tostring(werr)) end
  local types = {}
  for i, l in ipairs(add) do types[i] = l:match "^%S+ (%S+)" end
  say("recorded the host keys of " .. name .. " read over the verified connection (" ..
    table.concat(types, ", ") .. ") in " .. path .. "; the lines already there are kept")
end

return M
