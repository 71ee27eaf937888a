-- echo.lua -- the smallest handler: send back every byte received.
--
--   moonsock scripts/echo.lua                 # 0.0.0.0:8000
--   moonsock --listen 127.0.0.1:9000 scripts/echo.lua
--
-- Python's socketserver version is the same four lines inside handle().

local Echo = { listen = { "0.0.0.0", 8000 } }

function Echo:handle()
  local conn = self.request
  while true do
    local data = conn:recv(65536)
    if data == "" then return end
    conn:sendall(data)
  end
end

return Echo
