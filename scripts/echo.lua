-- echo.lua -- the smallest handler: send back every byte received.
--
--   moonsock scripts/echo.lua                 # 0.0.0.0:8000
--   moonsock --listen 127.0.0.1:9000 scripts/echo.lua
--
-- Python's socketserver version is the same four lines inside handle().
-- It reads up to 256 KiB at a time (asyncio's read size): recv returns
-- what the kernel has, so a small message costs no more, and a stream
-- moves in a quarter of the calls 64 KiB would take.

local Echo = { listen = { "0.0.0.0", 8000 } }

function Echo:handle()
  local conn = self.request
  while true do
    local data = conn:recv(262144)
    if data == "" then return end
    conn:sendall(data)
  end
end

return Echo
