-- socketserver.lua -- Python's socketserver module, mirrored.
--
-- Servers (TCPServer, UDPServer, UnixStreamServer, UnixDatagramServer and
-- their Threading* forms), request handlers (BaseRequestHandler,
-- StreamRequestHandler, DatagramRequestHandler) and every hook Python
-- documents, with Python's names, arguments and order of calls. Classes
-- are tables: `socketserver.class(Base, ...)` derives one, a class is
-- called to make an instance (which runs its __init__), and a method of a
-- base is called as `Base.method(self, ...)`, as Python's
-- `super().method(...)`. docs/socketserver.md shows the idiom beside
-- Python's.
--
-- Where moonsock differs, it is because the blocking calls suspend a task
-- rather than a thread: a "thread" of ThreadingMixIn is a green thread (a
-- task), shutdown() never deadlocks (called from the serving task itself
-- it only asks serve_forever to stop), and serve_forever backs off when
-- accept runs out of descriptors instead of spinning. ForkingMixIn and the
-- Forking* servers are left out: see docs/socketserver.md.

local socket = require "socket"
local task = require "moonsock.task"
local errors = require "moonsock.errors"
local threading = require "threading"
local rawtask = require "_moonsock.task"

local M = {}

local E = errors.errno
local READ = task.READ
local fdwait, now = rawtask.fdwait, task.now

---------------------------------------------------------------------------
-- classes

-- Metamethods an instance needs from its class; Lua reads them raw from
-- the metatable, so a class copies them from its bases.
local METAMETHODS = { "__close", "__tostring", "__eq", "__len" }

local function construct(cls, ...)
  local self = setmetatable({}, cls)
  local init = cls.__init__
  if init ~= nil then init(self, ...) end
  return self
end

-- mro(cls) -> the classes to search, cls first: depth first, left to
-- right, each class kept at its last place, so a common base comes after
-- every class that derives from it (Python's C3 order for the shapes
-- socketserver uses: mixins over one base).
local function mro(cls)
  local order = {}
  local function visit(c)
    order[#order + 1] = c
    for _, b in ipairs(rawget(c, "__bases") or {}) do visit(b) end
  end
  visit(cls)
  local last, out = {}, {}
  for i, c in ipairs(order) do last[c] = i end
  for i, c in ipairs(order) do
    if last[c] == i then out[#out + 1] = c end
  end
  return out
end

-- A class attribute as found from position i of the order on.
local function lookup(order, i, k)
  for j = i, #order do
    local c = order[j]
    local v = rawget(c, k)
    if v == nil and rawget(c, "__bases") == nil then v = c[k] end
    if v ~= nil then return v end
  end
end

-- class(base1, base2, ...) -> a new class. Attributes and methods are
-- looked up in the class, then along mro(). Calling the class makes an
-- instance and runs __init__ with the call's arguments.
function M.class(...)
  local bases = { ... }
  local cls = {}
  cls.__index = cls
  rawset(cls, "__bases", bases)
  local index
  if #bases == 1 then
    index = bases[1]
  elseif #bases > 1 then
    local order = mro(cls)
    index = function(_, k) return lookup(order, 2, k) end
  end
  setmetatable(cls, { __index = index, __call = construct })
  for _, k in ipairs(METAMETHODS) do
    local v = cls[k]
    if v ~= nil then rawset(cls, k, v) end
  end
  return cls
end

-- super(cls, self, name) -> the method name as the class after cls in
-- self's class order defines it: Python's super(cls, self).name, which
-- a mixin needs to reach the server class beside it. The order is
-- computed once per class: the script server calls this per request.
local mro_cache = setmetatable({}, { __mode = "k" })

function M.super(cls, self, name)
  local c = getmetatable(self)
  local order = mro_cache[c]
  if order == nil then
    order = mro(c)
    mro_cache[c] = order
  end
  for i, k in ipairs(order) do
    if k == cls then return lookup(order, i + 1, name) end
  end
end

-- issubclass(cls, base) -> bool: base is cls or one of its ancestors.
function M.issubclass(cls, base)
  if cls == base then return true end
  if type(cls) ~= "table" then return false end
  local bases = rawget(cls, "__bases")
  if bases == nil then
    -- A plain table used as a class: follow its metatable's __index.
    local mt = getmetatable(cls)
    local up = mt and rawget(mt, "__index")
    return type(up) == "table" and up ~= cls and M.issubclass(up, base)
  end
  for _, b in ipairs(bases) do
    if M.issubclass(b, base) then return true end
  end
  return false
end

-- isinstance(obj, cls) -> bool
function M.isinstance(obj, cls)
  return type(obj) == "table" and M.issubclass(getmetatable(obj), cls)
end

-- The root: every class below has subclass(), a shorthand for a class
-- with one base and a body of attributes and methods.
local Object = M.class()
M.Object = Object

function Object.subclass(base, body)
  local cls = M.class(base)
  for k, v in pairs(body or {}) do cls[k] = v end
  for _, k in ipairs(METAMETHODS) do
    local v = cls[k]
    if v ~= nil then rawset(cls, k, v) end
  end
  return cls
end

---------------------------------------------------------------------------
-- errors and tracebacks

-- The traceback of an error object, taken where it was raised, so that
-- handle_error can show it after the stack has unwound. Weak keys: an
-- error that nobody holds any more takes its traceback with it.
local tracebacks = setmetatable({}, { __mode = "k" })

-- Message handler for xpcall: remember where the error came from. A
-- string error becomes its own traceback text (once).
local function remember(err)
  if type(err) == "table" then
    if tracebacks[err] == nil then
      local ok, msg = pcall(tostring, err)
      tracebacks[err] = debug.traceback(ok and msg or "(error object)", 2)
    end
    return err
  end
  local msg = tostring(err)
  if msg:find("\nstack traceback:\n", 1, true) then return msg end
  return debug.traceback(msg, 2)
end
M._remember = remember

-- _with_traceback(err, tb) -> err: what remember would have made of err
-- had it run where err was raised, given the traceback taken there (by
-- the task runtime, for a task spawned with task.spawn_then).
function M._with_traceback(err, tb)
  if type(err) == "table" then
    if tracebacks[err] == nil then tracebacks[err] = tb end
    return err
  end
  if tostring(err):find("\nstack traceback:\n", 1, true) then return err end
  return tb
end

-- traceback(err) -> text: the error's message and where it was raised.
function M.traceback(err)
  if type(err) == "table" then
    local tb = tracebacks[err]
    if tb then return tb end
    local ok, msg = pcall(tostring, err)
    return ok and msg or "(error object)"
  end
  return tostring(err)
end

-- Python's repr of an address: ('127.0.0.1', 5000) or 'path'.
local function addr_repr(a)
  if type(a) == "table" then
    local parts = {}
    for i, v in ipairs(a) do
      parts[i] = type(v) == "string" and ("'%s'"):format(v) or tostring(v)
    end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  return ("'%s'"):format(tostring(a))
end
M._addr_repr = addr_repr

---------------------------------------------------------------------------
-- BaseServer

local BaseServer = M.class(Object)
M.BaseServer = BaseServer

BaseServer.timeout = nil

function BaseServer:__init__(server_address, RequestHandlerClass)
  self.server_address = server_address
  self.RequestHandlerClass = RequestHandlerClass
  self._shutdown_request = false
  self._is_shut_down = threading.Event()
  self._serving = 0          -- serve loops running
  self._serve_tasks = {}     -- task -> true while it serves
  self._selecting = {}       -- task -> true while it waits for a request
end

-- server_activate(): called by the constructor; nothing for the base.
function BaseServer:server_activate() end

-- Wake the serve loops that are waiting for a request, so a shutdown
-- takes effect now rather than after poll_interval.
local function wake_selecting(self)
  for co in pairs(self._selecting) do task.wakeup(co) end
end

-- The shared body of serve_forever: wait for sock to be readable (at
-- most poll_interval), handle what is pending, run service_actions, until
-- shutdown() is called. Several loops (one per listening socket) may run
-- at once; the last one out resets the shutdown flag, as Python does.
function BaseServer:_serve_loop(sock, poll_interval)
  if poll_interval == nil then poll_interval = 0.5 end
  local me = task.current()
  if self._serving == 0 then self._is_shut_down:clear() end
  self._serving = self._serving + 1
  if me then self._serve_tasks[me] = true end
  local ok, err = xpcall(function()
    local last_warn = -math.huge
    while not self._shutdown_request do
      if me then self._selecting[me] = true end
      local ready, why = task.wait(sock, READ, task.deadline(poll_interval))
      if me then self._selecting[me] = nil end
      if self._shutdown_request then break end
      if ready then
        -- Accept what is pending now, up to a bound, so a burst of
        -- connections costs one loop pass, not one per connection.
        for _ = 1, 64 do
          local st, e = self:_handle_request_noblock(sock)
          if st == "backoff" then
            if now() - last_warn > 1000 then
              task.log(task.WARN, ("accept: %s; pausing accepts")
                       :format(tostring(e)))
              last_warn = now()
            end
            task.sleep(0.05)
            break
          end
          if st ~= "ok" or self._shutdown_request or
             not fdwait(sock, READ, now()) then
            break
          end
        end
      elseif ready == nil and why ~= nil then
        if why == E.EBADF then break end      -- the socket was closed
        -- Any other failure to wait (EBUSY: another task waits on this
        -- listener) is logged, and the loop carries on after a pause
        -- rather than ending the server or spinning.
        task.log(task.ERROR, ("accept wait: %s; retrying"):format(
          tostring(errors.from_errno(why))))
        task.sleep(0.1)
      end
      self:service_actions()
    end
  end, remember)
  if me then self._serve_tasks[me] = nil end
  self._serving = self._serving - 1
  if self._serving == 0 then
    self._shutdown_request = false
    self._is_shut_down:set()
  end
  if not ok then error(err, 0) end
end

-- serve_forever([poll_interval]): handle requests until shutdown().
function BaseServer:serve_forever(poll_interval)
  return self:_serve_loop(self.socket, poll_interval)
end

-- shutdown(): stop serve_forever and wait until it has stopped. From the
-- serving task itself (a handler of a synchronous server) it only asks,
-- and serve_forever returns once that handler is done: never a deadlock.
function BaseServer:shutdown()
  self._shutdown_request = true
  if self._serving == 0 then return end
  wake_selecting(self)
  local me = task.current()
  if me == nil or self._serve_tasks[me] then return end
  self._is_shut_down:wait()
end

-- service_actions(): called by serve_forever once per loop turn.
function BaseServer:service_actions() end

-- handle_request(): handle one request, waiting at most self.timeout
-- (or the socket's timeout, whichever is shorter); handle_timeout() if
-- none came.
function BaseServer:handle_request()
  local timeout = self.socket:gettimeout()
  if timeout == nil then
    timeout = self.timeout
  elseif self.timeout ~= nil then
    timeout = math.min(timeout, self.timeout)
  end
  local ready, why = task.wait(self.socket, READ, task.deadline(timeout))
  if ready then return self:_handle_request_noblock(self.socket) end
  if ready == nil and why ~= nil then errors.raise(why, 2) end
  return self:handle_timeout()
end

-- handle_timeout(): called when handle_request's timeout passes.
function BaseServer:handle_timeout() end

-- _handle_request_noblock([sock]) -> "ok" | "none" | "backoff", err |
-- "error", err. An OSError from get_request ends the attempt, as in
-- Python; running out of descriptors is told apart so the caller backs
-- off instead of spinning on a listener that stays readable.
function BaseServer:_handle_request_noblock(sock)
  local ok, request, client_address = pcall(self.get_request, self, sock)
  if not ok then
    local err = request
    if not errors.isinstance(err, "OSError") then error(err, 0) end
    local e = err.errno
    if e == E.EMFILE or e == E.ENFILE or e == E.ENOMEM then
      return "backoff", err
    end
    if e == E.EAGAIN then return "none" end
    return "error", err
  end
  if self:verify_request(request, client_address) then
    local pok, err = xpcall(self.process_request, remember, self, request,
                            client_address)
    if not pok then
      self:handle_error(request, client_address, err)
      self:shutdown_request(request)
    end
  else
    self:shutdown_request(request)
  end
  return "ok"
end

-- verify_request(request, client_address) -> bool: false refuses it.
function BaseServer:verify_request(request, client_address)
  return true
end

-- process_request(request, client_address): the synchronous server
-- handles the request in the serving task.
function BaseServer:process_request(request, client_address)
  self:finish_request(request, client_address)
  self:shutdown_request(request)
end

-- A handler instance for cls: call it when it is a class; a plain table
-- with methods (a handler script's table) gets BaseRequestHandler's
-- constructor over it.
local function new_handler(cls, request, client_address, server)
  local mt = getmetatable(cls)
  if mt ~= nil and mt.__call ~= nil then
    return cls(request, client_address, server)
  end
  local h = setmetatable({}, { __index = cls })
  M.BaseRequestHandler.__init__(h, request, client_address, server)
  return h
end
M._new_handler = new_handler

-- finish_request(request, client_address): run the handler on it.
function BaseServer:finish_request(request, client_address)
  new_handler(self.RequestHandlerClass, request, client_address, self)
end

function BaseServer:server_close() end

function BaseServer:shutdown_request(request)
  self:close_request(request)
end

function BaseServer:close_request(request) end

-- handle_error(request, client_address[, err]): log the traceback and
-- carry on. Python reads the error from sys.exc_info(); here it is the
-- third argument (and socketserver.traceback(err) gives its text).
function BaseServer:handle_error(request, client_address, err)
  task.log(task.ERROR, ("Exception occurred during processing of request "
                        .. "from %s\n%s"):format(addr_repr(client_address),
                                                 M.traceback(err)))
end

-- `local server <close> = ...` closes like Python's `with`.
function BaseServer:__close()
  self:server_close()
end

---------------------------------------------------------------------------
-- TCPServer and UDPServer

local TCPServer = M.class(BaseServer)
M.TCPServer = TCPServer

TCPServer.address_family = socket.AF_INET
TCPServer.socket_type = socket.SOCK_STREAM
TCPServer.request_queue_size = 5
TCPServer.allow_reuse_address = false
TCPServer.allow_reuse_port = false

-- TCPServer(server_address, RequestHandlerClass[, bind_and_activate])
function TCPServer:__init__(server_address, RequestHandlerClass,
                            bind_and_activate)
  BaseServer.__init__(self, server_address, RequestHandlerClass)
  self.socket = socket.socket(self.address_family, self.socket_type)
  if bind_and_activate == nil or bind_and_activate then
    local ok, err = pcall(function()
      self:server_bind()
      self:server_activate()
    end)
    if not ok then
      self:server_close()
      error(err, 0)
    end
  end
end

-- server_bind(): the reuse options, bind, and the real address (the
-- port the kernel chose for port 0).
function TCPServer:server_bind()
  if self.allow_reuse_address then
    self.socket:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  end
  if self.allow_reuse_port then
    self.socket:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
  end
  self.socket:bind(self.server_address)
  self.server_address = self.socket:getsockname()
end

function TCPServer:server_activate()
  self.socket:listen(self.request_queue_size)
end

function TCPServer:server_close()
  self.socket:close()
end

function TCPServer:fileno()
  return self.socket:fileno()
end

-- get_request([sock]) -> request, client_address
function TCPServer:get_request(sock)
  return (sock or self.socket):accept()
end

function TCPServer:shutdown_request(request)
  -- Explicitly shut down the write side: close() alone may leave it
  -- open while other references exist (Python's comment says the same).
  pcall(request.shutdown, request, socket.SHUT_WR)
  self:close_request(request)
end

function TCPServer:close_request(request)
  request:close()
end

local UDPServer = M.class(TCPServer)
M.UDPServer = UDPServer

UDPServer.allow_reuse_address = false
UDPServer.allow_reuse_port = false
UDPServer.socket_type = socket.SOCK_DGRAM
UDPServer.max_packet_size = 8192

-- get_request([sock]) -> {data, socket}, client_address
function UDPServer:get_request(sock)
  sock = sock or self.socket
  local data, client_addr = sock:recvfrom(self.max_packet_size)
  return { data, sock }, client_addr
end

function UDPServer:server_activate() end

function UDPServer:shutdown_request(request)
  self:close_request(request)
end

function UDPServer:close_request(request) end

---------------------------------------------------------------------------
-- ThreadingMixIn: one green thread (task) per request

local ThreadingMixIn = M.class(Object)
M.ThreadingMixIn = ThreadingMixIn

ThreadingMixIn.daemon_threads = false
ThreadingMixIn.block_on_close = true

-- process_request_thread(request, client_address): what each thread
-- runs; handle_error on failure, shutdown_request always.
function ThreadingMixIn:process_request_thread(request, client_address)
  local ok, err = xpcall(self.finish_request, remember, self, request,
                         client_address)
  if not ok then self:handle_error(request, client_address, err) end
  self:shutdown_request(request)
end

local function threads_of(self)
  local th = rawget(self, "_threads")
  if th == nil then
    th = { n = 0, idle = threading.Event() }
    th.idle:set()
    self._threads = th
  end
  return th
end

local function thread_main(self, request, client_address)
  local th = threads_of(self)
  local ok, err = xpcall(self.process_request_thread, remember, self,
                         request, client_address)
  th.n = th.n - 1
  if th.n == 0 then th.idle:set() end
  if not ok then error(M.traceback(err), 0) end
end

-- process_request(request, client_address): start a thread for it.
function ThreadingMixIn:process_request(request, client_address)
  if not task.active then
    errors.throw("RuntimeError", "threads need the moonsock runtime", 2)
  end
  local th = threads_of(self)
  th.n = th.n + 1
  th.idle:clear()
  local spawn = self.daemon_threads and task.spawn_daemon or task.spawn
  spawn(thread_main, self, request, client_address)
end

-- server_close(): close, then (block_on_close) wait for the threads.
function ThreadingMixIn:server_close()
  M.super(ThreadingMixIn, self, "server_close")(self)
  if self.block_on_close and not self.daemon_threads and
     task.current() ~= nil then
    threads_of(self).idle:wait()
  end
end

-- active_count() -> threads (requests) now running. Not in Python; the
-- moonsock program uses it for --max-connections.
function ThreadingMixIn:active_count()
  return threads_of(self).n
end

M.ThreadingTCPServer = M.class(ThreadingMixIn, TCPServer)
M.ThreadingUDPServer = M.class(ThreadingMixIn, UDPServer)

---------------------------------------------------------------------------
-- Unix-domain servers

M.UnixStreamServer = M.class(TCPServer)
M.UnixStreamServer.address_family = socket.AF_UNIX

M.UnixDatagramServer = M.class(UDPServer)
M.UnixDatagramServer.address_family = socket.AF_UNIX

M.ThreadingUnixStreamServer = M.class(ThreadingMixIn, M.UnixStreamServer)
M.ThreadingUnixDatagramServer = M.class(ThreadingMixIn,
                                        M.UnixDatagramServer)

---------------------------------------------------------------------------
-- request handlers

local function callm(self, name)
  local f = self[name]
  if f ~= nil then return f(self) end
end

local BaseRequestHandler = M.class(Object)
M.BaseRequestHandler = BaseRequestHandler

-- BaseRequestHandler(request, client_address, server): setup, handle,
-- finish. finish runs even when handle fails (Python's try/finally);
-- the handle error is raised again afterwards, with its traceback kept.
function BaseRequestHandler:__init__(request, client_address, server)
  self.request = request
  self.client_address = client_address
  self.server = server
  callm(self, "setup")
  local ok, err = xpcall(callm, remember, self, "handle")
  callm(self, "finish")
  if not ok then error(err, 0) end
end

function BaseRequestHandler:setup() end
function BaseRequestHandler:handle() end
function BaseRequestHandler:finish() end

-- Python's _SocketWriter: an unbuffered write side for wbufsize == 0.
local SocketWriter = {}
SocketWriter.__index = SocketWriter

local function socket_writer(sock)
  return setmetatable({ _sock = sock, closed = false }, SocketWriter)
end

function SocketWriter:write(b)
  if self.closed then
    errors.throw("ValueError", "I/O operation on closed file.", 2)
  end
  self._sock:sendall(b)
  return #b
end
function SocketWriter:writable() return true end
function SocketWriter:flush() end
function SocketWriter:close() self.closed = true end
function SocketWriter:fileno() return self._sock:fileno() end
SocketWriter.__close = SocketWriter.close

local StreamRequestHandler = M.class(BaseRequestHandler)
M.StreamRequestHandler = StreamRequestHandler

StreamRequestHandler.rbufsize = -1
StreamRequestHandler.wbufsize = 0
StreamRequestHandler.timeout = nil
StreamRequestHandler.disable_nagle_algorithm = false

function StreamRequestHandler:setup()
  self.connection = self.request
  if self.timeout ~= nil then self.connection:settimeout(self.timeout) end
  if self.disable_nagle_algorithm then
    self.connection:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
  end
  self.rfile = self.connection:makefile("rb")
  if self.wbufsize == 0 then
    self.wfile = socket_writer(self.connection)
  else
    self.wfile = self.connection:makefile("wb")
  end
end

function StreamRequestHandler:finish()
  if not self.wfile.closed then
    -- A final flush may fail if the client is gone; Python ignores it.
    local ok, err = pcall(self.wfile.flush, self.wfile)
    if not ok and not errors.isinstance(err, "OSError") then
      error(err, 0)
    end
  end
  self.wfile:close()
  self.rfile:close()
end

-- Python's io.BytesIO, as much as DatagramRequestHandler needs.
local BytesIO = {}
BytesIO.__index = BytesIO

function M.BytesIO(initial)
  return setmetatable({ buf = initial or "", pos = 1, parts = {},
                        closed = false }, BytesIO)
end

function BytesIO:read(n)
  if n == nil or n < 0 then n = #self.buf end
  local out = self.buf:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + #out
  return out
end

function BytesIO:readline(limit)
  local nl = self.buf:find("\n", self.pos, true)
  local last = nl or #self.buf
  if limit ~= nil and limit >= 0 then
    last = math.min(last, self.pos + limit - 1)
  end
  local out = self.buf:sub(self.pos, last)
  self.pos = self.pos + #out
  return out
end

function BytesIO:lines()
  return function()
    local line = self:readline()
    if line ~= "" then return line end
  end
end

function BytesIO:write(b)
  b = tostring(b)
  self.parts[#self.parts + 1] = b
  return #b
end

-- getvalue(): for a write buffer, everything written; for a read
-- buffer, its initial content.
function BytesIO:getvalue()
  if #self.parts > 0 then return table.concat(self.parts) end
  return self.buf
end

function BytesIO:flush() end
function BytesIO:close() self.closed = true end

local DatagramRequestHandler = M.class(BaseRequestHandler)
M.DatagramRequestHandler = DatagramRequestHandler

function DatagramRequestHandler:setup()
  self.packet, self.socket = self.request[1], self.request[2]
  self.rfile = M.BytesIO(self.packet)
  self.wfile = M.BytesIO()
end

function DatagramRequestHandler:finish()
  self.socket:sendto(self.wfile:getvalue(), self.client_address)
end

return M
