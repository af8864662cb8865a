-- comfyui: ComfyUI from a pinned git ref, in a venv of its own, as a
-- systemd service of its own user.
--
-- git, python3-venv and python3-pip come from Debian. The repository (repo)
-- is checked out at ref into dir as the `comfyui` user (a checkout with
-- local changes is never discarded: the module fails listing them). The
-- venv (venv, default <dir>/venv) gets the torch packages from the torch
-- index, then <dir>/requirements.txt (pip runs only when that file or the
-- indexes changed: its hash is kept in the venv). The torch index comes
-- from the host: nvidia-smi present -> torch_index_cuda, else
-- torch_index_cpu (and --cpu is passed to ComfyUI); torch_index overrides
-- both. custom_nodes are checked out into <dir>/custom_nodes/<name>, and a
-- node's requirements.txt is installed the same way. comfyui.service runs
-- main.py on listen:port (127.0.0.1:8188), restarted when the unit, the
-- checkout, a node or the venv changed. Health: GET /system_stats. The
-- sentinel comfyui.installed, written last, marks a finished install.
-- Every upstream (repo, pypi_index, the torch indexes, the nodes' repos) is
-- a config key: a mirror or a local path works the same.
--
-- Section `comfyui:`
--   repo: https://github.com/comfyanonymous/ComfyUI
--   ref: v0.3.10                   # a tag, a commit or a branch
--   dir: /opt/comfyui
--   venv: ""                       # "" = <dir>/venv
--   user: comfyui
--   pypi_index: https://pypi.org/simple
--   torch_index: ""                # "" = from the host (nvidia-smi: CUDA, else CPU)
--   torch_index_cuda: https://download.pytorch.org/whl/cu124
--   torch_index_cpu: https://download.pytorch.org/whl/cpu
--   torch_packages: [torch, torchvision, torchaudio]
--   trusted_hosts: []              # index hosts pip may use over plain http (a LAN mirror)
--   custom_nodes: []               # - { name: manager, repo: https://..., ref: v1 }
--   listen: 127.0.0.1
--   port: 8188
--   args: []                       # more arguments for main.py: [--lowvram]
--
-- Example:
--   comfyui:
--     ref: v0.3.10
--     custom_nodes:
--       - { name: ComfyUI-Manager, repo: https://github.com/ltdrdata/ComfyUI-Manager, ref: "3.0" }

local URL = "[%a]+://[%w%-._~:/%[%]@%%+=?&]+"
local REF = "[%w._/%-]+"

local function torch_index(ctx, cfg)
  if cfg.torch_index ~= "" then return cfg.torch_index, false end
  if ctx.facts.nvidia then return cfg.torch_index_cuda, false end
  return cfg.torch_index_cpu, true
end

local function venv_of(cfg) return cfg.venv ~= "" and cfg.venv or cfg.dir .. "/venv" end

local function nodes(ctx, cfg, pip)
  local changed = false
  if #cfg.custom_nodes == 0 then return changed end
  local base = cfg.dir .. "/custom_nodes"
  ctx.file.directory { path = base, owner = cfg.user, group = cfg.user, mode = "0755" }
  for i, n in ipairs(cfg.custom_nodes) do
    if type(n.name) ~= "string" or not n.name:match "^[%w_][%w._%-]*$" then
      ctx.fail("comfyui.custom_nodes[" .. i .. "].name: a directory name (letters, digits, . _ -) is required")
    end
    local dest = base .. "/" .. n.name
    local r = ctx.git.checkout { repo = n.repo, ref = n.ref, dest = dest, owner = cfg.user }
    changed = changed or r.changed
    if ctx.file.exists(dest .. "/requirements.txt") then
      local o = { requirements = dest .. "/requirements.txt" }
      for k, v in pairs(pip) do o[k] = v end
      changed = ctx.python.venv(o).changed or changed
    end
  end
  return changed
end

return {
  name = "comfyui",
  description = "ComfyUI from a pinned git ref, in its own venv (torch for the host's GPU or CPU), as a systemd service",
  version = "1",
  requires = { "baseline" },
  detect = function(cfg)
    return { files = { cfg.dir .. "/main.py", venv_of(cfg) .. "/bin/python", "/etc/systemd/system/comfyui.service" },
      dirs = { cfg.dir .. "/.git" },
      url = "http://" .. (cfg.listen == "0.0.0.0" and "127.0.0.1" or cfg.listen) .. ":" .. cfg.port .. "/system_stats" }
  end,
  config = {
    repo = { type = "string", default = "https://github.com/comfyanonymous/ComfyUI", pattern = URL,
      hint = "a git URL (https://, file://, a mirror)", description = "Where ComfyUI is cloned from" },
    ref = { type = "string", default = "v0.3.10", pattern = REF, hint = "a tag like v0.3.10, a commit or a branch",
      description = "The pinned ref checked out" },
    dir = { type = "string", default = "/opt/comfyui", format = "path", description = "The checkout" },
    venv = { type = "string", default = "", format = "path", description = "The venv; empty: <dir>/venv" },
    user = { type = "string", default = "comfyui", pattern = "[%l_][%l%d_%-]*", hint = "a user name",
      description = "The system user owning dir and running the service" },
    pypi_index = { type = "string", default = "https://pypi.org/simple", pattern = URL,
      description = "pip's index (--index-url) for requirements.txt" },
    torch_index = { type = "string", default = "", pattern = URL,
      description = "torch's index; empty: CUDA with nvidia-smi on the host, else CPU" },
    torch_index_cuda = { type = "string", default = "https://download.pytorch.org/whl/cu124", pattern = URL,
      description = "torch's index on a host with an NVIDIA GPU" },
    torch_index_cpu = { type = "string", default = "https://download.pytorch.org/whl/cpu", pattern = URL,
      description = "torch's index on a host without one" },
    torch_packages = { type = "list", items = { type = "string", pattern = "[%w._%-]+[=<>!~%w._,]*" },
      default = { "torch", "torchvision", "torchaudio" }, description = "Installed from the torch index first" },
    trusted_hosts = { type = "list", items = { type = "string", format = "host" }, default = {},
      description = "Index hosts pip may reach over plain http (pip's --trusted-host), e.g. a LAN mirror" },
    custom_nodes = { type = "list", default = {}, description = "Custom nodes, each a git repository at a ref",
      items = { type = "map", fields = {
        name = { type = "string", required = true, pattern = "[%w_][%w._%-]*", description = "Directory under custom_nodes/" },
        repo = { type = "string", required = true, pattern = URL, description = "git URL" },
        ref = { type = "string", required = true, pattern = REF, description = "tag, commit or branch" },
      } } },
    listen = { type = "string", default = "127.0.0.1", format = "host", description = "Address the UI listens on" },
    port = { type = "integer", default = 8188, min = 1, max = 65535, description = "Port of the UI" },
    args = { type = "list", items = { type = "string", pattern = "[%w_.,:=/%-]+" }, default = {},
      description = "More arguments for main.py" },
  },
  apply = function(ctx, cfg)
    local venv = venv_of(cfg)
    local index, cpu = torch_index(ctx, cfg)
    local args = {}
    if cpu then args[1] = "--cpu" end
    for _, a in ipairs(cfg.args) do args[#args + 1] = a end

    ctx.pkg.installed { "git", "python3-venv", "python3-pip", "curl", "ca-certificates" }
    ctx.group.present { name = cfg.user, system = true }
    ctx.user.present { name = cfg.user, system = true, group = cfg.user, home = cfg.dir, shell = "/bin/false",
      create_home = false }
    ctx.file.directory { path = cfg.dir, owner = cfg.user, group = cfg.user, mode = "0755" }
    local src = ctx.git.checkout { repo = cfg.repo, ref = cfg.ref, dest = cfg.dir, owner = cfg.user }
    local pip = { path = venv, owner = cfg.user, group = cfg.user, index_url = cfg.pypi_index, extra_index_url = index,
      trusted_host = cfg.trusted_hosts }
    local o = { packages = cfg.torch_packages, requirements = cfg.dir .. "/requirements.txt" }
    for k, v in pairs(pip) do o[k] = v end
    local env = ctx.python.venv(o)
    local extra = nodes(ctx, cfg, pip)
    local unit = ctx.systemd.unit { name = "comfyui.service", content = ctx.template("comfyui/comfyui.service",
      { user = cfg.user, dir = cfg.dir, venv = venv, listen = cfg.listen, port = cfg.port, args = args }) }
    ctx.service.running { "comfyui", enabled = true,
      restart = unit.changed or src.changed or env.changed or extra }
    local host = cfg.listen == "0.0.0.0" and "127.0.0.1" or cfg.listen
    ctx.fetch.check { url = "http://" .. host .. ":" .. cfg.port .. "/system_stats", tries = 60 }
    ctx.sentinel.mark { "installed", stamp = cfg.ref } -- last: every step above went through
  end,
}
