-- tarantool_echo.lua -- Tarantool's socket.tcp_server: one fiber per
-- client, as its socket module documents. sysread() returns what is
-- there without yielding (recv() of 64 KiB would allocate and zero a
-- fresh buffer on every call), so the fiber waits in readable() when the
-- socket is empty; write() yields until everything is sent. tcp_server
-- closes the socket when the handler returns.
--   tarantool tarantool_echo.lua PORT
local socket = require "socket"
local errno = require "errno"

local port = tonumber(arg[1])

local function handler(s)
  s:setsockopt("SOL_TCP", "TCP_NODELAY", true)
  while true do
    local data = s:sysread(65536)
    if data == nil then
      if s:errno() ~= errno.EAGAIN or not s:readable() then break end
    elseif data == "" then
      break
    elseif not s:write(data) then
      break
    end
  end
end

local srv = socket.tcp_server("127.0.0.1", port, {
  handler = handler,
  prepare = function() return 1024 end,   -- the listen backlog
})
assert(srv, "tcp_server failed")
io.stderr:write(("listening on 127.0.0.1:%d\n"):format(port))
