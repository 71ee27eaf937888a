-- socket.lua -- Python's socket module for Lua, over _moonsock.socket.
--
-- The C half makes one non-blocking attempt per call and returns
-- nil, errno; this half decides what that means: wait (suspending only
-- the calling task), time out, or raise Python's exception. Names,
-- arguments and results are Python's; a tuple is a Lua array and a
-- returned tuple is several results (`local conn, addr = s:accept()`).
-- Python keyword arguments become one trailing table where a function
-- needs them (create_server).

local raw = require "_moonsock.socket"
local task = require "moonsock.task"
local errors = require "moonsock.errors"
local bytearray = require "_moonsock.bytearray"

local M = {}
local methods = {}

local E = errors.errno
local EAGAIN, EINPROGRESS, EBUSY = E.EAGAIN, E.EINPROGRESS, E.EBUSY
local READ, WRITE = task.READ, task.WRITE
local wait, deadline_of = task.wait, task.deadline
local raise = errors.raise
local recv, send, gettimeout = raw.recv, raw.send, raw.gettimeout
local mtype, tointeger = math.type, math.tointeger

for k, v in pairs(raw) do
  if type(v) == "number" then M[k] = v end
end

M.error = errors.OSError
M.timeout = errors.TimeoutError
M.gaierror = errors.gaierror
M.herror = errors.herror
M.has_ipv6 = true
M.errors = errors

local defaulttimeout = nil

-- Raise what Python would for a failed operation or wait: err is an
-- errno; EBUSY means another task already waits on the socket for ev.
-- Also what the C recv and sendall (socket.c) raise through.
local function fail(err, ev)
  if err == EBUSY then
    errors.throw("RuntimeError", ("another task is already waiting to "
      .. "%s this socket"):format(ev == READ and "read from"
                                  or "write to"), 3)
  end
  raise(err, 3)
end

-- Wait until the socket is ready for ev or raise what Python would.
local function waitfor(sock, ev, deadline)
  local ok, err = wait(sock, ev, deadline)
  if ok then return end
  if ok == false then errors.timeout(3) end
  fail(err, ev)
end

local active, isyieldable = task.active, coroutine.isyieldable

-- The timeout in seconds, nil for None (C stores None as -1).
local function timeout_of(sock)
  local t = gettimeout(sock)
  if t < 0 then return nil end
  return t
end

-- op(sock, ...) said EAGAIN: wait and retry within the socket's timeout
-- until it says something else. The shape of every blocking call below.
local function retry(sock, ev, op, ...)
  local t = timeout_of(sock)
  if t == 0 then raise(EAGAIN, 3) end
  local deadline = deadline_of(t)
  while true do
    waitfor(sock, ev, deadline)
    local a, b = op(sock, ...)
    if a ~= nil then return a, b end
    if b ~= EAGAIN then raise(b, 3) end
  end
end

local function blocking(sock, ev, op, ...)
  local a, b = op(sock, ...)
  if a ~= nil then return a, b end
  if b ~= EAGAIN then raise(b, 3) end
  return retry(sock, ev, op, ...)
end

---------------------------------------------------------------------------
-- data transfer

-- recv, recv_into and sendall are C functions (socket.c) for the common
-- case: no timeout, inside a task. They hand every other case to these
-- general versions, and raise a failure through fail().

-- Python's checks of a buffer size: TypeError, ValueError.
local function checksize(n, name)
  local i = tointeger(n)
  if i == nil then
    errors.throw("TypeError", ("'%s' object cannot be interpreted as an "
                 .. "integer"):format(mtype(n) or type(n)), 3)
  end
  if i < 0 then
    errors.throw("ValueError", "negative buffersize in " .. name, 3)
  end
  return i
end

local function recv_general(self, bufsize, flags)
  bufsize = checksize(bufsize, "recv")
  if flags ~= nil and flags ~= 0 then
    errors.throw("ValueError", "recv flags are not supported", 2)
  end
  -- The C recv waits itself when it can (no timeout, in a task); what
  -- comes here waits with a deadline, blocks, or is non-blocking.
  return (blocking(self, READ, recv, bufsize))
end

-- recv_into(buffer [, nbytes [, flags]]) -> count: Python's checks, then
-- the read; nbytes nil or 0 means the whole buffer.
local function recv_into_general(self, buffer, nbytes, flags)
  if not bytearray.iswritable(buffer) then
    errors.throw("TypeError", ("recv_into() argument 1 must be "
      .. "read-write bytes-like object, not %s"):format(
        type(buffer) == "userdata" and bytearray.isbytes(buffer)
        and "read-only memoryview" or type(buffer)), 2)
  end
  local n = nbytes == nil and 0 or checksize(nbytes, "recv_into")
  if n > #buffer then
    errors.throw("ValueError", "buffer too small for requested bytes", 2)
  end
  if n == 0 then n = #buffer end
  if flags ~= nil and flags ~= 0 then
    errors.throw("ValueError", "recv_into flags are not supported", 2)
  end
  if n == 0 then return 0 end
  return (blocking(self, READ, raw.recv_into, buffer, n))
end

function methods:recvfrom(bufsize)
  bufsize = checksize(bufsize, "recvfrom")
  return blocking(self, READ, raw.recvfrom, bufsize)
end

function methods:send(data)
  local n, err = send(self, data)
  if n then return n end
  if err ~= EAGAIN then raise(err, 2) end
  return (retry(self, WRITE, send, data))
end

-- sendall(data): everything or an exception; one deadline for the call.
-- The general version, from byte i on (the C sendall has sent the rest).
-- data is a string, a bytearray or a memoryview.
local function sendall_from(self, data, i)
  if not bytearray.isbytes(data) then
    errors.throw("TypeError", ("bad argument #1 to 'sendall' (string, "
      .. "bytearray or memoryview expected, got %s)"):format(type(data)), 3)
  end
  local len = #data
  -- As in recv_general: the C sendall has already handled a socket with
  -- no timeout inside a task, so this loop has a deadline, blocks, or
  -- is non-blocking.
  local t = timeout_of(self)
  local deadline = deadline_of(t)
  local n, err = send(self, data, i)
  while true do
    if n then
      i = i + n
      if i > len then return end
    elseif err ~= EAGAIN then
      raise(err, 2)
    elseif t == 0 then
      raise(EAGAIN, 2)
    else
      waitfor(self, WRITE, deadline)
    end
    n, err = send(self, data, i)
  end
end

-- A host that getaddrinfo answers without asking anyone: none, the empty
-- string, or a numeric IPv4 or IPv6 address.
local function numeric(host)
  return host == nil or host == "" or host == "<broadcast>"
    or host:find("^[%d.]+$") ~= nil or host:find(":", 1, true) ~= nil
end

-- address with its host name resolved (by M.getaddrinfo: on a worker
-- thread inside a task), as Python's bind, connect and sendto resolve it;
-- any other address as it is.
local function by_name(self, address)
  -- Anything malformed goes on to the C half, which says what is wrong.
  if type(address) == "table" and type(address[1]) == "string"
      and mtype(address[2]) == "integer" and not numeric(address[1])
      and (self.family == M.AF_INET or self.family == M.AF_INET6) then
    local infos = M.getaddrinfo(address[1], address[2], self.family,
                                self.type)
    return infos[1][5]
  end
  return address
end

function methods:sendto(data, address)
  return (blocking(self, WRITE, raw.sendto, data, by_name(self, address)))
end

-- sendfile(file[, offset[, count]]) -> bytes sent. Python's
-- socket.sendfile over sendfile(2): count bytes from offset (default 0),
-- or up to end of file when count is nil. file is a moonsock.fs file (any
-- object with fileno()) or an fd. One deadline for the whole call, as
-- sendall; a socket with timeout 0 is refused, as Python refuses it.
-- Yields to other tasks after every SENDFILE_BURST bytes sent without a
-- wait, so a peer that keeps up cannot hold the loop. (Owned by issue 6.)
local SENDFILE_BURST = 4 * 1024 * 1024
local SENDFILE_MAX = 0x7ffff000          -- Linux's per-call ceiling
function methods:sendfile(file, offset, count)
  local fd = type(file) == "number" and file or file:fileno()
  offset = offset or 0
  if count ~= nil and count < 0 then
    errors.throw("ValueError", "count must be a positive integer", 2)
  end
  local t = timeout_of(self)
  if t == 0 then
    errors.throw("ValueError", "non-blocking sockets are not supported", 2)
  end
  local deadline = deadline_of(t)
  local total, burst = 0, 0
  while count == nil or total < count do
    local want = count and count - total or SENDFILE_MAX
    if want > SENDFILE_MAX then want = SENDFILE_MAX end
    local n, r = raw.sendfile(self, fd, offset, want)
    if n == 0 then break end                        -- end of file
    if n then
      total, offset, burst = total + n, r, burst + n
      if burst >= SENDFILE_BURST then
        burst = 0
        task.sleep(0)
      end
    elseif r ~= EAGAIN then
      raise(r, 2)
    else
      burst = 0
      waitfor(self, WRITE, deadline)
    end
  end
  return total
end

---------------------------------------------------------------------------
-- connections

function methods:bind(address)
  local ok, err = raw.bind(self, by_name(self, address))
  if not ok then raise(err, 2) end
end

function methods:listen(backlog)
  local ok, err = raw.listen(self, backlog)
  if not ok then raise(err, 2) end
end

function methods:accept()
  local conn, addr = blocking(self, READ, raw.accept)
  if defaulttimeout ~= nil then raw.settimeout(conn, defaulttimeout) end
  return conn, addr
end

-- _accept_request(sock) -> conn: accept() for the script server
-- (serve.lua), which keeps the peer's address in conn's box and builds
-- client_address from it (raw.peeraddr) only if a handler asks.
function M._accept_request(sock)
  local conn = blocking(sock, READ, raw.accept, true)
  if defaulttimeout ~= nil then raw.settimeout(conn, defaulttimeout) end
  return conn
end

-- connect_errno(sock, address) -> 0 or errno; raises only for what is not
-- an errno of connect() itself (bad address, resolver failure).
local function connect_errno(self, address)
  -- A host name is resolved first, without stopping other tasks.
  address = by_name(self, address)
  local ok, err = raw.connect(self, address)
  if ok then return 0 end
  if err < 0 then raise(err, 3) end            -- gaierror
  if err ~= EINPROGRESS and err ~= EAGAIN then return err end
  local t = timeout_of(self)
  if t == 0 then return EINPROGRESS end
  local ready, werr = wait(self, WRITE, deadline_of(t))
  if ready == false then return EAGAIN, "timeout" end
  if ready == nil then return werr end
  return raw.connect_result(self)
end

function methods:connect(address)
  local err, why = connect_errno(self, address)
  if err == 0 then return end
  if why == "timeout" then errors.timeout(2) end
  raise(err, 2)
end

function methods:connect_ex(address)
  return (connect_errno(self, address))
end

function methods:shutdown(how)
  local ok, err = raw.shutdown(self, how)
  if not ok then raise(err, 2) end
end

function methods:close()
  raw.close(self)
end

function methods:detach()
  return raw.detach(self)
end

function methods:fileno()
  return raw.fileno(self)
end

function methods:getsockname()
  local a, err = raw.getsockname(self)
  if a == nil then raise(err, 2) end
  return a
end

function methods:getpeername()
  local a, err = raw.getpeername(self)
  if a == nil then raise(err, 2) end
  return a
end

function methods:setsockopt(level, opt, value)
  local ok, err = raw.setsockopt(self, level, opt, value)
  if not ok then raise(err, 2) end
end

function methods:getsockopt(level, opt, buflen)
  local v, err = raw.getsockopt(self, level, opt, buflen)
  if v == nil then raise(err, 2) end
  return v
end

---------------------------------------------------------------------------
-- timeouts, as Python: nil waits forever, 0 never waits, t > 0 seconds

local function checktimeout(t, level)
  if t == nil then return -1 end
  if type(t) ~= "number" then
    errors.throw("TypeError", "Timeout value must be int, float or None",
                 level + 1)
  end
  if t < 0 or t ~= t then
    errors.throw("ValueError", "Timeout value out of range", level + 1)
  end
  return t
end

function methods:settimeout(t)
  raw.settimeout(self, checktimeout(t, 2))
end

function methods:gettimeout()
  return timeout_of(self)
end

function methods:setblocking(flag)
  raw.settimeout(self, flag and -1 or 0)
end

function methods:getblocking()
  return gettimeout(self) ~= 0
end

---------------------------------------------------------------------------
-- makefile: a buffered file object over the socket

local SocketFile = {}
SocketFile.__index = SocketFile

function methods:makefile(mode)
  mode = mode or "r"
  if not mode:match("^[rwb]+$") then
    errors.throw("ValueError", ("invalid mode %q (only r, w, b)")
                 :format(mode), 2)
  end
  return setmetatable({
    sock = self, mode = mode, buf = "", pos = 1, out = {}, nout = 0,
    closed = false,
  }, SocketFile)
end

local function checkfile(f, what)
  if f.closed then
    errors.throw("ValueError", "I/O operation on closed file.", 3)
  end
  if not f.mode:find(what, 1, true) then
    errors.throw("OSError", ("File not open for %s"):format(
      what == "r" and "reading" or "writing"), 3)
  end
end

-- fill(f) -> false at end of stream
local function fill(f)
  local data = f.sock:recv(65536)
  if data == "" then return false end
  if f.pos > #f.buf then
    f.buf, f.pos = data, 1
  else
    f.buf, f.pos = f.buf:sub(f.pos) .. data, 1
  end
  return true
end

-- readline([limit]) -> the next line with its "\n", or what is left
-- ("" at end of stream); at most limit bytes when limit is given.
function SocketFile:readline(limit)
  checkfile(self, "r")
  if limit ~= nil and limit < 0 then limit = nil end
  local from = self.pos
  while true do
    local nl = self.buf:find("\n", from, true)
    local avail = #self.buf - self.pos + 1
    if nl and (limit == nil or nl - self.pos + 1 <= limit) then
      local line = self.buf:sub(self.pos, nl)
      self.pos = nl + 1
      return line
    end
    if limit ~= nil and avail >= limit then
      local line = self.buf:sub(self.pos, self.pos + limit - 1)
      self.pos = self.pos + limit
      return line
    end
    from = #self.buf + 1 - (self.pos - 1)
    if not fill(self) then
      local line = self.buf:sub(self.pos)
      self.buf, self.pos = "", 1
      return line
    end
  end
end

-- read([n]) -> up to n bytes (all until end of stream when n is nil).
function SocketFile:read(n)
  checkfile(self, "r")
  if n == nil or n < 0 then
    local parts = { self.buf:sub(self.pos) }
    self.buf, self.pos = "", 1
    while true do
      local data = self.sock:recv(65536)
      if data == "" then break end
      parts[#parts + 1] = data
    end
    return table.concat(parts)
  end
  while #self.buf - self.pos + 1 < n do
    if not fill(self) then break end
  end
  local out = self.buf:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + #out
  return out
end

-- lines() -> iterator over lines, for `for line in f:lines() do`.
function SocketFile:lines()
  return function()
    local line = self:readline()
    if line ~= "" then return line end
  end
end

function SocketFile:readlines()
  local t = {}
  for line in self:lines() do t[#t + 1] = line end
  return t
end

function SocketFile:write(data)
  checkfile(self, "w")
  data = tostring(data)
  self.out[#self.out + 1] = data
  self.nout = self.nout + #data
  if self.nout >= 65536 then self:flush() end
  return #data
end

function SocketFile:flush()
  if self.nout > 0 then
    local data = table.concat(self.out)
    self.out, self.nout = {}, 0
    self.sock:sendall(data)
  end
end

function SocketFile:close()
  if not self.closed then
    if self.mode:find("w", 1, true) then self:flush() end
    self.closed = true
  end
end
SocketFile.__close = SocketFile.close

---------------------------------------------------------------------------
-- repr

local function addr_repr(a)
  if type(a) == "table" then
    local parts = {}
    for i, v in ipairs(a) do
      parts[i] = type(v) == "string" and ("'%s'"):format(v) or tostring(v)
    end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  return a     -- Python formats with str(): an AF_UNIX path has no quotes
end

local function tostring_socket(self)
  local fd = raw.fileno(self)
  local s = ("<socket.socket %sfd=%d, family=%d, type=%d, proto=%d"):format(
    fd < 0 and "[closed] " or "", fd, self.family, self.type, self.proto)
  if fd >= 0 then
    local la = raw.getsockname(self)
    if la ~= nil and la ~= "" then s = s .. ", laddr=" .. addr_repr(la) end
    local ra = raw.getpeername(self)
    if ra ~= nil and ra ~= "" then s = s .. ", raddr=" .. addr_repr(ra) end
  end
  return s .. ">"
end

raw.setmethods(methods, tostring_socket, recv_general, sendall_from,
               recv_into_general, fail)
M.methods = methods

---------------------------------------------------------------------------
-- module functions

local function checkint(v, what)
  if v ~= nil and mtype(v) ~= "integer" then
    local i = tointeger(v)
    if i == nil then
      errors.throw("TypeError", what .. " must be an integer", 3)
    end
    return i
  end
  return v
end

-- socket([family[, type[, proto[, fileno]]]])
function M.socket(family, type_, proto, fileno)
  family = checkint(family, "family")
  type_ = checkint(type_, "type")
  proto = checkint(proto, "proto") or 0
  local s, err
  if fileno ~= nil then
    -- As Python 3.7+: what is not given is read from the descriptor.
    s, err = raw.fromfd(checkint(fileno, "fileno"), family or -1,
                        type_ or -1, proto)
  else
    s, err = raw.socket(family or M.AF_INET, type_ or M.SOCK_STREAM, proto)
  end
  if s == nil then raise(err, 2) end
  if defaulttimeout ~= nil then raw.settimeout(s, defaulttimeout) end
  return s
end

function M.socketpair(family, type_, proto)
  local a, b = raw.socketpair(family or M.AF_UNIX, type_ or M.SOCK_STREAM,
                              proto or 0)
  if a == nil then raise(b, 2) end
  if defaulttimeout ~= nil then
    raw.settimeout(a, defaulttimeout)
    raw.settimeout(b, defaulttimeout)
  end
  return a, b
end

-- getaddrinfo(host, port[, family[, type[, proto[, flags]]]]) -> list of
-- {family, type, proto, canonname, sockaddr}. Inside a task a name is
-- resolved on a worker thread (core/offload.c) while this task waits and
-- the others run: a slow DNS server stalls only the caller, as a blocking
-- call in a Python thread would.
function M.getaddrinfo(host, port, family, type_, proto, flags)
  family, type_, proto, flags = family or 0, type_ or 0, proto or 0,
                                flags or 0
  local list, err
  if active and isyieldable() and type(host) == "string"
      and not numeric(host) then
    local job, fd = raw.resolve_start(host, port, family, type_, proto,
                                      flags)
    if job then
      repeat
        local ok, werr = wait(fd, READ, nil)
        if ok == nil then raise(werr, 2) end
        list, err = raw.resolve_result(job)
      until list ~= nil or err ~= EAGAIN
    end
  end
  if list == nil and err == nil then
    list, err = raw.getaddrinfo(host, port, family, type_, proto, flags)
  end
  if list == nil then raise(err, 2) end
  return list
end

function M.gethostname()
  local name, err = raw.gethostname()
  if name == nil then raise(err, 2) end
  return name
end

function M.getdefaulttimeout()
  return defaulttimeout
end

function M.setdefaulttimeout(t)
  local v = checktimeout(t, 2)
  defaulttimeout = v >= 0 and v or nil
end

-- create_connection(address[, timeout[, source_address]]) -> socket
function M.create_connection(address, timeout, source_address)
  local host, port = address[1], address[2]
  local infos = M.getaddrinfo(host, port, 0, M.SOCK_STREAM)
  local last
  for _, ai in ipairs(infos) do
    local s = M.socket(ai[1], ai[2], ai[3])
    local ok, err = pcall(function()
      if timeout ~= nil then s:settimeout(timeout) end
      if source_address then s:bind(source_address) end
      s:connect(ai[5])
    end)
    if ok then return s end
    s:close()
    last = err
  end
  error(last or errors.new("OSError", "getaddrinfo returns an empty list"),
        2)
end

-- create_server(address[, {family=, backlog=, reuse_port=,
-- dualstack_ipv6=}]) -> listening socket
function M.create_server(address, opts)
  opts = opts or {}
  local family = opts.family or M.AF_INET
  local s = M.socket(family, M.SOCK_STREAM)
  local ok, err = pcall(function()
    if family ~= M.AF_UNIX then
      s:setsockopt(M.SOL_SOCKET, M.SO_REUSEADDR, 1)
    end
    if opts.reuse_port then
      s:setsockopt(M.SOL_SOCKET, M.SO_REUSEPORT, 1)
    end
    if family == M.AF_INET6 then
      s:setsockopt(M.IPPROTO_IPV6, M.IPV6_V6ONLY,
                   opts.dualstack_ipv6 and 0 or 1)
    end
    s:bind(address)
    s:listen(opts.backlog)
  end)
  if not ok then
    s:close()
    error(err, 2)
  end
  return s
end

return M
