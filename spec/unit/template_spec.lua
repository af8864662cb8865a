-- The template engine: syntax, filters, whitespace, errors with lines, cache.
local template = require "phanes.template"

local NAME = "templates/redis/redis.conf"
local function render(text, vars) return template.render(text, vars or {}, NAME) end

describe("template", function()
  describe("output", function()
    it("renders variables, dotted names and indexing", function()
      assert.equal("port 6379 v16 b\n", render("port {{ port }} v{{ pg.version }} {{ l[2] }}\n",
        { port = 6379, pg = { version = 16 }, l = { "a", "b" } }))
    end)

    it("renders booleans as true/false and integral numbers without .0", function()
      assert.equal("true false 5 16 1.5 0.1", render("{{ a }} {{ b }} {{ 10 / 2 }} {{ n }} {{ 1.5 }} {{ 0.1 }}",
        { a = true, b = false, n = 16.0 }))
    end)

    it("evaluates comparisons, logic, arithmetic and concatenation", function()
      local out = render("{{ a == 1 }} {{ a ~= 1 }} {{ a != 2 }} {{ a > 0 and b < 3 }} {{ not a }} " ..
        "{{ a + b * 2 }} {{ 7 // 2 }} {{ 'v' ~ a ~ true }} {{ 'x' .. 'y' }} {{ 2 in [1, 2] }} {{ 'k' in m }} {{ 'z' not in m }}",
        { a = 1, b = 2, m = { k = 1 } })
      assert.equal("true false true true false 5 3 v1true xy true true true", out)
    end)

    it("finds the end of a tag past closers inside strings", function()
      assert.equal("a }} b {% c", render('a {{ "}}" }} b {{ "{%" }} c'))
      assert.equal("x", render('{% if "%}" == "%}" %}x{% end %}'))
    end)

    it("has no access to globals", function()
      for _, g in ipairs { "os", "io", "require", "_G", "_ENV", "string", "print" } do
        local out, err = render("{{ " .. g .. " }}")
        assert.is_nil(out)
        assert.equal(NAME .. ":1: undefined variable '" .. g .. "'", err)
      end
      local out, err = render("{{ s.rep }}", { s = "x" })
      assert.is_nil(out)
      assert.matches("undefined variable 's.rep'", err, 1, true)
      out, err = render("{{ f('x') }}", { f = print })
      assert.is_nil(out)
      assert.matches("function calls are not allowed", err, 1, true)
    end)
  end)

  describe("blocks", function()
    it("if / elif / else / end, and endif", function()
      local t = "{% if a == 1 %}one{% elif a == 2 %}two{% else %}many{% endif %}"
      assert.equal("one", render(t, { a = 1 }))
      assert.equal("two", render(t, { a = 2 }))
      assert.equal("many", render(t, { a = 3 }))
      assert.equal("x", render("{% if a %}x{% end %}", { a = 0 })) -- Lua truthiness
    end)

    it("for over a list with loop info, and for-else", function()
      assert.equal("1:a,2:b.", render("{% for x in l %}{{ loop.index }}:{{ x }}{% if not loop.last %},{% end %}{% endfor %}.",
        { l = { "a", "b" } }))
      assert.equal("none", render("{% for x in l %}{{ x }}{% else %}none{% end %}", { l = {} }))
      assert.equal("1a2b", render("{% for i, x in l %}{{ i }}{{ x }}{% end %}", { l = { "a", "b" } }))
    end)

    it("for k, v over a map in sorted key order", function()
      assert.equal("a=1 b=2 c=3 ", render("{% for k, v in m %}{{ k }}={{ v }} {% end %}",
        { m = { c = 3, a = 1, b = 2 } }))
      assert.equal("ab", render("{% for k in m %}{{ k }}{% end %}", { m = { b = 1, a = 1 } }))
    end)

    it("nested loops see outer variables and shadow vars", function()
      assert.equal("x1 x2 y1 y2 |v", render("{% for a in o %}{% for b in i %}{{ a }}{{ b }} {% end %}{% end %}|{{ a }}",
        { o = { "x", "y" }, i = { 1, 2 }, a = "v" }))
    end)

    it("drops lines holding only block tags or comments", function()
      local t = "users:\n{# the list #}\n{% for u in users %}\n  - {{ u }}\n{% end %}\nend\n"
      assert.equal("users:\n  - a\n  - b\nend\n", render(t, { users = { "a", "b" } }))
      assert.equal("a\n  b\n", render("a\n  {% if x %}  \n  b\n  {% end %}", { x = true }))
      -- an output tag keeps its line
      assert.equal("\n", render("{{ '' }}\n"))
      -- inline tags keep the line
      assert.equal("x y\n", render("x {% if true %}y{% end %}\n"))
    end)

    it("strips whitespace around {%- -%}", function()
      assert.equal("a,b,", render("{% for x in l -%}\n   {{ x }},\n{%- end %}", { l = { "a", "b" } }))
    end)
  end)

  describe("filters", function()
    it("default, including undefined names and paths", function()
      assert.equal("256mb", render("{{ maxmem | default('256mb') }}"))
      assert.equal("|", render("{{ x | default('') }}|"))
      assert.equal("d", render("{{ a.b.c | default('d') }}", { a = {} }))
      assert.equal("set", render("{{ x | default('d') }}", { x = "set" }))
      assert.equal("", render("{{ x | upper | default('') }}"))
      assert.equal("no", render("{% if x is defined %}yes{% else %}no{% end %}"))
      assert.equal("yes", render("{% if a.b is not defined %}yes{% end %}", { a = 1 }))
    end)

    it("join, indent, upper, lower, trim, replace, length", function()
      assert.equal("a, 2", render("{{ l | join(', ') }}", { l = { "a", 2 } }))
      assert.equal("a\n    b\n\n    c", render("{{ t | indent(4) }}", { t = "a\nb\n\nc" }))
      assert.equal("  a\n  b", render("{{ t | indent(2, true) }}", { t = "a\nb" }))
      assert.equal("AB ab", render("{{ s | upper }} {{ s | lower }}", { s = "aB" }))
      assert.equal("x|a-b|3 2", render("{{ '  x ' | trim }}|{{ 'a.b' | replace('.', '-') }}|{{ l | length }} {{ 'ab' | length }}",
        { l = { 1, 2, 3 } }))
    end)

    it("quote makes shell-safe words", function()
      assert.equal("abc /a/b-c.d ''", render("{{ 'abc' | quote }} {{ '/a/b-c.d' | quote }} {{ '' | quote }}"))
      assert.equal([['a b' 'it'"'"'s' '$(x)']], render("{{ a | quote }} {{ b | quote }} {{ c | quote }}",
        { a = "a b", b = "it's", c = "$(x)" }))
    end)

    it("filters chain and bind tighter than comparisons", function()
      assert.equal("true", render("{{ l | length > 1 }}", { l = { 1, 2 } }))
      assert.equal("A-B", render("{{ l | join('-') | upper }}", { l = { "a", "b" } }))
    end)
  end)

  describe("errors", function()
    local function err_of(text, vars)
      local out, err = render(text, vars)
      assert.is_nil(out)
      return err
    end

    it("names the template and line of an undefined variable", function()
      assert.equal(NAME .. ":3: undefined variable 'maxmem'", err_of("a\nb\nmaxmemory {{ maxmem }}\n"))
      assert.equal(NAME .. ":2: undefined variable 'pg.version'", err_of("x\n{{ pg.version }}", { pg = {} }))
      assert.equal(NAME .. ":4: undefined variable 'b'", err_of("\n\n{% if a %}\n{% elif b %}{% end %}", { a = false }))
      assert.equal(NAME .. ":2: undefined variable 'l'", err_of("x\n{% for x in l %}{% end %}"))
      assert.equal(NAME .. ":1: undefined variable 'x'", err_of("{{ x }}", { x = nil }))
      assert.equal(NAME .. ":1: 'x | default(nil)' is nil (undefined); use `| default(...)` to allow it",
        err_of("{{ x | default(nil) }}"))
    end)

    it("names file and line of syntax errors", function()
      assert.equal(NAME .. ":2: unclosed '{{' (no '}}' after it)", err_of("a\n{{ x\n"))
      assert.equal(NAME .. ":2: unclosed '{%' (no '%}' after it)", err_of("a\n{% if x\n"))
      assert.equal(NAME .. ":3: {% end %} without an open block", err_of("a\n\n{% end %}"))
      assert.equal(NAME .. ":1: 'if' opened here is never closed (add {% end %})", err_of("{% if x %}\nfoo\n"))
      assert.equal(NAME .. ":2: {% endfor %} closes the 'if' opened at line 1", err_of("{% if x %}\n{% endfor %}"))
      assert.equal(NAME .. ":1: unknown tag 'iff' (tags: if, elif, else, end, for)", err_of("{% iff x %}{% end %}"))
      assert.matches("^" .. NAME:gsub("%p", "%%%0") .. ":2: unexpected '%)' in 'a %+%)'$", err_of("\n{{ a +) }}"))
      assert.matches(":1: unknown filter 'bogus'", err_of("{{ x | bogus }}"), 1, true)
      assert.matches(":1: expected {% for x in list %}", err_of("{% for x %}{% end %}"), 1, true)
    end)

    it("names file and line of runtime errors", function()
      assert.equal(NAME .. ":2: join: expected a list, got a string", err_of("\n{{ s | join(',') }}", { s = "x" }))
      assert.equal(NAME .. ":1: cannot output a list ('l'); use `| join(...)` or a for loop", err_of("{{ l }}", { l = { 1 } }))
      assert.equal(NAME .. ":3: cannot loop over a string ('s')", err_of("\n\n{% for c in s %}{% end %}", { s = "x" }))
      assert.matches("^" .. NAME:gsub("%p", "%%%0") .. ":2: attempt to add", err_of("\n{{ s + 1 }}", { s = "x" }))
    end)
  end)

  describe("cache", function()
    it("compiles a template once and reuses it", function()
      local text = "cached {{ x }} " .. tostring(os.time())
      local before = template.stats.compiled
      local fn = assert(template.compile(text, "cache-test"))
      assert.equal(before + 1, template.stats.compiled)
      assert.equal(fn, template.compile(text, "cache-test"))
      assert.truthy(template.render(text, { x = 1 }, "cache-test"))
      assert.truthy(template.render(text, { x = 2 }, "cache-test"))
      assert.equal(before + 1, template.stats.compiled)
      -- another text under the same name is compiled, and both stay cached
      assert.truthy(template.render(text .. "!", { x = 1 }, "cache-test"))
      assert.equal(before + 2, template.stats.compiled)
      assert.equal(fn, template.compile(text, "cache-test"))
      assert.equal(before + 2, template.stats.compiled)
    end)

    it("caches any text, even one that looks like a bookkeeping key", function()
      assert.equal("n", template.render("n", {}, "odd"))
      assert.equal("n", template.render("n", {}, "odd"))
      assert.equal("m", template.render("m", {}, "odd"))
    end)

    it("keeps renders independent", function()
      local fn = assert(template.compile("{{ x }}", "indep"))
      assert.equal("1", fn { x = 1 })
      local _, err = fn {}
      assert.equal("indep:1: undefined variable 'x'", err)
      assert.equal("2", fn { x = 2 })
    end)
  end)

  describe("config file guards", function()
    it("word, line and quoted pass plain values through", function()
      assert.equal("a.example.com 127.0.0.1 -::1 root@example.com 10m", render(
        "{{ 'a.example.com' | word }} {{ '127.0.0.1 -::1' | line }} {{ 'root@example.com' | quoted }} {{ '10m' | word }}"))
      assert.equal("5", render("{{ 5 | word }}"))
    end)

    it("refuse what would end the value, without showing it", function()
      local cases = {
        { "word", "x; location / { root /etc; }" }, { "word", "1h\nenabled = false" }, { "word", "p q" },
        { "word", "x#y" }, { "line", ":80\nimport evil" }, { "line", "x; root /" }, { "line", "a}" },
        { "line", "a\r" }, { "quoted", 'a@b.c";\nUnattended-Upgrade::Automatic-Reboot "true' },
        { "quoted", 'a"b' }, { "quoted", "a\\b" }, { "quoted", "a\27[2J" },
      }
      for _, c in ipairs(cases) do
        local out, err = render("v {{ v | " .. c[1] .. " }}\n", { v = c[2] })
        assert.is_nil(out, c[1] .. " let through " .. c[2])
        assert.matches(NAME .. ":1: " .. c[1] .. ": the value has ", err, 1, true)
        assert.is_nil(err:find(c[2], 1, true))
      end
    end)

    it("guard every module template against the injected values", function()
      local plan = require "support.plan"
      local attacks = {
        { "nginx/default", { server_name = "x; location / { root /etc; }", listen = 80, root = "/var/www/html",
          index = { "index.html" }, proxy = false, proxy_pass = "", client_max_body_size = "16m" } },
        { "caddy/Caddyfile", { site = ":80 {\n}\nimport /etc/x\n:81", has_email = false, proxy = false,
          root = "/srv", reverse_proxy = "" } },
        { "security/jail.local", { bantime = "1h\nenabled = false", findtime = "10m", maxretry = 5,
          ignoreip = {}, port = 22 } },
        { "updates/52phanes-unattended-upgrades", { ubuntu = false, all_updates = false, remove_unused = "true",
          automatic_reboot = "false", reboot_time = "03:00", has_mail = true,
          mail = 'root@example.com";\nUnattended-Upgrade::Automatic-Reboot "true";\n//' } },
        { "monitoring/netdata.conf", { bind = "127.0.0.1\n[web]\n    bind to = 0.0.0.0", port = 19999,
          update_every = 1, history_seconds = 3600 } },
        { "redis/redis.conf", { bind = "127.0.0.1\nprotected-mode no", port = 6379, password = "s3cret-pw",
          maxmemory = "1mb", maxmemory_policy = "noeviction", appendonly = "no" } },
        { "postgres/phanes.conf", { listen_addresses = "*'\nssl = 'off", port = 5432, max_connections = 10 } },
        { "postgres/pg_hba.conf", { networks = { "0.0.0.0/0 trust" } } },
        { "baseline/locale", { locale = "C\nLC_ALL=x" } },
        { "user/sudoers", { username = "deploy ALL=(ALL) NOPASSWD: ALL\nx", nopasswd = false } },
      }
      for _, a in ipairs(attacks) do
        local ok, err = pcall(plan.render, a[1], a[2])
        assert.falsy(ok, a[1] .. " rendered an injected value")
        assert.matches("templates/" .. a[1]:gsub("%p", "%%%0") .. ":%d+: %a+: the value has ", tostring(err))
      end
    end)
  end)
end)
