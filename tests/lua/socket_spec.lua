-- socket_spec.lua -- the `socket` module against Python 3's behaviour.
--
-- Every method and function DESIGN.md lists, on real sockets (loopback,
-- socket pairs, AF_UNIX in a temporary directory), never mocks. The spec
-- runs as a task of the moonsock runtime (tests/run_busted.lua), so a
-- blocking call suspends only this task and a green thread can play the
-- other end. Expected values are what Python 3.11 gives on Linux; timing
-- checks use bounds, never exact values.

local socket = require "socket"
local threading = require "threading"
local time = require "time"

-- A connected TCP pair over loopback: client, server side, listener.
local function tcp_pair()
  local srv = socket.socket()
  srv:bind{"127.0.0.1", 0}
  srv:listen()
  local c = socket.socket()
  c:connect(srv:getsockname())
  local s = srv:accept()
  return c, s, srv
end

-- raises(f, ...) -> the error object f raised (fails if it did not).
local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function elapsed(f, ...)
  local t0 = time.monotonic()
  local r = table.pack(pcall(f, ...))
  return time.monotonic() - t0, table.unpack(r, 1, r.n)
end

local function tempdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("l")
  p:close()
  return dir
end

describe("require 'socket'", function()
  it("returns moonsock's module, not LuaSocket", function()
    assert.is_function(socket.create_server)
    assert.is_function(socket.socketpair)
    assert.is_table(socket.methods)
    assert.is_nil(socket._VERSION)      -- LuaSocket sets "LuaSocket x.y"
  end)

  it("has the constants issue 2 lists, with Linux's values", function()
    local want = {
      AF_INET = 2, AF_INET6 = 10, AF_UNIX = 1, SOCK_STREAM = 1,
      SOCK_DGRAM = 2, SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_REUSEPORT = 15,
      SO_KEEPALIVE = 9, SO_RCVBUF = 8, SO_SNDBUF = 7, SO_ERROR = 4,
      IPPROTO_TCP = 6, TCP_NODELAY = 1, SHUT_RD = 0, SHUT_WR = 1,
      SHUT_RDWR = 2,
    }
    for name, v in pairs(want) do
      assert.equal(v, socket[name], name)
      assert.equal("integer", math.type(socket[name]), name)
    end
  end)

  it("names Python's exception classes", function()
    assert.equal(socket.errors.OSError, socket.error)
    assert.equal(socket.errors.TimeoutError, socket.timeout)
    assert.equal(socket.errors.gaierror, socket.gaierror)
  end)
end)

describe("socket.socket", function()
  it("defaults to AF_INET, SOCK_STREAM, proto 0, blocking", function()
    local s <close> = socket.socket()
    assert.equal(socket.AF_INET, s.family)
    assert.equal(socket.SOCK_STREAM, s.type)
    assert.equal(0, s.proto)
    assert.is_nil(s:gettimeout())
    assert.is_true(s:getblocking())
    assert.equal("integer", math.type(s:fileno()))
    assert.is_true(s:fileno() >= 0)
  end)

  it("keeps the family and type it was made with", function()
    local u <close> = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    assert.equal(socket.AF_INET6, u.family)
    assert.equal(socket.SOCK_DGRAM, u.type)
    local x <close> = socket.socket(socket.AF_UNIX)
    assert.equal(socket.AF_UNIX, x.family)
    assert.equal(socket.SOCK_STREAM, x.type)
  end)

  it("raises OSError EAFNOSUPPORT for an unknown family", function()
    local err = raises(socket.socket, 999)
    assert.equal("OSError", err.name)
    assert.equal(97, err.errno)
  end)

  it("raises TypeError for a family that is not a number", function()
    assert.equal("TypeError", raises(socket.socket, "inet").name)
  end)

  it("adopts a file descriptor and detects its family", function()
    local a, b = socket.socketpair()
    local fd = a:detach()
    assert.equal(-1, a:fileno())
    local c <close> = socket.socket(nil, nil, nil, fd)
    assert.equal(socket.AF_UNIX, c.family)
    assert.equal(fd, c:fileno())
    c:sendall("x")
    assert.equal("x", b:recv(1))
    b:close()
  end)
end)

describe("bind, listen, accept, connect", function()
  it("binds port 0 and getsockname reports the real port", function()
    local s <close> = socket.socket()
    assert.equal(0, select("#", s:bind{"127.0.0.1", 0}))
    local a = s:getsockname()
    assert.equal("127.0.0.1", a[1])
    assert.is_true(a[2] > 0 and a[2] < 65536)
    assert.equal(2, #a)
  end)

  it("raises OSError EADDRINUSE for a port in use", function()
    local s <close> = socket.socket()
    s:bind{"127.0.0.1", 0}
    s:listen()
    local t <close> = socket.socket()
    local err = raises(t.bind, t, s:getsockname())
    assert.equal("OSError", err.name)
    assert.equal(98, err.errno)
    assert.equal("[Errno 98] Address already in use", err.message)
  end)

  it("accepts, returning the connection and the peer's address", function()
    local srv <close> = socket.socket()
    srv:bind{"127.0.0.1", 0}
    assert.equal(0, select("#", srv:listen(5)))
    local c <close> = socket.socket()
    assert.equal(0, select("#", c:connect(srv:getsockname())))
    local conn, addr = srv:accept()
    assert.equal("127.0.0.1", addr[1])
    assert.same(c:getsockname(), addr)
    assert.same(srv:getsockname(), conn:getsockname())
    assert.same(c:getsockname(), conn:getpeername())
    assert.same(srv:getsockname(), c:getpeername())
    assert.equal(socket.AF_INET, conn.family)
    assert.equal(socket.SOCK_STREAM, conn.type)
    assert.is_nil(conn:gettimeout())
    conn:close()
  end)

  it("gives an accepted socket no timeout even if the listener has one",
     function()
    local srv <close> = socket.socket()
    srv:bind{"127.0.0.1", 0}
    srv:listen()
    srv:settimeout(5)
    local c <close> = socket.create_connection(srv:getsockname())
    local conn <close> = srv:accept()
    assert.is_nil(conn:gettimeout())
    assert.is_nil(c:gettimeout())
  end)

  it("accepts in one task while another connects", function()
    local srv <close> = socket.socket()
    srv:bind{"127.0.0.1", 0}
    srv:listen()
    local got
    local th = threading.Thread{target = function()
      local conn = srv:accept()
      got = conn:recv(10)
      conn:close()
    end}
    th:start()
    time.sleep(0.02)
    local c <close> = socket.create_connection(srv:getsockname())
    c:sendall("hello")
    th:join(5)
    assert.equal("hello", got)
  end)

  it("connect_ex returns 0, then ECONNREFUSED for a closed port", function()
    local srv <close> = socket.socket()
    srv:bind{"127.0.0.1", 0}
    srv:listen()
    local c <close> = socket.socket()
    assert.equal(0, c:connect_ex(srv:getsockname()))
    local port = srv:getsockname()[2]
    srv:close()
    local d <close> = socket.socket()
    assert.equal(111, d:connect_ex{"127.0.0.1", port})
  end)

  it("connect raises ConnectionRefusedError", function()
    local srv = socket.socket()
    srv:bind{"127.0.0.1", 0}
    local addr = srv:getsockname()
    srv:close()
    local c <close> = socket.socket()
    local err = raises(c.connect, c, addr)
    assert.equal("ConnectionRefusedError", err.name)
    assert.equal(111, err.errno)
    assert.equal("Connection refused", err.strerror)
    assert.equal("ConnectionRefusedError: [Errno 111] Connection refused",
                 tostring(err))
    assert.is_true(err:isinstance("ConnectionError"))
    assert.is_true(err:isinstance(socket.error))
  end)

  it("connect_ex on a non-blocking socket returns 0 or EINPROGRESS",
     function()
    local srv <close> = socket.socket()
    srv:bind{"127.0.0.1", 0}
    srv:listen()
    local c <close> = socket.socket()
    c:setblocking(false)
    local rc = c:connect_ex(srv:getsockname())
    assert.is_true(rc == 0 or rc == 115, "got " .. rc)
  end)

  it("connect resolves a host name", function()
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    local c <close> = socket.socket()
    c:connect{"localhost", srv:getsockname()[2]}
    assert.equal("127.0.0.1", c:getpeername()[1])
  end)

  it("getpeername on an unconnected socket raises ENOTCONN", function()
    local s <close> = socket.socket()
    local err = raises(s.getpeername, s)
    assert.equal("OSError", err.name)
    assert.equal(107, err.errno)
  end)

  it("rejects an address of the wrong shape", function()
    local s <close> = socket.socket()
    assert.has_error(function() s:bind("127.0.0.1") end)
    assert.has_error(function() s:bind{"127.0.0.1", 70000} end)
  end)
end)

describe("create_connection and create_server", function()
  it("create_server listens with SO_REUSEADDR", function()
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    assert.is_true(srv:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
                   ~= 0)
    assert.equal(socket.SOCK_STREAM, srv.type)
    local c <close> = socket.create_connection(srv:getsockname())
    local conn <close> = srv:accept()
    c:sendall("x")
    assert.equal("x", conn:recv(1))
  end)

  it("create_server takes Python's keywords as a table", function()
    local srv <close> = socket.create_server({"::1", 0},
      {family = socket.AF_INET6, backlog = 4, reuse_port = true})
    assert.equal(socket.AF_INET6, srv.family)
    assert.equal(1, srv:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
    local c <close> = socket.create_connection({"::1",
                                                srv:getsockname()[2]})
    assert.equal("::1", c:getpeername()[1])
  end)

  it("create_connection sets the timeout it is given", function()
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    local c <close> = socket.create_connection(srv:getsockname(), 2.5)
    assert.equal(2.5, c:gettimeout())
    local d <close> = socket.create_connection(srv:getsockname())
    assert.is_nil(d:gettimeout())
  end)

  it("create_connection binds source_address", function()
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    local c <close> = socket.create_connection(srv:getsockname(), nil,
                                               {"127.0.0.1", 0})
    assert.equal("127.0.0.1", c:getsockname()[1])
  end)

  it("create_connection raises the last error when all fail", function()
    local s = socket.socket()
    s:bind{"127.0.0.1", 0}
    local addr = s:getsockname()
    s:close()
    local err = raises(socket.create_connection, addr)
    assert.equal("ConnectionRefusedError", err.name)
  end)

  it("create_connection raises gaierror for a bad name", function()
    local err = raises(socket.create_connection,
                       {"nonexistent.invalid", 80})
    assert.equal("gaierror", err.name)
    assert.is_true(err.errno < 0)
  end)
end)

describe("socketpair", function()
  it("makes two connected AF_UNIX stream sockets", function()
    local a, b = socket.socketpair()
    assert.equal(socket.AF_UNIX, a.family)
    assert.equal(socket.SOCK_STREAM, b.type)
    a:sendall("ping")
    assert.equal("ping", b:recv(4))
    b:sendall("pong")
    assert.equal("pong", a:recv(4))
    a:close(); b:close()
  end)

  it("can make a datagram pair", function()
    local a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a:send("one")
    a:send("two")
    assert.equal("one", b:recv(100))
    assert.equal("two", b:recv(100))
    a:close(); b:close()
  end)
end)

describe("recv and send", function()
  it("returns '' at end of stream", function()
    local a, b = socket.socketpair()
    a:sendall("last")
    a:close()
    assert.equal("last", b:recv(100))
    assert.equal("", b:recv(100))
    assert.equal("", b:recv(100))
    b:close()
  end)

  it("recv(0) returns '' without waiting", function()
    local a, b = socket.socketpair()
    assert.equal("", a:recv(0))
    a:close(); b:close()
  end)

  it("recv(n) returns at most n bytes", function()
    local a, b = socket.socketpair()
    a:sendall("abcdef")
    assert.equal("abc", b:recv(3))
    assert.equal("def", b:recv(3))
    a:close(); b:close()
  end)

  it("is binary-safe", function()
    local a, b = socket.socketpair()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes)
    a:sendall(all)
    local got = {}
    local n = 0
    while n < #all do
      local d = b:recv(1000)
      got[#got + 1] = d
      n = n + #d
    end
    assert.equal(all, table.concat(got))
    a:close(); b:close()
  end)

  it("recv(-1) and recv('x') raise ValueError and TypeError, as Python",
     function()
    local a, b = socket.socketpair()
    local e = raises(a.recv, a, -1)
    assert.equal("ValueError", e.name)
    assert.equal("negative buffersize in recv", e.message)
    e = raises(a.recv, a, "x")
    assert.equal("TypeError", e.name)
    assert.equal("'string' object cannot be interpreted as an integer",
                 e.message)
    assert.equal("TypeError", raises(a.recv, a, 1.5).name)
    e = raises(a.recvfrom, a, -1)
    assert.equal("ValueError", e.name)
    assert.equal("negative buffersize in recvfrom", e.message)
    -- an integral float is an integer in Lua
    b:sendall("xy")
    assert.equal("xy", a:recv(16.0))
    a:close(); b:close()
  end)

  it("send returns how much it sent, maybe less than all", function()
    local a, b = socket.socketpair()
    assert.equal(5, a:send("hello"))
    a:setblocking(false)
    local big = string.rep("x", 16 * 1024 * 1024)
    local n = a:send(big)
    assert.equal("integer", math.type(n))
    assert.is_true(n > 0 and n < #big)
    a:close(); b:close()
  end)

  it("sendall returns nothing", function()
    local a, b = socket.socketpair()
    assert.equal(0, select("#", a:sendall("x")))
    a:close(); b:close()
  end)

  it("sendall delivers 64 MiB byte-exact to a slow reader in another task",
     function()
    local a, b = socket.socketpair()
    local unit = {}
    for i = 0, 255 do unit[#unit + 1] = string.char(i) end
    -- 1 MiB of a pattern whose period (1021) is prime to every buffer
    -- size, so a lost, doubled or reordered chunk shows.
    local mib = (table.concat(unit) .. "\n"):rep(4100):sub(1, 1021 * 1027)
    local data = mib:rep(64):sub(1, 64 * 1024 * 1024)
    local parts, reads = {}, 0
    local reader = threading.Thread{target = function()
      while true do
        local d = b:recv(65536)
        if d == "" then return end
        parts[#parts + 1] = d
        reads = reads + 1
        if reads % 128 == 0 then time.sleep(0.001) end   -- slow
      end
    end}
    reader:start()
    a:sendall(data)
    a:shutdown(socket.SHUT_WR)
    reader:join(60)
    assert.is_false(reader:is_alive())
    local got = table.concat(parts)
    assert.equal(#data, #got)
    assert.is_true(got == data, "bytes differ")
    a:close(); b:close()
  end)

  it("raises ConnectionResetError when the peer resets", function()
    local c, s, srv = tcp_pair()
    -- SO_LINGER {on, 0 s}: close sends RST instead of FIN.
    s:setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, string.pack("ii", 1, 0))
    s:close()
    time.sleep(0.01)
    local err = raises(c.recv, c, 10)
    assert.equal("ConnectionResetError", err.name)
    assert.equal(104, err.errno)
    assert.is_true(err:isinstance("ConnectionError"))
    c:close(); srv:close()
  end)

  it("raises BrokenPipeError writing to a closed peer, never SIGPIPE",
     function()
    local a, b = socket.socketpair()
    b:close()
    local err = raises(a.sendall, a, "x")
    assert.equal("BrokenPipeError", err.name)
    assert.equal(32, err.errno)
    a:close()
  end)
end)

describe("UDP", function()
  it("sendto and recvfrom over IPv4", function()
    local u <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:bind{"127.0.0.1", 0}
    local v <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    v:bind{"127.0.0.1", 0}
    assert.equal(4, v:sendto("ping", u:getsockname()))
    local data, addr = u:recvfrom(100)
    assert.equal("ping", data)
    assert.same(v:getsockname(), addr)
    u:sendto("pong", addr)
    assert.equal("pong", (v:recvfrom(100)))
  end)

  it("sendto and recvfrom over IPv6 ::1", function()
    local u <close> = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u:bind{"::1", 0}
    local a = u:getsockname()
    assert.equal("::1", a[1])
    assert.equal(4, #a)                 -- (host, port, flowinfo, scope_id)
    assert.equal(0, a[3])
    assert.equal(0, a[4])
    local v <close> = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    assert.equal(2, v:sendto("p6", {"::1", a[2]}))
    local data, from = u:recvfrom(100)
    assert.equal("p6", data)
    assert.equal("::1", from[1])
    assert.equal(v:getsockname()[2], from[2])
  end)

  it("recvfrom truncates a datagram to the size asked", function()
    local u <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:bind{"127.0.0.1", 0}
    local v <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    v:sendto("0123456789", u:getsockname())
    assert.equal("0123", (u:recvfrom(4)))
  end)

  it("recvfrom times out", function()
    local u <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:bind{"127.0.0.1", 0}
    u:settimeout(0.05)
    local dt, ok, err = elapsed(u.recvfrom, u, 10)
    assert.is_false(ok)
    assert.equal("TimeoutError", err.name)
    assert.is_true(dt >= 0.045 and dt < 1, dt)
  end)

  it("connected UDP uses send and recv", function()
    local u <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:bind{"127.0.0.1", 0}
    local v <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    v:connect(u:getsockname())
    v:send("hi")
    assert.equal("hi", u:recv(10))
  end)
end)

describe("AF_UNIX", function()
  it("streams over a path in a temporary directory", function()
    local dir = tempdir()
    local path = dir .. "/moonsock.sock"
    local srv <close> = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv:bind(path)
    srv:listen()
    assert.equal(path, srv:getsockname())
    local c <close> = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c:connect(path)
    local conn, addr = srv:accept()
    assert.equal("", addr)               -- an unbound client, as Python
    assert.equal(path, c:getpeername())
    c:sendall("over unix")
    assert.equal("over unix", conn:recv(100))
    conn:close()
    srv:close()
    os.remove(path)
    os.remove(dir)
  end)

  it("raises FileNotFoundError connecting to a missing path", function()
    local c <close> = socket.socket(socket.AF_UNIX)
    local err = raises(c.connect, c, "/nonexistent/moonsock.sock")
    assert.equal("FileNotFoundError", err.name)
    assert.equal(2, err.errno)
  end)
end)

describe("shutdown", function()
  it("SHUT_WR half-closes: the peer reads '' and can still answer",
     function()
    local c, s, srv = tcp_pair()
    c:sendall("request")
    assert.equal(0, select("#", c:shutdown(socket.SHUT_WR)))
    local f = s:makefile("r")
    assert.equal("request", f:read())      -- read() to end of stream
    s:sendall("reply")
    assert.equal("reply", c:recv(100))
    local err = raises(c.sendall, c, "more")
    assert.equal("BrokenPipeError", err.name)
    c:close(); s:close(); srv:close()
  end)

  it("SHUT_RD makes recv return ''", function()
    local a, b = socket.socketpair()
    a:shutdown(socket.SHUT_RD)
    assert.equal("", a:recv(10))
    a:close(); b:close()
  end)

  it("rejects a bad how", function()
    local a, b = socket.socketpair()
    assert.has_error(function() a:shutdown(7) end)
    a:close(); b:close()
  end)

  it("on an unconnected socket raises ENOTCONN", function()
    local s <close> = socket.socket()
    assert.equal(107, raises(s.shutdown, s, socket.SHUT_RDWR).errno)
  end)
end)

describe("timeouts", function()
  it("settimeout(nil/0/t), gettimeout and getblocking as Python", function()
    local s <close> = socket.socket()
    assert.is_nil(s:gettimeout())
    s:settimeout(1)
    assert.equal(1.0, s:gettimeout())
    assert.equal("float", math.type(s:gettimeout()))
    assert.is_true(s:getblocking())
    s:settimeout(0)
    assert.equal(0.0, s:gettimeout())
    assert.is_false(s:getblocking())
    s:settimeout(nil)
    assert.is_nil(s:gettimeout())
    assert.is_true(s:getblocking())
  end)

  it("setblocking(false) is settimeout(0), true is settimeout(nil)",
     function()
    local s <close> = socket.socket()
    s:settimeout(3)
    s:setblocking(false)
    assert.equal(0.0, s:gettimeout())
    s:setblocking(true)
    assert.is_nil(s:gettimeout())
  end)

  it("a negative timeout raises ValueError, a string TypeError", function()
    local s <close> = socket.socket()
    local err = raises(s.settimeout, s, -1)
    assert.equal("ValueError", err.name)
    assert.equal("ValueError: Timeout value out of range", tostring(err))
    assert.equal("TypeError", raises(s.settimeout, s, "1").name)
    assert.is_nil(s:gettimeout())          -- unchanged
  end)

  it("recv raises TimeoutError after about t seconds", function()
    local a, b = socket.socketpair()
    a:settimeout(0.1)
    local dt, ok, err = elapsed(a.recv, a, 10)
    assert.is_false(ok)
    assert.equal("TimeoutError", err.name)
    assert.equal("TimeoutError: timed out", tostring(err))
    assert.is_nil(err.errno)
    assert.is_true(err:isinstance("OSError"))
    assert.is_true(dt >= 0.095 and dt < 1.0, "took " .. dt)
    a:close(); b:close()
  end)

  it("accept times out", function()
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    srv:settimeout(0.05)
    local dt, ok, err = elapsed(srv.accept, srv)
    assert.is_false(ok)
    assert.equal("TimeoutError", err.name)
    assert.is_true(dt >= 0.045 and dt < 1.0, "took " .. dt)
  end)

  it("sendall has one deadline for the whole call", function()
    local a, b = socket.socketpair()
    a:settimeout(0.1)
    local dt, ok, err = elapsed(a.sendall, a, string.rep("z", 32 * 2^20))
    assert.is_false(ok)
    assert.equal("TimeoutError", err.name)
    assert.is_true(dt >= 0.095 and dt < 1.0, "took " .. dt)
    a:close(); b:close()
  end)

  it("the timeout does not fire when data comes in time", function()
    local a, b = socket.socketpair()
    a:settimeout(2)
    threading.Thread{target = function()
      time.sleep(0.05)
      b:sendall("late but in time")
    end}:start()
    assert.equal("late but in time", a:recv(100))
    a:close(); b:close()
  end)

  it("non-blocking recv, accept and send raise BlockingIOError", function()
    local a, b = socket.socketpair()
    a:setblocking(false)
    local err = raises(a.recv, a, 10)
    assert.equal("BlockingIOError", err.name)
    assert.equal(11, err.errno)
    assert.equal("BlockingIOError: [Errno 11] Resource temporarily "
                 .. "unavailable", tostring(err))
    b:sendall("now")
    time.sleep(0.01)
    assert.equal("now", a:recv(10))
    assert.equal("BlockingIOError", raises(a.recv, a, 10).name)
    while pcall(a.send, a, string.rep("x", 65536)) do end
    assert.equal("BlockingIOError", raises(a.send, a, "x").name)
    assert.equal("BlockingIOError", raises(a.sendall, a, "x").name)
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    srv:setblocking(false)
    assert.equal("BlockingIOError", raises(srv.accept, srv).name)
    a:close(); b:close()
  end)

  it("non-blocking connect raises BlockingIOError or connects", function()
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    local c <close> = socket.socket()
    c:settimeout(0)
    local ok, err = pcall(c.connect, c, srv:getsockname())
    if not ok then
      assert.equal("BlockingIOError", err.name)
      assert.equal(115, err.errno)
    end
  end)

  it("setdefaulttimeout applies to new sockets", function()
    assert.is_nil(socket.getdefaulttimeout())
    socket.setdefaulttimeout(4)
    local s = socket.socket()
    socket.setdefaulttimeout(nil)
    assert.equal(4, s:gettimeout())
    s:close()
    assert.is_nil(socket.socket():gettimeout())
  end)
end)

describe("close", function()
  it("fileno() is -1 after close, and close is idempotent", function()
    local s = socket.socket()
    s:close()
    assert.equal(-1, s:fileno())
    assert.equal(0, select("#", s:close()))
    assert.equal(-1, s:fileno())
  end)

  it("using a closed socket raises OSError EBADF", function()
    local a, b = socket.socketpair()
    a:close()
    for _, call in ipairs{
      function() a:recv(1) end, function() a:send("x") end,
      function() a:sendall("x") end, function() a:getsockname() end,
      function() a:getpeername() end, function() a:listen() end,
      function() a:shutdown(socket.SHUT_RDWR) end,
      function() a:setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1) end,
      function() a:recvfrom(1) end,
    } do
      local err = raises(call)
      assert.equal("OSError", err.name)
      assert.equal(9, err.errno)
      assert.equal("OSError: [Errno 9] Bad file descriptor", tostring(err))
    end
    local s = socket.socket()
    s:close()
    assert.equal(9, raises(s.connect, s, {"127.0.0.1", 1}).errno)
    assert.equal(9, raises(s.bind, s, {"127.0.0.1", 0}).errno)
    assert.equal(9, raises(s.accept, s).errno)
    b:close()
  end)

  it("a <close> variable closes the socket at the end of scope", function()
    local keep
    do
      local s <close> = socket.socket()
      keep = s
      assert.is_true(s:fileno() >= 0)
    end
    assert.equal(-1, keep:fileno())
  end)

  it("closes on an error leaving the scope", function()
    local keep
    pcall(function()
      local s <close> = socket.socket()
      keep = s
      error("boom")
    end)
    assert.equal(-1, keep:fileno())
  end)

  it("a collected socket closes its descriptor", function()
    local fd
    do
      local s = socket.socket()
      fd = s:fileno()
    end
    collectgarbage()
    collectgarbage()
    -- Adopting the number now fails: nothing is open there any more.
    local err = raises(socket.socket, nil, nil, nil, fd)
    assert.equal(9, err.errno)
  end)

  it("the peer sees end of stream after close", function()
    local c, s, srv = tcp_pair()
    c:close()
    assert.equal("", s:recv(10))
    s:close(); srv:close()
  end)
end)

describe("__tostring", function()
  it("reads like Python's repr", function()
    local s <close> = socket.socket()
    assert.equal(("<socket.socket fd=%d, family=2, type=1, proto=0, "
                  .. "laddr=('0.0.0.0', 0)>"):format(s:fileno()),
                 tostring(s))
    s:bind{"127.0.0.1", 0}
    local port = s:getsockname()[2]
    assert.equal(("<socket.socket fd=%d, family=2, type=1, proto=0, "
                  .. "laddr=('127.0.0.1', %d)>"):format(s:fileno(), port),
                 tostring(s))
  end)

  it("shows raddr for a connected socket", function()
    local c, s, srv = tcp_pair()
    local la, ra = c:getsockname(), c:getpeername()
    assert.equal(("<socket.socket fd=%d, family=2, type=1, proto=0, "
                  .. "laddr=('127.0.0.1', %d), raddr=('127.0.0.1', %d)>")
                 :format(c:fileno(), la[2], ra[2]), tostring(c))
    c:close(); s:close(); srv:close()
  end)

  it("shows a closed socket as Python does", function()
    local s = socket.socket()
    s:close()
    assert.equal("<socket.socket [closed] fd=-1, family=2, type=1, "
                 .. "proto=0>", tostring(s))
  end)

  it("shows IPv6 and AF_UNIX addresses as Python does", function()
    local s <close> = socket.socket(socket.AF_INET6)
    assert.equal(("<socket.socket fd=%d, family=10, type=1, proto=0, "
                  .. "laddr=('::', 0, 0, 0)>"):format(s:fileno()),
                 tostring(s))
    local dir = tempdir()
    local u <close> = socket.socket(socket.AF_UNIX)
    u:bind(dir .. "/r.sock")
    assert.equal(("<socket.socket fd=%d, family=1, type=1, proto=0, "
                  .. "laddr=%s/r.sock>"):format(u:fileno(), dir),
                 tostring(u))
    u:close()
    os.remove(dir .. "/r.sock")
    os.remove(dir)
    local a, b = socket.socketpair()
    assert.equal(("<socket.socket fd=%d, family=1, type=1, proto=0>")
                 :format(a:fileno()), tostring(a))
    a:close(); b:close()
  end)
end)

describe("makefile", function()
  it("readline returns lines with their newline, then what is left",
     function()
    local a, b = socket.socketpair()
    local f = b:makefile("r")
    a:sendall("one\ntwo\r\nthree")
    a:close()
    assert.equal("one\n", f:readline())
    assert.equal("two\r\n", f:readline())
    assert.equal("three", f:readline())
    assert.equal("", f:readline())
    b:close()
  end)

  it("readline waits for a line sent in pieces by another task",
     function()
    local a, b = socket.socketpair()
    local f = b:makefile("rb")
    threading.Thread{target = function()
      for _, piece in ipairs{"he", "ll", "o wor", "ld\nnext\n"} do
        a:sendall(piece)
        time.sleep(0.005)
      end
    end}:start()
    assert.equal("hello world\n", f:readline())
    assert.equal("next\n", f:readline())
    a:close(); b:close()
  end)

  it("readline(limit) returns at most limit bytes", function()
    local a, b = socket.socketpair()
    local f = b:makefile("r")
    a:sendall("abcdefgh\nxy\n")
    assert.equal("abc", f:readline(3))
    assert.equal("defgh\n", f:readline(100))
    assert.equal("xy\n", f:readline(3))
    a:close(); b:close()
  end)

  it("a timeout in the middle of a line keeps what was read", function()
    local a, b = socket.socketpair()
    b:settimeout(0.05)
    local f = b:makefile("r")
    a:sendall("half a ")
    local err = raises(f.readline, f)
    assert.equal("TimeoutError", err.name)
    a:sendall("line\n")
    assert.equal("half a line\n", f:readline())
    a:close(); b:close()
  end)

  it("read(n) and read() to end of stream", function()
    local a, b = socket.socketpair()
    local f = b:makefile("rb")
    a:sendall("0123456789rest")
    a:shutdown(socket.SHUT_WR)
    assert.equal("0123", f:read(4))
    assert.equal("456789", f:read(6))
    assert.equal("rest", f:read())
    assert.equal("", f:read())
    assert.equal("", f:read(5))
    a:close(); b:close()
  end)

  it("lines() iterates over what is left", function()
    local a, b = socket.socketpair()
    local f = b:makefile("r")
    a:sendall("x\ny\nz")
    a:close()
    local got = {}
    for line in f:lines() do got[#got + 1] = line end
    assert.same({"x\n", "y\n", "z"}, got)
    b:close()
  end)

  it("write buffers until flush", function()
    local a, b = socket.socketpair()
    local f = a:makefile("wb")
    assert.equal(5, f:write("hello"))
    f:write(" world\n")
    b:setblocking(false)
    assert.equal("BlockingIOError", raises(b.recv, b, 100).name)
    f:flush()
    b:setblocking(true)
    assert.equal("hello world\n", b:recv(100))
    f:write("bye")
    f:close()                             -- close flushes
    assert.equal("bye", b:recv(100))
    a:close(); b:close()
  end)

  it("checks the mode and refuses I/O after close", function()
    local a, b = socket.socketpair()
    local r = a:makefile("r")
    assert.has_error(function() r:write("x") end)
    local w = a:makefile("w")
    assert.has_error(function() w:readline() end)
    r:close()
    local err = raises(r.readline, r)
    assert.equal("ValueError", err.name)
    assert.has_error(function() a:makefile("rx+") end)
    a:close(); b:close()
  end)
end)

describe("socket options", function()
  it("SO_REUSEADDR round-trips", function()
    local s <close> = socket.socket()
    assert.equal(0, s:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
    assert.equal(0, select("#",
      s:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)))
    assert.equal(1, s:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
  end)

  it("TCP_NODELAY round-trips, a boolean counting as 0/1", function()
    local s <close> = socket.socket()
    s:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, true)
    assert.equal(1, s:getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    s:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    assert.equal(0, s:getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
  end)

  it("SO_RCVBUF is set (Linux doubles it, as Python shows)", function()
    local s <close> = socket.socket()
    s:setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert.equal(131072, s:getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
  end)

  it("SO_KEEPALIVE, SO_ERROR and SO_TYPE read as integers", function()
    local s <close> = socket.socket()
    s:setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert.equal(1, s:getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
    assert.equal(0, s:getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    assert.equal(socket.SOCK_STREAM,
                 s:getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))
  end)

  it("getsockopt with buflen returns bytes", function()
    local s <close> = socket.socket()
    s:setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, string.pack("ii", 1, 7))
    local raw = s:getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
    assert.equal(8, #raw)
    local on, secs = string.unpack("ii", raw)
    assert.equal(1, on)
    assert.equal(7, secs)
  end)

  it("an unknown option raises OSError", function()
    local s <close> = socket.socket()
    local err = raises(s.getsockopt, s, socket.SOL_SOCKET, 9999)
    assert.is_true(err:isinstance("OSError"))
    assert.equal(92, err.errno)            -- ENOPROTOOPT
  end)
end)

describe("getaddrinfo and gethostname", function()
  it("resolves localhost to loopback entries", function()
    local infos = socket.getaddrinfo("localhost", 80, socket.AF_INET,
                                     socket.SOCK_STREAM)
    assert.is_true(#infos >= 1)
    local ai = infos[1]
    assert.equal(socket.AF_INET, ai[1])
    assert.equal(socket.SOCK_STREAM, ai[2])
    assert.equal(socket.IPPROTO_TCP, ai[3])
    assert.equal("", ai[4])
    assert.same({"127.0.0.1", 80}, ai[5])
  end)

  it("returns every family and type when none is asked", function()
    local seen = {}
    for _, ai in ipairs(socket.getaddrinfo("127.0.0.1", "80")) do
      seen[ai[2]] = true
      assert.same({"127.0.0.1", 80}, ai[5])
    end
    assert.is_true(seen[socket.SOCK_STREAM])
    assert.is_true(seen[socket.SOCK_DGRAM])
  end)

  it("takes numeric IPv6 and a nil host (passive)", function()
    local ai = socket.getaddrinfo("::1", 8080, socket.AF_INET6,
                                  socket.SOCK_STREAM)[1]
    assert.equal(socket.AF_INET6, ai[1])
    assert.same({"::1", 8080, 0, 0}, ai[5])
    local p = socket.getaddrinfo(nil, 7, socket.AF_INET, socket.SOCK_STREAM,
                                 0, socket.AI_PASSIVE)[1]
    assert.same({"0.0.0.0", 7}, p[5])
  end)

  it("raises gaierror with a negative errno for a bad name", function()
    local err = raises(socket.getaddrinfo, "nonexistent.invalid", 80)
    assert.equal("gaierror", err.name)
    assert.is_true(err.errno < 0)
    assert.is_string(err.strerror)
    assert.is_true(err:isinstance("OSError"))
    assert.equal(("gaierror: [Errno %d] %s"):format(err.errno, err.strerror),
                 tostring(err))
  end)

  it("resolves a name on a worker thread, answering as the blocking call",
     function()
    -- Inside a task (this spec is one) a name goes to core/offload.c's
    -- worker; the raw call is the blocking one Python makes.
    local raw = require "_moonsock.socket"
    local want = raw.getaddrinfo("localhost", 443, 0, socket.SOCK_STREAM,
                                 0, 0)
    assert.same(want, socket.getaddrinfo("localhost", 443, 0,
                                         socket.SOCK_STREAM))
    -- other tasks keep running while 50 resolutions are made
    local ticks, stop = 0, false
    local th = threading.Thread{target = function()
      while not stop do time.sleep(0.001); ticks = ticks + 1 end
    end}
    th:start()
    for i = 1, 50 do
      assert.same({"127.0.0.1", i},
                  socket.getaddrinfo("localhost", i, socket.AF_INET,
                                     socket.SOCK_STREAM)[1][5])
    end
    stop = true
    th:join()
    assert.is_true(ticks >= 1, "the other task ran")
  end)

  it("connects by host name without the blocking resolver", function()
    local srv = socket.create_server({"127.0.0.1", 0})
    local port = srv:getsockname()[2]
    local c = socket.socket()
    c:connect({"localhost", port})
    local s = srv:accept()
    c:sendall("hi")
    assert.equal("hi", s:recv(2))
    c:close(); s:close(); srv:close()
    local err = raises(function()
      socket.socket():connect({"nonexistent.invalid", port})
    end)
    assert.equal("gaierror", err.name)
  end)

  it("bind and sendto take a host name too, as in Python", function()
    local u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:bind({"localhost", 0})
    assert.equal("127.0.0.1", u:getsockname()[1])
    local port = u:getsockname()[2]
    local c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert.equal(4, c:sendto("ping", {"localhost", port}))
    local data, from = u:recvfrom(16)
    assert.equal("ping", data)
    assert.equal("127.0.0.1", from[1])
    -- malformed addresses still get the C half's own message
    assert.matches("port must be an integer",
                   tostring(raises(c.sendto, c, "x", {"localhost", "p"})),
                   1, true)
    u:close(); c:close()
  end)

  it("a resolution dropped unfinished, or finished, leaves no stale watch "
     .. "on its descriptor", function()
    -- The job's eventfd is watched by the runtime while the task waits;
    -- it must leave the runtime's tables before it is closed, or a socket
    -- that gets the same fd number later would never be watched.
    local raw = require "_moonsock.socket"
    local rounds = 0
    -- In a thread, so that a hang (the bug) fails the test instead.
    local th = threading.Thread{target = function()
      for _ = 1, 20 do
        -- started, then dropped before it finished: collected at once
        local fd = select(2, raw.resolve_start("localhost", 80, 0, 0, 0, 0))
        assert(type(fd) == "number")
        collectgarbage()
        socket.getaddrinfo("localhost", 80)       -- watched, then closed
        local a, b = socket.socketpair()          -- likely the same fds
        threading.Thread{target = function()
          time.sleep(0.005)
          b:sendall("x")
        end}:start()
        assert(a:recv(1) == "x")                  -- waits, then wakes
        a:close(); b:close()
        rounds = rounds + 1
      end
    end, daemon = true}
    th:start()
    th:join(10)
    assert.is_false(th:is_alive(), "stuck after " .. rounds .. " rounds")
    assert.equal(20, rounds)
  end)

  it("gethostname matches hostname(1)", function()
    local name = socket.gethostname()
    assert.is_string(name)
    assert.is_true(#name > 0)
    local p = io.popen("hostname")
    local want = p:read("l")
    p:close()
    if want then assert.equal(want, name) end
  end)
end)
