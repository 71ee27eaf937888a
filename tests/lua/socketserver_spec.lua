-- socketserver_spec.lua -- Python's socketserver module, against real
-- sockets on loopback and in a temporary directory.
--
-- Each server runs serve_forever in a green thread of this process while
-- the spec, another task, is the client; Python 3.11's behaviour is the
-- reference for every class, hook and attribute checked here. The class
-- idiom (derive, override, call the base's method) is checked first,
-- since everything else uses it.

local socketserver = require "socketserver"
local socket = require "socket"
local threading = require "threading"
local time = require "time"

local LOCAL = { "127.0.0.1", 0 }

local function tmppath(tag)
  local p = os.tmpname()
  os.remove(p)
  return p .. "." .. tag
end

-- Start server:serve_forever in a thread; returns the thread.
local function serve(server, poll)
  local th = threading.Thread{target = function()
    server:serve_forever(poll or 0.05)
  end}
  th:start()
  return th
end

local function stop(server, th)
  server:shutdown()
  server:server_close()
  if th then th:join(5) end
end

local function connect(server)
  local c = socket.create_connection(server.server_address, 5)
  return c
end

-- readall(sock) -> everything until the peer closes.
local function readall(sock)
  local parts = {}
  while true do
    local d = sock:recv(4096)
    if d == "" then break end
    parts[#parts + 1] = d
  end
  return table.concat(parts)
end

-- Echo handler in the class idiom.
local Echo = socketserver.class(socketserver.BaseRequestHandler)
function Echo:handle()
  while true do
    local data = self.request:recv(4096)
    if data == "" then return end
    self.request:sendall(data)
  end
end

describe("socketserver classes", function()
  it("derive, override and call the base's method", function()
    local Base = socketserver.class(socketserver.BaseRequestHandler)
    function Base:greet() return "base" end
    local Derived = socketserver.class(Base)
    function Derived:greet() return "derived+" .. Base.greet(self) end
    local calls = {}
    function Derived:setup() calls[#calls + 1] = "setup" end
    function Derived:handle() calls[#calls + 1] = self:greet() end
    function Derived:finish() calls[#calls + 1] = "finish" end
    local h = Derived("req", { "1.2.3.4", 5 }, "srv")
    assert.same({ "setup", "derived+base", "finish" }, calls)
    assert.equal("req", h.request)
    assert.same({ "1.2.3.4", 5 }, h.client_address)
    assert.equal("srv", h.server)
    assert.is_true(socketserver.isinstance(h, Base))
    assert.is_true(socketserver.issubclass(Derived,
                                           socketserver.BaseRequestHandler))
    assert.is_false(socketserver.issubclass(socketserver.TCPServer,
                                            socketserver.UDPServer))
  end)

  it("subclass{} takes a body and class attributes are inherited",
     function()
    local H = socketserver.StreamRequestHandler:subclass{
      timeout = 3, handle = function() end,
    }
    assert.equal(3, H.timeout)
    assert.equal(0, H.wbufsize)
    assert.equal(-1, H.rbufsize)
    assert.is_false(H.disable_nagle_algorithm)
  end)

  it("mixins come before the server class (Python's order)", function()
    local T = socketserver.ThreadingTCPServer
    assert.equal(socketserver.ThreadingMixIn.process_request,
                 T.process_request)
    assert.equal(socketserver.TCPServer.get_request, T.get_request)
    assert.equal(socketserver.ThreadingMixIn.server_close, T.server_close)
    assert.equal(socketserver.TCPServer.server_close,
                 socketserver.super(socketserver.ThreadingMixIn,
                                    setmetatable({}, T), "server_close"))
    assert.is_true(socketserver.issubclass(T, socketserver.TCPServer))
    assert.is_true(socketserver.issubclass(
      socketserver.ThreadingUnixDatagramServer, socketserver.UDPServer))
  end)

  it("has no Forking servers (documented in docs/socketserver.md)",
     function()
    assert.is_nil(socketserver.ForkingMixIn)
    assert.is_nil(socketserver.ForkingTCPServer)
  end)
end)

describe("TCPServer", function()
  it("binds port 0 and reports the real address and fileno", function()
    local server <close> = socketserver.TCPServer(LOCAL, Echo)
    assert.equal("127.0.0.1", server.server_address[1])
    assert.is_true(server.server_address[2] > 0)
    local fd = server:fileno()
    assert.is_true(fd >= 0)
    assert.equal(server.socket:fileno(), fd)
    assert.equal(socket.AF_INET, server.address_family)
    assert.equal(socket.SOCK_STREAM, server.socket_type)
    assert.equal(5, server.request_queue_size)
    assert.is_nil(server.timeout)
    assert.equal(Echo, server.RequestHandlerClass)
  end)

  it("closes its socket when used as <close>", function()
    local sock
    do
      local server <close> = socketserver.TCPServer(LOCAL, Echo)
      sock = server.socket
    end
    assert.equal(-1, sock:fileno())
  end)

  it("honours allow_reuse_address and allow_reuse_port", function()
    local S = socketserver.class(socketserver.TCPServer)
    S.allow_reuse_address = true
    S.allow_reuse_port = true
    local server <close> = S(LOCAL, Echo)
    assert.is_true(server.socket:getsockopt(socket.SOL_SOCKET,
                                            socket.SO_REUSEADDR) ~= 0)
    assert.is_true(server.socket:getsockopt(socket.SOL_SOCKET,
                                            socket.SO_REUSEPORT) ~= 0)
    local plain <close> = socketserver.TCPServer(LOCAL, Echo)
    assert.equal(0, plain.socket:getsockopt(socket.SOL_SOCKET,
                                            socket.SO_REUSEADDR))
  end)

  it("binds later when bind_and_activate is false", function()
    local server <close> = socketserver.TCPServer(LOCAL, Echo, false)
    assert.same(LOCAL, server.server_address)
    server.allow_reuse_address = true
    server:server_bind()
    server:server_activate()
    assert.is_true(server.server_address[2] > 0)
    local th = serve(server)
    local c <close> = connect(server)
    c:sendall("late")
    assert.equal("late", c:recv(10))
    c:close()
    stop(server, th)
  end)

  it("closes the socket and raises when binding fails", function()
    local first <close> = socketserver.TCPServer(LOCAL, Echo)
    local ok, err = pcall(socketserver.TCPServer, first.server_address, Echo)
    assert.is_false(ok)
    assert.equal("OSError", err.name)
    assert.equal(98, err.errno)            -- EADDRINUSE
  end)

  it("serves one request at a time with serve_forever", function()
    local server <close> = socketserver.TCPServer(LOCAL, Echo)
    local th = serve(server)
    for i = 1, 3 do
      local c <close> = connect(server)
      c:sendall("hello " .. i)
      assert.equal("hello " .. i, c:recv(100))
    end
    -- Synchronous: a second client waits until the first is done.
    local a <close> = connect(server)
    local b <close> = connect(server)
    b:sendall("b")
    b:settimeout(0.2)
    local ok, err = pcall(b.recv, b, 10)
    assert.is_false(ok)
    assert.equal("TimeoutError", err.name)
    a:close()
    b:settimeout(5)
    assert.equal("b", b:recv(10))
    b:close()
    stop(server, th)
    assert.is_false(th:is_alive())
  end)

  it("handle_request handles one request; handle_timeout otherwise",
     function()
    local S = socketserver.class(socketserver.TCPServer)
    S.timeout = 0.1
    local timeouts = 0
    function S:handle_timeout() timeouts = timeouts + 1 end
    local server <close> = S(LOCAL, Echo)
    local t0 = time.monotonic()
    server:handle_request()
    local waited = time.monotonic() - t0
    assert.equal(1, timeouts)
    assert.is_true(waited >= 0.09 and waited < 2, tostring(waited))
    -- A client: handled, no timeout.
    local c <close> = connect(server)
    c:sendall("x")
    c:shutdown(socket.SHUT_WR)
    server:handle_request()
    assert.equal(1, timeouts)
    assert.equal("x", readall(c))
  end)

  it("calls every hook in Python's order", function()
    local S = socketserver.class(socketserver.TCPServer)
    local log = {}
    local function rec(name) log[#log + 1] = name end
    function S:verify_request(req, addr)
      rec("verify")
      return socketserver.TCPServer.verify_request(self, req, addr)
    end
    function S:process_request(req, addr)
      rec("process")
      socketserver.TCPServer.process_request(self, req, addr)
    end
    function S:finish_request(req, addr)
      rec("finish_request")
      socketserver.TCPServer.finish_request(self, req, addr)
    end
    function S:shutdown_request(req)
      rec("shutdown_request")
      socketserver.TCPServer.shutdown_request(self, req)
    end
    function S:close_request(req)
      rec("close_request")
      socketserver.TCPServer.close_request(self, req)
    end
    local actions = 0
    function S:service_actions() actions = actions + 1 end
    local H = socketserver.class(socketserver.BaseRequestHandler)
    function H:setup() rec("setup") end
    function H:handle() rec("handle") end
    function H:finish() rec("finish") end
    local server <close> = S(LOCAL, H)
    local th = serve(server, 0.02)
    local c <close> = connect(server)
    assert.equal("", c:recv(10))        -- closed by the server
    time.sleep(0.1)
    assert.same({ "verify", "process", "finish_request", "setup", "handle",
                  "finish", "shutdown_request", "close_request" }, log)
    assert.is_true(actions >= 2)         -- once per poll turn at least
    stop(server, th)
  end)

  it("refuses a request when verify_request says no", function()
    local S = socketserver.class(socketserver.TCPServer)
    local handled = 0
    function S:verify_request() return false end
    local H = socketserver.class(socketserver.BaseRequestHandler)
    function H:handle() handled = handled + 1 end
    local server <close> = S(LOCAL, H)
    local th = serve(server)
    local c <close> = connect(server)
    assert.equal("", c:recv(10))
    assert.equal(0, handled)
    stop(server, th)
  end)

  it("handle_error gets the error and the server carries on", function()
    local S = socketserver.class(socketserver.TCPServer)
    local seen = {}
    function S:handle_error(request, client_address, err)
      seen[#seen + 1] = { addr = client_address,
                          tb = socketserver.traceback(err) }
    end
    local H = socketserver.class(socketserver.BaseRequestHandler)
    local finished = 0
    function H:handle()
      local data = self.request:recv(100)
      if data == "boom" then error("handler exploded") end
      self.request:sendall("ok:" .. data)
    end
    function H:finish() finished = finished + 1 end
    local server <close> = S(LOCAL, H)
    local th = serve(server)
    local c1 <close> = connect(server)
    c1:sendall("boom")
    assert.equal("", c1:recv(10))        -- shutdown_request closed it
    local c2 <close> = connect(server)
    c2:sendall("fine")
    assert.equal("ok:fine", c2:recv(100))
    c2:close()
    time.sleep(0.05)
    assert.equal(1, #seen)
    assert.matches("handler exploded", seen[1].tb)
    assert.matches("socketserver_spec.lua:%d+", seen[1].tb)
    assert.matches("stack traceback", seen[1].tb)
    assert.equal("127.0.0.1", seen[1].addr[1])
    assert.equal(2, finished)            -- finish ran despite the error
    stop(server, th)
  end)

  it("keeps an error object's class through handle_error", function()
    local S = socketserver.class(socketserver.TCPServer)
    local got
    function S:handle_error(_, _, err) got = err end
    local H = socketserver.class(socketserver.BaseRequestHandler)
    function H:handle()
      self.request:settimeout(0.05)
      self.request:recv(10)              -- times out
    end
    local server <close> = S(LOCAL, H)
    local th = serve(server)
    local c <close> = connect(server)
    assert.equal("", c:recv(10))
    assert.equal("TimeoutError", got.name)
    assert.matches("timed out", socketserver.traceback(got))
    assert.matches("stack traceback", socketserver.traceback(got))
    stop(server, th)
  end)

  it("shutdown() from inside a handler does not deadlock", function()
    local H = socketserver.class(socketserver.BaseRequestHandler)
    function H:handle()
      self.server:shutdown()
      self.request:sendall("bye")
    end
    local server <close> = socketserver.TCPServer(LOCAL, H)
    local th = serve(server, 5)         -- a long poll: shutdown must wake
    local c <close> = connect(server)
    assert.equal("bye", c:recv(10))
    th:join(2)
    assert.is_false(th:is_alive())
  end)

  it("shutdown() from another task returns promptly once stopped",
     function()
    local server <close> = socketserver.TCPServer(LOCAL, Echo)
    local th = serve(server, 10)
    time.sleep(0.02)
    local t0 = time.monotonic()
    server:shutdown()
    assert.is_true(time.monotonic() - t0 < 1)
    th:join(1)
    assert.is_false(th:is_alive())
    -- serve_forever can run again after a shutdown.
    th = serve(server, 0.05)
    local c <close> = connect(server)
    c:sendall("again")
    assert.equal("again", c:recv(10))
    c:close()
    stop(server, th)
  end)

  it("shutdown() before serve_forever never blocks", function()
    local server <close> = socketserver.TCPServer(LOCAL, Echo)
    server:shutdown()
  end)
end)

describe("ThreadingTCPServer", function()
  it("serves clients at the same time, one green thread each", function()
    local server <close> = socketserver.ThreadingTCPServer(LOCAL, Echo)
    assert.is_false(server.daemon_threads)
    assert.is_true(server.block_on_close)
    local th = serve(server)
    local clients = {}
    for i = 1, 20 do clients[i] = connect(server) end
    for i = 20, 1, -1 do
      clients[i]:sendall("c" .. i)
      assert.equal("c" .. i, clients[i]:recv(100))
    end
    assert.equal(20, server:active_count())
    for i = 1, 20 do clients[i]:close() end
    stop(server, th)          -- server_close joins the threads
    assert.equal(0, server:active_count())
  end)

  it("shutdown() from a handler thread stops serve_forever", function()
    local H = socketserver.class(socketserver.BaseRequestHandler)
    function H:handle()
      self.server:shutdown()
      self.request:sendall("stopped")
    end
    local server <close> = socketserver.ThreadingTCPServer(LOCAL, H)
    local th = serve(server, 5)
    local c <close> = connect(server)
    assert.equal("stopped", c:recv(10))
    th:join(2)
    assert.is_false(th:is_alive())
  end)

  it("runs handle_error and shutdown_request in the thread", function()
    local S = socketserver.class(socketserver.ThreadingTCPServer)
    local errs, shut = 0, 0
    function S:handle_error() errs = errs + 1 end
    function S:shutdown_request(req)
      shut = shut + 1
      socketserver.ThreadingTCPServer.shutdown_request(self, req)
    end
    local H = socketserver.class(socketserver.BaseRequestHandler)
    function H:handle() error({ name = "custom" }) end
    local server <close> = S(LOCAL, H)
    local th = serve(server)
    local c <close> = connect(server)
    assert.equal("", c:recv(10))
    time.sleep(0.02)
    assert.equal(1, errs)
    assert.equal(1, shut)
    stop(server, th)
  end)
end)

describe("StreamRequestHandler", function()
  it("gives rfile, wfile, connection, timeout and TCP_NODELAY", function()
    local H = socketserver.class(socketserver.StreamRequestHandler)
    H.timeout = 2
    H.disable_nagle_algorithm = true
    local seen = {}
    function H:handle()
      seen.same = self.connection == self.request
      seen.timeout = self.connection:gettimeout()
      seen.nodelay = self.connection:getsockopt(socket.IPPROTO_TCP,
                                                socket.TCP_NODELAY)
      local line = self.rfile:readline()
      local rest = self.rfile:read(5)
      seen.n = self.wfile:write("got " .. line)
      self.wfile:write("rest " .. rest .. "\n")
    end
    local server <close> = socketserver.TCPServer(LOCAL, H)
    local th = serve(server)
    local c <close> = connect(server)
    c:sendall("first line\nabcde")
    local f = c:makefile("rb")
    assert.equal("got first line\n", f:readline())
    assert.equal("rest abcde\n", f:readline())
    assert.equal("", f:readline())
    assert.is_true(seen.same)
    assert.equal(2, seen.timeout)
    assert.is_true(seen.nodelay ~= 0)
    assert.equal(#"got first line\n", seen.n)
    stop(server, th)
  end)

  it("flushes a buffered wfile (wbufsize > 0) in finish", function()
    local H = socketserver.class(socketserver.StreamRequestHandler)
    H.wbufsize = 8192
    function H:handle()
      for line in self.rfile:lines() do self.wfile:write(line:upper()) end
    end
    local server <close> = socketserver.ThreadingTCPServer(LOCAL, H)
    local th = serve(server)
    local c <close> = connect(server)
    c:sendall("a\nb\n")
    c:shutdown(socket.SHUT_WR)
    assert.equal("A\nB\n", readall(c))
    stop(server, th)
  end)
end)

describe("UDPServer", function()
  local Upper = socketserver.class(socketserver.DatagramRequestHandler)
  function Upper:handle()
    local line = self.rfile:readline()
    self.wfile:write(line:upper())
    self.wfile:write("|" .. self.rfile:read())
  end

  local function exchange(server, payload, family)
    local c <close> = socket.socket(family or socket.AF_INET,
                                    socket.SOCK_DGRAM)
    if family == socket.AF_UNIX then
      c:bind(tmppath("client"))
    end
    c:settimeout(5)
    c:sendto(payload, server.server_address)
    local data = c:recvfrom(8192)
    if family == socket.AF_UNIX then os.remove(c:getsockname()) end
    return data
  end

  it("hands the handler {data, socket} and sends wfile back", function()
    local seen
    local H = socketserver.class(socketserver.BaseRequestHandler)
    function H:handle()
      seen = self.request
      local data, sock = self.request[1], self.request[2]
      sock:sendto("echo:" .. data, self.client_address)
    end
    local server <close> = socketserver.UDPServer(LOCAL, H)
    assert.equal(socket.SOCK_DGRAM, server.socket.type)
    assert.equal(8192, server.max_packet_size)
    local th = serve(server)
    assert.equal("echo:ping", exchange(server, "ping"))
    assert.equal("ping", seen[1])
    assert.equal(server.socket, seen[2])
    stop(server, th)
  end)

  it("DatagramRequestHandler reads rfile and answers with wfile",
     function()
    local server <close> = socketserver.ThreadingUDPServer(LOCAL, Upper)
    local th = serve(server)
    assert.equal("HELLO\n|rest", exchange(server, "hello\nrest"))
    stop(server, th)
  end)

  it("UnixDatagramServer serves a path", function()
    local path = tmppath("udg")
    local server <close> = socketserver.UnixDatagramServer(path, Upper)
    assert.equal(path, server.server_address)
    local th = serve(server)
    assert.equal("X\n|y", exchange(server, "x\ny", socket.AF_UNIX))
    stop(server, th)
    os.remove(path)
  end)
end)

describe("Unix stream servers", function()
  it("UnixStreamServer and ThreadingUnixStreamServer serve a path",
     function()
    for _, cls in ipairs{ socketserver.UnixStreamServer,
                          socketserver.ThreadingUnixStreamServer } do
      local path = tmppath("ust")
      local server <close> = cls(path, Echo)
      assert.equal(path, server.server_address)
      assert.equal(socket.AF_UNIX, server.socket.family)
      local th = serve(server)
      local c <close> = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
      c:settimeout(5)
      c:connect(path)
      c:sendall("unix")
      assert.equal("unix", c:recv(10))
      c:close()
      stop(server, th)
      os.remove(path)
    end
  end)
end)

describe("the script server (moonsock SCRIPT)", function()
  local serve = require "moonsock.serve"  -- luacheck: ignore 431

  it("runs setup, handle, finish through server.handler", function()
    local log = {}
    local H = {}
    function H:setup() log[#log + 1] = "setup" end
    function H:handle()
      log[#log + 1] = "handle"
      if self.request:recv(10) == "boom" then error("boom!") end
    end
    function H:finish() log[#log + 1] = "finish" end
    local server = serve.start(H, "inline", { listen = { "127.0.0.1:0" },
                                              reload = "no" })
    assert.is_true(socketserver.isinstance(server,
                                           socketserver.ThreadingTCPServer))
    local c <close> = socket.create_connection(server.server_address, 5)
    c:sendall("boom")
    assert.equal("", c:recv(10))          -- the error ended it
    assert.same({ "setup", "handle", "finish" }, log)
    assert.equal(0, server.connections)
    assert.equal(1, server.accepted)
    server:stop(0)
  end)

  it("refuses over max_connections with the busy line", function()
    local H = { max_connections = 1 }
    function H:handle() self.request:recv(10) end
    local server = serve.start(H, "inline", { listen = { "127.0.0.1:0" },
                                              reload = "no" })
    local a <close> = socket.create_connection(server.server_address, 5)
    time.sleep(0.05)
    local b <close> = socket.create_connection(server.server_address, 5)
    assert.equal(serve.BUSY, b:makefile("rb"):readline())
    assert.equal(1, server.refused)
    a:close()
    server:stop(1)
  end)

  it("ends an idle connection after timeout", function()
    local H = { timeout = 0.1 }
    function H:handle() self.request:recv(10) end
    local server = serve.start(H, "inline", { listen = { "127.0.0.1:0" },
                                              reload = "no" })
    assert.equal(0.1, server.timeout)
    local c <close> = socket.create_connection(server.server_address, 5)
    local t0 = time.monotonic()
    assert.equal("", c:recv(10))
    local took = time.monotonic() - t0
    assert.is_true(took >= 0.09 and took < 2, tostring(took))
    server:stop(0)
  end)

  it("serves several listeners with one server and one state", function()
    local H = {}
    function H:handle()
      local st = self.server.state
      st.n = (st.n or 0) + 1
      self.request:sendall(tostring(st.n))
    end
    local path = tmppath("multi")
    local server = serve.start(H, "inline", {
      listen = { "127.0.0.1:0", "[::1]:0", "unix:" .. path },
      reload = "no" })
    assert.equal(3, #server.listeners)
    local got = {}
    for i, l in ipairs(server.listeners) do
      local c <close> = socket.socket(l.family, socket.SOCK_STREAM)
      c:settimeout(5)
      c:connect(l.address)
      got[i] = c:recv(10)
    end
    assert.same({ "1", "2", "3" }, got)
    server:stop(0)
    assert.is_nil(io.open(path))          -- the socket file is gone
  end)
end)
