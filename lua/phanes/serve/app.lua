-- serve/app.lua: what answers a request: access log, token, routing. The
-- handlers themselves are in serve/api.lua; the HTTP mechanism is
-- phanes.http (C). A request object needs respond/start/send/finish/gone.
--
--   local app = require("phanes.serve.app").new(ctx)
--   srv:handle(function(req, info) app:handle(req, info) end)
--
-- ctx: token, loopback (bound to a loopback address), log (line writer),
-- now (seconds), and what serve/api.lua needs.
local json = require "phanes.json"
local token = require "phanes.serve.token"
local M = {}

local App = {}
App.__index = App

-- Routes: method, Lua pattern on the path, handler name in serve/api.lua.
local ROUTES = {
  { "GET", "^/$", "dashboard" },
  { "GET", "^/web/([%w%-]+%.[%w]+)$", "asset" },
  { "GET", "^/api/health$", "health" },
  { "GET", "^/api/openapi%.json$", "openapi" },
  { "GET", "^/api/remote/modules$", "modules" },
  { "POST", "^/api/remote/install$", "install" },
  { "GET", "^/api/remote/status$", "status" },
  { "GET", "^/api/runs$", "runs" },
  { "GET", "^/api/runs/([%w%-]+)$", "run" },
  { "DELETE", "^/api/runs/([%w%-]+)$", "cancel" },
  { "GET", "^/api/runs/([%w%-]+)/log$", "log" },
}

function M.new(ctx)
  local self = setmetatable({ ctx = ctx, api = require("phanes.serve.api").new(ctx) }, App)
  return self
end

-- query string -> table (last value wins; + and %XX decoded)
function M.parse_query(q)
  local t = {}
  for pair in (q or ""):gmatch "[^&]+" do
    local k, v = pair:match "^([^=]*)=?(.*)$"
    local function dec(s) return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
    t[dec(k)] = dec(v)
  end
  return t
end

local function host_is_local(h)
  if not h then return false end
  h = h:lower():gsub(":%d+$", "")
  return h == "127.0.0.1" or h == "localhost" or h == "[::1]" or h:match "^127%.%d+%.%d+%.%d+$" ~= nil
end

-- Wraps req so the access log sees the status and the time it took.
local function logged(self, req, info)
  local t0 = self.ctx.now()
  local w = { req = req, info = info }
  local function line(status)
    self.ctx.log(string.format("%s %s %s %d %.1fms %s", os.date("!%Y-%m-%dT%H:%M:%SZ"), info.method, info.path,
      status, (self.ctx.now() - t0) * 1000, info.peer or ""))
  end
  function w:respond(status, headers, body)
    headers = headers or {}
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = headers["Cache-Control"] or "no-store"
    line(status)
    return req:respond(status, headers, body)
  end
  function w:start(status, headers, idle)
    line(status)
    return req:start(status, headers, idle)
  end
  function w:send(data) return req:send(data) end
  function w:finish() return req:finish() end
  function w:gone() return req:gone() end
  return w
end

function M.json_reply(req, status, doc, headers)
  headers = headers or {}
  headers["Content-Type"] = "application/json"
  return req:respond(status, headers, json.encode(doc, { pretty = true }) .. "\n")
end

local function error_reply(req, status, msg, extra)
  local doc = { error = msg }
  for k, v in pairs(extra or {}) do doc[k] = v end
  local headers = status == 401 and { ["WWW-Authenticate"] = 'Bearer realm="phanes"' } or nil
  return M.json_reply(req, status, doc, headers)
end
M.error_reply = error_reply

-- Every non-GET request, and every request when bound beyond loopback,
-- carries the token. A GET without one must name a loopback Host (a web
-- page elsewhere cannot read the API through DNS rebinding).
function App:authorize(info)
  local needs = info.method ~= "GET" and info.method ~= "HEAD" or not self.ctx.loopback
  if not needs and not info.headers.authorization then
    if host_is_local(info.headers.host) then return true end
    return nil, 401, "a request for Host " .. tostring(info.headers.host) .. " needs the bearer token"
  end
  return token.check(info.headers, self.ctx.token)
end

local function route(method, path)
  local other
  for _, r in ipairs(ROUTES) do
    local caps = { path:match(r[2]) }
    if caps[1] ~= nil then
      if r[1] == method or (method == "HEAD" and r[1] == "GET") then return r[3], caps end
      other = other or r[1]
    end
  end
  return nil, other
end

function App:handle(raw, info)
  local req = logged(self, raw, info)
  local name, caps = route(info.method, info.path)
  if not name then
    if caps then return error_reply(req, 405, info.method .. " " .. info.path .. ": method not allowed (use " .. caps .. ")") end
    return error_reply(req, 404, "no such endpoint: " .. info.path)
  end
  if name ~= "dashboard" and name ~= "asset" then
    local ok, status, msg = self:authorize(info)
    if not ok then return error_reply(req, status, msg) end
  end
  -- The body is parsed as JSON whatever its Content-Type says (curl -d
  -- sends form-urlencoded); the token already rules out cross-site posts.
  info.params = M.parse_query(info.query)
  return self.api[name](self.api, req, info, table.unpack(caps))
end

return M
