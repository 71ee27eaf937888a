-- ss_servers.lua -- a program (it returns nothing) that builds a
-- socketserver server by hand, as a Python program would, and serves
-- until a client sends "shutdown".
--
--   moonsock tests/scripts/ss_servers.lua KIND [ADDRESS]
--
-- KIND: tcp, threading-tcp, udp, threading-udp, unix-stream, unix-dgram.
-- ADDRESS: a unix path for the unix kinds. The port (or path) is printed
-- to stderr as "listening on 127.0.0.1:PORT" (or "listening on PATH").
-- Commands, one per line (or per datagram): "shutdown" calls
-- server:shutdown() from inside the handler; "raise" raises (handle_error
-- logs it); "sleep" sleeps 0.3 s; anything else comes back upper-cased
-- with the handler's client_address.

local socketserver = require "socketserver"
local time = require "time"

local kind, address = ...
local classes = {
  tcp = socketserver.TCPServer,
  ["threading-tcp"] = socketserver.ThreadingTCPServer,
  udp = socketserver.UDPServer,
  ["threading-udp"] = socketserver.ThreadingUDPServer,
  ["unix-stream"] = socketserver.UnixStreamServer,
  ["unix-dgram"] = socketserver.UnixDatagramServer,
}
local Server = assert(classes[kind], "unknown kind " .. tostring(kind))

local function answer(self, line)
  line = line:gsub("%s+$", "")
  if line == "shutdown" then
    -- Answer first: once shutdown() returns, the main chunk may already
    -- have closed a datagram server's socket (Python has the same race).
    self:reply("bye\n")
    self.server:shutdown()
    return nil
  elseif line == "raise" then
    error("raised on request")
  elseif line == "sleep" then
    time.sleep(0.3)
    return "slept\n"
  end
  return line:upper() .. "\n"
end

local Stream = socketserver.class(socketserver.StreamRequestHandler)
function Stream:reply(text) self.wfile:write(text) end
function Stream:handle()
  for line in self.rfile:lines() do
    local out = answer(self, line)
    if out then self.wfile:write(out) end
  end
end

local Datagram = socketserver.class(socketserver.DatagramRequestHandler)
function Datagram:reply(text)
  self.socket:sendto(text, self.client_address)
  self.replied = true
end
function Datagram:handle()
  local out = answer(self, self.rfile:read())
  if out then self.wfile:write(out) end
end
function Datagram:finish()
  if not self.replied then
    socketserver.DatagramRequestHandler.finish(self)
  end
end

local Handler = Stream
if socketserver.issubclass(Server, socketserver.UDPServer) then
  Handler = Datagram
end

local MyServer = socketserver.class(Server)
MyServer.allow_reuse_address = true
function MyServer:handle_error(request, client_address, err)
  io.stderr:write("handle_error: ", socketserver.traceback(err), "\n")
end

local addr = address or { "127.0.0.1", 0 }
local server <close> = MyServer(addr, Handler)
if type(server.server_address) == "table" then
  io.stderr:write(("listening on %s:%d\n"):format(
    server.server_address[1], server.server_address[2]))
else
  io.stderr:write("listening on ", server.server_address, "\n")
end
io.stderr:flush()
server:serve_forever(0.1)
io.stderr:write("serve_forever returned\n")
