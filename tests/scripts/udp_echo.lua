-- udp_echo.lua -- a datagram handler table served by `moonsock SCRIPT`:
-- as in Python's DatagramRequestHandler, self.request is {data, socket}
-- and what the handler writes to self.wfile is sent back on finish.

local socketserver = require "socketserver"

local UdpEcho = socketserver.class(socketserver.DatagramRequestHandler)
UdpEcho.listen = { "127.0.0.1", 8001 }

function UdpEcho:handle()
  self.wfile:write("udp:" .. self.rfile:read())
end

return UdpEcho
