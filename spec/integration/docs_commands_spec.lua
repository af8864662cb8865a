-- Docs that cannot lie: every command shown in README.md's code blocks and
-- in the examples of `phanes COMMAND --help` runs here, in the order shown,
-- and its exit code is checked (0, or the "exit N" its comment gives).
--
-- The commands are taken from the text mechanically: a code line (fenced,
-- or indented four spaces) whose first word, after an optional "$ ", is a
-- command of the SHELL list. They run in a sandbox: a temporary directory
-- with a HOME of its own, examples/demo.yaml as config.yaml, the files the
-- commands name (FIXTURES), and ~/.ssh/config sending the example hosts
-- (web1, web2, db1, and 203.0.113.x, the documentation addresses) to one
-- disposable test host. Rewritten, also mechanically: an `apply` gets
-- --dry-run (nothing here may change this machine, and remote ones stay
-- quick); 203.0.113.x becomes the test host's address. What cannot run
-- here is in SKIP, each with its reason.
local th = require "spec.support.testhost"

local BIN = th.bin()
local q = th.quote

-- first words that make a code line a command
local SHELL = { phanes = true, make = true, curl = true, printf = true, ["spec/hosts/testhost"] = true, ["T=$(cat"] = true,
  ["EDITOR=nano"] = true }

-- Commands (by their first words) that do not run here, and why.
local SKIP = {
  { "make demo", "installs Debian packages and provisions a test host: `make demo` is its own check" },
  { "make test", "the whole suite, this spec included" },
  { "make deps", "installs Debian packages on this machine (root; the internet)" },
  { "spec/hosts/testhost", "the test host harness itself: every integration spec uses it" },
  { "curl ", "needs `phanes serve` running: spec/integration/serve_spec.lua runs these four against a server" },
  { "T=$(cat", "the serve token: spec/integration/serve_spec.lua" },
  { "phanes serve [", "a synopsis, not a command" },
  { "phanes vault view | rm KEY | rekey", "a summary of three commands (vault view, rm KEY, rekey run on their own below)" },
  { "phanes vault edit", "opens $VISUAL/$EDITOR on a terminal" },
  { "EDITOR=nano phanes vault edit", "opens an editor on a terminal" },
  { "phanes check database --config config.yaml", "shows the errors of a config whose text is not shown, only its errors" },
  { "phanes vault rekey", "asks for the new password twice on a terminal (spec/integration/vault_spec.lua rekeys with --new-vault-password-file)" },
  { "phanes --remote docker:box", "needs a running Docker container: spec/integration/connector_spec.lua applies a module through docker:NAME in a test host running Docker" },
}

local function skipped(cmd)
  for _, s in ipairs(SKIP) do
    if cmd:sub(1, #s[1]) == s[1] then return s[2] end
  end
end

-- files the commands name, made in the sandbox before the first one runs
local FIXTURES = {
  ["redis.pw"] = "redis-password-1\n",
  ["db1.pw"] = "db1-password-12\n",
  ["public/index.html"] = "<h1>hello</h1>\n",
  ["my-profile.lua"] = 'return { name = "my-profile", description = "an example", modules = { "baseline", "swap" } }\n',
  -- `phanes apply modules/redis.lua`: the built-in module's own file
  ["modules/redis.lua"] = assert(th.read "modules/redis.lua"),
  ["modules/hello.lua"] = table.concat({
    "return {",
    '  name = "hello", description = "a greeting in /etc/motd",',
    '  config = { greeting = { type = "string", default = "Welcome" } },',
    "  apply = function(ctx, cfg)",
    '    ctx.file.content { path = "/etc/motd", content = cfg.greeting .. "\\n", mode = "0644" }',
    "  end,",
    "}",
  }, "\n") .. "\n",
  ["my-modules/.keep"] = "",
  ["home/.config/fish/completions/.keep"] = "",
}

-- the code lines of a markdown text that are commands: { line =, cmd = }
local function readme_commands(text)
  local out, fence, prev_blank, in_block = {}, false, true, false
  local n = 0
  for line in (text .. "\n"):gmatch "([^\n]*)\n" do
    n = n + 1
    if line:match "^%s*```" then
      fence = not fence
    else
      local code = fence or (line:match "^    " and (prev_blank or in_block))
      in_block = code and not fence and true or false
      if code then
        local c = line:gsub("^%s+", ""):gsub("^%$ ", "")
        local first = c:match "^%S+"
        if first and SHELL[first] then out[#out + 1] = { line = n, cmd = c, where = "README.md:" .. n } end
      end
    end
    prev_blank = line:match "^%s*$" ~= nil
  end
  return out
end

local function sh(cmd, stdin)
  local p = assert(io.popen(cmd .. " <" .. q(stdin or "/dev/null") .. " 2>&1"))
  local out = p:read "a"
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- the examples of each command's --help (the commands listed by `phanes --help`)
local function help_commands()
  local out = {}
  local top = sh(q(BIN) .. " --help")
  local names, seen = { "" }, {}
  for name in top:gmatch "\n  (%l[%w-]*) " do
    if not seen[name] then seen[name] = true; names[#names + 1] = name end
  end
  for _, name in ipairs(names) do
    local help = sh(q(BIN) .. " " .. name .. (name == "" and "" or " ") .. "--help")
    local ex = help:match "\n[Ee]xamples?:?\n(.*)$" or ""
    for line in ex:gmatch "[^\n]+" do
      local c = line:match "^%s+(.-)%s*$"
      local first = c and c:match "^%S+"
      if first and SHELL[first] then
        out[#out + 1] = { cmd = c, where = "phanes " .. (name == "" and "" or name .. " ") .. "--help",
          page = "help-" .. (name == "" and "phanes" or name) }
      elseif not line:match "^%s" then
        break -- the examples end with the next section
      end
    end
  end
  return out
end

-- "# exit 2 ..." (a comment that starts so): the exit code it documents
local function split_comment(cmd)
  local body, comment = cmd:match "^(.-)%s+#%s(.*)$"
  if not body then return cmd, nil end
  return body, tonumber(comment:match "^exit (%d+)")
end

-- the command's verb: its first word that is neither an option nor an option's value
local VALUED = { ["--remote"] = true, ["--path"] = true, ["--parallel"] = true, ["--user"] = true, ["--key"] = true,
  ["--port"] = true, ["--timeout"] = true, ["--config"] = true, ["--profile"] = true, ["--modules"] = true }
local function verb(cmd)
  local words = {}
  for word in cmd:gmatch "%S+" do words[#words + 1] = word end
  local i = 2
  while words[i] do
    local word = words[i]
    if word == "--profile" or word == "--modules" then return "apply" end
    if VALUED[word] then i = i + 2
    elseif word:sub(1, 1) == "-" then i = i + 1
    else return word end
  end
end

-- the mechanical rewrites
local function rewrite(cmd, ip)
  cmd = cmd:gsub("203%.0%.113%.%d+", ip)
  -- an apply (phanes apply ..., phanes --profile/--modules ..., --remote ... apply) is a dry run
  if cmd:match "^phanes " and verb(cmd) == "apply" and not cmd:find("--dry-run", 1, true) and not cmd:find("--help", 1, true) then
    local head, tail = cmd:match "^(.-)(%s*[>|].*)$"
    cmd = (head or cmd) .. " --dry-run" .. (tail or "")
  end
  return cmd
end

describe("the commands the docs show", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local w

  -- a sandbox of its own for README.md and for each --help page (their
  -- examples are a sequence each): -> dir, environment assignments
  local function sandbox(name)
    local d = w .. "/" .. name
    local F = require "phanes.file"
    for rel, text in pairs(FIXTURES) do
      assert(os.execute("mkdir -p " .. q((d .. "/" .. rel):match "^(.*)/")))
      assert(F.write(d .. "/" .. rel, text))
    end
    assert(os.execute("cp examples/demo.yaml " .. q(d .. "/config.yaml")))
    local pub = assert(th.read(th.key() .. ".pub")):gsub("%s+$", "")
    local cfg = assert(th.read(d .. "/config.yaml")):gsub('ssh_public_key: ""', 'ssh_public_key: "' .. pub .. '"')
    assert(F.write(d .. "/config.yaml", cfg))
    assert(os.execute("mkdir -p " .. q(d .. "/home/.ssh")))
    assert(F.write(d .. "/home/.ssh/config", table.concat({
      "Host web1 web2 db1", "  HostName " .. th.ip(1), "Host *", "  IdentityFile " .. th.key(), "" }, "\n")))
    if name ~= "readme" then
      -- the --help pages assume the inventory README.md's `host add` lines make
      assert(os.execute("mkdir -p " .. q(d .. "/home/.config/phanes")))
      assert(F.write(d .. "/home/.config/phanes/inventory.yaml", "default: web1\nhosts:\n"
        .. "  web1: { address: web1, user: deploy, groups: [web] }\n  web2: { address: web2, user: deploy, groups: [web] }\n"))
    end
    assert(F.write(d .. "/vault.pw", "docs-spec-vault-password\n"))
    assert(F.write(d .. "/stdin", "a-secret-value-1\n"))
    return d, table.concat({ "HOME=" .. q(d .. "/home"), "SSH_AUTH_SOCK=", "PHANES_VAULT_PASSWORD_FILE=" .. q(d .. "/vault.pw"),
      "TOKEN=a-token-value", "PATH=" .. q((BIN:match "^(.*)/") .. ":" .. os.getenv "PATH") }, " ")
  end

  setup(function()
    th.up(1)
    w = require("spec.support.fakeexec").tmpdir()
  end)

  teardown(function()
    th.down()
    if w then require("spec.support.fakeexec").rmtree(w) end
  end)

  it("README.md and every --help example: each runs and exits as documented", function()
    local cmds = readme_commands(assert(th.read "README.md"))
    assert.is_true(#cmds > 30, #cmds .. " commands found in README.md")
    local from_help = help_commands()
    assert.is_true(#from_help > 20, #from_help .. " examples found in --help")
    for _, c in ipairs(from_help) do cmds[#cmds + 1] = c end
    local failures, ran, skips, boxes = {}, 0, 0, {}
    for _, c in ipairs(cmds) do
      local page = c.page or "readme"
      if not boxes[page] then boxes[page] = { sandbox(page) } end
      local d, env = table.unpack(boxes[page])
      local body, want = split_comment(c.cmd)
      local why_skip = skipped(body)
      if why_skip then
        skips = skips + 1
      else
        local cmd = rewrite(body, th.ip(1))
        local out, code = sh("cd " .. q(d) .. " && " .. env .. " bash -c " .. q("set -o pipefail; " .. cmd), d .. "/stdin")
        ran = ran + 1
        if code ~= (want or 0) then
          failures[#failures + 1] = string.format("%s: `%s` (ran: %s) exited %s, documented %d:\n%s", c.where, c.cmd, cmd,
            tostring(code), want or 0, out:sub(-600))
        elseif cmd:find("| jq", 1, true) and out:match "^null%s*$" then
          failures[#failures + 1] = c.where .. ": `" .. c.cmd .. "` printed null"
        end
      end
    end
    assert.is_true(ran > 40, ran .. " commands ran")
    assert.equal(0, #failures, #failures .. " of " .. ran .. " commands (" .. skips .. " skipped) do not do what the docs say:\n\n"
      .. table.concat(failures, "\n\n"))
  end)
end)
