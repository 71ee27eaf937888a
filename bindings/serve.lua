-- serve.lua -- how the moonsock program serves a handler table.
--
-- `moonsock SCRIPT` runs SCRIPT; when it returns a handler table (shaped
-- like Python's BaseRequestHandler), serve_script builds a script server
-- and serves it. The script server is a socketserver server like any
-- other -- ThreadingTCPServer, or ThreadingUDPServer when the table asks
-- for datagrams -- with ScriptMixin in front, which adds what the program
-- needs: several listeners (--listen is repeatable, and each may be IPv4,
-- IPv6 or unix:PATH), --max-connections (over it a TCP client gets one
-- error line and is closed), --timeout (idle timeout of a connection),
-- graceful SIGTERM/SIGINT, a log line for each handler error, and hot
-- reload (reload.lua).
--
-- Instances find their methods through server.handler, the *current*
-- handler table, so a reloaded table reaches live connections at their
-- next method call. State that must outlive a reload lives in
-- server.state.

local socket = require "socket"
local socketserver = require "socketserver"
local task = require "moonsock.task"
local errors = require "moonsock.errors"
local reload = require "moonsock.reload"
local raw = require "_moonsock.socket"

local M = {}

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

-- The client_address a stream connection's socket kept at accept.
local function peer_of(request)
  if type(request) ~= "userdata" then return nil end
  return raw.peeraddr(request)
end

local function peer_text(addr)
  if type(addr) ~= "table" then return tostring(addr) end
  return M.format_address(#addr == 4 and socket.AF_INET6 or socket.AF_INET,
                          addr)
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

-- socket_type(handler) -> SOCK_STREAM | SOCK_DGRAM: the table's own
-- socket_type, else datagrams for a DatagramRequestHandler subclass.
function M.socket_type(handler)
  local t = handler.socket_type
  if t == nil then
    if socketserver.issubclass(handler,
                               socketserver.DatagramRequestHandler) then
      return socket.SOCK_DGRAM
    end
    return socket.SOCK_STREAM
  end
  if t == "udp" then return socket.SOCK_DGRAM end
  if t == "tcp" then return socket.SOCK_STREAM end
  if t ~= socket.SOCK_STREAM and t ~= socket.SOCK_DGRAM then
    error(("socket_type must be socket.SOCK_STREAM or socket.SOCK_DGRAM, "
           .. "got %s"):format(tostring(t)), 0)
  end
  return t
end

---------------------------------------------------------------------------
-- ScriptMixin: the program's additions to a socketserver server

local ScriptMixin = socketserver.class()
M.ScriptMixin = ScriptMixin

ScriptMixin.allow_reuse_address = true
ScriptMixin.block_on_close = false     -- SIGTERM's grace period instead

local BUSY = "ERROR server busy: too many connections\n"
M.BUSY = BUSY

local function super(self, name)
  return socketserver.super(ScriptMixin, self, name)
end

-- ScriptServer(handler, path, options): bind every listen address.
-- options are the command line's (strings), overriding the table's.
function ScriptMixin:__init__(handler, path, options)
  options = options or {}
  socketserver.BaseServer.__init__(self, nil, handler)
  self.handler = handler
  self.path = path
  self.state = {}
  self.listeners = {}
  self.connections, self.accepted, self.refused = 0, 0, 0
  self.stopping = false
  self.version, self.reloads, self.failed_reloads = 1, 0, 0
  self.last_error, self.last_reload_ok = nil, true
  self.max_connections = number_option(options, handler, "max-connections",
                                        "max_connections", 1)
  self.idle_timeout = number_option(options, handler, "timeout", "timeout",
                                    0)
  if self.idle_timeout == 0 then self.idle_timeout = nil end
  -- Python's BaseServer.timeout is handle_request's, which a script
  -- server never calls; handlers read the idle timeout there.
  self.timeout = self.idle_timeout
  self.grace = number_option(options, handler, "grace", "grace", 0)
  self.request_queue_size = number_option(options, handler, "backlog",
                                          "backlog", 1)
  -- An instance holds request only (and, for a datagram, its
  -- client_address): server is the same for every instance, and a
  -- stream connection's client_address is built on first use from the
  -- address accept kept in its socket, so an idle connection holds no
  -- address table (docs/performance.md, idle memory).
  local server = self
  self._instance_mt = {
    __index = function(h, k)
      if k == "server" then return server end
      if k == "client_address" then
        local a = peer_of(rawget(h, "request"))
        rawset(h, k, a)
        return a
      end
      return server.handler[k]
    end,
  }
  -- --workers: every worker binds the same addresses with SO_REUSEPORT,
  -- which needs a fixed port and cannot share a unix path.
  self.allow_reuse_port = options["reuse-port"] == "yes"
  for _, a in ipairs(addresses(handler, options)) do
    if self.allow_reuse_port then
      local where = M.format_address(a.family, a.address)
      if a.family == socket.AF_UNIX then
        error(("cannot listen on %s with --workers: workers cannot share "
               .. "a unix socket path; listen on a TCP port"):format(where), 0)
      elseif a.address[2] == 0 then
        error(("cannot listen on %s with --workers: each worker would get "
               .. "a port of its own; give a fixed port"):format(where), 0)
      end
    end
    self.address_family = a.family
    self.server_address = a.address
    self.socket = socket.socket(a.family, self.socket_type)
    local ok, err = pcall(function()
      self:server_bind()
      self:server_activate()
    end)
    if not ok then
      self.socket:close()
      self:server_close()
      error(("cannot listen on %s: %s"):format(
        M.format_address(a.family, a.address), tostring(err)), 0)
    end
    self.listeners[#self.listeners + 1] = {
      socket = self.socket, family = a.family, address = self.server_address,
    }
    log(INFO, "listening on %s%s",
        M.format_address(a.family, self.server_address),
        self.socket_type == socket.SOCK_DGRAM and " (udp)" or "")
  end
  self.socket = self.listeners[1].socket
  self.server_address = self.listeners[1].address
  self.address_family = self.listeners[1].family
end

function ScriptMixin:server_bind()
  if self.address_family == socket.AF_INET6 then
    self.socket:setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
  end
  if self.address_family == socket.AF_UNIX then
    -- SO_REUSEADDR means nothing for a path; leave it off.
    self.socket:bind(self.server_address)
    self.server_address = self.socket:getsockname()
    return
  end
  return super(self, "server_bind")(self)
end

-- serve_forever([poll_interval]): one serve loop per listener; returns
-- when shutdown() has stopped them all.
function ScriptMixin:serve_forever(poll_interval)
  for i = 2, #self.listeners do
    task.spawn(self._serve_loop, self, self.listeners[i].socket,
               poll_interval)
  end
  return self:_serve_loop(self.listeners[1].socket, poll_interval)
end

-- serve(): serve_forever in a task of its own.
function ScriptMixin:serve()
  task.spawn(self.serve_forever, self)
end

-- get_request: a stream connection comes without its address (see
-- _instance_mt), with the idle timeout, and with TCP_NODELAY unless the
-- handler table says tcp_nodelay = false: a handler that answers in two
-- sends would otherwise wait out Nagle's algorithm and the client's
-- delayed ACK, 40 ms a reply (asyncio, uvloop and Go set it too).
function ScriptMixin:get_request(sock)
  if self.socket_type ~= socket.SOCK_STREAM then
    return super(self, "get_request")(self, sock)
  end
  local request = socket._accept_request(sock or self.socket)
  if self.idle_timeout then request:settimeout(self.idle_timeout) end
  if self.handler.tcp_nodelay ~= false and request.family ~= socket.AF_UNIX
  then
    -- A client already gone fails this; its handler's first recv says so.
    raw.setsockopt(request, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
  end
  return request, nil
end

-- verify_request: --max-connections. Over the limit a TCP client reads
-- one line saying so; a datagram gets the same line as its answer.
function ScriptMixin:verify_request(request, client_address)
  if self.stopping then return false end
  if self.connections < self.max_connections then return true end
  self.refused = self.refused + 1
  if self.socket_type == socket.SOCK_STREAM then
    request:settimeout(0)
    pcall(request.send, request, BUSY)
  else
    pcall(request[2].sendto, request[2], BUSY, client_address)
  end
  return false
end

-- One request, in its own task: what ThreadingMixIn's thread and
-- BaseRequestHandler's constructor do together (setup, handle, finish
-- even when handle failed, handle_error, shutdown_request), written flat.
-- An idle connection's coroutine keeps every frame between the task and
-- its recv, for good (Lua never frees a coroutine's CallInfo records in
-- generational mode, and doubles its stack once the deepest call passes
-- 40 slots). So nothing of ours stays under handle: the task is spawned
-- with task.spawn_then, whose after-hook (request_after) runs in place
-- of the body once it ends, and the body tail-calls handle. Its frames
-- are then handle's own. The script server's hooks are its own, so none
-- is skipped by doing so. Each method is read from the instance when it
-- is called, which reads server.handler: after a reload, the next call
-- runs the new code.
local remember = socketserver._remember
local with_traceback = socketserver._with_traceback
local BaseInit = socketserver.BaseRequestHandler.__init__
local BaseSetup = socketserver.BaseRequestHandler.setup

local function noop() end

-- After handle: finish (even when handle failed; not after a failed
-- setup, nor after __init__, which calls it itself), handle_error,
-- shutdown_request, and the count. client_address is read only for an
-- error, so a connection that ends well never builds it.
local function request_done(h, ok, err, nofinish)
  local self, request = h.server, h.request
  if not nofinish then
    local fok, ferr = xpcall(h.finish or noop, remember, h)
    if not fok then
      if not ok then
        log(ERROR, "%s: handler handle failed: %s",
            peer_text(h.client_address), socketserver.traceback(err))
      end
      ok, err = fok, ferr          -- Python: finish's error wins
    end
  end
  local hok, herr = true, nil
  if not ok then
    hok, herr = pcall(self.handle_error, self, request, h.client_address,
                      err)
  end
  local sok, serr = pcall(self.shutdown_request, self, request)
  self.connections = self.connections - 1
  if not (hok and sok) then
    log(ERROR, "%s: %s", peer_text(h.client_address),
        tostring(hok and serr or herr))
  end
end

local SETUP_FAILED = {}    -- serve_request's word for "no handle, no finish"

-- The task's body: setup (only a handler's own: BaseRequestHandler's does
-- nothing), then handle as a tail call, which leaves no frame of this
-- function under it.
local function serve_request(h)
  local setup = h.setup
  if setup ~= nil and setup ~= BaseSetup then
    local ok, err = xpcall(setup, remember, h)
    if not ok then return SETUP_FAILED, err end
  end
  return h.handle(h)
end

-- The after-hook: ok, SETUP_FAILED, err | ok, handle's results... |
-- false, err, traceback (handle raised; the runtime took the traceback).
local function request_after(h, ok, a, b)
  if not ok then return request_done(h, false, with_traceback(a, b)) end
  if a == SETUP_FAILED then
    return request_done(h, false, b, true)   -- as Python: no finish
  end
  return request_done(h, true)
end

-- The body for a handler class with its own constructor: run it as
-- Python would (it calls setup, handle and finish itself).
local function serve_init(h)
  local ok, err = xpcall(h.__init__, remember, h, h.request,
                         h.client_address, h.server)
  return request_done(h, ok, err, true)
end

-- process_request: count the request and start its task. A stream
-- connection's client_address is nil here (get_request).
function ScriptMixin:process_request(request, client_address)
  self.connections = self.connections + 1
  self.accepted = self.accepted + 1
  local h = setmetatable({ request = request }, self._instance_mt)
  if client_address ~= nil then rawset(h, "client_address", client_address) end
  local init = h.__init__
  if init ~= nil and init ~= BaseInit then
    task.spawn(serve_init, h)
  else
    task.spawn_then(request_after, h, serve_request, h)
  end
end

-- finish_request: the same steps in the calling task (Python's hook, for
-- anyone who calls it directly).
function ScriptMixin:finish_request(request, client_address)
  local h = setmetatable({}, self._instance_mt)
  local init = h.__init__ or BaseInit
  init(h, request, client_address, self)
end

function ScriptMixin:active_count()
  return self.connections
end

-- handle_error: a handler's error ends its own connection, with a
-- traceback in the log; an idle timeout or a vanished client is routine.
function ScriptMixin:handle_error(request, client_address, err)
  local peer = peer_text(client_address or peer_of(request))
  if errors.isinstance(err, "TimeoutError") and self.idle_timeout then
    log(INFO, "%s: idle for %gs, closing", peer, self.idle_timeout)
  elseif errors.isinstance(err, "ConnectionError") then
    log(INFO, "%s: %s", peer, tostring(err))
  else
    log(ERROR, "%s: handler failed: %s", peer, socketserver.traceback(err))
  end
end

-- server_close(): close every listener (and remove unix socket files).
function ScriptMixin:server_close()
  for _, l in ipairs(self.listeners) do
    if l.socket:fileno() >= 0 then
      l.socket:close()
      if l.family == socket.AF_UNIX and type(l.address) == "string" and
         l.address ~= "" and l.address:byte(1) ~= 0 then
        os.remove(l.address)
      end
    end
  end
  if self.reloader then self.reloader:close() end
end

-- reload() -> true, version | false, message: reload the script now.
function ScriptMixin:reload(trigger)
  if not self.reloader then return false, "reload is not set up" end
  return self.reloader:reload(trigger or "Lua call")
end

-- status() -> table: what a monitor wants to know.
function ScriptMixin:status()
  return {
    version = self.version, reloads = self.reloads,
    failed_reloads = self.failed_reloads, last_error = self.last_error,
    last_reload_ok = self.last_reload_ok, connections = self.connections,
    accepted = self.accepted, refused = self.refused,
    path = self.path,
  }
end

-- stop([grace]): stop accepting, close the listeners, wait up to grace
-- seconds for the connections to end. Returns the connections left.
function ScriptMixin:stop(grace)
  if self.stopping then return self.connections end
  self.stopping = true
  self:shutdown()
  self:server_close()
  grace = grace or self.grace
  log(INFO, "listeners closed; waiting up to %gs for %d connection(s)",
      grace, self.connections)
  local deadline = task.now() + grace * 1000
  while self.connections > 0 and task.now() < deadline do
    task.sleep(0.02)
  end
  if self.connections > 0 then
    log(WARN, "grace period over; dropping %d connection(s)",
        self.connections)
  end
  return self.connections
end

M.ScriptTCPServer = socketserver.class(ScriptMixin,
                                       socketserver.ThreadingTCPServer)
M.ScriptUDPServer = socketserver.class(ScriptMixin,
                                       socketserver.ThreadingUDPServer)

---------------------------------------------------------------------------

-- start(handler, path, options, args) -> server: bind, start serving and
-- set up reloading, but install no signal handlers (specs use this).
-- options: the command line's ("listen", "max-connections", "timeout",
-- "grace", "backlog", "reload" = "no", "reload-poll" = ms).
function M.start(handler, path, options, args)
  options = options or {}
  local stype = M.socket_type(handler)
  local cls = stype == socket.SOCK_DGRAM and M.ScriptUDPServer
              or M.ScriptTCPServer
  local server = cls(handler, path, options)
  local poll = options["reload-poll"] and tonumber(options["reload-poll"])
  server.reloader = reload.new(server, {
    path = path, args = args, poll_ms = poll,
    watch = options.reload ~= "no",
    validate = function(h)
      local ok, t = pcall(M.socket_type, h)
      if not ok then return t end
      if t ~= stype then
        return "a reload cannot switch between TCP and UDP; restart the "
               .. "server"
      end
    end,
  })
  server:serve()
  log(DEBUG, "serving %s", path)
  return server
end

-- serve_script(handler, path, options, args) -> server: what `moonsock
-- SCRIPT` does with a returned handler table. SIGTERM/SIGINT stop it
-- (a second signal stops at once); SIGHUP reloads it.
function M.serve_script(handler, path, options, args)
  -- Signals are watched before the listeners exist, so a SIGTERM that
  -- follows the "listening on" line at once is never the default
  -- disposition killing the process.
  local server
  local function on_signal(signo)
    if server == nil or server.stopping then
      log(WARN, "signal %d%s: stopping now", signo,
          server and " again" or "")
      task.stop()
      return
    end
    log(INFO, "signal %d: stopping", signo)
    -- A signal runs in a daemon task; the stop runs in one that keeps
    -- the program alive until the grace period is over.
    task.spawn(function()
      server:stop()
      log(INFO, "stopped")
      task.stop()
    end)
  end
  task.onsignal(task.SIGTERM, on_signal)
  task.onsignal(task.SIGINT, on_signal)
  task.onsignal(task.SIGHUP, function()
    if server then server:reload("SIGHUP") end
  end)
  server = M.start(handler, path, options, args)
  return server
end

return M
