-- stamp_chat.lua -- a small chat room served by examples/embed_chat.c.
--
-- Every line a client sends goes to everyone in the room (the sender
-- too), prefixed by require("host").stamp() -- a C function of the
-- embedding program, so this script only runs inside embed_chat (or a
-- host that registers the same function). "/stats" answers the sender
-- alone from require "host.stats", a whole module the host preloaded.
--
--   embed_chat --listen 127.0.0.1:9000 examples/stamp_chat.lua

local host = require "host"
local stats = require "host.stats"

local MAX_LINE = 4096

local Chat = { listen = { "127.0.0.1", 8000 } }

-- The room outlives a reload: it lives on the server.
local function room(server)
  server.state.room = server.state.room or {}
  return server.state.room
end

local function broadcast(server, line)
  for conn in pairs(room(server)) do
    -- A client that cannot take the line is dropped, not the sender.
    if not pcall(conn.sendall, conn, line) then
      room(server)[conn] = nil
    end
  end
end

function Chat:setup()
  room(self.server)[self.request] = true
end

function Chat:handle()
  local conn, buf = self.request, ""
  while true do
    local nl = buf:find("\n", 1, true)
    if nl then
      local line = buf:sub(1, nl - 1):gsub("\r$", "")
      buf = buf:sub(nl + 1)
      if line == "/stats" then
        conn:sendall(("* stamped %d, mode %s\n")
                     :format(stats.count(), stats.mode))
      elseif line ~= "" then
        broadcast(self.server, host.stamp() .. " " .. line .. "\n")
      end
    elseif #buf > MAX_LINE then
      conn:sendall(("* line longer than %d bytes, bye\n"):format(MAX_LINE))
      return
    else
      local data = conn:recv(4096)
      if data == "" then return end
      buf = buf .. data
    end
  end
end

function Chat:finish()
  room(self.server)[self.request] = nil
end

return Chat
