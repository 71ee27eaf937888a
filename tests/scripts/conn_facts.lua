-- conn_facts.lua -- a handler that reports what the script server gave
-- it, for tests/blackbox/test_conn_facts.py. Each line the client sends
-- is a command; the answer is one line.
--   addr     client_address, as "host port"
--   same     whether client_address is the same value twice
--   server   whether self.server is the server serving it
--   nodelay  the connection's TCP_NODELAY (0 or 1)
--   wait     wait for the client to go away (its RST), then log
--            "gone: host port" with client_address read only then
--   raise    raise from a function called by handle (finish still runs:
--            it logs "finish ran")
-- With FACTS_SETUP_RAISE=yes, setup raises instead: no handle, no
-- finish. With FACTS_NODELAY=no the table asks for Nagle's algorithm.
local socket = require "socket"

local Facts = {}
Facts.tcp_nodelay = os.getenv("FACTS_NODELAY") ~= "no"

local function explode()
  error("raised on request")
end

function Facts:setup()
  if os.getenv("FACTS_SETUP_RAISE") == "yes" then
    error("setup raised on request")
  end
end

function Facts:handle()
  local conn = self.request
  local buf = ""
  while true do
    local data = conn:recv(4096)
    if data == "" then return end
    buf = buf .. data
    for line in buf:gmatch("([^\n]*)\n") do
      local out
      if line == "addr" then
        out = ("%s %d"):format(self.client_address[1],
                               self.client_address[2])
      elseif line == "same" then
        out = tostring(self.client_address == self.client_address)
      elseif line == "server" then
        out = tostring(self.server ~= nil and self.server.handler ~= nil
                       and self.server:status().connections >= 1)
      elseif line == "nodelay" then
        out = tostring(conn:getsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY))
      elseif line == "wait" then
        conn:sendall("waiting\n")
        while true do
          local ok, more = pcall(conn.recv, conn, 4096)
          if not ok or more == "" then break end
        end
        io.stderr:write(("gone: %s %d\n"):format(self.client_address[1],
                                                 self.client_address[2]))
        return
      elseif line == "raise" then
        explode()
      else
        out = "unknown " .. line
      end
      conn:sendall(out .. "\n")
    end
    buf = buf:match("[^\n]*$")
  end
end

function Facts:finish()
  io.stderr:write("finish ran\n")
end

return Facts
