-- The comfyui and lmstudio modules' plans on a recording ctx
-- (spec/support/plan.lua): the torch index from the nvidia fact (and the
-- fact itself), custom nodes, the unit; lmstudio's archive, link, seed and
-- server, and their refusals.
local plan = require "support.plan"
local facts = require "phanes.engine.facts"
local fakeexec = require "support.fakeexec"

local SHA = string.rep("ab", 32)

local function comfy(section, opts)
  return plan.run(plan.module "comfyui", { comfyui = section or {} }, opts or {})
end

local function lm(section, opts)
  local s = { archive_url = "https://mirror.example.com/lms/{version}/LM-Studio-{version}-x64.tar.gz", sha256 = SHA,
    version = "0.3.30" }
  for k, v in pairs(section or {}) do s[k] = v end
  return plan.run(plan.module "lmstudio", { lmstudio = s }, opts or {})
end

describe("the nvidia fact", function()
  it("is true when nvidia-smi is in one of the places the driver puts it", function()
    local dir = fakeexec.tmpdir()
    local paths = { nvidia_smi = { dir .. "/usr/bin/nvidia-smi", dir .. "/bin/nvidia-smi" } }
    assert.is_false(facts.new(paths).nvidia)
    os.execute("mkdir " .. dir .. "/bin")
    fakeexec.write(dir .. "/bin/nvidia-smi", "#!/bin/sh\n")
    assert.is_true(facts.new(paths).nvidia)
    fakeexec.rmtree(dir)
  end)
end)

describe("comfyui module", function()
  it("checks out the pinned ref as comfyui and installs torch from the CPU index without a GPU", function()
    local calls = comfy()
    local g = plan.find(calls, "git.checkout")[1].args
    assert.same({ repo = "https://github.com/comfyanonymous/ComfyUI", ref = "v0.3.10", dest = "/opt/comfyui",
      owner = "comfyui" }, g)
    local v = plan.find(calls, "python.venv")[1].args
    assert.equal("/opt/comfyui/venv", v.path)
    assert.equal("https://download.pytorch.org/whl/cpu", v.extra_index_url)
    assert.equal("https://pypi.org/simple", v.index_url)
    assert.same({ "torch", "torchvision", "torchaudio" }, v.packages)
    assert.equal("/opt/comfyui/requirements.txt", v.requirements)
    local unit = plan.find(calls, "systemd.unit")[1].args
    assert.matches("ExecStart=/opt/comfyui/venv/bin/python /opt/comfyui/main.py --listen 127.0.0.1 --port 8188 --cpu\n",
      unit.content, 1, true)
    assert.equal("http://127.0.0.1:8188/system_stats", plan.find(calls, "fetch.check")[1].args.url)
    assert.same({ "installed", stamp = "v0.3.10" }, calls[#calls].args)
  end)

  it("takes the CUDA index with nvidia-smi on the host, and an override over both", function()
    local calls = comfy({}, { facts = { nvidia = true } })
    assert.equal("https://download.pytorch.org/whl/cu124", plan.find(calls, "python.venv")[1].args.extra_index_url)
    assert.matches("--port 8188\n", plan.find(calls, "systemd.unit")[1].args.content, 1, true)
    calls = comfy({ torch_index = "http://mirror/rocm", args = { "--lowvram" } }, { facts = { nvidia = true } })
    assert.equal("http://mirror/rocm", plan.find(calls, "python.venv")[1].args.extra_index_url)
    assert.matches("--port 8188 --lowvram\n", plan.find(calls, "systemd.unit")[1].args.content, 1, true)
  end)

  it("checks custom nodes out under custom_nodes/ and restarts on a change", function()
    local calls = comfy { custom_nodes = { { name = "manager", repo = "https://example.com/m.git", ref = "3.0" } } }
    local g = plan.find(calls, "git.checkout")
    assert.equal(2, #g)
    assert.same({ repo = "https://example.com/m.git", ref = "3.0", dest = "/opt/comfyui/custom_nodes/manager",
      owner = "comfyui" }, g[2].args)
    assert.is_true(plan.find(calls, "service.running")[1].args.restart)
    local ok, err = pcall(comfy, { custom_nodes = { { name = "../x", repo = "https://e/x.git", ref = "v1" } } })
    assert.is_false(ok)
    assert.matches("custom_nodes[1].name", tostring(err), 1, true)
  end)

  it("declares detect probes from its config", function()
    local d = plan.module("comfyui").detect { dir = "/srv/c", venv = "", listen = "0.0.0.0", port = 9000 }
    assert.same({ "/srv/c/main.py", "/srv/c/venv/bin/python", "/etc/systemd/system/comfyui.service" }, d.files)
    assert.equal("http://127.0.0.1:9000/system_stats", d.url)
  end)
end)

describe("lmstudio module", function()
  it("fetches the checked archive, extracts it, links lms and marks it done", function()
    local calls = lm { strip = 1 }
    local f = plan.find(calls, "fetch.file")[1].args
    assert.equal("https://mirror.example.com/lms/0.3.30/LM-Studio-0.3.30-x64.tar.gz", f.url)
    assert.equal("/var/cache/phanes/lmstudio/LM-Studio-0.3.30-x64.tar.gz", f.dest)
    local a = plan.find(calls, "archive.extracted")[1].args
    assert.same({ src = f.dest, dest = "/opt/lmstudio", strip = 1, sentinel = "/var/lib/phanes/sentinels/lmstudio.archive",
      stamp = "0.3.30 " .. SHA }, a)
    -- the tree is root's (archive.extracted): a link; it replaces the wrapper of the script method
    assert.same({ path = "/usr/local/bin/lms", target = "/opt/lmstudio/bin/lms", force = true },
      plan.find(calls, "file.symlink")[1].args)
    assert.equal(0, #plan.find(calls, "file.template"))
    assert.equal(0, #plan.find(calls, "file.seed"))
    assert.equal(0, #plan.find(calls, "systemd.unit"))
    assert.same({ "installed", stamp = "0.3.30 " .. SHA }, calls[#calls].args)
  end)

  it("seeds the settings once and runs the headless server on its port", function()
    local calls = lm { settings = '{"a": 1}\n', server = true, port = 4321 }
    local s = plan.find(calls, "file.seed")[1].args
    assert.equal("/var/lib/lmstudio/.lmstudio/settings.json", s.path)
    assert.equal('{"a": 1}\n', s.content)
    assert.equal("lmstudio", s.owner)
    local unit = plan.find(calls, "systemd.unit")[1].args
    assert.matches("ExecStart=/opt/lmstudio/bin/lms server start --port 4321\n", unit.content, 1, true)
    assert.matches("User=lmstudio\n", unit.content, 1, true)
    assert.equal("http://127.0.0.1:4321/v1/models", plan.find(calls, "fetch.check")[1].args.url)
    -- a settings path elsewhere: its directory is not made (nor chowned)
    calls = lm { settings = "{}", settings_path = "/etc/lmstudio.json" }
    for _, d in ipairs(plan.find(calls, "file.directory")) do assert.is_not.equal("/etc", d.args.path) end
  end)

  it("runs LM Studio's install script by default, as its user, once per checksum", function()
    local calls = lm { archive_url = "", script_sha256 = SHA, server = true }
    local f = plan.find(calls, "fetch.file")[1].args
    assert.equal("https://lmstudio.ai/install.sh", f.url)
    assert.equal(SHA, f.sha256)
    assert.equal("/var/cache/phanes/lmstudio/install-" .. SHA:sub(1, 16) .. ".sh", f.dest)
    local r = plan.find(calls, "cmd.run")[1].args
    assert.same({ "runuser", "-u", "lmstudio", "--", "sh", f.dest }, r.argv)
    assert.same({ HOME = "/var/lib/lmstudio" }, r.env)
    assert.equal(0, #plan.find(calls, "archive.extracted"))
    local lms = "/var/lib/lmstudio/.lmstudio/bin/lms"
    -- lms is the user's to change: on root's PATH a root-owned wrapper, replacing the links of before
    assert.equal(0, #plan.find(calls, "file.symlink"))
    local w = plan.find(calls, "file.template")[1]
    assert.same({ path = "/usr/local/bin/lms", src = "lmstudio/lms", mode = "0755", owner = "root", group = "root",
      vars = { user = "lmstudio", home = "/var/lib/lmstudio", lms = lms },
      replace_link = { lms, "/opt/lmstudio/bin/lms" } }, w.args)
    assert.matches("lms='" .. lms .. "'\n", w.rendered, 1, true)
    local unit = plan.find(calls, "systemd.unit")[1].args.content
    assert.matches("ExecStartPre=" .. lms .. " daemon up\n", unit, 1, true)
    assert.matches("ExecStart=" .. lms .. " server start --port 1234\n", unit, 1, true)
    assert.matches("Type=oneshot\n", unit, 1, true)
    assert.same({ "installed", stamp = "script " .. SHA }, calls[#calls].args)
    local d = plan.module("lmstudio").detect { method = "auto", archive_url = "", server = false, port = 1 }
    assert.same({ lms, "/usr/local/bin/lms" }, d.files)
  end)

  it("refuses a missing URL or checksum and a CLI path out of dir", function()
    for _, c in ipairs {
      { { method = "archive", archive_url = "" }, "lmstudio.archive_url is not set" },
      { { archive_url = "" }, "lmstudio.script_sha256 is not set: fetch https://lmstudio.ai/install.sh" },
      { { method = "script" }, "lmstudio.script_sha256 is not set" },
      { { sha256 = "" }, "lmstudio.sha256 is not set" },
      { { lms = "../../bin/sh" }, "without .." },
      { { dir = "/var/lib/lmstudio/app" }, "lmstudio.dir: /var/lib/lmstudio/app is in the lmstudio user's home" },
      { { dir = "/var/lib/lmstudio" }, "is in the lmstudio user's home" },
    } do
      local ok, err = pcall(lm, c[1])
      assert.is_false(ok)
      assert.matches(c[2], tostring(err), 1, true)
    end
  end)
end)

-- The wrapper at /usr/local/bin/lms (templates/lmstudio/lms), run with
-- stand-ins for id and runuser: root gets the user's CLI run as the user
-- (runuser, setsid), the user runs it directly, anyone else is told to use
-- sudo; the arguments pass through as they are.
describe("lmstudio's lms wrapper", function()
  local exec = require "phanes.exec"
  local dir
  before_each(function()
    dir = fakeexec.tmpdir()
    os.execute("mkdir " .. dir .. "/bin")
    fakeexec.write(dir .. "/bin/id", '#!/bin/sh\ncase $1 in -u) echo "$FAKE_UID" ;; -un) echo "$FAKE_USER" ;; esac\n')
    fakeexec.write(dir .. "/bin/runuser", '#!/bin/sh\n[ "$4" = test ] && exit 0\nprintf "[%s]" runuser "$@"\n')
    fakeexec.write(dir .. "/lms", '#!/bin/sh\nprintf "[%s]" lms "$@"\n')
    fakeexec.write(dir .. "/wrapper", plan.render("lmstudio/lms", { user = "lmstudio", home = "/var/lib/lmstudio",
      lms = dir .. "/lms" }))
    os.execute("chmod 755 " .. dir .. "/bin/id " .. dir .. "/bin/runuser " .. dir .. "/lms")
  end)
  after_each(function() fakeexec.rmtree(dir) end)

  local function run(uid, user)
    return assert(exec.run { argv = { "sh", dir .. "/wrapper", "server", "start", "a b" },
      env = { PATH = dir .. "/bin:/usr/bin:/bin", FAKE_UID = uid, FAKE_USER = user } })
  end

  it("runs the CLI as the user for root, directly for the user, and for nobody else", function()
    local r = run("0", "root")
    assert.equal(0, r.code, r.stderr)
    assert.equal("[runuser][-u][lmstudio][--][setsid][-w][env][HOME=/var/lib/lmstudio][" .. dir .. "/lms]"
      .. "[server][start][a b]", r.stdout)
    r = run("998", "lmstudio")
    assert.equal(0, r.code, r.stderr)
    assert.equal("[lms][server][start][a b]", r.stdout)
    r = run("1000", "alice")
    assert.equal(1, r.code)
    assert.equal("", r.stdout)
    assert.equal("lms: LM Studio's CLI belongs to the lmstudio user: run it as root (sudo lms ...), it then runs as "
      .. "lmstudio\n", r.stderr)
  end)
end)
