-- serve.lua -- how the moonsock program serves a handler table.
--
-- `moonsock SCRIPT` runs SCRIPT; when it returns a handler table (shaped
-- like Python's BaseRequestHandler), serve_script binds its addresses and
-- runs one task per connection: setup, handle, finish with self.request,
-- self.client_address and self.server set as in Python. Instances find
-- their methods through the server's *current* handler table, so a
-- reloaded table reaches live connections at their next method call.
-- State that must outlive a reload lives in self.server.state.
--
-- Limits (each with an option): --max-connections (over it a client gets
-- one error line and is closed), --timeout (idle timeout of a served
-- connection), --grace (how long SIGTERM waits for handlers), --backlog.

local socket = require "socket"
local task = require "moonsock.task"
local errors = require "moonsock.errors"
local raw = require "_moonsock.socket"

local M = {}

local E = errors.errno
local INFO, WARN, ERROR, DEBUG = task.INFO, task.WARN, task.ERROR,
                                 task.DEBUG

M.DEFAULTS = {
  listen = { "0.0.0.0", 8000 },
  max_connections = 10000,
  timeout = nil,          -- idle timeout in seconds; nil: none
  grace = 10,             -- seconds SIGTERM waits for handlers
  backlog = 1024,
}

local function log(level, fmt, ...)
  task.log(level, fmt:format(...))
end

-- Text for an address as a command line writes it.
function M.format_address(family, addr)
  if family == socket.AF_UNIX then return "unix:" .. tostring(addr) end
  if family == socket.AF_INET6 then
    return ("[%s]:%d"):format(addr[1], addr[2])
  end
  return ("%s:%d"):format(addr[1], addr[2])
end

-- Turn one listen value into (family, address): a spec string
-- ("HOST:PORT", "[V6]:PORT", "PORT", "unix:PATH") or a Python tuple.
function M.resolve_listen(value)
  if type(value) == "string" then
    local family, addr = raw.parse_listen(value)
    if family == nil then
      error(("bad listen address '%s' (use HOST:PORT, [IPV6]:PORT, PORT "
             .. "or unix:PATH)"):format(value), 0)
    end
    return family, addr
  end
  if type(value) == "table" and type(value[1]) == "string" then
    local family = value[1]:find(":", 1, true) and socket.AF_INET6
                   or socket.AF_INET
    return family, value
  end
  error(("bad listen address %s: expected {host, port} or a string")
        :format(tostring(value)), 0)
end

-- A list of (family, address) pairs from options or the handler.
local function addresses(handler, options)
  local list = options.listen
  if list == nil then
    list = handler.listen or M.DEFAULTS.listen
    if type(list) == "string" or type(list[1]) == "string" then
      list = { list }
    end
  end
  local out = {}
  for i, v in ipairs(list) do
    local family, addr = M.resolve_listen(v)
    out[i] = { family = family, address = addr }
  end
  return out
end

local function number_option(options, handler, name, key, min)
  local v = options[name]
  if v ~= nil then
    local n = tonumber(v)
    if n == nil or n < min then
      error(("--%s: expected a number >= %s, got '%s'")
            :format(name, min, v), 0)
    end
    return n
  end
  v = handler[key]
  if v == nil then return M.DEFAULTS[key] end
  return v
end

---------------------------------------------------------------------------
-- one connection

-- Message handler: keep the error object and add the traceback.
local function catch(err)
  local ok, msg = pcall(tostring, err)
  if not ok or type(msg) ~= "string" then msg = "(error object)" end
  return { err = err, traceback = debug.traceback(msg, 2) }
end

local function report(server, addr, caught, where)
  local err = caught.err
  local peer = type(addr) == "table" and M.format_address(
      #addr == 4 and socket.AF_INET6 or socket.AF_INET, addr)
      or tostring(addr)
  if errors.isinstance(err, "TimeoutError") and server.timeout then
    log(INFO, "%s: idle for %gs, closing", peer, server.timeout)
  elseif errors.isinstance(err, "ConnectionError") then
    log(INFO, "%s: %s in %s", peer, tostring(err), where)
  else
    log(ERROR, "%s: handler %s failed: %s", peer, where, caught.traceback)
  end
end

local function call(h, name)
  local f = h[name]
  if f ~= nil then return f(h) end
end

local function serve_conn(server, conn, addr)
  if server.timeout then conn:settimeout(server.timeout) end
  local h = setmetatable({ request = conn, client_address = addr,
                           server = server }, server.instance_mt)
  local ok, caught = xpcall(call, catch, h, "setup")
  if ok then
    ok, caught = xpcall(call, catch, h, "handle")
    if not ok then report(server, addr, caught, "handle") end
    -- finish runs even when handle failed, as in Python.
    local fok, fcaught = xpcall(call, catch, h, "finish")
    if not fok then report(server, addr, fcaught, "finish") end
  else
    report(server, addr, caught, "setup")
  end
  conn:close()
  server.connections = server.connections - 1
end

---------------------------------------------------------------------------
-- accepting

local BUSY = "ERROR server busy: too many connections\n"

local function accept_loop(server, lsock)
  local last_warn = 0
  while not server.stopping do
    local ok, conn, addr = pcall(lsock.accept, lsock)
    if ok then
      if server.connections >= server.max_connections then
        conn:settimeout(0)
        pcall(conn.send, conn, BUSY)
        conn:close()
        server.refused = server.refused + 1
      else
        server.connections = server.connections + 1
        server.accepted = server.accepted + 1
        task.spawn(serve_conn, server, conn, addr)
      end
    else
      local err = conn
      if server.stopping or raw.isclosed(lsock) then break end
      local errno = type(err) == "table" and err.errno
      if errno == E.EMFILE or errno == E.ENFILE or errno == E.ENOMEM then
        -- Out of descriptors: the connection stays queued in the
        -- backlog. Back off instead of spinning; retry when some close.
        local now = task.now()
        if now - last_warn > 1000 then
          log(WARN, "accept: %s; pausing accepts", tostring(err))
          last_warn = now
        end
        task.sleep(0.05)
      else
        log(ERROR, "accept: %s", tostring(err))
        task.sleep(0.01)
      end
    end
  end
end

---------------------------------------------------------------------------
-- shutdown

local function shutdown(server, signo)
  if server.stopping then
    log(WARN, "signal %d again: stopping now", signo)
    task.stop()
    return
  end
  server.stopping = true
  for _, l in ipairs(server.listeners) do l.socket:close() end
  log(INFO, "signal %d: listeners closed; waiting up to %gs for %d "
      .. "connection(s)", signo, server.grace, server.connections)
  local deadline = task.now() + server.grace * 1000
  while server.connections > 0 and task.now() < deadline do
    task.sleep(0.05)
  end
  if server.connections > 0 then
    log(WARN, "grace period over; dropping %d connection(s)",
        server.connections)
  end
  log(INFO, "stopped")
  task.stop()
end

---------------------------------------------------------------------------

-- serve_script(handler, path, options) -> server: bind and start serving.
function M.serve_script(handler, path, options)
  options = options or {}
  local server = {
    handler = handler, state = {}, path = path, listeners = {},
    connections = 0, accepted = 0, refused = 0, stopping = false,
    version = 1, reloads = 0, last_error = nil,
  }
  server.max_connections = number_option(options, handler,
                                          "max-connections",
                                          "max_connections", 1)
  server.timeout = number_option(options, handler, "timeout", "timeout", 0)
  server.grace = number_option(options, handler, "grace", "grace", 0)
  server.backlog = number_option(options, handler, "backlog", "backlog", 1)
  if server.timeout == 0 then server.timeout = nil end
  server.instance_mt = {
    __index = function(_, k) return server.handler[k] end,
  }

  for _, a in ipairs(addresses(handler, options)) do
    local s = socket.socket(a.family, socket.SOCK_STREAM)
    local ok, err = pcall(function()
      if a.family ~= socket.AF_UNIX then
        s:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      end
      if a.family == socket.AF_INET6 then
        s:setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
      end
      s:bind(a.address)
      s:listen(server.backlog)
    end)
    if not ok then
      s:close()
      for _, l in ipairs(server.listeners) do l.socket:close() end
      error(("cannot listen on %s: %s"):format(
        M.format_address(a.family, a.address), tostring(err)), 0)
    end
    local bound = s:getsockname()
    server.listeners[#server.listeners + 1] = {
      socket = s, family = a.family, address = bound,
    }
    log(INFO, "listening on %s", M.format_address(a.family, bound))
  end
  server.server_address = server.listeners[1].address
  server.socket = server.listeners[1].socket

  for _, l in ipairs(server.listeners) do
    task.spawn(accept_loop, server, l.socket)
  end
  local function on_signal(signo) shutdown(server, signo) end
  task.onsignal(task.SIGTERM, on_signal)
  task.onsignal(task.SIGINT, on_signal)
  log(DEBUG, "serving %s", path)
  return server
end

return M
