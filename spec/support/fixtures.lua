-- spec/support/fixtures.lua: stand-ins for the AI modules' upstreams
-- (GitHub, PyPI, the torch indexes, ollama.com), built from spec/fixtures/
-- on this machine and served to the test hosts over HTTP from the harness
-- bridge address: python3's http.server for files, git's dumb HTTP
-- protocol for bare repositories (update-server-info).
--
--   local fx = require "spec.support.fixtures"
--   local srv = fx.serve(dir)          -- after th.up: serves dir/www
--   ... srv.base .. "/comfyui.git" ... srv.requests() ... srv.stop()
local th = require "spec.support.testhost"
local on = require "spec.support.onhost"

local M = {}

local q, local_sh, trim = th.quote, on.local_sh, on.trim

-- git as a committer with a name, whatever this machine's git config says
M.G = "git -c user.name=spec -c user.email=spec@example.com"

-- serve(dir) -> a server of dir/www on the bridge address, on a free port:
-- { base = "http://ADDR:PORT", pid, requests() -> how many it answered
-- so far (its log dir/http.log), stop() }
function M.serve(dir)
  local gw = th.env().PROXY:match "^http://([%d.]+):"
  local log = dir .. "/http.log"
  for _ = 1, 5 do
    local port = math.random(30000, 39999)
    local pid = trim(local_sh("setsid /usr/bin/python3 -m http.server " .. port .. " --bind " .. gw
      .. " --directory " .. q(dir .. "/www") .. " >" .. q(log) .. " 2>&1 </dev/null & echo $!"))
    os.execute "sleep 1"
    if th.run("kill -0 " .. pid) then
      return {
        base = "http://" .. gw .. ":" .. port,
        pid = pid,
        requests = function() return #(th.read(log) or ""):gsub("[^\n]", "") end,
        stop = function() os.execute("kill " .. pid .. " 2>/dev/null") end,
      }
    end
  end
  error("no fixture HTTP server could start:\n" .. local_sh("cat " .. q(log)))
end

-- repo(src, work, opts) -> the commit: a copy of the directory src as a
-- repository in work, everything committed on opts.branch (default main)
-- with message opts.message (default "one"), tagged opts.tag if given
function M.repo(src, work, opts)
  opts = opts or {}
  local G = M.G .. " -c init.defaultBranch=" .. (opts.branch or "main")
  local w = q(work)
  local_sh("cp -r " .. q(src) .. " " .. w .. " && cd " .. w .. " && " .. G .. " init -q . && " .. G .. " add -A && "
    .. G .. " commit -qm " .. q(opts.message or "one") .. (opts.tag and (" && " .. G .. " tag " .. q(opts.tag)) or ""))
  return trim(local_sh("git -C " .. w .. " rev-parse HEAD"))
end

-- publish(work, bare): the repository work as the bare repository bare
-- (replaced), ready for git's dumb HTTP protocol
function M.publish(work, bare)
  local b = q(bare)
  local_sh("rm -rf " .. b .. " && git clone -q --bare " .. q(work) .. " " .. b .. " && git -C " .. b
    .. " update-server-info")
end

-- wheel(dir, name, version, line): a tiny wheel of the module name (holding
-- line) into dir (spec/fixtures/ai/comfyui_wheel.py)
function M.wheel(dir, name, version, line)
  local_sh("python3 spec/fixtures/ai/comfyui_wheel.py " .. q(dir) .. " " .. name .. " " .. version .. " " .. q(line)
    .. " >/dev/null")
end

-- comfyui(dir) -> the commit of v0.0.1: the ComfyUI-shaped repository
-- (spec/fixtures/ai/comfyui) in dir/comfyui, tagged v0.0.1 and served as
-- www/comfyui.git; a simple index www/pypi/simple holding its requirement
-- and that of spec/fixtures/ai/comfyui_node; torch indexes www/torch-cpu
-- and www/torch-cuda (torch.VARIANT says which)
function M.comfyui(dir)
  local www = dir .. "/www"
  M.wheel(www .. "/pypi/simple/comfy-fixture-dep", "comfy_fixture_dep", "1.0", 'VERSION = "1.0"')
  M.wheel(www .. "/pypi/simple/comfy-node-dep", "comfy_node_dep", "1.0", 'VERSION = "1.0"')
  M.wheel(www .. "/torch-cpu/torch", "torch", "2.0.0", 'VARIANT = "cpu"')
  M.wheel(www .. "/torch-cuda/torch", "torch", "2.0.0", 'VARIANT = "cuda"')
  local commit = M.repo("spec/fixtures/ai/comfyui", dir .. "/comfyui", { tag = "v0.0.1" })
  M.publish(dir .. "/comfyui", www .. "/comfyui.git")
  return commit
end

-- comfyui_config(base) -> the lines of a `comfyui:` section pointing every
-- upstream of the module at the fixtures of comfyui() served at base
function M.comfyui_config(base)
  return {
    "comfyui:",
    "  repo: " .. base .. "/comfyui.git",
    "  ref: v0.0.1",
    "  pypi_index: " .. base .. "/pypi/simple",
    "  torch_index_cpu: " .. base .. "/torch-cpu",
    "  torch_index_cuda: " .. base .. "/torch-cuda",
    "  torch_packages: [torch]",
    "  trusted_hosts: [" .. base:match "^http://([%d.]+):" .. "]",
  }
end

-- ollama(root): the stand-in ollama (spec/fixtures/ollama/ollama.c, static)
-- laid out like the release archive's content: root/bin/ollama,
-- root/lib/ollama/libfixture.so
function M.ollama(root)
  local r = q(root)
  local_sh("mkdir -p " .. r .. "/bin " .. r .. "/lib/ollama")
  local_sh("cc -static -O2 -Wall -Wextra -Werror -o " .. r .. "/bin/ollama spec/fixtures/ollama/ollama.c")
  local_sh("echo fixture > " .. r .. "/lib/ollama/libfixture.so")
end

return M
