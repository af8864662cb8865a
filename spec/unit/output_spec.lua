-- output.lua: colour decisions, masking, tables.
local output = require "phanes.engine.output"

-- A file-like sink collecting what is written.
local function sink()
  local s = { buf = {} }
  function s:write(...) for _, v in ipairs { ... } do self.buf[#self.buf + 1] = v end return self end
  function s:flush() end
  function s:text() return table.concat(self.buf) end
  return s
end

describe("output", function()
  describe("colour", function()
    it("is on for a terminal without NO_COLOR", function()
      assert.is_true(output.use_color("auto", nil, true))
      assert.is_true(output.use_color(nil, "", true))
    end)
    it("is off when NO_COLOR is set, or off a terminal", function()
      assert.is_false(output.use_color("auto", "1", true))
      assert.is_false(output.use_color("auto", nil, false))
    end)
    it("--color=always forces it, --color=never refuses it", function()
      assert.is_true(output.use_color("always", "1", false))
      assert.is_false(output.use_color("never", nil, true))
    end)
    it("paints only when colour is on", function()
      local on = output.new { color = "always", out = sink(), err = sink(), tty = false }
      local off = output.new { color = "auto", no_color = "1", out = sink(), err = sink(), tty = true }
      assert.equal("\27[31mx\27[0m", on:paint("red", "x"))
      assert.equal("x", off:paint("red", "x"))
    end)
  end)

  describe("masking", function()
    it("replaces every occurrence of every secret, longest first", function()
      local mask = output.masker { "abcdefgh", "xabcdefghx", "" }
      assert.equal("1 ****** 2 ******", mask "1 xabcdefghx 2 abcdefgh")
    end)
    it("treats secrets as plain text, not patterns", function()
      local mask = output.masker { "p%a.ss(word" }
      assert.equal("pw=******", mask "pw=p%a.ss(word")
      assert.equal("pw=pXa.ss(word", mask "pw=pXa.ss(word")
    end)
    it("accepts a map of secrets and numbers", function()
      local mask = output.masker { ["redis.password"] = "hunter2-pw", pin = 12345678 }
      assert.equal("****** ******", mask "hunter2-pw 12345678")
    end)
    it("scrubs a secret shorter than MIN_SCRUB only as a whole word, and none under MIN_WORD", function()
      assert.equal(8, output.MIN_SCRUB)
      assert.equal(4, output.MIN_WORD)
      local mask = output.masker { "e", "abc", "deploy", "1234567", "12345678" }
      assert.equal('{"exit_code": 1, "user": "******", "pin": ******, "x": ******, "y": "abc"}',
        mask '{"exit_code": 1, "user": "deploy", "pin": 1234567, "x": 12345678, "y": "abc"}')
      assert.equal("redeployed deploy_x 01234567 ******@host ****** deploy2",
        mask "redeployed deploy_x 01234567 deploy@host deploy deploy2")
      assert.equal("x******x", mask "x12345678x")
    end)
    it("masks everything printed, stdout and stderr", function()
      local out, err = sink(), sink()
      local o = output.new { color = "never", secrets = { "hunter2-pw" }, out = out, err = err, tty = false }
      o:say("password ", "hunter2-pw")
      o:error("bad hunter2-pw", "hint hunter2-pw")
      o:add_secrets { "tok-42-long" }
      o:warn("tok-42-long and hunter2-pw")
      assert.equal("password ******\n", out:text())
      assert.not_match("hunter2", err:text())
      assert.not_match("tok%-42", err:text())
      assert.match("phanes: bad %*%*%*%*%*%*", err:text())
    end)
    it("masks deep tables' values, never their keys", function()
      local mask = output.masker { "s3cret-pw", "e" }
      local t = output.mask_deep({ a = { "x s3cret-pw" }, ["k-s3cret-pw"] = 1, exit_code = 2, n = "e" }, mask)
      assert.same({ a = { "x ******" }, ["k-s3cret-pw"] = 1, exit_code = 2, n = "e" }, t)
    end)
    it("masks secret fields by field, whatever their length, and nothing else", function()
      local decl = { type = "map", fields = {
        redis = { type = "map", fields = { password = { type = "string", secret = true }, port = { type = "integer" } } },
        dbs = { type = "list", items = { type = "map", fields = { name = { type = "string" },
          password = { type = "string", secret = true } } } },
        env = { type = "map", secret = true },
      } }
      local cfg = { redis = { password = "e", port = 6379 }, dbs = { { name = "e", password = "deploy" } },
        env = { A = "b" }, other = { e = "e" } }
      local m = output.mask_fields(cfg, decl)
      assert.same({ redis = { password = "******", port = 6379 }, dbs = { { name = "e", password = "******" } },
        env = "******", other = { e = "e" } }, m)
      assert.equal("e", cfg.redis.password)
      assert.are_not.equal(cfg.other, m.other)
    end)
  end)

  describe("tables", function()
    it("aligns columns, ignoring colour codes, right-aligning numbers", function()
      local lines = output.format_table({ "module", "n" },
        { { "\27[32mredis\27[0m", "12" }, { "postgres", "3" } }, { [2] = true })
      assert.same({ "module     n", "\27[32mredis\27[0m     12", "postgres   3" }, lines)
    end)
    it("counts UTF-8 characters, not bytes", function()
      local lines = output.format_table({ "a", "b" }, { { "é", "x" } })
      assert.equal("é  x", lines[2])
    end)
  end)

  it("formats durations", function()
    assert.equal("0.4s", output.duration(0.42))
    assert.equal("12s", output.duration(12.3))
    assert.equal("3m05s", output.duration(185))
  end)

  it("draws progress only on a terminal", function()
    local s = sink()
    local o = output.new { color = "never", out = s, err = sink(), tty = false }
    o:progress "working"
    o:progress_done "done"
    assert.equal("done\n", s:text())
    local t = sink()
    o = output.new { color = "never", out = t, err = sink(), tty = true }
    o:progress "working"
    o:progress_done "done"
    assert.equal("\r\27[Kworking\r\27[Kdone\n", t:text())
  end)
  describe("sanitize", function()
    it("shows control characters as \\xNN and keeps newline, tab and text", function()
      assert.equal("a\\x1b]0;t\\x07b\\x0d\n\tc \\x9bd é",
        output.sanitize("a\27]0;t\7b\r\n\tc \194\155d é"))
      assert.equal("\\x1b[2J\\x1b[8mx\\x00\\x7f", output.sanitize("\27[2J\27[8mx\0\127"))
      assert.equal("plain", output.sanitize("plain"))
    end)
    it("keeps the colour codes phanes paints, and only those", function()
      assert.equal("\27[31mred\27[0m", output.sanitize("\27[31mred\27[0m"))
      assert.equal("\\x1b[31;1m", output.sanitize("\27[31;1m"))
    end)
    it("is used for everything printed", function()
      local buf = {}
      local sink = { write = function(_, ...) for _, v in ipairs { ... } do buf[#buf + 1] = v end end, flush = function() end }
      local out = output.new { color = false, out = sink, err = sink, tty = true }
      out:say("a\27[2J")
      out:write("b\27]0;x\7")
      out:error("c\r", "d\27")
      out:warn("e\8")
      out:progress("f\27[H")
      out:table({ "h" }, { { "g\27[K" } })
      local all = table.concat(buf):gsub("\r\27%[K", "") -- the progress line's own reset
      assert.is_nil(all:find("[\27\7\8\r]"), all)
    end)
  end)
end)
