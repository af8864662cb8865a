-- phanes deploy end to end on one disposable test host, logged in as the
-- passwordless sudo user "deploy": releases under /srv/phanes/sites, owned
-- by phanes-deploy; hard links for unchanged files; --keep; --list;
-- --rollback; refused input leaving the host as it was; a controller
-- killed mid-upload leaving current alone. Every check looks at the host.
local th = require "spec.support.testhost"
local json = require "phanes.json"

local runcli = require "spec.support.runcli"
local on = require "spec.support.onhost"

local q = th.quote
local write, command, phanes, host = runcli.write, runcli.at_home_command, runcli.at_home, on.host

local SITE = "/srv/phanes/sites/blog"

describe("phanes deploy", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local home, key, target, src, site
  -- `phanes deploy src EXTRA...` to host 1 as deploy, site blog
  local function deploy(extra)
    local words = { src }
    for _, a in ipairs(extra or {}) do words[#words + 1] = a end
    return site(words)
  end
  local function current()
    local _, out = host("readlink " .. SITE .. "/current")
    return out:match "^releases/(%S+)$"
  end
  local function releases()
    local _, out = host("ls " .. SITE .. "/releases")
    local t = {}
    for l in out:gmatch "[^\n]+" do t[#t + 1] = l end
    return t
  end
  setup(function()
    th.up(1)
    key = th.key()
    target = "deploy@" .. th.ip(1)
    home = require("spec.support.fakeexec").tmpdir()
    site = runcli.deployer(home, target, key, "blog")
    src = home .. "/site"
    assert(os.execute("mkdir -p " .. q(src .. "/css") .. " " .. q(src .. "/img")))
    write(src .. "/index.html", "<h1>v1</h1>\n")
    write(src .. "/css/site.css", "body { color: black }\n")
    write(src .. "/img/logo.txt", "logo\n")
    assert(os.execute("ln -s index.html " .. q(src .. "/home.html")))
  end)
  teardown(function()
    th.down()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  local first, second
  it("uploads a directory as the first release, owned by phanes-deploy, current pointing at it", function()
    local code, out = deploy()
    assert.equal(0, code, out)
    assert.matches("uploading 3 changed files", out, 1, true)
    first = current()
    assert.is_string(first, out)
    assert.matches("^%d+T%d+Z%-%x+$", first)
    local ok, got = host("cat " .. SITE .. "/current/index.html; readlink " .. SITE .. "/current/home.html")
    assert.is_true(ok, got)
    assert.equal("<h1>v1</h1>\nindex.html", got)
    ok, got = host("stat -c '%U %a' " .. SITE .. " " .. SITE .. "/releases/" .. first .. " " .. SITE .. "/current/index.html "
      .. SITE .. "/current/css/site.css; stat -c '%U %a' /srv/phanes/sites")
    assert.is_true(ok, got)
    assert.equal("phanes-deploy 755\nphanes-deploy 755\nphanes-deploy 644\nphanes-deploy 644\nroot 755", got)
    -- the manifest is not inside the served tree
    ok, got = host("ls -A " .. SITE .. "/current")
    assert.equal("css\nhome.html\nimg\nindex.html", got)
  end)

  it("re-deploys an unchanged tree uploading nothing: a new release of hard links", function()
    local code, out = deploy()
    assert.equal(0, code, out)
    assert.matches("nothing to upload", out, 1, true)
    local rec = assert(runcli.record(home, target))
    assert.same({ files = 0, bytes = 0, linked = 3 }, { files = rec.upload.files, bytes = rec.upload.bytes, linked = rec.upload.linked })
    second = current()
    assert.equal(second, rec.release)
    assert.is_string(second)
    assert.are_not.equal(first, second)
    local ok, got = host("stat -c %i " .. SITE .. "/releases/" .. first .. "/index.html " .. SITE .. "/releases/" .. second
      .. "/index.html; stat -c %h " .. SITE .. "/releases/" .. second .. "/css/site.css")
    assert.is_true(ok, got)
    local a, b, links = got:match "^(%d+)\n(%d+)\n(%d+)$"
    assert.equal(a, b, got)
    assert.equal("2", links)
  end)

  it("uploads only the changed file, and --keep 2 leaves two releases", function()
    write(src .. "/index.html", "<h1>v2</h1>\n")
    local code, out = deploy { "--keep", "2", "--json" }
    assert.equal(0, code, out)
    local doc = assert(json.decode(out:match "%b{}"), out)
    assert.equal(1, doc.upload.files)
    assert.equal(2, doc.upload.linked)
    assert.equal(#"<h1>v2</h1>\n", doc.upload.bytes)
    local third = current()
    assert.equal(doc.release, third)
    local _, got = host("cat " .. SITE .. "/current/index.html")
    assert.equal("<h1>v2</h1>", got)
    assert.same({ second, third }, releases())
    local _, mans = host("ls " .. SITE .. "/manifests")
    assert.equal(second .. "\n" .. third, mans)
    -- the unchanged css is still the first upload's inode
    local _, i2 = host("stat -c %i " .. SITE .. "/releases/" .. second .. "/css/site.css " .. SITE .. "/releases/" .. third .. "/css/site.css")
    local x, y = i2:match "^(%d+)\n(%d+)$"
    assert.equal(x, y)
    -- --list shows both, the current one marked
    code, out = site { "--list" }
    assert.equal(0, code, out)
    assert.matches("* " .. third, out, 1, true)
    assert.matches("  " .. second, out, 1, true)
  end)

  it("--rollback switches current back to the previous release", function()
    local before = current()
    local code, out = site { "--rollback" }
    assert.equal(0, code, out)
    assert.equal(second, current())
    local _, got = host("cat " .. SITE .. "/current/index.html")
    assert.equal("<h1>v1</h1>", got)
    -- and forward again by id
    code, out = site { "--rollback", "--to", before }
    assert.equal(0, code, out)
    assert.equal(before, current())
    -- nothing older than the oldest
    site { "--rollback", "--to", second }
    code, out = site { "--rollback" }
    assert.equal(4, code, out)
    assert.matches("no release older", out)
    site { "--rollback", "--to", before }
  end)

  it("refuses a missing or empty directory, a symlink out of it and a bad site name (exit 2, host unchanged)", function()
    local snap = "ls -lAR --time-style=full-iso /srv/phanes; getent passwd | wc -l"
    local _, before = host(snap)
    local empty, outside = home .. "/empty", home .. "/outside"
    assert(os.execute("mkdir -p " .. q(empty) .. " " .. q(outside .. "/d")))
    write(outside .. "/ok.html", "x\n")
    assert(os.execute("ln -s ../../site/index.html " .. q(outside .. "/d/sneaky")))
    local cases = {
      { { home .. "/missing" }, "no such directory" },
      { { empty }, "empty" },
      { { outside }, "symlink pointing outside" },
      { { src, "--site", "../etc" }, "plain word" },
      { { src, "--site", "a b" }, "plain word" },
      { { src, "--site", "" }, "plain word" },
      { { src, "--keep", "0" }, "--keep" },
    }
    for _, c in ipairs(cases) do
      local args = { "deploy" }
      for _, a in ipairs(c[1]) do args[#args + 1] = a end
      for _, a in ipairs { "--remote", target, "--key", key } do args[#args + 1] = a end
      local code, out = phanes(home, args)
      assert.equal(2, code, table.concat(c[1], " ") .. ": " .. out)
      assert.matches(c[2], out, 1, true)
    end
    local _, after = host(snap)
    assert.equal(before, after)
  end)

  it("a controller killed mid-upload leaves current untouched; the next deploy removes the partial release", function()
    local big = home .. "/big"
    assert(os.execute("mkdir -p " .. q(big) .. " && cp -r " .. q(src) .. "/. " .. q(big)
      .. " && head -c 400000000 /dev/urandom > " .. q(big .. "/big.bin")))
    local before = current()
    local pidfile = home .. "/pid"
    local args = { "deploy", big, "--remote", target, "--key", key, "--site", "blog" }
    assert(os.execute("(" .. command(home, args) .. " >" .. q(home .. "/big.log") .. " 2>&1 </dev/null & echo $! >" .. q(pidfile) .. ")"))
    -- wait until the big file is arriving on the host, then kill the controller
    local seen
    for _ = 1, 300 do
      local _, got = host("find " .. SITE .. "/releases -name big.bin -size +1M")
      if got:match "big%.bin" then seen = got break end
      os.execute("sleep 0.2")
    end
    local f = assert(io.open(pidfile))
    local pid = f:read "l"
    f:close()
    os.execute("pkill -KILL -P " .. pid .. "; kill -KILL " .. pid .. " 2>/dev/null")
    assert.is_string(seen, "the upload never reached the host")
    local partial = seen:match "releases/([^/]+)/big%.bin"
    os.execute("sleep 1")
    assert.equal(before, current())
    local ok = host("test -d " .. SITE .. "/releases/" .. partial .. " && test ! -e " .. SITE .. "/manifests/" .. partial)
    assert.is_true(ok, "the partial release should still be there until the next deploy")
    local _, served = host("cat " .. SITE .. "/current/index.html")
    assert.equal("<h1>v2</h1>", served)
    -- the next deploy succeeds and cleans it
    write(src .. "/index.html", "<h1>v3</h1>\n")
    local code, out = deploy()
    assert.equal(0, code, out)
    assert.matches("removed the partial release " .. partial, out, 1, true)
    local _, got = host("cat " .. SITE .. "/current/index.html; ls " .. SITE .. "/releases")
    assert.matches("^<h1>v3</h1>\n", got)
    assert.is_nil(got:find(partial, 1, true), got)
  end)

  it("deploys as a sudo user that needs a password (--password-env)", function()
    local code, out = phanes(home, { "deploy", src, "--remote", "alice@" .. th.ip(1), "--key", key, "--site", "alice-site",
      "--password-env", "PW" })
    -- without the variable set: refused before connecting
    assert.equal(2, code, out)
    local cmd = command(home, { "deploy", src, "--remote", "alice@" .. th.ip(1), "--key", key, "--site", "alice-site",
      "--password-env", "PW" }):gsub("HOME=", "PW=" .. q(th.password()) .. " HOME=", 1)
    local p = assert(io.popen(cmd .. " </dev/null 2>&1"))
    out = p:read "a"
    local _, _, rc = p:close()
    assert.equal(0, rc, out)
    local _, got = host("cat /srv/phanes/sites/alice-site/current/index.html; stat -c %U /srv/phanes/sites/alice-site/current/index.html")
    assert.equal("<h1>v3</h1>\nphanes-deploy", got)
    -- logged in as root, and through `--remote TARGET deploy`: the files are still phanes-deploy's
    code, out = phanes(home, { "--remote", "root@" .. th.ip(1), "--key", key, "deploy", src, "--site", "rootsite" })
    assert.equal(0, code, out)
    _, got = host("cat /srv/phanes/sites/rootsite/current/index.html; stat -c %U /srv/phanes/sites/rootsite/current/index.html")
    assert.equal("<h1>v3</h1>\nphanes-deploy", got)
  end)

  it("nginx serves current; a deploy switches what it serves without a reload, never a 404 or a mix", function()
    write(home .. "/phanes.yaml", "timezone: UTC\nlocale: C.UTF-8\nnginx:\n  deploy_site: blog\n")
    local code, out = phanes(home, { "--remote", "root@" .. th.ip(1), "--key", key, "--modules", "nginx",
      "--config", home .. "/phanes.yaml" })
    assert.equal(0, code, out)
    local url = "http://" .. th.ip(1) .. "/"
    local function get()
      local p = assert(io.popen("curl -s --max-time 5 " .. q(url)))
      local body = p:read "a"
      p:close()
      return body
    end
    -- the apply reloaded nginx: its new workers take a moment
    local body
    for _ = 1, 50 do
      body = get()
      if body == "<h1>v3</h1>\n" then break end
      os.execute("sleep 0.2")
    end
    assert.equal("<h1>v3</h1>\n", body, out)
    -- master and workers: a reload would replace the workers, a restart the master
    local procs = "cat /run/nginx.pid; pgrep -P $(cat /run/nginx.pid) | sort"
    local _, pid_before = host(procs)
    -- a big page whose halves must always match, fetched in a loop during the deploy
    local function page(v) return "<h1>" .. v .. "</h1>\n" .. string.rep(v .. "\n", 20000) end
    write(src .. "/index.html", page "v4")
    code, out = deploy()
    assert.equal(0, code, out)
    assert.equal(page "v4", get())
    local log = home .. "/curl.log"
    local loop = io.popen("for i in $(seq 300); do curl -s --max-time 5 -o /dev/null -w '%{http_code} %{size_download}\\n' "
      .. q(url) .. "; done > " .. q(log) .. " 2>&1", "r")
    write(src .. "/index.html", page "v5")
    code, out = deploy()
    assert.equal(0, code, out)
    loop:close()
    assert.equal(page "v5", get())
    local f = assert(io.open(log))
    local n, sizes = 0, { [tostring(#page "v4")] = true, [tostring(#page "v5")] = true }
    for line in f:lines() do
      n = n + 1
      local status, size = line:match "^(%d+) (%d+)$"
      assert.equal("200", status, line)
      assert.is_true(sizes[size] ~= nil, line)
    end
    f:close()
    assert.equal(300, n)
    local _, pid_after = host(procs)
    assert.matches("^%d+\n%d+", pid_after)
    assert.equal(pid_before, pid_after)
  end)

  it("caddy serves current too, and a deploy does not restart or reload it", function()
    write(home .. "/caddy.yaml", "timezone: UTC\nlocale: C.UTF-8\ncaddy:\n  site: \":8080\"\n  deploy_site: blog\n")
    local code, out = phanes(home, { "--remote", "root@" .. th.ip(1), "--key", key, "--modules", "caddy",
      "--config", home .. "/caddy.yaml" })
    assert.equal(0, code, out)
    local url = "http://" .. th.ip(1) .. ":8080/"
    local function get()
      local p = assert(io.popen("curl -s --max-time 5 " .. q(url)))
      local body = p:read "a"
      p:close()
      return body
    end
    local _, want = host("cat " .. SITE .. "/current/index.html")
    local body
    for _ = 1, 50 do
      body = get()
      if body == want .. "\n" then break end
      os.execute("sleep 0.2")
    end
    assert.equal(want .. "\n", body, out)
    local _, pid_before = host("systemctl show -p MainPID caddy")
    write(src .. "/index.html", "<h1>caddy</h1>\n")
    code, out = deploy()
    assert.equal(0, code, out)
    assert.equal("<h1>caddy</h1>\n", get())
    local _, pid_after = host("systemctl show -p MainPID caddy")
    assert.matches("^MainPID=%d+$", pid_after)
    assert.equal(pid_before, pid_after)
  end)

  it("goes to the inventory's default host or --host NAME, keeps 5 of 7 releases by default, and records each deploy", function()
    local code, out = phanes(home, { "host", "add", "web", "deploy@" .. th.ip(1), "--key", key, "--default" })
    assert.equal(0, code, out)
    code, out = phanes(home, { "deploy", src, "--host", "nope", "--site", "seven" })
    assert.equal(2, code, out)
    assert.matches("no such host", out)
    local ids = {}
    for i = 1, 7 do
      write(src .. "/n.txt", tostring(i))
      code, out = phanes(home, i % 2 == 0 and { "deploy", src, "--host", "web", "--site", "seven" } or { "deploy", src, "--site", "seven" })
      assert.equal(0, code, out)
      ids[i] = out:match "current %-> releases/(%S+)"
    end
    local _, got = host("ls /srv/phanes/sites/seven/releases; cat /srv/phanes/sites/seven/current/n.txt")
    assert.equal(table.concat({ ids[3], ids[4], ids[5], ids[6], ids[7], "7" }, "\n"), got)
    local rec = assert(runcli.record(home, "web"))
    assert.equal(ids[7], rec.release)
    assert.equal(ids[6], rec.previous)
    assert.equal("seven", rec.site)
    assert.same({ ids[2] }, rec.pruned)
    assert.equal(1, rec.upload.files)
  end)
end)
