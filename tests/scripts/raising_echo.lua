-- raising_echo.lua -- echo.lua, except that a message containing "raise"
-- makes the handler raise. The black-box tests use it to check that a
-- handler's error ends only its own connection, with a traceback in the
-- log, while the server and every other client carry on.

local Echo = {}

local function explode(data)
  error("asked to raise by the client: " .. data:gsub("%s+$", ""))
end

function Echo:handle()
  local conn = self.request
  while true do
    local data = conn:recv(65536)
    if data == "" then return end
    if data:find("raise", 1, true) then explode(data) end
    conn:sendall(data)
  end
end

return Echo
