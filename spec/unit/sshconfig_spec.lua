-- ssh_config reading: Host patterns, first value wins, IdentityFile
-- accumulates, Include, Match skipped; and a property check on generated
-- configs against an independent model.
local sshconfig = require "phanes.remote.sshconfig"

local HOME = "/home/u"

local function lookup(text, host, files)
  local blocks = assert(sshconfig.parse(text, { name = "config", home = HOME,
    read = function(p) return files and files[p] end }))
  return sshconfig.lookup(blocks, host, HOME)
end

describe("sshconfig", function()
  it("reads an alias with HostName, User, Port, IdentityFile", function()
    local o = lookup([[
# mine
Host web1
  HostName 10.0.0.5
  User deploy
  Port 2222
  IdentityFile ~/.ssh/web
]], "web1")
    assert.same({ hostname = "10.0.0.5", user = "deploy", port = 2222, identityfile = { HOME .. "/.ssh/web" } }, o)
  end)

  it("takes a % in a user or host name as text when it expands %r and %h", function()
    local o = lookup("Host w*\n  User a%1b\n  HostName %h.x\n  IdentityFile ~/%r-%h\n", "w%9")
    assert.same({ hostname = "w%9.x", user = "a%1b", identityfile = { HOME .. "/a%1b-w%9.x" } }, o)
  end)

  it("matches a pattern of many stars in linear time", function()
    local t0 = os.clock()
    assert.is_false(sshconfig.match({ ("*"):rep(300) .. "x" }, ("a"):rep(250)))
    assert.is_true(sshconfig.match({ ("*a"):rep(100) }, ("a"):rep(250)))
    assert.is_true(os.clock() - t0 < 0.5)
  end)

  it("gives nothing for a host no block matches", function()
    assert.same({}, lookup("Host web1\n  User deploy\n", "db1"))
  end)

  it("keeps the first value, accumulates IdentityFile, accepts Key=value and quotes", function()
    local o = lookup([[
Host web*
  user=first
  IdentityFile "/keys/a key"
Host *
  User second
  Port 22
  IdentityFile id_b
]], "web7")
    assert.equal("first", o.user)
    assert.equal(22, o.port)
    assert.same({ "/keys/a key", HOME .. "/.ssh/id_b" }, o.identityfile)
  end)

  it("matches ? and negated patterns", function()
    local text = "Host db? !db9\n  User dba\n"
    assert.equal("dba", lookup(text, "db1").user)
    assert.is_nil(lookup(text, "db9").user)
    assert.is_nil(lookup(text, "db10").user)
  end)

  it("skips Match blocks and unknown keywords", function()
    local o = lookup("Match host x\n  User nope\nHost x\n  ForwardAgent yes\n  User yes\n", "x")
    assert.same({ user = "yes" }, o)
  end)

  it("expands %h in HostName and IdentityFile", function()
    local o = lookup("Host *.lan\n  HostName %h.example\n  IdentityFile ~/.ssh/%h\n", "a.lan")
    assert.equal("a.lan.example", o.hostname)
    assert.same({ HOME .. "/.ssh/a.lan.example" }, o.identityfile)
  end)

  it("follows Include, relative to ~/.ssh, inside and outside Host blocks", function()
    local files = {
      [HOME .. "/.ssh/extra"] = "Host inc\n  HostName 10.1.1.1\n",
      ["/etc/ssh/part"] = "User from-part\n",
    }
    local text = "Include extra\nHost web\n  Include /etc/ssh/part\n  Port 7\n"
    assert.equal("10.1.1.1", lookup(text, "inc", files).hostname)
    local o = lookup(text, "web", files)
    assert.equal("from-part", o.user)
    assert.equal(7, o.port)
    assert.is_nil(lookup(text, "other", files).user)
  end)

  it("reports an unterminated quote with file and line", function()
    local ok, err = sshconfig.parse('Host a\n  User "x\n', { name = "cfg" })
    assert.is_nil(ok)
    assert.equal("cfg:2: unterminated quote", err)
  end)

  it("reads StrictHostKeyChecking (first value, OpenSSH's spellings) and known hosts files", function()
    local o = lookup([[
Host web*
  StrictHostKeyChecking=Off
  UserKnownHostsFile ~/.ssh/kh_%h "/etc/phanes kh" %d/kh2
  GlobalKnownHostsFile /srv/global_kh
Host *
  StrictHostKeyChecking yes
  UserKnownHostsFile /never
]], "web1")
    assert.equal("no", o.stricthostkeychecking)
    assert.equal("config:2", o.strict_where)
    assert.same({ HOME .. "/.ssh/kh_web1", "/etc/phanes kh", HOME .. "/kh2" }, o.userknownhostsfile)
    assert.same({ "/srv/global_kh" }, o.globalknownhostsfile)
    assert.equal("yes", lookup("StrictHostKeyChecking true\n", "x").stricthostkeychecking)
    assert.equal("accept-new", lookup("StrictHostKeyChecking accept-new\n", "x").stricthostkeychecking)
    assert.equal("ask", lookup("StrictHostKeyChecking ask\n", "x").stricthostkeychecking)
    assert.same({ "/dev/null" }, lookup("UserKnownHostsFile none\n", "x").userknownhostsfile)
    assert.equal("the-box", lookup("Host x\n  HostKeyAlias the-box\n", "x").hostkeyalias)
    assert.is_true(lookup("HashKnownHosts Yes\n", "x").hashknownhosts)
    assert.is_false(lookup("HashKnownHosts no\nHashKnownHosts yes\n", "x").hashknownhosts)
  end)

  it("refuses values OpenSSH refuses, naming the file and line", function()
    local function bad(text)
      local ok, err = sshconfig.parse(text, { name = "cfg" })
      assert.is_nil(ok)
      return err
    end
    assert.equal("cfg:2: StrictHostKeyChecking: expected yes, accept-new, no or ask, got 'maybe'",
      bad("Host a\n  StrictHostKeyChecking maybe\n"))
    assert.equal("cfg:3: Port: expected a number from 1 to 65535, got '70000'", bad("Host a\n\n  Port 70000\n"))
    assert.equal("cfg:1: Port: expected a number from 1 to 65535, got 'ssh'", bad("Port ssh\n"))
    assert.equal("cfg:1: Port needs a value", bad("Port\n"))
    assert.equal("cfg:1: HashKnownHosts: expected yes or no, got 'sometimes'", bad("HashKnownHosts sometimes\n"))
  end)

  it("reports ProxyJump and ProxyCommand with their file:line, also from Match blocks; none turns them off", function()
    local text = "Host bastioned\n  ProxyJump jump@bastion:2222\nHost cmd\n  ProxyCommand ssh -W %h:%p gw\n"
      .. "Host off\n  ProxyJump none\nHost *\n  ProxyJump later\n"
    assert.same({ key = "ProxyJump", value = "jump@bastion:2222", where = "config:2" }, lookup(text, "bastioned").proxy)
    assert.same({ key = "ProxyCommand", value = "ssh -W %h:%p gw", where = "config:4" }, lookup(text, "cmd").proxy)
    assert.is_nil(lookup(text, "off").proxy)
    assert.same({ key = "ProxyJump", value = "later", where = "config:8" }, lookup(text, "other").proxy)
    local m = lookup("Match host x\n  ProxyJump gw\n", "y").proxy
    assert.same({ key = "ProxyJump", value = "gw", where = "config:2", match = true }, m)
  end)

  -- Independent model: glob by recursion, first match wins per option.
  local function glob(p, s)
    if p == "" then return s == "" end
    local c = p:sub(1, 1)
    if c == "*" then
      for i = 0, #s do if glob(p:sub(2), s:sub(i + 1)) then return true end end
      return false
    end
    if s == "" then return false end
    if c == "?" or c == s:sub(1, 1) then return glob(p:sub(2), s:sub(2)) end
    return false
  end

  local function model(blocks, host)
    local o = {}
    for _, b in ipairs(blocks) do
      local yes, no = false, false
      for _, pat in ipairs(b.patterns) do
        if pat:sub(1, 1) == "!" then no = no or glob(pat:sub(2), host) else yes = yes or glob(pat, host) end
      end
      if yes and not no then
        for _, kv in ipairs(b.opts) do
          local k, v = kv[1], kv[2]
          if k == "identityfile" then
            o.identityfile = o.identityfile or {}
            o.identityfile[#o.identityfile + 1] = "/k/" .. v
          elseif o[k] == nil then
            o[k] = k == "port" and tonumber(v) or v
          end
        end
      end
    end
    return o
  end

  local KEYS = { { "HostName", "hostname" }, { "User", "user" }, { "Port", "port" }, { "IdentityFile", "identityfile" } }

  local function gen(rng)
    local names = { "web1", "web2", "db1", "db2", "cache", "a.lan", "b.lan" }
    local pats = { "web1", "web2", "db1", "db2", "cache", "web*", "db?", "*.lan", "*", "!db2", "!web1", "?????" }
    local blocks, lines = {}, {}
    for _ = 1, rng(1, 6) do
      local b = { patterns = {}, opts = {} }
      for _ = 1, rng(1, 3) do b.patterns[#b.patterns + 1] = pats[rng(1, #pats)] end
      lines[#lines + 1] = (rng(0, 1) == 1 and "Host " or "host ") .. table.concat(b.patterns, " ")
      for _ = 1, rng(0, 4) do
        local k = KEYS[rng(1, #KEYS)]
        local v = k[2] == "port" and tostring(rng(1, 65535)) or (k[2] .. rng(1, 99))
        b.opts[#b.opts + 1] = { k[2], v }
        local kw = rng(0, 1) == 1 and k[1] or k[1]:upper()
        local val = k[2] == "identityfile" and "/k/" .. v or v
        if rng(0, 2) == 0 then lines[#lines + 1] = "  " .. kw .. "=" .. val
        elseif rng(0, 1) == 0 then lines[#lines + 1] = "\t" .. kw .. ' "' .. val .. '"'
        else lines[#lines + 1] = "    " .. kw .. " " .. val end
        if rng(0, 4) == 0 then lines[#lines + 1] = "  # a comment" end
      end
      blocks[#blocks + 1] = b
    end
    return table.concat(lines, "\n") .. "\n", blocks, names
  end

  it("agrees with a model on 300 generated configs", function()
    local seed = tonumber(os.getenv "PHANES_SEED" or "") or os.time()
    math.randomseed(seed)
    local rng = function(a, b) return math.random(a, b) end
    for _ = 1, 300 do
      local text, blocks, names = gen(rng)
      local parsed = assert(sshconfig.parse(text, { home = HOME }))
      for _, host in ipairs(names) do
        local want = model(blocks, host)
        local got = sshconfig.lookup(parsed, host, HOME)
        if want.hostname then want.hostname = want.hostname:gsub("%%h", host) end
        assert.same(want, got, "seed " .. seed .. ", host " .. host .. ":\n" .. text)
      end
    end
  end)
end)
