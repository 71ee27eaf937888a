-- cqueues_echo.lua -- cqueues' own pattern: a controller, one coroutine
-- per client wrapped onto it, blocking-style reads and writes.
--   lua5.4 cqueues_echo.lua PORT
-- cqueues listens with SOMAXCONN (4096 here), not settable from Lua;
-- the load generator throttles connects, so the backlog never fills.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local port = tonumber(arg[1])
local cq = cqueues.new()
local srv = socket.listen { host = "127.0.0.1", port = port,
                            reuseaddr = true, nodelay = true }
srv:listen()
io.stderr:write(("listening on 127.0.0.1:%d\n"):format(port))

cq:wrap(function()
  for con in srv:clients() do
    cq:wrap(function()
      con:setmode("b", "bn")        -- binary, output not buffered
      while true do
        local data = con:read(-65536)   -- up to 64 KiB, what is there
        if data == nil then break end
        con:write(data)
      end
      con:close()
    end)
  end
end)

assert(cq:loop())
