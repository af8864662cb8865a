-- cli/options.lua: one declaration of every option and command, one parse
-- of argv; the help screens, the remote argv and the dispatch come from it.
local options = require "phanes.cli.options"
local cli = require "phanes.cli"
local remote = require "phanes.remote"
local runcli = require "spec.support.runcli"

describe("cli options", function()
  it("parses the remote options as ordinary options, wherever they stand", function()
    local p = assert(options.parse { "--remote", "deploy@web1", "apply", "dev", "-n", "--config", "c.yaml",
      "--key", "~/.ssh/k", "--set", "a.b=1", "--port=2222", "--strict-host-keys", "--parallel", "3" })
    assert.equal("apply", p.cmd)
    assert.same({ "dev" }, p.args)
    assert.equal("deploy@web1", p.opts.remote)
    assert.same({ "~/.ssh/k", "2222", true, "3" }, { p.opts.key, p.opts.port, p.opts["strict-host-keys"], p.opts.parallel })
    -- what the remote run gets: the command, its words, the forwarded options as given
    assert.same({ "apply", "dev", "--dry-run", "--config", "c.yaml", "--set", "a.b=1" }, options.forward(p))
    local o = assert(remote.options(p))
    assert.same({ "deploy@web1", 2222, "~/.ssh/k", true, 3, 10, "apply" },
      { o.target, o.port, o.key, o.strict, o.parallel, o.timeout, o.cmd })
  end)

  it("counts -v: -vv (or -v -v, --verbose --verbose) is verbose 2, and the remote run gets the same", function()
    assert.equal(1, options.parse({ "apply", "dev", "-v" }).opts.verbose)
    assert.equal(2, options.parse({ "apply", "dev", "-vv" }).opts.verbose)
    assert.equal(2, options.parse({ "-v", "apply", "dev", "--verbose" }).opts.verbose)
    assert.is_nil(options.parse({ "apply", "dev" }).opts.verbose)
    local p = options.parse { "--remote", "web1", "apply", "dev", "-vvn" }
    assert.same({ "apply", "dev", "--verbose", "--verbose", "--dry-run" }, options.forward(p))
  end)

  it("takes a command after --remote for the command, not for a host", function()
    local p = assert(options.parse { "--remote", "status", "--json" })
    assert.equal(true, p.opts.remote)
    assert.equal("status", p.cmd)
    p = assert(options.parse { "--remote", "@web", "--profile", "web" })
    assert.equal("@web", p.opts.remote)
    assert.equal("apply", p.cmd)
    assert.same({ "apply", "--profile", "web" }, options.forward(p))
    assert.equal("unknown command 'newcmd'", select(2, options.parse { "--remote", "x", "newcmd" }))
    assert.equal("option --remote does not apply to 'init'", select(2, options.parse { "init", "--remote", "x" }))
  end)

  it("leaves a command that reads its own arguments its words, taking only ours", function()
    local p = assert(options.parse { "host", "add", "web1", "d@10.0.0.5", "--key", "k", "--path", "dir", "--group", "web" })
    assert.equal("host", p.cmd)
    assert.same({ "add", "web1", "d@10.0.0.5", "--key", "k", "--path", "dir", "--group", "web" }, p.rest)
    assert.same({ "dir" }, p.opts.path) -- for the search path
    assert.is_nil(p.opts.key)           -- host's own --key, not the connection option
    p = assert(options.parse { "--path", "d", "serve", "--listen", "127.0.0.1:9000" })
    assert.same({ "--path", "d", "--listen", "127.0.0.1:9000" }, p.rest)
    p = assert(options.parse { "lua", "x.lua", "--path", "y", "-v" })
    assert.same({ "x.lua", "--path", "y", "-v" }, p.rest)
    assert.is_nil(p.opts.path) -- a script's arguments are its own
    local o, rest = remote.parse_args { "--remote", "web1", "deploy", "./public", "--site", "blog", "--timeout", "5" }
    assert.same({ "web1", 5 }, { o.target, o.timeout })
    assert.same({ "deploy", "./public", "--site", "blog" }, rest)
    o, rest = remote.parse_args { "deploy", "./public", "--remote", "web1", "--strict-host-keys", "--host=x" }
    assert.same({ "web1", true }, { o.target, o.strict })
    assert.same({ "deploy", "./public", "--host=x" }, rest)
  end)

  it("declares each command with the function that runs it", function()
    for name, c in pairs(options.COMMANDS) do
      if c.run then
        local fn = require(c.run)[c.fn or name]
        assert(type(fn) == "function", name .. ": no function " .. c.run .. "." .. (c.fn or name))
      else
        assert.equal("script", c.own) -- `phanes lua`: boot.lua runs it
      end
    end
  end)

  it("generates every command's help from the declaration: each option it takes is there", function()
    for name, c in pairs(options.COMMANDS) do
      if not c.own then
        local text = cli.help_text(name)
        assert.match("^usage: phanes " .. name:gsub("%-", "%%-"), text)
        for oname, o in pairs(options.OPTIONS) do
          if options.takes(o, name) and not o.hidden and not (o.cmds == "*" and (oname == "list" or oname == "version")) then
            assert(text:find("--" .. oname, 1, true), name .. " --help lacks --" .. oname)
          end
        end
      end
    end
    local main = cli.help_text()
    for oname, o in pairs(options.OPTIONS) do
      if not o.hidden and (o.cmds == "*" or o.remote) then
        assert(main:find("--" .. oname, 1, true), "phanes --help lacks --" .. oname)
      end
      if o.hidden then assert.is_nil(main:find("--" .. oname, 1, true)) end
    end
    for cname, c in pairs(options.COMMANDS) do
      if not c.hidden then assert(main:find("\n  " .. cname, 1, true), "phanes --help lacks " .. cname) end
    end
  end)

  it("prints the remote options in --help and refuses them where they mean nothing", function()
    local r = runcli.run { "--help" }
    assert.equal(0, r.code)
    for _, o in ipairs { "--remote", "--key", "--user", "--port", "--parallel", "--timeout", "--strict-host-keys",
      "--known-hosts", "--password-env" } do
      assert.truthy(r.stdout:find(o, 1, true), o)
    end
    r = runcli.run { "apply", "--help" }
    assert.equal(0, r.code)
    assert.match("remote runs: phanes %-%-remote TARGET apply", r.stdout)
    r = runcli.run { "--remote", "nosuchhost", "-h" } -- help is local, whatever else is given
    assert.equal(0, r.code, r.stderr)
    assert.match("^usage: phanes COMMAND", r.stdout)
    r = runcli.run { "init", "--key", "k" }
    assert.equal(2, r.code)
    assert.match("option %-%-key does not apply to 'init'", r.stderr)
    r = runcli.run { "--remote", "h", "facts", "--port", "99999" }
    assert.equal(2, r.code)
    assert.match("%-%-port: expected a port number", r.stderr)
  end)
end)

describe("exit codes", function()
  it("are named once, and no file in lua/ returns a literal code", function()
    local EXIT = require "phanes.cli.exit"
    assert.same({ 0, 1, 2, 3, 4, 70, 75, 130 }, { EXIT.ok, EXIT.failed, EXIT.usage, EXIT.connect, EXIT.drift,
      EXIT.internal, EXIT.locked, EXIT.interrupted })
    local p = io.popen [[grep -rnE "(return|os\.exit\() *(2|3|4|70|75|130)\b|return [^-]* (and|or) (2|3|70|75|130)\b" lua/ --include=*.lua]]
    local hits = p:read "a"
    p:close()
    assert.equal("", hits)
  end)
end)
