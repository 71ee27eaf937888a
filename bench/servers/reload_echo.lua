-- reload_echo.lua -- the handler of the reload benchmark: echo.lua with
-- TCP_NODELAY, plus one switch. bench/run.sh copies it twice, once as is
-- (version 1, echoes) and once with UPPER set (version 2, answers in
-- capitals), then `loadgen reload` saves version 2 over version 1 while
-- 1,000 clients keep echoing, and times until a fresh connection's
-- "probe" comes back as "PROBE". Live connections keep running version
-- 1's loop, as DESIGN.md says a running function finishes as written.
local socket = require "socket"

local UPPER = false

local Echo = {}

function Echo:setup()
  self.request:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
end

function Echo:handle()
  local conn = self.request
  while true do
    local data = conn:recv(65536)
    if data == "" then return end
    if UPPER then data = data:upper() end
    conn:sendall(data)
  end
end

return Echo
