-- completion.lua: the scripts load in a real bash, and the candidates they
-- offer come from the CLI's tables, the search path and the inventory.
local completion = require "phanes.cli.completion"
local cli = require "phanes.cli"
local runcli = require "spec.support.runcli"

local FIX = "spec/fixtures/runner"

describe("completion", function()
  local dir, bindir
  before_each(function()
    dir = runcli.tmpdir()
    bindir = runcli.binary():match "^(.*)/[^/]*$" or "."
    runcli.write(dir .. "/inventory.yaml", [[
hosts:
  web1: { address: 10.0.0.5, groups: [web] }
  web2: { address: 10.0.0.6, groups: [web, edge] }
  db1: { address: 10.0.0.7, groups: [db] }
]])
  end)
  after_each(function() runcli.rmdir(dir) end)

  -- complete(line): what the bash function answers for the last word of line
  local function complete(line)
    local script = "source <(phanes completion bash) && COMP_WORDS=(" .. line .. ") && "
      .. "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && _phanes && printf '%s\\n' \"${COMPREPLY[@]}\""
    local cmd = "PATH=" .. runcli.quote(bindir) .. ":$PATH PHANES_INVENTORY=" .. runcli.quote(dir .. "/inventory.yaml")
      .. " NO_COLOR=1 bash -c " .. runcli.quote(script) .. " 2>&1"
    local p = io.popen(cmd)
    local out = p:read "a"
    p:close()
    local list = {}
    for l in out:gmatch "[^\n]+" do list[#list + 1] = l end
    return list, out
  end

  it("loads in bash and registers a function for phanes", function()
    local p = io.popen("PATH=" .. runcli.quote(bindir) .. ":$PATH bash -c "
      .. runcli.quote("source <(phanes completion bash); complete -p phanes") .. " 2>&1")
    local out = p:read "a"
    p:close()
    assert.equal("complete -o filenames -F _phanes phanes\n", out)
  end)

  it("offers commands, and options from the CLI's option table", function()
    local list = complete "phanes ap"
    assert.same({ "apply" }, list)
    list = complete "phanes c"
    assert.same({ "check", "completion", "config" }, list)
    list = complete "phanes apply --d"
    assert.same({ "--detailed-exitcode", "--diff", "--dry-run" }, list)
    -- every option apply takes is offered, none it does not, never the hidden one
    list = complete "phanes apply --"
    local want = {}
    for name, o in pairs(cli.OPTIONS) do
      if not o.hidden and (o.cmds == "*" or o.cmds.apply) then want[#want + 1] = "--" .. name end
    end
    table.sort(want)
    assert.same(want, list)
    for _, o in ipairs(complete "phanes status --") do assert.not_equal("--dry-run", o) end
  end)

  it("offers option values, after a space or an = (bash splits at =)", function()
    assert.same({ "always" }, complete "phanes list --color al")
    assert.same({ "always" }, complete "phanes list --color = al")
    assert.same({ "=auto", "=always", "=never" }, complete "phanes list --color =")
    assert.same({ "bash", "fish", "zsh" }, (function()
      local l = complete "phanes completion ''" table.sort(l) return l end)())
  end)

  it("offers profiles and modules, the user's (--path) too, and completes a comma list", function()
    local list = complete("phanes --path " .. FIX .. " apply ch")
    assert.same({ "chain" }, list)
    list = complete("phanes --path " .. FIX .. " apply al")
    assert.same({ "alpha" }, list)
    list = complete "phanes apply de"
    assert.same({ "dev", "devtools" }, list) -- embedded profile and module
    list = complete("phanes apply chain --path " .. FIX .. " --only alpha,be")
    assert.same({ "alpha,beta" }, list)
    list = complete("phanes --path " .. FIX .. " status gr")
    assert.same({ "greet" }, list)
  end)

  it("offers module names, the user's too, after show and help (help: commands too)", function()
    assert.same({ "redis" }, complete "phanes show red")
    assert.same({ "alpha" }, complete("phanes --path " .. FIX .. " show al"))
    assert.same({ "alpha" }, complete("phanes help --path " .. FIX .. " al"))
    assert.same({ "security", "serve", "show", "sillytavern", "status", "swap" }, (function() -- commands and modules
      local l = completion.candidates("bash", { "help", "s" }) table.sort(l) return l end)())
    assert.same({}, complete "phanes show redis ''")
  end)

  it("offers the remote options with the commands a remote run takes, and their values", function()
    local list = complete "phanes apply --st"
    assert.same({ "--state", "--strict-host-keys" }, list)
    assert.same({}, complete "phanes init --strict")
    assert.same({ ":files" }, completion.candidates("bash", { "--remote", "web1", "apply", "--key", "" }))
  end)

  it("offers inventory hosts and @groups", function()
    assert.same({ "web", "web1", "web2" }, (function() -- the profile web, and two hosts
      local l = complete "phanes check w" table.sort(l) return l end)())
    assert.same({ "@web" }, complete "phanes check @w")
    assert.same({ "@db", "@edge", "@web" }, complete "phanes config show @")
    assert.same({ "web1", "web2" }, complete "phanes host test we")
    assert.same({ "web1", "web2" }, complete "phanes --remote w")
    assert.same({ "@web,web1", "@web,web2" }, complete "phanes --remote @web,w")
    assert.same({ "apply" }, complete "phanes --remote web1 ap") -- its value is not the command
    local subs = complete "phanes host ''"
    assert.same({ "add", "default", "list", "remove", "test" }, subs)
  end)

  it("is installed by make install with PREFIX and DESTDIR, and works from there", function()
    local bin = runcli.binary()
    local b = bin:match "^(.*)/phanes$"
    local dest = dir .. "/dest"
    -- -o: the binary under test is installed as it is, never rebuilt here
    local p = io.popen("make -s -o " .. runcli.quote(bin) .. " install B=" .. runcli.quote(b)
      .. " DESTDIR=" .. runcli.quote(dest) .. " PREFIX=/usr 2>&1; echo rc=$?")
    local out = p:read "a"
    p:close()
    assert.match("rc=0\n$", out)
    p = io.popen("cd " .. runcli.quote(dest) .. " && find . -type f -printf '%m %p\\n' | sort")
    local files = p:read "a"
    p:close()
    assert.equal([[
644 ./usr/share/bash-completion/completions/phanes
644 ./usr/share/fish/vendor_completions.d/phanes.fish
644 ./usr/share/man/man1/phanes.1
644 ./usr/share/zsh/site-functions/_phanes
755 ./usr/bin/phanes
]], files)
    assert.equal(runcli.read(bin), runcli.read(dest .. "/usr/bin/phanes"))
    p = io.popen("PATH=" .. runcli.quote(dest .. "/usr/bin") .. ":$PATH bash -c "
      .. runcli.quote(". " .. dest .. "/usr/share/bash-completion/completions/phanes; "
        .. "COMP_WORDS=(phanes vers); COMP_CWORD=1; _phanes; echo \"${COMPREPLY[*]}\"; type -P phanes"))
    out = p:read "a"
    p:close()
    assert.equal("version\n" .. dest .. "/usr/bin/phanes\n", out)
    assert.match("^#compdef phanes\n", runcli.read(dest .. "/usr/share/zsh/site-functions/_phanes"))
    assert.equal(runcli.read "doc/phanes.1", runcli.read(dest .. "/usr/share/man/man1/phanes.1"))
  end)

  it("loads in zsh, and answers in fish", function()
    local function sh(cmd)
      local p = io.popen("PATH=" .. runcli.quote(bindir) .. ":$PATH PHANES_INVENTORY="
        .. runcli.quote(dir .. "/inventory.yaml") .. " " .. cmd .. " 2>&1")
      local out = p:read "a"
      p:close()
      return out
    end
    assert.equal("_phanes\n", sh("zsh -fc " .. runcli.quote("autoload -U compinit; compinit -u -D; "
      .. "source <(phanes completion zsh); print -- ${_comps[phanes]}")))
    -- the zsh function itself, with compadd and _files standing in for zsh's completion system
    assert.equal("--dry-run\nFILES\n--color=auto\n--color=always\n", sh("zsh -fc " .. runcli.quote(
      "compdef(){}; source <(phanes completion zsh); compadd(){ shift 2; print -l -- \"$@\" }; "
      .. "_files(){ print FILES }; words=(phanes apply --dr); CURRENT=3; _phanes; "
      .. "words=(phanes --config ''); CURRENT=3; _phanes; words=(phanes list --color=a); CURRENT=3; _phanes")))
    assert.equal("apply\n--dry-run\n--color=always\n@web\n", sh("fish -c " .. runcli.quote(
      "phanes completion fish | source; complete -C'phanes ap'; complete -C'phanes apply --dr'; "
      .. "complete -C'phanes list --color=al'; complete -C'phanes check @w'")))
  end)

  it("answers any other shell and an unknown one", function()
    for _, sh in ipairs(completion.SHELLS) do
      local r = runcli.run({ "completion", sh }, {})
      assert.equal(0, r.code)
      assert.match("__complete " .. sh, r.stdout)
    end
    local r = runcli.run({ "completion", "ksh" }, {})
    assert.equal(2, r.code)
    assert.match("one of: bash, zsh, fish", r.stderr)
    -- zsh and fish keep "--opt=" in the word: the candidates carry it
    assert.same({ "--color=always" }, completion.candidates("zsh", { "list", "--color=al" }))
    assert.same({ "always" }, completion.candidates("bash", { "list", "--color", "=", "al" }))
  end)
end)
