-- moonsock_echo.lua -- scripts/echo.lua as shipped, plus TCP_NODELAY on
-- each connection, because every server in the bench runs with it
-- (asyncio and uvloop set it by default; moonsock's serve.lua does not
-- yet, see docs/performance.md). The handle loop is echo.lua's own.
--   moonsock --listen 127.0.0.1:PORT bench/servers/moonsock_echo.lua
local socket = require "socket"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local Echo = dofile(here .. "../../scripts/echo.lua")

function Echo:setup()
  self.request:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
end

return Echo
