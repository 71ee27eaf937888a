-- moonsock_echo_into.lua -- scripts/echo.lua with recv_into: each
-- connection reads into its own 256 KiB bytearray and sends a view of
-- what was read, so no string is made and nothing is copied per chunk.
-- bench/recv_into.sh measures it beside scripts/echo.lua.

local Echo = { listen = { "127.0.0.1", 8000 } }

function Echo:handle()
  local conn = self.request
  local buf = bytearray(262144)
  local view = memoryview(buf)
  while true do
    local n = conn:recv_into(buf)
    if n == 0 then return end
    conn:sendall(view:sub(1, n))
  end
end

return Echo
