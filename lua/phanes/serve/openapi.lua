-- serve/openapi.lua: the OpenAPI 3.0 document of `phanes serve`
-- (GET /api/openapi.json). Kept next to serve/api.lua; change both together.
local json = require "phanes.json"
local M = {}

local function ref(name) return { ["$ref"] = "#/components/schemas/" .. name } end
local function resp(desc, schema)
  local r = { description = desc }
  if schema then r.content = { ["application/json"] = { schema = schema } } end
  return r
end
local ERR = resp("error", ref "Error")
local arr = json.array

function M.document(version)
  local run_param = { name = "id", ["in"] = "path", required = true, schema = { type = "string" } }
  return {
    openapi = "3.0.3",
    info = { title = "phanes serve", version = version or "0",
      description = "Plan and apply phanes modules on remote hosts. Every non-GET request, and every request on a "
        .. "non-loopback address, needs Authorization: Bearer <token> (the token file of phanes serve)." },
    components = {
      securitySchemes = { bearer = { type = "http", scheme = "bearer" } },
      schemas = {
        Error = { type = "object", properties = { error = { type = "string" }, run_id = { type = "string" } } },
        InstallRequest = { type = "object", required = arr { "host", "modules" }, additionalProperties = false,
          properties = {
            host = { type = "string", description = "inventory name or [user@]address[:port]" },
            modules = { type = "array", items = { type = "string" }, minItems = 1 },
            dry_run = { type = "boolean", default = false },
            wait = { type = "boolean", default = true, description = "false: answer 202 at once and follow /api/runs/{id}" },
            ssh = { type = "object", additionalProperties = false, properties = {
              user = { type = "string" }, port = { type = "integer", minimum = 1, maximum = 65535 },
              identity = { type = "string", description = "absolute path of a key on the server" },
              connect_timeout = { type = "number", minimum = 0, maximum = 300 } } },
          } },
        InstallAnswer = { type = "object", properties = {
          status = { type = "string", enum = arr { "queued", "running", "planned", "changed", "noop", "failed", "interrupted" } },
          run_id = { type = "string" }, installed = { type = "array", items = { type = "string" } },
          skipped = { type = "array", items = { type = "string" } }, failed = { type = "array", items = { type = "string" } },
          plan = { type = "array", nullable = true, items = { type = "object" } },
          status_path = { type = "string" }, log_path = { type = "string" } } },
        Run = { type = "object" },
      },
    },
    security = arr { { bearer = arr {} } },
    paths = {
      ["/api/health"] = { get = { summary = "liveness", responses = { ["200"] = resp("ok") } } },
      ["/api/remote/modules"] = { get = { summary = "the module document of `phanes list --json`",
        responses = { ["200"] = resp("modules and profiles") } } },
      ["/api/remote/install"] = { post = { summary = "plan (dry_run) or apply modules on a host",
        requestBody = { required = true, content = { ["application/json"] = { schema = ref "InstallRequest" } } },
        responses = { ["200"] = resp("the finished run", ref "InstallAnswer"), ["202"] = resp("started (wait: false)", ref "InstallAnswer"),
          ["400"] = ERR, ["401"] = ERR, ["404"] = resp("unknown host", ref "Error"), ["409"] = resp("host busy", ref "Error"),
          ["413"] = resp("body too large"), ["503"] = ERR } } },
      ["/api/remote/status"] = { get = { summary = "known hosts and their last run; ?host=NAME: that host's manifest",
        parameters = arr { { name = "host", ["in"] = "query", schema = { type = "string" } } },
        responses = { ["200"] = resp("hosts"), ["404"] = ERR } } },
      ["/api/runs"] = { get = { summary = "recent runs", responses = { ["200"] = resp("runs") } } },
      ["/api/runs/{id}"] = {
        get = { summary = "a run", parameters = arr { run_param }, responses = { ["200"] = resp("run", ref "Run"), ["404"] = ERR } },
        delete = { summary = "interrupt a run (SIGINT, as Ctrl-C)", parameters = arr { run_param },
          responses = { ["202"] = resp("interrupting", ref "Run"), ["404"] = ERR, ["409"] = ERR } } },
      ["/api/runs/{id}/log"] = { get = { summary = "the run's log, live until it ends: text/event-stream when asked "
        .. "(Accept or ?format=sse), else chunked text/plain", parameters = arr { run_param },
        responses = { ["200"] = { description = "log", content = { ["text/event-stream"] = {}, ["text/plain"] = {} } }, ["404"] = ERR } } },
    },
  }
end

return M
