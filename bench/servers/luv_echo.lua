-- luv_echo.lua -- libuv's callback style through luv, as luv's README and
-- examples write a TCP echo server: read_start with a callback that
-- writes each chunk back.
--   lua5.4 luv_echo.lua PORT
local uv = require "luv"

local port = tonumber(arg[1])
local server = uv.new_tcp()
server:bind("127.0.0.1", port)
server:listen(1024, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  client:read_start(function(rerr, data)
    if rerr or not data then
      client:close()
      return
    end
    client:write(data)
  end)
end)
io.stderr:write(("listening on 127.0.0.1:%d\n"):format(port))
uv.run()
